//! TLS trust for the directory and the identity providers: the system's roots, plus a
//! configured CA.

use std::path::Path;

/// Reads a PEM CA certificate, checking that it parses.
pub fn read_ca(path: &Path) -> Result<native_tls::Certificate, String> {
    let pem = std::fs::read(path).map_err(|err| format!("{}: {err}", path.display()))?;
    native_tls::Certificate::from_pem(&pem)
        .map_err(|err| format!("{}: not a PEM certificate: {err}", path.display()))
}

/// A TLS connector trusting the system roots and, when given, `ca_file`.
pub fn connector(ca_file: Option<&Path>) -> Result<native_tls::TlsConnector, String> {
    let mut builder = native_tls::TlsConnector::builder();
    if let Some(path) = ca_file {
        builder.add_root_certificate(read_ca(path)?);
    }
    builder.build().map_err(|err| err.to_string())
}

/// An HTTP client for an identity provider: no redirects followed (OpenID Connect
/// endpoints must answer directly), a per-request timeout, the configured CA.
pub fn http_client(
    ca_file: Option<&Path>,
    timeout: std::time::Duration,
) -> Result<openidconnect::reqwest::Client, String> {
    // native-tls named explicitly (the system's roots), so a build that also enables
    // reqwest's rustls (the end-to-end tests' client does) cannot switch the backend.
    let mut builder = openidconnect::reqwest::Client::builder()
        .use_native_tls()
        .redirect(openidconnect::reqwest::redirect::Policy::none())
        .timeout(timeout)
        .connect_timeout(timeout);
    if let Some(path) = ca_file {
        let pem = std::fs::read(path).map_err(|err| format!("{}: {err}", path.display()))?;
        let cert = openidconnect::reqwest::Certificate::from_pem(&pem)
            .map_err(|err| format!("{}: {err}", path.display()))?;
        builder = builder.add_root_certificate(cert);
    }
    builder.build().map_err(|err| err.to_string())
}
