//! HTTPS served directly with rustls: loading and checking the certificate chain and
//! private key named by `[tls]`, the certificate resolver that hands out the current
//! certificate, and its reload on SIGHUP without dropping the listener (a bad new file
//! keeps the old certificate and logs an error).

use arc_swap::ArcSwap;
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Why a certificate or key could not be used; every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("TLS certificate file {path}: {message}")]
    Certificate { path: PathBuf, message: String },
    #[error("TLS private key file {path}: {message}")]
    Key { path: PathBuf, message: String },
    #[error("TLS private key file {key} does not match the certificate in {cert}")]
    Mismatch { cert: PathBuf, key: PathBuf },
    #[error("TLS configuration: {0}")]
    Config(String),
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Reads a PEM certificate chain (leaf first) and its PEM private key (PKCS#8, PKCS#1 or
/// SEC1), and checks that the key belongs to the leaf certificate.
pub fn load_certified_key(cert: &Path, key: &Path) -> Result<CertifiedKey, TlsError> {
    let cert_error = |message: String| TlsError::Certificate {
        path: cert.to_path_buf(),
        message,
    };
    let chain = CertificateDer::pem_file_iter(cert)
        .map_err(|err| cert_error(err.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| cert_error(err.to_string()))?;
    if chain.is_empty() {
        return Err(cert_error("contains no PEM certificate".to_owned()));
    }
    let key_error = |message: String| TlsError::Key {
        path: key.to_path_buf(),
        message,
    };
    let private = PrivateKeyDer::from_pem_file(key).map_err(|err| key_error(err.to_string()))?;
    let signing = provider()
        .key_provider
        .load_private_key(private)
        .map_err(|err| key_error(err.to_string()))?;
    let certified = CertifiedKey::new(chain, signing);
    match certified.keys_match() {
        Ok(()) => Ok(certified),
        Err(rustls::Error::InconsistentKeys(_)) => Err(TlsError::Mismatch {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
        }),
        // The leaf's public key could not be read: the certificate is at fault.
        Err(err) => Err(cert_error(err.to_string())),
    }
}

/// Hands every handshake the current certificate; [`ReloadableCert::reload`] swaps it.
#[derive(Debug)]
pub struct ReloadableCert {
    cert_file: PathBuf,
    key_file: PathBuf,
    current: ArcSwap<CertifiedKey>,
}

impl ReloadableCert {
    /// Loads the files once; an error here is a startup error.
    pub fn load(cert_file: &Path, key_file: &Path) -> Result<Self, TlsError> {
        let certified = load_certified_key(cert_file, key_file)?;
        Ok(Self {
            cert_file: cert_file.to_path_buf(),
            key_file: key_file.to_path_buf(),
            current: ArcSwap::from_pointee(certified),
        })
    }

    /// Reads the files again and, only if they are valid, serves them to new
    /// connections; otherwise the current certificate stays.
    pub fn reload(&self) -> Result<(), TlsError> {
        let certified = load_certified_key(&self.cert_file, &self.key_file)?;
        self.current.store(Arc::new(certified));
        Ok(())
    }

    /// The leaf certificate served now (DER).
    pub fn leaf(&self) -> CertificateDer<'static> {
        self.current.load().cert[0].clone()
    }
}

impl ResolvesServerCert for ReloadableCert {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

/// The rustls server configuration: TLS 1.2 and 1.3 with rustls' safe defaults, no
/// client certificates, the certificate from `resolver`.
pub fn server_config(resolver: Arc<ReloadableCert>) -> Result<rustls::ServerConfig, TlsError> {
    Ok(rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|err| TlsError::Config(err.to_string()))?
        .with_no_client_auth()
        .with_cert_resolver(resolver))
}

/// Reloads the certificate each time the process receives SIGHUP, for as long as the
/// server runs.
pub fn spawn_reload_on_sighup(resolver: Option<Arc<ReloadableCert>>) -> std::io::Result<()> {
    let mut hangups = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    actix_web::rt::spawn(async move {
        while hangups.recv().await.is_some() {
            let Some(resolver) = resolver.as_ref() else {
                tracing::info!("SIGHUP: nothing to reload (TLS is off)");
                continue;
            };
            // Reading and parsing the files blocks: off the executor.
            let reloading = Arc::clone(resolver);
            let reloaded = actix_web::rt::task::spawn_blocking(move || reloading.reload())
                .await
                .unwrap_or_else(|panicked| {
                    Err(TlsError::Config(format!("reload task failed: {panicked}")))
                });
            match reloaded {
                Ok(()) => tracing::info!(
                    cert_file = %resolver.cert_file.display(),
                    "TLS certificate reloaded; new connections use it"
                ),
                Err(err) => tracing::error!(
                    error = %err,
                    "TLS certificate reload failed; still serving the previous certificate"
                ),
            }
        }
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_pair(dir: &Path, name: &str) -> (PathBuf, PathBuf, Vec<u8>) {
        let generated = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        let cert = dir.join(format!("{name}.crt"));
        let key = dir.join(format!("{name}.key"));
        std::fs::write(&cert, generated.cert.pem()).unwrap();
        std::fs::write(&key, generated.signing_key.serialize_pem()).unwrap();
        (cert, key, generated.cert.der().to_vec())
    }

    #[test]
    fn loads_a_matching_pair_and_names_each_bad_file() {
        let dir = tempfile::tempdir().unwrap();
        let (cert_a, key_a, der_a) = write_pair(dir.path(), "a");
        let (cert_b, key_b, _) = write_pair(dir.path(), "b");
        let loaded = load_certified_key(&cert_a, &key_a).unwrap();
        assert_eq!(loaded.cert[0].as_ref(), der_a.as_slice());

        let err = load_certified_key(&cert_a, &key_b).unwrap_err();
        assert!(matches!(err, TlsError::Mismatch { .. }), "{err}");
        assert!(err.to_string().contains("b.key"), "{err}");

        let missing = dir.path().join("missing.crt");
        let err = load_certified_key(&missing, &key_a).unwrap_err();
        assert!(err.to_string().contains("missing.crt"), "{err}");

        // A key where the certificate should be: no certificate in it.
        let err = load_certified_key(&key_a, &key_a).unwrap_err();
        assert!(matches!(err, TlsError::Certificate { .. }), "{err}");
        // A certificate where the key should be.
        let err = load_certified_key(&cert_b, &cert_b).unwrap_err();
        assert!(matches!(err, TlsError::Key { .. }), "{err}");
    }

    #[test]
    fn reload_swaps_only_a_valid_pair() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key, der_first) = write_pair(dir.path(), "live");
        let resolver = ReloadableCert::load(&cert, &key).unwrap();
        assert_eq!(resolver.leaf().as_ref(), der_first.as_slice());

        // A truncated certificate: the reload fails and the old certificate stays.
        std::fs::write(&cert, "-----BEGIN CERTIFICATE-----\nnot base64\n").unwrap();
        assert!(resolver.reload().is_err());
        assert_eq!(resolver.leaf().as_ref(), der_first.as_slice());

        let (_, _, der_second) = write_pair(dir.path(), "live");
        resolver.reload().unwrap();
        assert_eq!(resolver.leaf().as_ref(), der_second.as_slice());
        assert_ne!(der_first, der_second);
    }
}
