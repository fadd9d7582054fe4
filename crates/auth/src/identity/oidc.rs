//! OpenID Connect sign-in: authorization code flow with PKCE (S256), `state` and `nonce`,
//! provider metadata from discovery, the ID token's signature and claims (issuer,
//! audience, expiry, nonce) checked by the `openidconnect` crate, userinfo when
//! configured, and RP-initiated logout.
//!
//! The flow's secrets (state, nonce, PKCE verifier) are kept in the database
//! (`oidc_flows`), so any node can finish a flow another started. Each flow is bound to
//! whoever started it: the browser by an HttpOnly cookie, an API client by the
//! `flow_secret` it must present to exchange the completed flow for a token. A flow is
//! used once and expires after `identity.flow_timeout_seconds`.

use super::config::{OidcProviderConfig, SecretString, resolve_secret};
use super::login::{Origin, open_session};
use super::mapping::{GroupMappings, profile_from_claims, safe_return_to};
use super::provision::{ProviderRules, provision};
use crate::audit;
use crate::error::AuthError;
use crate::login::LoginSuccess;
use crate::settings::AuthSettings;
use base64::Engine;
use conclave_core::{AuditOutcome, Timestamp, UserId};
use conclave_store::oidc_flows::{self, FlowRecord};
use conclave_store::users::{self as user_store, AuthSource};
use conclave_store::{Db, write_transaction};
use openidconnect::core::{CoreAuthenticationFlow, CoreClient};
use openidconnect::{
    AuthorizationCode, ClientId, ClientSecret, CsrfToken, EndpointMaybeSet, EndpointNotSet,
    EndpointSet, IssuerUrl, Nonce, OAuth2TokenResponse, PkceCodeChallenge, PkceCodeVerifier,
    PostLogoutRedirectUrl, ProviderMetadataWithLogout, RedirectUrl, Scope, TokenResponse,
};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::time::{Duration, Instant};

type Client = CoreClient<
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

/// How long discovered metadata (and the signing keys in it) is reused.
const METADATA_TTL: Duration = Duration::from_secs(600);

/// Who finishes a flow: a browser (cookie, redirect) or an API client (token exchange).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlowMode {
    Browser,
    Token,
}

impl FlowMode {
    fn as_str(self) -> &'static str {
        match self {
            FlowMode::Browser => "browser",
            FlowMode::Token => "token",
        }
    }
}

/// A flow just begun: where to send the person, and the secret that binds the flow.
pub struct FlowStart {
    pub authorization_url: String,
    pub state: String,
    /// The browser's cookie value, or the API client's `flow_secret`. Shown once.
    pub binding_secret: String,
    pub expires_at: Timestamp,
}

impl std::fmt::Debug for FlowStart {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlowStart")
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// What the provider sent back to the callback.
#[derive(Debug, Default)]
pub struct Callback {
    pub code: Option<String>,
    pub state: Option<String>,
    pub iss: Option<String>,
    pub error: Option<String>,
}

/// A finished callback.
#[derive(Debug)]
pub enum Finished {
    /// A browser flow: the session is open; send the browser to `return_to`.
    Browser {
        success: Box<LoginSuccess>,
        return_to: String,
    },
    /// An API client's flow completed: send the browser to the client's loopback
    /// `redirect` (which carries the one-time code the exchange needs).
    TokenReady { redirect: String },
}

/// An API client's redirect URI: `http` to a loopback address with an explicit port
/// (RFC 8252 section 7.3). The exchange code travels only there, so a person tricked
/// into finishing a sign-in that somebody else started sends the code to their own
/// machine, never to that somebody.
pub fn loopback_redirect(raw: &str) -> Result<String, AuthError> {
    let invalid = || {
        AuthError::Invalid(conclave_core::ValidationError::new(
            "redirect_uri",
            "must be http://127.0.0.1:PORT/..., http://[::1]:PORT/... or http://localhost:PORT/... (the client's own loopback listener)",
        ))
    };
    let url = url::Url::parse(raw).map_err(|_| invalid())?;
    let loopback = match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(name)) => name == "localhost",
        None => false,
    };
    if url.scheme() != "http"
        || !loopback
        || url.port().is_none()
        || url.fragment().is_some()
        || !url.username().is_empty()
        || url.password().is_some()
    {
        return Err(invalid());
    }
    Ok(url.to_string())
}

