//! Forwarding every audit event to a SIEM as an RFC 5424 syslog message, over UDP
//! (RFC 5426), TCP (RFC 6587 octet counting) or TLS (RFC 5425), in sequence order.
//!
//! The position forwarded so far is kept in the database (`audit_forwarding`) and
//! advanced only after a batch was written, so a restart or a dropped connection resends
//! from there: delivery is at least once over TCP and TLS (each message carries its
//! sequence number and chain hash, so a SIEM can drop repeats), best effort over UDP.
//! Formatting is a pure function, tested by parsing its output with a syslog parser.

use conclave_store::audit::{self as audit_store, AuditFilter, AuditRecord};
use conclave_store::{Db, DbConnection, StoreError, audit_forwarding};
use std::path::PathBuf;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpStream, UdpSocket};

/// Events read and sent per round.
const BATCH: i64 = 500;
/// The longest message sent over UDP; longer details are cut (the full record stays in
/// the audit log).
const UDP_MAX: usize = 8 * 1024;
/// The structured data id: ours, under the enterprise number RFC 5612 reserves for
/// documentation, until Conclave registers its own.
const SD_ID: &str = "conclave@32473";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
    Tls,
}

impl Transport {
    pub fn parse(raw: &str) -> Result<Self, String> {
        match raw {
            "udp" => Ok(Self::Udp),
            "tcp" => Ok(Self::Tcp),
            "tls" => Ok(Self::Tls),
            other => Err(format!("must be udp, tcp or tls, not `{other}`")),
        }
    }
}

/// Syslog facilities a SIEM usually routes audit trails by.
pub fn facility_code(name: &str) -> Result<u8, String> {
    Ok(match name {
        "auth" => 4,
        "authpriv" => 10,
        "local0" => 16,
        "local1" => 17,
        "local2" => 18,
        "local3" => 19,
        "local4" => 20,
        "local5" => 21,
        "local6" => 22,
        "local7" => 23,
        other => {
            return Err(format!(
                "must be auth, authpriv or local0 to local7, not `{other}`"
            ));
        }
    })
}

#[derive(Clone, Debug)]
pub struct SyslogSettings {
    /// `host:port` of the collector.
    pub address: String,
    pub transport: Transport,
    /// PEM CA certificates to trust for TLS (the system's roots when `None`).
    pub ca_file: Option<PathBuf>,
    pub facility: u8,
    /// The HOSTNAME field: this node's name.
    pub hostname: String,
    pub app_name: String,
    /// The destination's name in `audit_forwarding` (one cursor per destination).
    pub destination: String,
}

