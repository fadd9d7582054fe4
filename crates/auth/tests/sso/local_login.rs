//! Local login limited to break-glass accounts, on both backends.

use super::{PASSWORD, admin_context, attempt, audit_actions, conn, create, settings, t0};
use conclave_auth::accounts;
use conclave_auth::identity::local_login;
use conclave_auth::{AuthError, login};
use conclave_core::Role;
use conclave_testkit::backend_tests;

backend_tests! {
    fn only_break_glass_accounts_log_in_locally_once_limited(db) {
        let mut conn = conn(db);
        let first = accounts::ensure_first_admin(&mut conn, t0()).unwrap().unwrap();
        assert!(first.user.break_glass, "the first admin is the break-glass account");
        let staff = create(&mut conn, "staff", &[]);
        let other_admin = create(&mut conn, "other", &[Role::Admin]);
        assert!(local_login::enabled_for_everyone(&mut conn).unwrap());

        local_login::set_enabled_for_everyone(&mut conn, &admin_context(), t0(), false).unwrap();
        assert!(!local_login::enabled_for_everyone(&mut conn).unwrap());
        let refused = login::login_local(db, &settings(), t0(), &attempt("staff", PASSWORD, "10.0.0.1"));
        assert!(matches!(refused, Err(AuthError::LocalLoginDisabled)), "{refused:?}");
        // A wrong password still says only that.
        let wrong = login::login_local(db, &settings(), t0(), &attempt("staff", "not it", "10.0.0.2"));
        assert!(matches!(wrong, Err(AuthError::InvalidCredentials)), "{wrong:?}");
        let pw = first.one_time_password.clone().unwrap();
        assert!(login::login_local(db, &settings(), t0(), &attempt("admin", &pw, "10.0.0.3")).is_ok());

        // The last break-glass admin stays one while local login is limited.
        let err = local_login::set_break_glass(&mut conn, &admin_context(), t0(), first.user.id, false).unwrap_err();
        assert!(matches!(err, AuthError::Conflict(_)), "{err:?}");
        // ... nor can it be suspended or lose its admin role, though another admin exists.
        let err = accounts::suspend(&mut conn, &admin_context(), t0(), first.user.id).unwrap_err();
        assert!(matches!(err, AuthError::Conflict(_)), "{err:?}");
        let err = accounts::set_roles(&mut conn, &admin_context(), t0(), first.user.id, conclave_core::RoleSet::new([Role::User])).unwrap_err();
        assert!(matches!(err, AuthError::Conflict(_)), "{err:?}");
        local_login::set_break_glass(&mut conn, &admin_context(), t0(), other_admin, true).unwrap();
        local_login::set_break_glass(&mut conn, &admin_context(), t0(), first.user.id, false).unwrap();
        assert!(login::login_local(db, &settings(), t0(), &attempt("other", PASSWORD, "10.0.0.4")).is_ok());

        // Back on: everyone again.
        local_login::set_enabled_for_everyone(&mut conn, &admin_context(), t0(), true).unwrap();
        assert!(login::login_local(db, &settings(), t0(), &attempt("staff", PASSWORD, "10.0.0.5")).is_ok());
        let _ = staff;

        let actions = audit_actions(&mut conn);
        assert_eq!(actions.iter().filter(|(a, _)| a == "identity.local_login_change").count(), 2);
        assert!(actions.contains(&("auth.login".into(), "failure".into())));
        assert!(actions.iter().filter(|(a, _)| a == "user.break_glass_change").count() >= 3);
    }

    fn limiting_local_login_needs_an_active_break_glass_admin(db) {
        let mut conn = conn(db);
        create(&mut conn, "boss", &[Role::Admin]);
        let err = local_login::set_enabled_for_everyone(&mut conn, &admin_context(), t0(), false).unwrap_err();
        assert!(matches!(err, AuthError::Conflict(_)), "{err:?}");
        assert!(local_login::enabled_for_everyone(&mut conn).unwrap());
    }
}
