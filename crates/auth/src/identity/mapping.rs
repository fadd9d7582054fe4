//! Pure mapping from what a provider says about a person (claims, directory attributes,
//! groups) to what Conclave stores (username, display name, email, roles, security
//! groups). No I/O: every rule here has unit tests.

use super::config::ClaimMapping;
use conclave_core::{DisplayName, Email, Role, RoleSet, Username, ValidationError};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

/// A person as an identity provider describes them, parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExternalProfile {
    /// Stable at the provider (OIDC `sub`, LDAP entryUUID / objectGUID).
    pub subject: String,
    /// For people: the LDAP DN or the OIDC preferred username.
    pub external_name: String,
    pub username: Username,
    pub display_name: DisplayName,
    pub email: Option<Email>,
    pub groups: Vec<String>,
}

/// How a provider's groups map onto roles and security groups.
#[derive(Clone, Copy, Debug)]
pub struct GroupMappings<'a> {
    pub roles: &'a BTreeMap<String, Vec<Role>>,
    pub security_groups: &'a BTreeMap<String, String>,
}

/// Whether a configured group names a group the provider reported: the same group
/// exactly, ignoring case and (in a DN) the spaces around `,` and `=`. A directory's
/// groups are configured by their full DN (`cn=Staff,ou=groups,dc=agency,dc=gov`) and a
/// Keycloak group by its full path when paths are sent (`/agency/staff`): matching by
/// the bare name would let a look-alike group anywhere (one a user may create, such as an
/// Exchange distribution group in another OU) grant its roles.
pub fn group_matches(configured: &str, reported: &str) -> bool {
    normalize_group(configured) == normalize_group(reported)
}

fn normalize_group(name: &str) -> String {
    let lower = name.trim().to_lowercase();
    if !lower.contains('=') {
        return lower;
    }
    lower
        .split(',')
        .map(|rdn| rdn.split('=').map(str::trim).collect::<Vec<_>>().join("="))
        .collect::<Vec<_>>()
        .join(",")
}

fn matched<'a, T>(
    mappings: &'a BTreeMap<String, T>,
    groups: &[String],
) -> impl Iterator<Item = &'a T> {
    mappings
        .iter()
        .filter(|(configured, _)| groups.iter().any(|g| group_matches(configured, g)))
        .map(|(_, value)| value)
}

/// The roles the groups grant, or `None` when no role mapping is configured (roles are
/// then managed in Conclave and left alone). `user` is always included.
pub fn mapped_roles(mappings: &GroupMappings<'_>, groups: &[String]) -> Option<RoleSet> {
    if mappings.roles.is_empty() {
        return None;
    }
    Some(RoleSet::new(
        matched(mappings.roles, groups).flatten().copied(),
    ))
}

/// The security group names the groups map to.
pub fn mapped_security_groups(mappings: &GroupMappings<'_>, groups: &[String]) -> BTreeSet<String> {
    matched(mappings.security_groups, groups).cloned().collect()
}

/// A claim by name; a dotted name reaches into nested objects.
pub fn claim<'a>(claims: &'a Value, name: &str) -> Option<&'a Value> {
    if let Some(value) = claims.get(name) {
        return Some(value);
    }
    name.split('.')
        .try_fold(claims, |value, part| value.get(part))
}