/// Escapes an SD-PARAM value (RFC 5424 section 6.3.3: `"`, `\` and `]`).
fn escape_param(value: &str) -> String {
    let mut escaped = String::with_capacity(value.len());
    for c in value.chars() {
        if matches!(c, '"' | '\\' | ']') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

/// A header field: printable US-ASCII without spaces, at most `max` characters, `-` when
/// empty (RFC 5424 section 6.2).
fn header_field(value: &str, max: usize) -> String {
    let field: String = value
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(max)
        .collect();
    if field.is_empty() { "-".into() } else { field }
}

/// One audit event as an RFC 5424 message (without transport framing).
pub fn format(record: &AuditRecord, settings: &SyslogSettings) -> String {
    // Severity: notice for what happened, warning for what was refused.
    let severity = if record.outcome == "success" { 5 } else { 4 };
    let pri = u16::from(settings.facility) * 8 + severity;
    let time = conclave_core::Timestamp::from_micros(record.occurred_at).to_rfc3339();
    let mut params = vec![
        ("seq", record.seq.to_string()),
        ("id", record.id.clone()),
        ("action", record.action.clone()),
        ("outcome", record.outcome.clone()),
        ("actor", record.actor_name.clone()),
        ("hash", hex::encode(&record.hash)),
    ];
    let optional = [
        ("actor_id", &record.actor_id),
        ("target_kind", &record.target_kind),
        ("target_id", &record.target_id),
        ("client_addr", &record.client_addr),
        ("api_path", &record.api_path),
    ];
    for (name, value) in optional {
        if let Some(value) = value {
            params.push((name, value.clone()));
        }
    }
    let structured: String = params
        .iter()
        .map(|(name, value)| format!(" {name}=\"{}\"", escape_param(value)))
        .collect();
    format!(
        "<{pri}>1 {time} {host} {app} - {msgid} [{SD_ID}{structured}] \u{feff}{details}",
        host = header_field(&settings.hostname, 255),
        app = header_field(&settings.app_name, 48),
        msgid = header_field(&record.action, 32),
        details = record.details,
    )
}

/// The bytes to write for one message: octet counting on streams (RFC 6587, RFC 5425),
/// one datagram cut to [`UDP_MAX`] on UDP.
pub fn frame(message: &str, transport: Transport) -> Vec<u8> {
    match transport {
        Transport::Udp => {
            let mut end = message.len().min(UDP_MAX);
            while !message.is_char_boundary(end) {
                end -= 1;
            }
            message.as_bytes()[..end].to_vec()
        }
        Transport::Tcp | Transport::Tls => format!("{} {message}", message.len()).into_bytes(),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("syslog collector {address}: {cause}")]
    Io { address: String, cause: String },
}

enum Connection {
    Udp(UdpSocket),
    Tcp(TcpStream),
    Tls(Box<tokio_native_tls::TlsStream<TcpStream>>),
}

async fn connect(settings: &SyslogSettings) -> Result<Connection, ForwardError> {
    let io = |cause: String| ForwardError::Io {
        address: settings.address.clone(),
        cause,
    };
    let timeout = Duration::from_secs(10);
    match settings.transport {
        Transport::Udp => {
            let socket = UdpSocket::bind("0.0.0.0:0")
                .await
                .map_err(|e| io(e.to_string()))?;
            socket
                .connect(&settings.address)
                .await
                .map_err(|e| io(e.to_string()))?;
            Ok(Connection::Udp(socket))
        }
        Transport::Tcp | Transport::Tls => {
            let stream = tokio::time::timeout(timeout, TcpStream::connect(&settings.address))
                .await
                .map_err(|_| io("connection timed out".into()))?
                .map_err(|e| io(e.to_string()))?;
            if settings.transport == Transport::Tcp {
                return Ok(Connection::Tcp(stream));
            }
            let mut builder = native_tls::TlsConnector::builder();
            if let Some(path) = &settings.ca_file {
                let pem = std::fs::read(path)
                    .map_err(|e| io(format!("CA file {}: {e}", path.display())))?;
                let ca = native_tls::Certificate::from_pem(&pem)
                    .map_err(|e| io(format!("CA file {}: {e}", path.display())))?;
                builder.add_root_certificate(ca);
            }
            let connector = builder.build().map_err(|e| io(e.to_string()))?;
            let host = settings
                .address
                .rsplit_once(':')
                .map_or(settings.address.as_str(), |(host, _)| host);
            let tls = tokio::time::timeout(
                timeout,
                tokio_native_tls::TlsConnector::from(connector).connect(host, stream),
            )
            .await
            .map_err(|_| io("TLS handshake timed out".into()))?
            .map_err(|e| io(e.to_string()))?;
            Ok(Connection::Tls(Box::new(tls)))
        }
    }
}

impl Connection {
    async fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match self {
            Connection::Udp(socket) => socket.send(bytes).await.map(drop),
            Connection::Tcp(stream) => stream.write_all(bytes).await,
            Connection::Tls(stream) => stream.write_all(bytes).await,
        }
    }

    async fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Connection::Udp(_) => Ok(()),
            Connection::Tcp(stream) => stream.flush().await,
            Connection::Tls(stream) => stream.flush().await,
        }
    }
}

fn next_batch(
    conn: &mut DbConnection,
    destination: &str,
) -> Result<(i64, Vec<AuditRecord>), StoreError> {
    let after = audit_forwarding::position(conn, destination)?;
    let records = audit_store::query(conn, &AuditFilter::default(), after, BATCH)?;
    Ok((after, records))
}

/// Forwards every event after the stored position, batch by batch, until caught up.
/// Returns how many were sent; an error leaves the position at the last written batch.
async fn forward_pending(
    db: &Db,
    settings: &SyslogSettings,
    connection: &mut Option<Connection>,
) -> Result<u64, ForwardError> {
    let mut sent = 0;
    loop {
        let destination = settings.destination.clone();
        let (after, records) = db.run(move |conn| next_batch(conn, &destination)).await?;
        let Some(last) = records.last().map(|r| r.seq) else {
            return Ok(sent);
        };
        if connection.is_none() {
            *connection = Some(connect(settings).await?);
        }
        let Some(open) = connection.as_mut() else {
            return Ok(sent);
        };
        let io = |e: std::io::Error| ForwardError::Io {
            address: settings.address.clone(),
            cause: e.to_string(),
        };
        for record in &records {
            open.send(&frame(&format(record, settings), settings.transport))
                .await
                .map_err(io)?;
        }
        open.flush().await.map_err(io)?;
        let destination = settings.destination.clone();
        db.run(move |conn| audit_forwarding::advance(conn, &destination, after, last))
            .await?;
        sent += records.len() as u64;
    }
}

