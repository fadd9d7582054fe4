//! The diesel schema, identical for both backends (the migrations keep it so, and a test
//! compares them).

diesel::table! {
    users (id) {
        id -> Text,
        username -> Text,
        display_name -> Text,
        email -> Nullable<Text>,
        status -> Text,
        auth_source -> Text,
        password_hash -> Nullable<Text>,
        must_change_password -> Bool,
        created_at -> BigInt,
        updated_at -> BigInt,
    }
}

diesel::table! {
    user_roles (user_id, role) {
        user_id -> Text,
        role -> Text,
    }
}

diesel::table! {
    sessions (id) {
        id -> Text,
        user_id -> Text,
        token_hash -> Binary,
        created_at -> BigInt,
        last_seen_at -> BigInt,
        expires_at -> BigInt,
        revoked_at -> Nullable<BigInt>,
        revoked_reason -> Nullable<Text>,
        client_addr -> Nullable<Text>,
        user_agent -> Nullable<Text>,
    }
}

diesel::table! {
    login_failures (id) {
        id -> Text,
        subject -> Text,
        failed_at -> BigInt,
    }
}

diesel::table! {
    audit_events (seq) {
        seq -> BigInt,
        id -> Text,
        occurred_at -> BigInt,
        actor_id -> Nullable<Text>,
        actor_name -> Text,
        action -> Text,
        target_kind -> Nullable<Text>,
        target_id -> Nullable<Text>,
        client_addr -> Nullable<Text>,
        api_path -> Nullable<Text>,
        outcome -> Text,
        details -> Text,
        prev_hash -> Binary,
        hash -> Binary,
    }
}

diesel::joinable!(user_roles -> users (user_id));
diesel::joinable!(sessions -> users (user_id));
diesel::allow_tables_to_appear_in_same_query!(
    users,
    user_roles,
    sessions,
    login_failures,
    audit_events
);