fn claim_string(claims: &Value, name: &str) -> Option<String> {
    match claim(claims, name)? {
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_owned()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// A groups claim: an array of strings, or one string.
pub fn claim_groups(claims: &Value, name: &str) -> Vec<String> {
    match claim(claims, name) {
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect(),
        Some(Value::String(one)) => vec![one.clone()],
        _ => Vec::new(),
    }
}

/// Builds a profile from ID token (and userinfo) claims. The username must be present and
/// valid; a missing display name falls back to the username; an invalid email is dropped.
pub fn profile_from_claims(
    subject: &str,
    claims: &Value,
    mapping: &ClaimMapping,
) -> Result<ExternalProfile, ValidationError> {
    let raw_username = claim_string(claims, &mapping.username).ok_or_else(|| {
        ValidationError::new(
            "username",
            format!("the provider sent no `{}` claim", mapping.username),
        )
    })?;
    // An email the provider did not verify is somebody's claim, not an address: it names
    // nobody in the archives, and never becomes a username.
    let verified = mapping.email_verified.is_empty()
        || claim(claims, &mapping.email_verified)
            .is_some_and(|v| v.as_bool() == Some(true) || v.as_str() == Some("true"));
    if !verified && mapping.username == mapping.email {
        return Err(ValidationError::new(
            "username",
            "the provider has not verified the email this username comes from",
        ));
    }
    let email = claim_string(claims, &mapping.email).filter(|_| verified);
    let groups = claim_groups(claims, &mapping.groups);
    profile(
        subject,
        &raw_username,
        &raw_username,
        claim_string(claims, &mapping.display_name).as_deref(),
        email.as_deref(),
        groups,
    )
}

/// Builds a profile from already extracted values (LDAP attributes, claims).
pub fn profile(
    subject: &str,
    external_name: &str,
    raw_username: &str,
    display_name: Option<&str>,
    email: Option<&str>,
    groups: Vec<String>,
) -> Result<ExternalProfile, ValidationError> {
    if subject.is_empty() {
        return Err(ValidationError::new(
            "subject",
            "the provider sent no stable id",
        ));
    }
    let username = Username::parse(raw_username)?;
    let display_name = display_name
        .and_then(|name| DisplayName::parse(name).ok())
        .map_or_else(|| DisplayName::parse(username.as_str()), Ok)?;
    let email = email.and_then(|e| Email::parse(e).ok());
    Ok(ExternalProfile {
        subject: subject.to_owned(),
        external_name: external_name.to_owned(),
        username,
        display_name,
        email,
        groups,
    })
}

/// A `return_to` that stays on this site: an absolute path, not `//host` or `/\host`
/// (which browsers treat as another origin), no control characters. Anything else is
/// replaced by `/`.
pub fn safe_return_to(requested: Option<&str>) -> String {
    match requested {
        Some(path)
            if path.starts_with('/')
                && !path.starts_with("//")
                && !path.starts_with("/\\")
                && path.len() <= 2048
                && !path.chars().any(|c| c.is_control() || c == '\\') =>
        {
            path.to_owned()
        }
        _ => "/".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn maps() -> (BTreeMap<String, Vec<Role>>, BTreeMap<String, String>) {
        (
            BTreeMap::from([
                ("conclave-admins".to_owned(), vec![Role::Admin]),
                ("cn=auditors,ou=groups,dc=x".to_owned(), vec![Role::Auditor]),
            ]),
            BTreeMap::from([("cn=staff,ou=groups,dc=x".to_owned(), "Staff".to_owned())]),
        )
    }

    #[test]
    fn an_unverified_email_is_dropped_and_never_a_username() {
        let mapping = ClaimMapping::default();
        let claims = json!({"preferred_username": "mallory", "email": "alice@example.gov", "email_verified": false});
        let profile = profile_from_claims("s1", &claims, &mapping).unwrap();
        assert_eq!(profile.email, None);
        let verified = json!({"preferred_username": "alice", "email": "alice@example.gov", "email_verified": true});
        assert!(
            profile_from_claims("s2", &verified, &mapping)
                .unwrap()
                .email
                .is_some()
        );
        let by_email = ClaimMapping {
            username: "email".into(),
            ..ClaimMapping::default()
        };
        assert!(profile_from_claims("s1", &claims, &by_email).is_err());
        let trusted = ClaimMapping {
            email_verified: String::new(),
            ..ClaimMapping::default()
        };
        let no_claim = json!({"preferred_username": "bob", "email": "bob@example.gov"});
        assert!(
            profile_from_claims("s3", &no_claim, &trusted)
                .unwrap()
                .email
                .is_some()
        );
        assert_eq!(
            profile_from_claims("s3", &no_claim, &mapping)
                .unwrap()
                .email,
            None,
            "absent is not verified"
        );
    }

    #[test]
    fn groups_match_exactly_never_by_a_look_alike_name() {
        assert!(group_matches("staff", "Staff"));
        assert!(group_matches(
            "cn=staff,ou=groups,dc=example,dc=gov",
            "CN=Staff, OU=Groups,DC=example, DC=gov"
        ));
        assert!(group_matches("/org/staff", "/Org/Staff"));
        // A group of the same name elsewhere grants nothing.
        assert!(!group_matches(
            "staff",
            "cn=staff,ou=groups,dc=example,dc=gov"
        ));
        assert!(!group_matches(
            "cn=conclave-admins,ou=groups,dc=example,dc=gov",
            "cn=Conclave-Admins,ou=self-service,dc=example,dc=gov"
        ));
        assert!(!group_matches("staff", "/any/parent/staff"));
        assert!(!group_matches("staff", "staffing"));
    }

    #[test]
    fn roles_follow_groups_and_always_include_user() {
        let (roles, groups) = maps();
        let m = GroupMappings {
            roles: &roles,
            security_groups: &groups,
        };
        let set = mapped_roles(&m, &["conclave-admins".into(), "staff".into()]).unwrap();
        assert_eq!(set.to_vec(), vec![Role::User, Role::Admin]);
        let set = mapped_roles(&m, &["CN=Auditors, OU=Groups, DC=x".into()]).unwrap();
        assert_eq!(set.to_vec(), vec![Role::User, Role::Auditor]);
        let set = mapped_roles(&m, &[]).unwrap();
        assert_eq!(set.to_vec(), vec![Role::User]);
    }

    #[test]
    fn no_role_mapping_leaves_roles_alone() {
        let empty = BTreeMap::new();
        let groups = BTreeMap::new();
        let m = GroupMappings {
            roles: &empty,
            security_groups: &groups,
        };
        assert_eq!(mapped_roles(&m, &["conclave-admins".into()]), None);
    }

    #[test]
    fn security_groups_follow_groups() {
        let (roles, groups) = maps();
        let m = GroupMappings {
            roles: &roles,
            security_groups: &groups,
        };
        assert_eq!(
            mapped_security_groups(&m, &["cn=staff,ou=groups,dc=x".into()]),
            BTreeSet::from(["Staff".to_owned()])
        );
        assert!(mapped_security_groups(&m, &["admins".into()]).is_empty());
    }

    #[test]
    fn claims_map_with_defaults_and_nested_names() {
        let claims = json!({
            "sub": "abc", "preferred_username": "Alice@Agency.gov", "name": "Alice Anders",
            "email": "alice@agency.gov", "email_verified": true, "groups": ["staff", "conclave-admins"],
            "realm_access": { "roles": ["auditors"] },
        });
        let p = profile_from_claims("abc", &claims, &ClaimMapping::default()).unwrap();
        assert_eq!(p.username.as_str(), "alice@agency.gov");
        assert_eq!(p.display_name.as_str(), "Alice Anders");
        assert_eq!(
            p.email.as_ref().map(Email::as_str),
            Some("alice@agency.gov")
        );
        assert_eq!(p.groups, vec!["staff", "conclave-admins"]);

        let custom = ClaimMapping {
            username: "email".into(),
            email: "email".into(),
            email_verified: String::new(),
            display_name: "missing".into(),
            groups: "realm_access.roles".into(),
        };
        let p = profile_from_claims("abc", &claims, &custom).unwrap();
        assert_eq!(p.username.as_str(), "alice@agency.gov");
        assert_eq!(
            p.display_name.as_str(),
            "alice@agency.gov",
            "falls back to the username"
        );
        assert_eq!(p.groups, vec!["auditors"]);
    }

    #[test]
    fn claims_without_a_usable_username_are_refused() {
        let mapping = ClaimMapping::default();
        assert!(profile_from_claims("abc", &json!({"name": "x"}), &mapping).is_err());
        assert!(
            profile_from_claims("abc", &json!({"preferred_username": "a b"}), &mapping).is_err()
        );
        assert!(profile_from_claims("", &json!({"preferred_username": "ab"}), &mapping).is_err());
    }

    #[test]
    fn a_single_group_string_and_a_bad_email_are_tolerated() {
        let claims =
            json!({"preferred_username": "bob", "email": "not an email", "groups": "staff"});
        let p = profile_from_claims("s", &claims, &ClaimMapping::default()).unwrap();
        assert_eq!(p.email, None);
        assert_eq!(p.groups, vec!["staff"]);
    }

    #[test]
    fn return_to_stays_on_this_site() {
        assert_eq!(safe_return_to(Some("/rooms/1?x=2")), "/rooms/1?x=2");
        for bad in [
            "//evil.example/",
            "/\\evil.example",
            "https://evil.example/",
            "rooms",
            "/a\nb",
            "/a\\b",
            "",
        ] {
            assert_eq!(safe_return_to(Some(bad)), "/", "{bad:?}");
        }
        assert_eq!(safe_return_to(None), "/");
    }
}
