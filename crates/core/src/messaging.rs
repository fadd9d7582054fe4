//! Conversation vocabulary: room kinds, member roles and what each may do, and the inputs
//! of messaging parsed at the edge.

use crate::account::ValidationError;
use serde::{Deserialize, Serialize};
use std::str::FromStr;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RoomKind {
    /// Exactly two people; one per pair.
    Direct,
    /// Named, with members holding roles.
    Room,
}

impl RoomKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Direct => "direct",
            Self::Room => "room",
        }
    }
}

impl FromStr for RoomKind {
    type Err = ValidationError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "direct" => Ok(Self::Direct),
            "room" => Ok(Self::Room),
            other => Err(ValidationError::new(
                "kind",
                format!("unknown room kind `{other}`"),
            )),
        }
    }
}

/// A member's role in a room. Ordered: owner > moderator > member.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum MemberRole {
    Member,
    Moderator,
    Owner,
}

impl MemberRole {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Member => "member",
            Self::Moderator => "moderator",
            Self::Owner => "owner",
        }
    }

    /// Rename, set the topic, add and remove members, delete others' messages.
    pub fn may_moderate(self) -> bool {
        self >= Self::Moderator
    }

    /// Whether an actor with this role may give `target` to someone or take it away.
    pub fn may_assign(self, target: MemberRole) -> bool {
        match self {
            Self::Owner => true,
            Self::Moderator => target == Self::Member,
            Self::Member => false,
        }
    }
}

impl FromStr for MemberRole {
    type Err = ValidationError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "member" => Ok(Self::Member),
            "moderator" => Ok(Self::Moderator),
            "owner" => Ok(Self::Owner),
            other => Err(ValidationError::new(
                "role",
                format!("unknown member role `{other}`"),
            )),
        }
    }
}

fn bounded_text(
    field: &'static str,
    raw: &str,
    max_chars: usize,
    allow_newlines: bool,
) -> Result<String, ValidationError> {
    let text = raw.trim();
    if text.is_empty() {
        return Err(ValidationError::new(field, "must not be empty"));
    }
    if text.chars().count() > max_chars {
        return Err(ValidationError::new(
            field,
            format!("must be at most {max_chars} characters"),
        ));
    }
    if text
        .chars()
        .any(|c| c.is_control() && !(allow_newlines && (c == '\n' || c == '\t')))
    {
        return Err(ValidationError::new(
            field,
            "may not contain control characters",
        ));
    }
    Ok(text.to_owned())
}

/// A room's name: 1 to 100 characters on one line.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct RoomName(String);

impl RoomName {
    pub fn parse(raw: &str) -> Result<Self, ValidationError> {
        bounded_text("name", raw, 100, false).map(Self)
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A room's topic: up to 500 characters; empty clears it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Topic(Option<String>);

impl Topic {
    pub fn parse(raw: &str) -> Result<Self, ValidationError> {
        if raw.trim().is_empty() {
            return Ok(Self(None));
        }
        bounded_text("topic", raw, 500, true).map(|t| Self(Some(t)))
    }
    pub fn as_deref(&self) -> Option<&str> {
        self.0.as_deref()
    }
}

/// A message's text: UTF-8 (the JSON layer already guarantees it), not blank, at most
/// `max_bytes` bytes (16 KiB by default).
#[derive(Clone, PartialEq, Eq)]
pub struct MessageText(String);

impl MessageText {
    pub fn parse(raw: &str, max_bytes: usize) -> Result<Self, ValidationError> {
        if raw.trim().is_empty() {
            return Err(ValidationError::new("text", "must not be empty"));
        }
        if raw.len() > max_bytes {
            return Err(ValidationError::new(
                "text",
                format!("must be at most {max_bytes} bytes of UTF-8"),
            ));
        }
        if raw.contains('\0') {
            return Err(ValidationError::new(
                "text",
                "may not contain NUL characters",
            ));
        }
        Ok(Self(raw.to_owned()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for MessageText {
    // Message content is never logged.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MessageText(<{} bytes>)", self.0.len())
    }
}

/// A reaction: one emoji or short code, 1 to 32 characters with no whitespace.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Emoji(String);

impl Emoji {
    pub fn parse(raw: &str) -> Result<Self, ValidationError> {
        let emoji = raw.trim();
        if emoji.is_empty()
            || emoji.chars().count() > 32
            || emoji.chars().any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(ValidationError::new(
                "emoji",
                "must be 1 to 32 characters without spaces",
            ));
        }
        Ok(Self(emoji.to_owned()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The client's key that makes a send idempotent: 1 to 128 visible ASCII characters
/// (a UUID is typical).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    pub fn parse(raw: &str) -> Result<Self, ValidationError> {
        if raw.is_empty() || raw.len() > 128 || !raw.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(ValidationError::new(
                "idempotency_key",
                "must be 1 to 128 visible ASCII characters",
            ));
        }
        Ok(Self(raw.to_owned()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_permissions() {
        use MemberRole::*;
        assert!(Owner.may_moderate() && Moderator.may_moderate() && !Member.may_moderate());
        assert!(Owner.may_assign(Owner) && Owner.may_assign(Moderator));
        assert!(
            Moderator.may_assign(Member)
                && !Moderator.may_assign(Moderator)
                && !Moderator.may_assign(Owner)
        );
        assert!(!Member.may_assign(Member));
    }

    #[test]
    fn message_text_bounds() {
        assert!(MessageText::parse("hi", 16).is_ok());
        assert!(MessageText::parse("   ", 16).is_err());
        assert!(MessageText::parse("", 16).is_err());
        assert!(
            MessageText::parse(&"é".repeat(9), 16).is_err(),
            "bytes, not characters"
        );
        assert!(MessageText::parse("a\0b", 16).is_err());
        assert_eq!(
            format!("{:?}", MessageText::parse("secret", 16).unwrap()),
            "MessageText(<6 bytes>)"
        );
    }

    #[test]
    fn names_topics_emoji_keys() {
        assert_eq!(RoomName::parse("  Ops  ").unwrap().as_str(), "Ops");
        assert!(RoomName::parse("a\nb").is_err());
        assert!(RoomName::parse(&"x".repeat(101)).is_err());
        assert_eq!(Topic::parse("").unwrap().as_deref(), None);
        assert_eq!(
            Topic::parse("line one\nline two").unwrap().as_deref(),
            Some("line one\nline two")
        );
        assert!(Emoji::parse("👍").is_ok());
        assert!(Emoji::parse("thumbs up").is_err());
        assert!(IdempotencyKey::parse("7c0e-11").is_ok());
        assert!(IdempotencyKey::parse("has space").is_err());
        assert!(IdempotencyKey::parse(&"k".repeat(129)).is_err());
    }

    #[test]
    fn kinds_and_roles_parse() {
        assert_eq!("direct".parse::<RoomKind>().unwrap(), RoomKind::Direct);
        assert_eq!(
            "moderator".parse::<MemberRole>().unwrap(),
            MemberRole::Moderator
        );
        assert!("admin".parse::<MemberRole>().is_err());
    }
}
