//! OpenID Connect claims (an ID token's or userinfo's JSON, after its signature checked:
//! still whatever the provider, or an account at it, put there) through the claim
//! mapping, group mappings and the `return_to` check. No claim set panics; a mapped
//! profile has a valid username; `safe_return_to` never yields another origin.
#![no_main]

use conclave_auth::identity::config::ClaimMapping;
use conclave_auth::identity::mapping::{self, GroupMappings};
use conclave_core::Role;
use libfuzzer_sys::fuzz_target;
use std::collections::BTreeMap;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    if selector % 4 == 0 {
        let requested = std::str::from_utf8(rest).ok();
        let path = mapping::safe_return_to(requested);
        assert!(path.starts_with('/'));
        assert!(!path.starts_with("//") && !path.starts_with("/\\"));
        assert!(!path.chars().any(|c| c.is_control() || c == '\\'));
        return;
    }
    let Ok(claims) = serde_json::from_slice::<serde_json::Value>(rest) else {
        return;
    };
    let mapping_config = if selector % 4 == 1 {
        ClaimMapping::default()
    } else {
        ClaimMapping {
            username: "email".into(),
            email_verified: String::new(),
            display_name: "profile.name".into(),
            groups: "realm_access.roles".into(),
            ..ClaimMapping::default()
        }
    };
    let subject = claims
        .get("sub")
        .and_then(|s| s.as_str())
        .unwrap_or("subject");
    if let Ok(profile) = mapping::profile_from_claims(subject, &claims, &mapping_config) {
        assert_eq!(
            conclave_core::Username::parse(profile.username.as_str()).as_ref(),
            Ok(&profile.username)
        );
        let roles = BTreeMap::from([
            ("conclave-admins".to_owned(), vec![Role::Admin]),
            ("/agency/auditors".to_owned(), vec![Role::Auditor]),
        ]);
        let groups = BTreeMap::from([("/agency/staff".to_owned(), "Staff".to_owned())]);
        let mappings = GroupMappings {
            roles: &roles,
            security_groups: &groups,
        };
        let _ = mapping::mapped_roles(&mappings, &profile.groups);
        let _ = mapping::mapped_security_groups(&mappings, &profile.groups);
    }
    let _ = mapping::claim_groups(&claims, &mapping_config.groups);
});
