//! Roles and the separation of duties between them (DESIGN.md, Roles).

use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Every account: talk in conversations.
    User,
    /// Users, security groups and messaging policy.
    Admin,
    /// Retention policies, legal holds and exports.
    ComplianceOfficer,
    /// Reads the audit log.
    Auditor,
}

impl Role {
    pub const ALL: [Role; 4] = [
        Role::User,
        Role::Admin,
        Role::ComplianceOfficer,
        Role::Auditor,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::User => "user",
            Role::Admin => "admin",
            Role::ComplianceOfficer => "compliance_officer",
            Role::Auditor => "auditor",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("unknown role `{0}` (expected one of user, admin, compliance_officer, auditor)")]
pub struct UnknownRole(pub String);

impl FromStr for Role {
    type Err = UnknownRole;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|role| role.as_str() == s)
            .ok_or_else(|| UnknownRole(s.to_owned()))
    }
}

/// The roles one account holds. `user` is always among them: every account may talk.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RoleSet(BTreeSet<Role>);

impl RoleSet {
    pub fn new(roles: impl IntoIterator<Item = Role>) -> Self {
        let mut set: BTreeSet<Role> = roles.into_iter().collect();
        set.insert(Role::User);
        Self(set)
    }

    pub fn contains(&self, role: Role) -> bool {
        self.0.contains(&role)
    }

    pub fn iter(&self) -> impl Iterator<Item = Role> + '_ {
        self.0.iter().copied()
    }

    pub fn to_vec(&self) -> Vec<Role> {
        self.0.iter().copied().collect()
    }

    /// Separation of duties (DESIGN.md, Roles): whoever administers users and policy must
    /// not also hold the holds and exports, or one person could both make and hide a
    /// change. The auditor role combines with either: reading the log changes nothing.
    pub fn check_separation_of_duties(&self) -> Result<(), crate::ValidationError> {
        if self.contains(Role::Admin) && self.contains(Role::ComplianceOfficer) {
            return Err(crate::ValidationError::new(
                "roles",
                "admin and compliance_officer may not be held by the same account (separation of duties)",
            ));
        }
        Ok(())
    }

    /// Parses a comma-separated list such as `admin,auditor`.
    pub fn parse_list(list: &str) -> Result<Self, UnknownRole> {
        list.split(',')
            .map(str::trim)
            .filter(|part| !part.is_empty())
            .map(Role::from_str)
            .collect::<Result<Vec<_>, _>>()
            .map(Self::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_role_round_trips() {
        for role in Role::ALL {
            assert_eq!(role.as_str().parse::<Role>(), Ok(role));
        }
    }

    #[test]
    fn unknown_role_is_named() {
        let err = "root".parse::<Role>().unwrap_err();
        assert!(err.to_string().contains("`root`"));
    }

    #[test]
    fn user_role_is_always_present() {
        let set = RoleSet::new([Role::Auditor]);
        assert!(set.contains(Role::User));
        assert!(set.contains(Role::Auditor));
        assert!(!set.contains(Role::Admin));
        assert!(RoleSet::new([]).contains(Role::User));
    }

    #[test]
    fn separation_of_duties() {
        assert!(
            RoleSet::new([Role::Admin, Role::ComplianceOfficer])
                .check_separation_of_duties()
                .is_err()
        );
        for ok in [
            vec![],
            vec![Role::Admin],
            vec![Role::ComplianceOfficer],
            vec![Role::Admin, Role::Auditor],
            vec![Role::ComplianceOfficer, Role::Auditor],
        ] {
            assert!(
                RoleSet::new(ok.clone())
                    .check_separation_of_duties()
                    .is_ok(),
                "{ok:?}"
            );
        }
    }

    #[test]
    fn parses_lists() {
        let set = RoleSet::parse_list(" admin, compliance_officer ,").unwrap();
        assert_eq!(
            set.to_vec(),
            vec![Role::User, Role::Admin, Role::ComplianceOfficer]
        );
        assert!(RoleSet::parse_list("admin,superuser").is_err());
    }
}