pub fn hash_hex(value: &str) -> String {
    hex_lower(&Sha256::digest(value.as_bytes()))
}

fn hex_lower(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The binding of a completed API-client flow: its secret's hash chained with the
/// exchange code's, so neither alone exchanges it.
fn completed_binding(secret_hash: &[u8], code: &str) -> Vec<u8> {
    let mut hasher = Sha256::new();
    hasher.update(secret_hash);
    hasher.update(Sha256::digest(code.as_bytes()));
    hasher.finalize().to_vec()
}

fn binding_matches(flow: &FlowRecord, secret: &str) -> bool {
    use subtle::ConstantTimeEq;
    let presented = Sha256::digest(secret.as_bytes());
    bool::from(presented.as_slice().ct_eq(&flow.binding_hash))
}

fn random_secret() -> Result<String, AuthError> {
    // A session token's generator: 256 random bits, URL-safe.
    Ok(conclave_crypto::SessionToken::generate()?
        .expose()
        .to_owned())
}

/// One configured provider, with its metadata cached.
pub struct OidcProvider {
    pub config: OidcProviderConfig,
    secret: SecretString,
    http: openidconnect::reqwest::Client,
    redirect_url: String,
    post_logout_url: String,
    metadata: tokio::sync::Mutex<Option<(Instant, ProviderMetadataWithLogout)>>,
}

impl std::fmt::Debug for OidcProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcProvider")
            .field("id", &self.config.id)
            .finish_non_exhaustive()
    }
}

impl OidcProvider {
    pub fn new(
        config: &OidcProviderConfig,
        public_url: &str,
    ) -> Result<Self, super::config::ConfigProblem> {
        let key = format!("identity.oidc.{}", config.id);
        let secret = resolve_secret(
            &format!("{key}.client_secret"),
            &config.client_secret,
            config.client_secret_file.as_ref(),
        )?;
        let http = super::tls::http_client(
            config.ca_file.as_deref(),
            Duration::from_secs(config.timeout_seconds),
        )
        .map_err(|message| super::config::ConfigProblem {
            key: format!("{key}.ca_file"),
            message,
        })?;
        let base = public_url.trim_end_matches('/');
        Ok(Self {
            redirect_url: config
                .redirect_url
                .clone()
                .unwrap_or_else(|| format!("{base}/api/v1/auth/oidc/{}/callback", config.id)),
            post_logout_url: config
                .post_logout_redirect_url
                .clone()
                .unwrap_or_else(|| format!("{base}/")),
            config: config.clone(),
            secret,
            http,
            metadata: tokio::sync::Mutex::new(None),
        })
    }

    pub fn provider_key(&self) -> String {
        format!("oidc:{}", self.config.id)
    }

    fn unavailable(&self, what: &str, err: impl std::fmt::Display) -> AuthError {
        tracing::warn!(provider = %self.config.id, error = %err, "{what}");
        AuthError::DirectoryUnavailable(format!(
            "the identity provider `{}` is unavailable ({what}); try again later",
            self.config.display_name
        ))
    }

    /// The provider's metadata (discovery), cached for a few minutes.
    /// The lock is never held across the fetch: a provider that does not answer must
    /// not queue every sign-in behind one request's timeout.
    async fn metadata(&self, refresh: bool) -> Result<ProviderMetadataWithLogout, AuthError> {
        if !refresh
            && let Some((fetched, metadata)) = self.metadata.lock().await.as_ref()
            && fetched.elapsed() < METADATA_TTL
        {
            return Ok(metadata.clone());
        }
        let issuer = IssuerUrl::new(self.config.issuer.clone())
            .map_err(|err| self.unavailable("bad issuer URL", err))?;
        let metadata = ProviderMetadataWithLogout::discover_async(issuer, &self.http)
            .await
            .map_err(|err| self.unavailable("discovery failed", err))?;
        *self.metadata.lock().await = Some((Instant::now(), metadata.clone()));
        Ok(metadata)
    }