/// The forwarding worker: polls every second, reconnecting with back-off when the
/// collector is unreachable.
pub async fn run(db: Db, settings: SyslogSettings) {
    let mut connection = None;
    let mut backoff = Duration::from_secs(1);
    loop {
        match forward_pending(&db, &settings, &mut connection).await {
            Ok(_) => {
                backoff = Duration::from_secs(1);
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(err) => {
                tracing::warn!(error = %err, retry_in_seconds = backoff.as_secs(), "audit forwarding to syslog failed; it resumes from the last event sent");
                connection = None;
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(details: &str) -> AuditRecord {
        AuditRecord {
            seq: 42,
            id: "0193".into(),
            occurred_at: 1_800_000_000_000_000,
            actor_id: Some("u-1".into()),
            actor_name: "jane \"the admin\"".into(),
            action: "user.suspend".into(),
            target_kind: Some("user".into()),
            target_id: Some("u-2]".into()),
            client_addr: Some("10.0.0.7".into()),
            api_path: None,
            outcome: "success".into(),
            details: details.into(),
            prev_hash: vec![0; 32],
            hash: vec![0xab; 32],
        }
    }

    fn settings(transport: Transport) -> SyslogSettings {
        SyslogSettings {
            address: "127.0.0.1:514".into(),
            transport,
            ca_file: None,
            facility: facility_code("authpriv").unwrap(),
            hostname: "node-1".into(),
            app_name: "conclave".into(),
            destination: "syslog".into(),
        }
    }

    #[test]
    fn a_parser_reads_back_every_field() {
        let message = format(
            &record(r#"{"reason":"left the agency ü"}"#),
            &settings(Transport::Udp),
        );
        let parsed = syslog_loose::parse_message(&message, syslog_loose::Variant::RFC5424);
        assert_eq!(parsed.protocol, syslog_loose::Protocol::RFC5424(1));
        assert_eq!(
            parsed.facility,
            Some(syslog_loose::SyslogFacility::LOG_AUTHPRIV)
        );
        assert_eq!(
            parsed.severity,
            Some(syslog_loose::SyslogSeverity::SEV_NOTICE)
        );
        assert_eq!(parsed.hostname, Some("node-1"));
        assert_eq!(parsed.appname, Some("conclave"));
        assert_eq!(parsed.msgid, Some("user.suspend"));
        assert_eq!(parsed.timestamp.map(|t| t.timestamp()), Some(1_800_000_000));
        let data = &parsed.structured_data[0];
        assert_eq!(data.id, SD_ID);
        let param = |name: &str| {
            data.params()
                .find(|(key, _)| key.to_string() == name)
                .map(|(_, value)| value.to_string())
        };
        assert_eq!(param("seq").as_deref(), Some("42"));
        assert_eq!(param("actor").as_deref(), Some(r#"jane "the admin""#));
        assert_eq!(param("target_id").as_deref(), Some("u-2]"));
        assert_eq!(param("hash").as_deref(), Some("ab".repeat(32).as_str()));
        assert_eq!(param("api_path"), None);
        assert!(parsed.msg.contains("left the agency ü"), "{}", parsed.msg);
    }

    #[test]
    fn refusals_are_warnings_and_streams_are_octet_counted() {
        let mut refused = record("{}");
        refused.outcome = "failure".into();
        let message = format(&refused, &settings(Transport::Tcp));
        assert!(message.starts_with("<84>1 "), "{message}");
        let framed = String::from_utf8(frame(&message, Transport::Tcp)).unwrap();
        let (length, rest) = framed.split_once(' ').unwrap();
        assert_eq!(length.parse::<usize>().unwrap(), rest.len());
        assert_eq!(rest, message);
    }

    #[test]
    fn datagrams_are_cut_on_a_character_boundary() {
        let long = format(&record(&"é".repeat(10_000)), &settings(Transport::Udp));
        let datagram = frame(&long, Transport::Udp);
        assert!(datagram.len() <= UDP_MAX);
        assert!(String::from_utf8(datagram).is_ok());
    }

    #[test]
    fn settings_names_are_checked() {
        assert_eq!(facility_code("local3"), Ok(19));
        assert!(facility_code("kern").is_err());
        assert_eq!(Transport::parse("tls"), Ok(Transport::Tls));
        assert!(Transport::parse("http").is_err());
        assert_eq!(header_field("a b\u{7f}c", 32), "abc");
        assert_eq!(header_field("", 32), "-");
    }
}
