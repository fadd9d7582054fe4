//! Account fields, parsed at the edge so invalid values never reach a service.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Why a value was refused, naming the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ValidationError {
    pub field: &'static str,
    pub message: String,
}

impl ValidationError {
    pub fn new(field: &'static str, message: impl Into<String>) -> Self {
        Self {
            field,
            message: message.into(),
        }
    }
}

/// A login name: 1 to 64 characters of `a-z 0-9 . _ - @`, starting with a letter or digit,
/// stored lower-case so `Alice` and `alice` are one account.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct Username(String);

impl Username {
    pub const MAX_LEN: usize = 64;

    pub fn parse(raw: &str) -> Result<Self, ValidationError> {
        let name = raw.trim().to_lowercase();
        let field = "username";
        if name.is_empty() {
            return Err(ValidationError::new(field, "must not be empty"));
        }
        if name.chars().count() > Self::MAX_LEN {
            return Err(ValidationError::new(
                field,
                format!("must be at most {} characters", Self::MAX_LEN),
            ));
        }
        if !name.starts_with(|c: char| c.is_ascii_alphanumeric()) {
            return Err(ValidationError::new(
                field,
                "must start with a letter or digit",
            ));
        }
        if let Some(bad) = name
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@')))
        {
            return Err(ValidationError::new(
                field,
                format!("may not contain {bad:?}; allowed are a-z, 0-9, '.', '_', '-', '@'"),
            ));
        }
        Ok(Self(name))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Username {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for Username {
    type Err = ValidationError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// A person's name as shown to others: 1 to 128 characters, no control characters.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct DisplayName(String);

impl DisplayName {
    pub const MAX_LEN: usize = 128;

    pub fn parse(raw: &str) -> Result<Self, ValidationError> {
        let name = raw.trim();
        let field = "display_name";
        if name.is_empty() {
            return Err(ValidationError::new(field, "must not be empty"));
        }
        if name.chars().count() > Self::MAX_LEN {
            return Err(ValidationError::new(
                field,
                format!("must be at most {} characters", Self::MAX_LEN),
            ));
        }
        if name.chars().any(char::is_control) {
            return Err(ValidationError::new(
                field,
                "may not contain control characters",
            ));
        }
        Ok(Self(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An e-mail address, checked for shape only (one `@`, a dotted domain, no spaces); the
/// identity provider or directory is the authority on whether it exists.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Email(String);

impl Email {
    pub const MAX_LEN: usize = 254;

    pub fn parse(raw: &str) -> Result<Self, ValidationError> {
        let email = raw.trim();
        let field = "email";
        let invalid = || ValidationError::new(field, "is not an e-mail address");
        if email.len() > Self::MAX_LEN {
            return Err(ValidationError::new(
                field,
                format!("must be at most {} characters", Self::MAX_LEN),
            ));
        }
        if email.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(invalid());
        }
        let (local, domain) = email.split_once('@').ok_or_else(invalid)?;
        if local.is_empty()
            || domain.contains('@')
            || !domain.contains('.')
            || domain.starts_with('.')
            || domain.ends_with('.')
        {
            return Err(invalid());
        }
        Ok(Self(email.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A new password as chosen by a person: at least 12 characters (NIST SP 800-63B allows
/// 8; agencies ask for more), at most 1024 so hashing cannot be made a denial of service.
#[derive(Clone, PartialEq, Eq)]
pub struct NewPassword(String);

impl NewPassword {
    pub const MIN_CHARS: usize = 12;
    pub const MAX_BYTES: usize = 1024;

    pub fn parse(raw: &str) -> Result<Self, ValidationError> {
        let field = "new_password";
        if raw.chars().count() < Self::MIN_CHARS {
            return Err(ValidationError::new(
                field,
                format!("must be at least {} characters", Self::MIN_CHARS),
            ));
        }
        if raw.len() > Self::MAX_BYTES {
            return Err(ValidationError::new(
                field,
                format!("must be at most {} bytes", Self::MAX_BYTES),
            ));
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for NewPassword {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("NewPassword(<redacted>)")
    }
}

/// Whether an account may log in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum UserStatus {
    Active,
    /// Blocked by an admin; can be reactivated.
    Suspended,
    /// Removed by the identity provider or directory.
    Deprovisioned,
}

impl UserStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Suspended => "suspended",
            Self::Deprovisioned => "deprovisioned",
        }
    }
}

impl FromStr for UserStatus {
    type Err = ValidationError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "active" => Ok(Self::Active),
            "suspended" => Ok(Self::Suspended),
            "deprovisioned" => Ok(Self::Deprovisioned),
            other => Err(ValidationError::new(
                "status",
                format!("unknown status `{other}`"),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames_fold_case_and_trim() {
        assert_eq!(
            Username::parse("  Alice.Smith ").unwrap().as_str(),
            "alice.smith"
        );
        assert_eq!(
            Username::parse("j.doe@agency.gov").unwrap().as_str(),
            "j.doe@agency.gov"
        );
    }

    #[test]
    fn usernames_refuse_bad_shapes() {
        for bad in [
            "",
            "   ",
            ".alice",
            "-x",
            "a b",
            "*)(uid=*",
            "ali\u{0}ce",
            "élodie",
        ] {
            assert!(Username::parse(bad).is_err(), "{bad:?} should be refused");
        }
        assert!(Username::parse(&"a".repeat(64)).is_ok());
        assert!(Username::parse(&"a".repeat(65)).is_err());
    }

    #[test]
    fn display_names() {
        assert_eq!(
            DisplayName::parse(" Ada Lovelace ").unwrap().as_str(),
            "Ada Lovelace"
        );
        assert!(DisplayName::parse("").is_err());
        assert!(DisplayName::parse("a\nb").is_err());
        assert!(DisplayName::parse(&"é".repeat(128)).is_ok());
        assert!(DisplayName::parse(&"é".repeat(129)).is_err());
    }

    #[test]
    fn emails() {
        assert!(Email::parse("ada@example.gov").is_ok());
        for bad in [
            "",
            "ada",
            "@example.gov",
            "ada@",
            "ada@gov",
            "a@b@c.gov",
            "a da@x.gov",
            "ada@.gov",
            "ada@gov.",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn passwords_have_bounds_and_never_print() {
        assert!(NewPassword::parse("short").is_err());
        assert!(NewPassword::parse(&"x".repeat(1025)).is_err());
        let pw = NewPassword::parse("correct horse battery").unwrap();
        assert_eq!(format!("{pw:?}"), "NewPassword(<redacted>)");
    }

    #[test]
    fn statuses_round_trip() {
        for status in [
            UserStatus::Active,
            UserStatus::Suspended,
            UserStatus::Deprovisioned,
        ] {
            assert_eq!(status.as_str().parse::<UserStatus>(), Ok(status));
        }
        assert!("gone".parse::<UserStatus>().is_err());
    }
}
