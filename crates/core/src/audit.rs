//! What an audit event says: who did what to which target, from where, with what result,
//! and the state before and after. The hash chain that makes the log tamper-evident is in
//! `conclave-crypto`; appending is in `conclave-store`.

use crate::ids::UserId;

/// Who acts, and from where.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditContext {
    /// The acting account, when there is one (not for the CLI or a failed login).
    pub actor_id: Option<UserId>,
    /// A readable name: the username, or `system:cli`, `system:bootstrap`.
    pub actor_name: String,
    pub client_addr: Option<String>,
    /// The API path of the request, when the action came over HTTP.
    pub api_path: Option<String>,
}

impl AuditContext {
    /// An action taken by the server itself or an operator's command line.
    pub fn system(name: &str) -> Self {
        Self {
            actor_id: None,
            actor_name: format!("system:{name}"),
            client_addr: None,
            api_path: None,
        }
    }
}

/// How the audited action ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuditOutcome {
    Success,
    /// Refused: bad credentials, throttled, not allowed.
    Failure,
}

impl AuditOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Failure => "failure",
        }
    }
}

/// One event to append. `details` is a JSON document (reason, before, after) serialized
/// once by the caller; the chain hashes it byte for byte as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewAuditEvent {
    pub action: &'static str,
    pub target_kind: Option<&'static str>,
    pub target_id: Option<String>,
    pub outcome: AuditOutcome,
    pub details: String,
}
