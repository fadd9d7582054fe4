//! The bench's errors: setup failures end a run; send failures are counted by kind.

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("setup: {0}")]
    Setup(String),
    #[error("{path}: HTTP {status} {code}")]
    Status {
        status: u16,
        code: String,
        path: String,
    },
    #[error("transport: {0}")]
    Transport(String),
    #[error("protocol: {0}")]
    Protocol(String),
    #[error("WebSocket: {0}")]
    WebSocket(String),
}

impl BenchError {
    pub fn transport(err: reqwest::Error) -> Self {
        let kind = if err.is_timeout() {
            "timeout"
        } else if err.is_connect() {
            "connect"
        } else {
            "other"
        };
        Self::Transport(format!("{kind}: {err}"))
    }

    /// The key a failed send is counted under: status and code, or the transport failure.
    pub fn kind(&self) -> String {
        match self {
            Self::Status { status, code, .. } => format!("{status} {code}"),
            Self::Transport(detail) => {
                format!("transport {}", detail.split(':').next().unwrap_or("other"))
            }
            Self::Protocol(_) => "protocol".to_owned(),
            Self::WebSocket(_) => "websocket".to_owned(),
            Self::Setup(_) => "setup".to_owned(),
        }
    }
}
