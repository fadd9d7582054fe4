//! Request and response bodies of the messaging API.

use conclave_core::{AttachmentId, MemberRole, MessageId, RoomId, RoomKind, Timestamp, UserId};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct RoomView {
    pub id: RoomId,
    pub kind: RoomKind,
    /// For a direct conversation: the other person's display name.
    pub name: Option<String>,
    pub topic: Option<String>,
    pub created_at: Timestamp,
    /// The caller's role in the room.
    pub my_role: MemberRole,
    /// Sequence number of the room's latest message (0: none yet).
    pub last_message_seq: i64,
    /// Sequence number of the room's latest realtime event (resume point).
    pub last_event_seq: i64,
    /// The caller's last read message sequence number.
    pub last_read_seq: i64,
    /// Messages after the caller's read marker.
    pub unread_count: i64,
    pub member_count: i64,
    /// Set when an information barrier now separates the members: nobody may write.
    pub read_only_reason: Option<String>,
}

#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct MemberView {
    pub user_id: UserId,
    pub username: String,
    pub display_name: String,
    pub role: MemberRole,
    pub last_read_seq: i64,
    pub joined_at: Timestamp,
}

#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct RoomDetail {
    pub room: RoomView,
    pub members: Vec<MemberView>,
}

#[derive(Serialize, ToSchema)]
pub struct RoomList {
    pub rooms: Vec<RoomView>,
}

#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct AttachmentView {
    pub id: AttachmentId,
    pub name: String,
    pub content_type: String,
    pub size_bytes: i64,
    /// SHA-256 of the plaintext, hex.
    pub sha256: String,
}

#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct ReactionView {
    pub emoji: String,
    pub user_ids: Vec<UserId>,
}

#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct MessageView {
    pub id: MessageId,
    pub room_id: RoomId,
    /// Gap-free per room, starting at 1.
    pub seq: i64,
    pub sender_id: UserId,
    /// Absent in events about a burn-on-read message (a read shows it).
    pub text: Option<String>,
    pub reply_to_id: Option<MessageId>,
    pub attachment: Option<AttachmentView>,
    pub created_at: Timestamp,
    pub edited_at: Option<Timestamp>,
    /// When it disappears for everyone (its expiration timer), if it has one.
    pub visible_until: Option<Timestamp>,
    /// Its burn-on-read timer: it disappears for each recipient this long after that
    /// recipient first reads it. Realtime events leave the text out; fetching the
    /// message starts the reader's timer.
    pub burn_after_read_seconds: Option<i64>,
    /// For the viewer: when it disappears for them, if it will.
    pub visible_to_me_until: Option<Timestamp>,
    pub reactions: Vec<ReactionView>,
}

#[derive(Serialize, ToSchema)]
pub struct MessageList {
    /// In ascending sequence order.
    pub messages: Vec<MessageView>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateRoomRequest {
    pub name: String,
    pub topic: Option<String>,
    /// Members besides the creator, who becomes the owner.
    #[serde(default)]
    pub member_ids: Vec<UserId>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OpenDirectRequest {
    pub user_id: UserId,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateRoomRequest {
    pub name: Option<String>,
    /// An empty string clears the topic.
    pub topic: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddMemberRequest {
    pub user_id: UserId,
    /// Default `member`.
    pub role: Option<MemberRole>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetMemberRoleRequest {
    pub role: MemberRole,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SendMessageRequest {
    /// UTF-8, at most the configured size (16 KiB by default).
    pub text: String,
    /// Client-chosen; a retried send with the same key returns the original message.
    pub idempotency_key: String,
    pub reply_to_id: Option<MessageId>,
    pub attachment_id: Option<AttachmentId>,
    /// Expiration timer in seconds; without it, the policy's default applies. Over the
    /// policy's maximum: 422 `policy_violation`.
    pub expires_in_seconds: Option<u64>,
    /// Burn-on-read timer in seconds, if the policy allows.
    pub burn_after_read_seconds: Option<u64>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EditMessageRequest {
    pub text: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReactionRequest {
    pub emoji: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MarkReadRequest {
    /// The last message sequence number read.
    pub seq: i64,
}

#[derive(Serialize, ToSchema)]
pub struct ReadMarker {
    pub last_read_seq: i64,
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListMessagesQuery {
    /// Messages with a sequence number below this (default: the newest).
    pub before: Option<i64>,
    /// Messages with a sequence number above this (resume after a gap).
    pub after: Option<i64>,
    /// 1 to 200, default 50 (a value outside is clamped into that range).
    #[param(value_type = Option<u64>, maximum = 4_294_967_295_u64)]
    pub limit: Option<u32>,
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct UploadQuery {
    /// The file's name as shown to others.
    pub name: String,
}

#[derive(Serialize, ToSchema)]
pub struct RoomPolicy {
    /// What this room sets (only ever tightening).
    pub overrides: conclave_core::PolicyOverrides,
    /// What applies to the caller in this room: clients offer timer choices from it.
    pub effective: conclave_core::Policy,
}
