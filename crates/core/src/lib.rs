//! Conclave's domain vocabulary: typed ids, time, roles, account fields parsed at the edge,
//! the stable error codes every API error carries, and the audit event shape.
//!
//! Invariant: this crate does no I/O and knows nothing of HTTP, SQL or async runtimes, so
//! every rule here is a plain function that unit tests can pin down exhaustively.

pub mod account;
pub mod audit;
pub mod clock;
pub mod error_code;
pub mod ids;
pub mod legal_hold;
pub mod messaging;
pub mod policy;
pub mod rate_limit;
pub mod retention;
pub mod role;
pub mod session;

pub use account::{DisplayName, Email, NewPassword, UserStatus, Username, ValidationError};
pub use audit::{AuditContext, AuditOutcome, NewAuditEvent};
pub use clock::{Clock, ManualClock, SystemClock, Timestamp};
pub use error_code::ErrorCode;
pub use ids::{AttachmentId, MessageId, RoomId, SessionId, UserId};
pub use messaging::{Emoji, IdempotencyKey, MemberRole, MessageText, RoomKind, RoomName, Topic};
pub use policy::{Policy, PolicyError, PolicyOverrides, TimerSeconds};
pub use rate_limit::RateLimiter;
pub use retention::{RetentionError, RetentionRule};
pub use role::{Role, RoleSet};
pub use session::{LoginThrottle, SessionPolicy};
