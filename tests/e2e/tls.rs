//! HTTPS served by the binary itself: a generated self-signed certificate, HSTS and the
//! Secure session cookie, a certificate swapped in by SIGHUP on the same listener (and a
//! bad one refused, keeping the old), and a clear error for a missing key file from
//! `serve` and `config check`.

use crate::harness::{Server, conclave};
use reqwest::blocking::{Client, Response};
use serde_json::json;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

struct Generated {
    cert_pem: String,
    key_pem: String,
    der: Vec<u8>,
}

fn generate() -> Generated {
    let names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
    let generated = rcgen::generate_simple_self_signed(names).unwrap();
    Generated {
        cert_pem: generated.cert.pem(),
        key_pem: generated.signing_key.serialize_pem(),
        der: generated.cert.der().to_vec(),
    }
}

fn install(dir: &Path, generated: &Generated) {
    std::fs::write(dir.join("cert.pem"), &generated.cert_pem).unwrap();
    std::fs::write(dir.join("key.pem"), &generated.key_pem).unwrap();
}

/// A client with a fresh connection pool that trusts only `roots`.
fn client(roots: &[&Generated]) -> Client {
    let mut builder = Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .tls_info(true)
        .timeout(Duration::from_secs(30));
    for root in roots {
        let cert = reqwest::Certificate::from_pem(root.cert_pem.as_bytes()).unwrap();
        builder = builder.add_root_certificate(cert);
    }
    builder.build().unwrap()
}

/// The certificate the server presented on this response's connection (DER).
fn served_cert(response: &Response) -> Vec<u8> {
    response
        .extensions()
        .get::<reqwest::tls::TlsInfo>()
        .and_then(|info| info.peer_certificate())
        .expect("the connection was TLS")
        .to_vec()
}

fn hangup(server: &Server) {
    let status = Command::new("kill")
        .args(["-HUP", &server.pid().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
fn https_with_hsts_secure_cookies_and_reload_on_sighup() {
    let dir = tempfile::tempdir().unwrap();
    let first = generate();
    let second = generate();
    assert_ne!(first.der, second.der);
    install(dir.path(), &first);
    let cert_file = dir.path().join("cert.pem");
    let key_file = dir.path().join("key.pem");
    let server = Server::start_at(
        dir.path(),
        None,
        &[
            ("CONCLAVE_TLS__CERT_FILE", cert_file.to_str().unwrap()),
            ("CONCLAVE_TLS__KEY_FILE", key_file.to_str().unwrap()),
            // TLS forces the Secure flag even when this says otherwise.
            ("CONCLAVE_SESSIONS__SECURE_COOKIES", "false"),
        ],
    )
    .expect("conclave starts with TLS");
    assert!(server.url.starts_with("https://"), "{}", server.url);

    let trusting_both = || client(&[&first, &second]);
    let health = trusting_both()
        .get(format!("{}/healthz", server.url))
        .send()
        .unwrap();
    assert_eq!(health.status(), 200);
    assert_eq!(served_cert(&health), first.der);
    assert_eq!(
        health.headers()["strict-transport-security"],
        "max-age=31536000"
    );
    // A client that does not trust the certificate is refused.
    assert!(
        client(&[&second])
            .get(format!("{}/healthz", server.url))
            .send()
            .is_err()
    );

    let login = trusting_both()
        .post(format!("{}/api/v1/auth/login", server.url))
        .json(&json!({"username": "admin", "password": server.first_admin_password()}))
        .send()
        .unwrap();
    assert_eq!(login.status(), 200);
    assert_eq!(
        login.headers()["strict-transport-security"],
        "max-age=31536000"
    );
    let cookies: Vec<&str> = login
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert!(!cookies.is_empty());
    for cookie in &cookies {
        assert!(cookie.contains("; Secure"), "{cookie}");
    }

    // A broken certificate file: the reload fails, is logged, and the old one stays.
    std::fs::write(&cert_file, "-----BEGIN CERTIFICATE-----\nnot base64\n").unwrap();
    hangup(&server);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !server.stderr().contains("TLS certificate reload failed") {
        assert!(Instant::now() < deadline, "no reload error logged");
        std::thread::sleep(Duration::from_millis(50));
    }
    let still = trusting_both()
        .get(format!("{}/healthz", server.url))
        .send()
        .unwrap();
    assert_eq!(served_cert(&still), first.der);

    // The second certificate over the same files: new connections get it.
    install(dir.path(), &second);
    hangup(&server);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let response = trusting_both()
            .get(format!("{}/healthz", server.url))
            .send()
            .unwrap();
        assert_eq!(response.status(), 200);
        if served_cert(&response) == second.der {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the new certificate is not served"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // Only the new certificate is needed now.
    let only_new = client(&[&second])
        .get(format!("{}/healthz", server.url))
        .send()
        .unwrap();
    assert_eq!(only_new.status(), 200);
    assert!(server.stderr().contains("TLS certificate reloaded"));
}

#[test]
fn a_missing_key_file_stops_the_start_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    install(dir.path(), &generate());
    let check = |key: &Path| {
        conclave(dir.path())
            .args(["config", "check"])
            .env("CONCLAVE_TLS__CERT_FILE", dir.path().join("cert.pem"))
            .env("CONCLAVE_TLS__KEY_FILE", key)
            .output()
            .unwrap()
    };
    let good = check(&dir.path().join("key.pem"));
    assert!(good.status.success());
    assert!(String::from_utf8_lossy(&good.stdout).contains("tls:       https"));
    let missing = dir.path().join("absent-key.pem");
    let bad = check(&missing);
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("absent-key.pem"));

    let out = conclave(dir.path())
        .args(["serve", "--bind", "127.0.0.1:0"])
        .env("CONCLAVE_TLS__CERT_FILE", dir.path().join("cert.pem"))
        .env("CONCLAVE_TLS__KEY_FILE", &missing)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("absent-key.pem"), "{err}");
    assert!(
        !dir.path().join("conclave.db").exists(),
        "nothing was started"
    );
}
