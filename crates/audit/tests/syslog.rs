//! Forwarding the audit log to real syslog listeners on loopback (TCP with octet
//! counting, TLS with a CA made for the test by the openssl command, UDP), on both
//! backends: every event arrives once, in order, parsed by a syslog parser; the position
//! survives a restart, so the next run sends only what is new.

use conclave_audit::syslog::{self, SyslogSettings, Transport};
use conclave_core::{AuditContext, AuditOutcome, NewAuditEvent, Timestamp};
use conclave_store::{Db, audit::append, audit_forwarding};
use conclave_testkit::backend_tests;
use std::path::Path;
use std::process::Command;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, BufReader};
use tokio::net::{TcpListener, UdpSocket};

fn append_events(db: &Db, from: i64, count: i64) {
    let mut conn = db.conn().unwrap();
    for i in from..from + count {
        let event = NewAuditEvent {
            action: "user.suspend",
            target_kind: Some("user"),
            target_id: Some(format!("u{i}")),
            outcome: AuditOutcome::Success,
            details: format!("{{\"n\":{i}}}"),
        };
        append(
            &mut conn,
            &AuditContext::system("test"),
            &event,
            Timestamp::from_micros(i),
        )
        .unwrap();
    }
}

fn settings(address: String, transport: Transport, ca_file: Option<&Path>) -> SyslogSettings {
    SyslogSettings {
        address,
        transport,
        ca_file: ca_file.map(Path::to_path_buf),
        facility: syslog::facility_code("local0").unwrap(),
        hostname: "test-node".into(),
        app_name: "conclave".into(),
        destination: "siem".into(),
    }
}

/// Reads one octet-counted message (RFC 6587).
async fn read_framed<R: AsyncRead + Unpin>(reader: &mut BufReader<R>) -> String {
    let mut length = Vec::new();
    reader.read_until(b' ', &mut length).await.unwrap();
    let length: usize = std::str::from_utf8(&length)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let mut message = vec![0; length];
    reader.read_exact(&mut message).await.unwrap();
    String::from_utf8(message).unwrap()
}

/// The `seq` parameter of a parsed RFC 5424 message.
fn seq_of(message: &str) -> i64 {
    let parsed = syslog_loose::parse_message(message, syslog_loose::Variant::RFC5424);
    assert_eq!(parsed.appname, Some("conclave"), "{message}");
    let data = parsed.structured_data.first().expect("structured data");
    let seq = data
        .params()
        .find(|(key, _)| key.to_string() == "seq")
        .map(|(_, value)| value.to_string());
    seq.expect("a seq parameter").parse().unwrap()
}

/// A self-signed certificate for 127.0.0.1 and its key, as PEM files in `dir`.
fn certificate(dir: &Path) -> (Vec<u8>, Vec<u8>) {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let made = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
        ])
        .args(["-addext", "subjectAltName=IP:127.0.0.1", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("the openssl command (Debian's openssl package)");
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    (std::fs::read(cert).unwrap(), std::fs::read(key).unwrap())
}

backend_tests! {
    fn tcp_delivers_every_event_in_order_and_resumes_after_a_restart(db) {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime.block_on(async {
            append_events(db, 1, 3);
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let config = settings(listener.local_addr().unwrap().to_string(), Transport::Tcp, None);
            let worker = tokio::spawn(syslog::run(db.clone(), config.clone()));
            let (stream, _) = listener.accept().await.unwrap();
            let mut reader = BufReader::new(stream);
            let mut seqs = Vec::new();
            for _ in 0..3 {
                seqs.push(seq_of(&read_framed(&mut reader).await));
            }
            assert_eq!(seqs, [1, 2, 3]);
            // The position is stored once the batch is written.
            for _ in 0..100 {
                if audit_forwarding::position(&mut db.conn().unwrap(), "siem").unwrap() == 3 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            assert_eq!(audit_forwarding::position(&mut db.conn().unwrap(), "siem").unwrap(), 3);
            // A restart sends only what came after.
            worker.abort();
            append_events(db, 4, 2);
            let worker = tokio::spawn(syslog::run(db.clone(), config));
            let (stream, _) = listener.accept().await.unwrap();
            let mut reader = BufReader::new(stream);
            let seqs = [seq_of(&read_framed(&mut reader).await), seq_of(&read_framed(&mut reader).await)];
            assert_eq!(seqs, [4, 5]);
            worker.abort();
        });
    }

    fn tls_verifies_the_collector_against_the_configured_ca(db) {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = certificate(dir.path());
        let identity = native_tls::Identity::from_pkcs8(&cert, &key).unwrap();
        let acceptor = tokio_native_tls::TlsAcceptor::from(native_tls::TlsAcceptor::new(identity).unwrap());
        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime.block_on(async {
            append_events(db, 1, 2);
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let address = listener.local_addr().unwrap().to_string();
            // Without the CA, the collector's certificate is refused and nothing moves.
            let untrusted = tokio::spawn(syslog::run(db.clone(), settings(address.clone(), Transport::Tls, None)));
            let (stream, _) = listener.accept().await.unwrap();
            assert!(acceptor.accept(stream).await.is_err(), "the client must reject an unknown CA");
            untrusted.abort();
            assert_eq!(audit_forwarding::position(&mut db.conn().unwrap(), "siem").unwrap(), 0);
            let trusted = tokio::spawn(syslog::run(db.clone(), settings(address, Transport::Tls, Some(&dir.path().join("cert.pem")))));
            let (stream, _) = listener.accept().await.unwrap();
            let mut reader = BufReader::new(acceptor.accept(stream).await.unwrap());
            let seqs = [seq_of(&read_framed(&mut reader).await), seq_of(&read_framed(&mut reader).await)];
            assert_eq!(seqs, [1, 2]);
            trusted.abort();
        });
    }

    fn udp_sends_one_datagram_per_event(db) {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime.block_on(async {
            append_events(db, 1, 2);
            let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
            let config = settings(socket.local_addr().unwrap().to_string(), Transport::Udp, None);
            let worker = tokio::spawn(syslog::run(db.clone(), config));
            let mut buffer = vec![0; 65_536];
            let mut seqs = Vec::new();
            for _ in 0..2 {
                let len = tokio::time::timeout(Duration::from_secs(20), socket.recv(&mut buffer)).await.unwrap().unwrap();
                seqs.push(seq_of(std::str::from_utf8(&buffer[..len]).unwrap()));
            }
            assert_eq!(seqs, [1, 2]);
            worker.abort();
        });
    }
}