    fn client(&self, metadata: ProviderMetadataWithLogout) -> Result<Client, AuthError> {
        let redirect = RedirectUrl::new(self.redirect_url.clone())
            .map_err(|err| AuthError::SsoFailed(format!("bad redirect URL: {err}")))?;
        Ok(CoreClient::from_provider_metadata(
            metadata,
            ClientId::new(self.config.client_id.clone()),
            Some(ClientSecret::new(self.secret.expose().to_owned())),
        )
        .set_redirect_uri(redirect))
    }

    /// Starts a flow: stores state, nonce and PKCE verifier, returns the URL to send the
    /// person to and the secret binding the flow to its starter.
    pub async fn begin(
        &self,
        db: &Db,
        now: Timestamp,
        ttl: Duration,
        mode: FlowMode,
        return_to: Option<&str>,
    ) -> Result<FlowStart, AuthError> {
        let client = self.client(self.metadata(false).await?)?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let mut request = client
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                CsrfToken::new_random,
                Nonce::new_random,
            )
            .set_pkce_challenge(challenge);
        for scope in &self.config.scopes {
            request = request.add_scope(Scope::new(scope.clone()));
        }
        let (url, state, nonce) = request.url();
        let binding_secret = random_secret()?;
        let expires_at = now.plus(ttl);
        let flow = FlowRecord {
            id: hash_hex(state.secret()),
            provider: self.config.id.clone(),
            nonce: nonce.secret().clone(),
            pkce_verifier: verifier.secret().clone(),
            binding_hash: Sha256::digest(binding_secret.as_bytes()).to_vec(),
            mode: mode.as_str().to_owned(),
            // A browser lands on a path of this site; an API client's browser is sent to
            // the client's own loopback address (checked by `loopback_redirect`).
            return_to: Some(match mode {
                FlowMode::Browser => safe_return_to(return_to),
                FlowMode::Token => loopback_redirect(return_to.unwrap_or_default())?,
            }),
            completed_user_id: None,
            created_at: now.as_micros(),
            expires_at: expires_at.as_micros(),
        };
        db.run(move |conn| {
            write_transaction(conn, |conn| {
                oidc_flows::delete_expired(conn, now)?;
                oidc_flows::insert(conn, &flow)
            })
        })
        .await?;
        Ok(FlowStart {
            authorization_url: url.to_string(),
            state: state.secret().clone(),
            binding_secret,
            expires_at,
        })
    }

    /// Finishes a flow at the callback: checks the state and its binding, exchanges the
    /// code (with the PKCE verifier), verifies the ID token, reads userinfo when
    /// configured, provisions the account, and opens the session (browser) or marks the
    /// flow ready for the API client's exchange.
    pub async fn finish(
        &self,
        db: &Db,
        settings: &AuthSettings,
        now: Timestamp,
        callback: Callback,
        browser_binding: Option<&str>,
        origin: &Origin,
    ) -> Result<Finished, AuthError> {
        let state = callback
            .state
            .ok_or_else(|| AuthError::SsoFailed("the callback has no state".into()))?;
        let flow_id = hash_hex(&state);
        let lookup = flow_id.clone();
        let flow = db
            .run(move |conn| oidc_flows::find(conn, &lookup))
            .await?
            .filter(|flow| flow.provider == self.config.id && flow.completed_user_id.is_none())
            .ok_or_else(|| AuthError::SsoFailed("unknown or already used sign-in".into()))?;
        if flow.expires_at < now.as_micros() {
            return Err(AuthError::SsoFailed(
                "the sign-in took too long; start again".into(),
            ));
        }
        let mode = if flow.mode == "browser" {
            FlowMode::Browser
        } else {
            FlowMode::Token
        };
        if mode == FlowMode::Browser
            && !browser_binding.is_some_and(|secret| binding_matches(&flow, secret))
        {
            return Err(AuthError::SsoFailed(
                "this sign-in was started in another browser".into(),
            ));
        }
        // Used once, whatever happens next (a browser flow is deleted now; a token flow
        // when exchanged).
        if mode == FlowMode::Browser {
            let id = flow_id.clone();
            if !db.run(move |conn| oidc_flows::take(conn, &id)).await? {
                return Err(AuthError::SsoFailed(
                    "unknown or already used sign-in".into(),
                ));
            }
        }
        let context = origin.context(&format!("sso:{}", self.config.id));
        if let Some(error) = callback.error {
            let error: String = error
                .chars()
                .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
                .take(64)
                .collect();
            let (ctx, provider, reason) = (context.clone(), self.provider_key(), error.clone());
            db.run(move |conn| {
                write_transaction(conn, |conn| {
                    audit(
                        conn,
                        &ctx,
                        now,
                        "auth.login",
                        None,
                        AuditOutcome::Failure,
                        json!({ "method": provider, "reason": reason }),
                    )
                })
            })
            .await?;
            return Err(AuthError::SsoFailed(format!(
                "the identity provider answered `{error}`"
            )));
        }
        let code = callback
            .code
            .ok_or_else(|| AuthError::SsoFailed("the callback has no code".into()))?;
        let claims = self
            .verified_claims(&flow, code, callback.iss.as_deref())
            .await?;
        let subject = claims["sub"].as_str().unwrap_or_default().to_owned();
        let profile =
            profile_from_claims(&subject, &claims, &self.config.claims).map_err(|err| {
                AuthError::SsoFailed(format!(
                    "the provider's claims cannot become an account: {err}"
                ))
            })?;

        let (settings, origin) = (settings.clone(), origin.clone());
        let provider = self.provider_key();
        let config = self.config.clone();
        let return_to = flow.return_to.clone().unwrap_or_else(|| "/".into());
        db.run(move |conn| {
            write_transaction(conn, |conn| {
                let rules = ProviderRules {
                    provider: &provider,
                    source: AuthSource::Oidc,
                    mappings: GroupMappings {
                        roles: &config.role_mappings,
                        security_groups: &config.security_group_mappings,
                    },
                    reactivate_deprovisioned: false,
                };
                let user = match provision(conn, &context, now, &rules, &profile) {
                    Ok((user, _)) => user,
                    Err(AuthError::Conflict(reason)) => {
                        audit(
                            conn,
                            &context,
                            now,
                            "auth.login",
                            Some(("account", profile.username.to_string())),
                            AuditOutcome::Failure,
                            json!({ "method": provider, "reason": "username_conflict" }),
                        )?;
                        return Ok(Err(AuthError::Conflict(reason)));
                    }
                    Err(other) => return Err(other),
                };
                match mode {
                    FlowMode::Browser => Ok(open_session(
                        conn, &settings, &context, now, &user, &provider, &origin,
                    )?
                    .map(|success| Finished::Browser {
                        success: Box::new(success),
                        return_to,
                    })),
                    FlowMode::Token => {
                        // Rebind the flow to its secret *and* a code that only reaches
                        // the client's loopback redirect: the exchange needs both.
                        let code = random_secret()?;
                        let binding = completed_binding(&flow.binding_hash, &code);
                        if !oidc_flows::complete(conn, &flow_id, user.id, &binding)? {
                            return Ok(Err(AuthError::SsoFailed(
                                "unknown or already used sign-in".into(),
                            )));
                        }
                        audit(
                            conn,
                            &context,
                            now,
                            "auth.sso_verified",
                            Some(("user", user.id.to_string())),
                            AuditOutcome::Success,
                            json!({ "method": provider, "mode": "token" }),
                        )?;
                        let mut redirect = url::Url::parse(&return_to)
                            .map_err(|_| AuthError::SsoFailed("bad redirect_uri".into()))?;
                        redirect
                            .query_pairs_mut()
                            .append_pair("code", &code)
                            .append_pair("state", &state);
                        Ok(Ok(Finished::TokenReady {
                            redirect: redirect.to_string(),
                        }))
                    }
                }
            })
        })
        .await?
    }

    async fn verified_claims(
        &self,
        flow: &FlowRecord,
        code: String,
        iss: Option<&str>,
    ) -> Result<Value, AuthError> {
        let metadata = self.metadata(false).await?;
        // RFC 9207: when the provider names itself, it must be the one we asked.
        if let Some(iss) = iss
            && iss != metadata.issuer().as_str()
        {
            return Err(AuthError::SsoFailed(
                "the callback came from another issuer".into(),
            ));
        }
        let userinfo_url = metadata.userinfo_endpoint().map(|u| u.url().clone());
        let client = self.client(metadata)?;
        let tokens = client
            .exchange_code(AuthorizationCode::new(code))
            .map_err(|err| {
                AuthError::SsoFailed(format!("the provider has no token endpoint: {err}"))
            })?
            .set_pkce_verifier(PkceCodeVerifier::new(flow.pkce_verifier.clone()))
            .request_async(&self.http)
            .await
            .map_err(|err| match err {
                openidconnect::RequestTokenError::Request(err) => {
                    self.unavailable("token request failed", err)
                }
                openidconnect::RequestTokenError::ServerResponse(response) => AuthError::SsoFailed(
                    format!("the provider refused the code: {}", response.error()),
                ),
                other => AuthError::SsoFailed(format!("bad token response: {other}")),
            })?;
        let id_token = tokens
            .id_token()
            .ok_or_else(|| AuthError::SsoFailed("the provider sent no ID token".into()))?;
        let verifier = client.id_token_verifier();
        let verified = id_token
            .claims(&verifier, &Nonce::new(flow.nonce.clone()))
            .map_err(|err| {
                AuthError::SsoFailed(format!("the ID token failed verification: {err}"))
            })?;
        let subject = verified.subject().as_str().to_owned();
        // The signature covers exactly these bytes: read every claim, mapped ones included.
        let mut claims = decode_payload(&id_token.to_string())
            .ok_or_else(|| AuthError::SsoFailed("unreadable ID token".into()))?;
        if self.config.use_userinfo
            && let Some(url) = userinfo_url
        {
            let info: Value = self
                .http
                .get(url)
                .bearer_auth(tokens.access_token().secret())
                .header("accept", "application/json")
                .send()
                .await
                .map_err(|err| self.unavailable("userinfo request failed", err))?
                .error_for_status()
                .map_err(|err| AuthError::SsoFailed(format!("userinfo refused: {err}")))?
                .json()
                .await
                .map_err(|err| AuthError::SsoFailed(format!("userinfo unreadable: {err}")))?;
            // OIDC Core 5.3.4: userinfo about another subject must be ignored.
            if info["sub"].as_str() != Some(subject.as_str()) {
                return Err(AuthError::SsoFailed(
                    "userinfo names another subject".into(),
                ));
            }
            if let (Some(claims), Value::Object(info)) = (claims.as_object_mut(), info) {
                for (key, value) in info {
                    claims.entry(key).or_insert(value);
                }
            }
        }
        claims["sub"] = Value::String(subject);
        Ok(claims)
    }

    /// Where to send the browser to end its session at the provider, when it says.
    pub async fn end_session_url(&self) -> Option<String> {
        if !self.config.end_session {
            return None;
        }
        let metadata = self.metadata(false).await.ok()?;
        let endpoint = metadata
            .additional_metadata()
            .end_session_endpoint
            .clone()?;
        let mut request = openidconnect::LogoutRequest::from(endpoint)
            .set_client_id(ClientId::new(self.config.client_id.clone()));
        if let Ok(url) = PostLogoutRedirectUrl::new(self.post_logout_url.clone()) {
            request = request.set_post_logout_redirect_uri(url);
        }
        Some(request.http_get_url().to_string())
    }
}

