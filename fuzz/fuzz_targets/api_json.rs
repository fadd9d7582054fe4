//! API JSON bodies: every request body type, deserialized as the JSON extractor does,
//! then parsed into the domain types the handlers build from it. Nothing may panic, and
//! whatever parses must satisfy the domain's own bounds (a parsed value re-parses to
//! itself; a resolved policy is never looser than the org's).
#![no_main]

use conclave_core::{
    DisplayName, Email, Emoji, IdempotencyKey, MessageText, NewPassword, Policy, PolicyOverrides,
    RoomName, Topic, Username, retention::RetentionRule,
};
use libfuzzer_sys::fuzz_target;
use serde::de::DeserializeOwned;

fn body<T: DeserializeOwned>(bytes: &[u8]) -> Option<T> {
    serde_json::from_slice(bytes).ok()
}

fn text_fields(raw: &str) {
    if let Ok(name) = RoomName::parse(raw) {
        assert!(name.as_str().chars().count() <= 100);
        assert_eq!(RoomName::parse(name.as_str()).unwrap(), name);
    }
    if let Ok(topic) = Topic::parse(raw) {
        assert_eq!(Topic::parse(topic.as_deref().unwrap_or("")).unwrap(), topic);
    }
    if let Ok(text) = MessageText::parse(raw, 16 * 1024) {
        assert!(text.as_str().len() <= 16 * 1024 && !text.as_str().contains('\0'));
    }
    if let Ok(emoji) = Emoji::parse(raw) {
        assert_eq!(Emoji::parse(emoji.as_str()).unwrap(), emoji);
    }
    if let Ok(key) = IdempotencyKey::parse(raw) {
        assert_eq!(IdempotencyKey::parse(key.as_str()).unwrap(), key);
    }
    if let Ok(username) = Username::parse(raw) {
        assert_eq!(Username::parse(username.as_str()).unwrap(), username);
    }
    if let Ok(name) = DisplayName::parse(raw) {
        assert_eq!(DisplayName::parse(name.as_str()).unwrap(), name);
    }
    if let Ok(email) = Email::parse(raw) {
        assert_eq!(Email::parse(email.as_str()).unwrap(), email);
    }
    let _ = NewPassword::parse(raw);
    let _ = conclave_policy::retention::RetentionScope::parse(raw);
    let _ = conclave_audit::archive::ArchiveFormat::parse(raw);
}

fn policies(org: Policy, group: PolicyOverrides, room: PolicyOverrides) {
    if org.validate().is_err() {
        return;
    }
    let effective = conclave_core::policy::resolve(&org, &group, &room);
    assert!(effective.max_room_size <= org.max_room_size);
    assert!(!effective.may_create_rooms || org.may_create_rooms);
    assert!(!effective.files_enabled || org.files_enabled);
    assert!(effective.barriers.is_superset(&org.barriers));
    if let Some(org_max) = org.expiration_max {
        assert!(effective.expiration_max.is_some_and(|max| max <= org_max));
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, json)) = data.split_first() else {
        return;
    };
    match which % 16 {
        0 => {
            if let Some(b) = body::<conclave_auth::wire::LoginRequest>(json) {
                text_fields(&b.username);
            }
        }
        1 => {
            if let Some(b) = body::<conclave_auth::wire::ChangePasswordRequest>(json) {
                let _ = NewPassword::parse(&b.new_password);
            }
        }
        2 => {
            if let Some(b) = body::<conclave_auth::wire::CreateUserRequest>(json) {
                text_fields(&b.username);
                text_fields(&b.display_name);
                let roles = conclave_core::RoleSet::new(b.roles);
                let _ = roles.check_separation_of_duties();
            }
        }
        3 => {
            if let Some(b) = body::<conclave_messaging::wire::CreateRoomRequest>(json) {
                text_fields(&b.name);
                text_fields(b.topic.as_deref().unwrap_or(""));
            }
        }
        4 => {
            if let Some(b) = body::<conclave_messaging::wire::SendMessageRequest>(json) {
                text_fields(&b.text);
                text_fields(&b.idempotency_key);
            }
        }
        5 => {
            if let Some(b) = body::<conclave_messaging::wire::EditMessageRequest>(json) {
                text_fields(&b.text);
            }
        }
        6 => {
            if let Some(b) = body::<conclave_messaging::wire::ReactionRequest>(json) {
                text_fields(&b.emoji);
            }
        }
        7 => {
            let _ = body::<conclave_messaging::wire::AddMemberRequest>(json);
            let _ = body::<conclave_messaging::wire::MarkReadRequest>(json);
            let _ = body::<conclave_messaging::wire::UpdateRoomRequest>(json);
        }
        8 => {
            if let Some((org, group, room)) =
                body::<(Policy, PolicyOverrides, PolicyOverrides)>(json)
            {
                policies(org, group, room);
            }
        }
        9 => {
            if let Some(b) = body::<conclave_policy::compliance_http::RetentionPolicyRequest>(json)
                && let Ok(rule) = RetentionRule::new(b.min_days, b.max_days)
            {
                let combined = RetentionRule::combine([&rule, &rule]);
                assert_eq!(combined, rule);
            }
        }
        10 => {
            if let Some(b) = body::<conclave_policy::compliance_http::PreviewRequest>(json) {
                text_fields(&b.scope);
            }
        }
        11 => {
            if let Some(b) = body::<conclave_policy::holds::HoldInput>(json) {
                text_fields(&b.name);
                text_fields(&b.reason);
            }
        }
        12 => {
            if let Some(b) = body::<conclave_audit::exports::ExportRequest>(json) {
                text_fields(&b.format);
            }
        }
        13 => {
            let _ = body::<conclave_policy::http::CreateGroupRequest>(json);
            let _ = body::<conclave_policy::http::UpdateGroupRequest>(json);
        }
        14 => {
            let _ = body::<conclave_auth::wire::OidcStartRequest>(json);
            let _ = body::<conclave_auth::wire::OidcExchangeRequest>(json);
            let _ = body::<conclave_auth::wire::SetRolesRequest>(json);
        }
        _ => {
            if let Ok(text) = std::str::from_utf8(json) {
                text_fields(text);
                let _ = conclave_core::Timestamp::parse_rfc3339(text);
                let _ = conclave_core::RoleSet::parse_list(text);
            }
        }
    }
});