fn decode_payload(jwt: &str) -> Option<Value> {
    let payload = jwt.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// An API client exchanges its completed flow (the `state` and its `flow_secret`) for a
/// session, once.
pub async fn exchange(
    db: &Db,
    settings: &AuthSettings,
    now: Timestamp,
    state: &str,
    flow_secret: &str,
    code: &str,
    origin: &Origin,
) -> Result<LoginSuccess, AuthError> {
    let id = hash_hex(state);
    let presented = completed_binding(&Sha256::digest(flow_secret.as_bytes()), code);
    let (settings, origin) = (settings.clone(), origin.clone());
    db.run(move |conn| {
        write_transaction(conn, |conn| {
            let not_ready =
                || AuthError::SsoFailed("no completed sign-in for this state and secret".into());
            let Some(flow) = oidc_flows::find(conn, &id)? else {
                return Ok(Err(not_ready()));
            };
            use subtle::ConstantTimeEq;
            if flow.mode != "token"
                || !bool::from(presented.as_slice().ct_eq(&flow.binding_hash))
                || flow.expires_at < now.as_micros()
            {
                return Ok(Err(not_ready()));
            }
            let Some(user_id) = flow
                .completed_user_id
                .as_deref()
                .and_then(|u| u.parse::<UserId>().ok())
            else {
                return Ok(Err(AuthError::SsoFailed(
                    "the sign-in is not finished yet".into(),
                )));
            };
            if !oidc_flows::take(conn, &id)? {
                return Ok(Err(not_ready()));
            }
            let user = user_store::find_by_id(conn, user_id)?.ok_or(AuthError::NotFound)?;
            let context = origin.context(user.username.as_str());
            open_session(
                conn,
                &settings,
                &context,
                now,
                &user,
                &format!("oidc:{}", flow.provider),
                &origin,
            )
        })
    })
    .await?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_decode_and_garbage_does_not() {
        let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(br#"{"sub":"a","groups":["x"]}"#);
        let claims = decode_payload(&format!("h.{payload}.s")).unwrap();
        assert_eq!(claims["groups"][0], "x");
        assert!(decode_payload("nodots").is_none());
        assert!(decode_payload("a.!!!.c").is_none());
    }

    #[test]
    fn only_loopback_redirects_receive_the_exchange_code() {
        for good in [
            "http://127.0.0.1:8765/cb",
            "http://[::1]:9/x?y=1",
            "http://localhost:4000/",
        ] {
            assert!(loopback_redirect(good).is_ok(), "{good}");
        }
        for bad in [
            "https://attacker.example/cb",
            "http://attacker.example:80/cb",
            "http://127.0.0.1/cb",
            "http://127.0.0.2.attacker.example:80/",
            "http://user@127.0.0.1:80/",
            "http://127.0.0.1:80/#x",
            "/relative",
            "",
        ] {
            assert!(loopback_redirect(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_completed_flow_needs_both_the_secret_and_the_code() {
        let secret_hash = Sha256::digest(b"secret").to_vec();
        let bound = completed_binding(&secret_hash, "code");
        assert_eq!(bound, completed_binding(&Sha256::digest(b"secret"), "code"));
        assert_ne!(bound, completed_binding(&secret_hash, "other"));
        assert_ne!(bound, completed_binding(&Sha256::digest(b"guess"), "code"));
    }

    #[test]
    fn state_hashes_are_hex_sha256() {
        assert_eq!(hash_hex("abc").len(), 64);
        assert_ne!(hash_hex("abc"), hash_hex("abd"));
    }
}
