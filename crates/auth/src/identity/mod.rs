//! Single sign-on and the directory: OpenID Connect login, LDAP login, directory sync,
//! claim and group mapping, just-in-time provisioning, and control of local login.

pub mod config;
pub mod http;
pub mod ldap;
pub mod local_login;
pub mod login;
pub mod mapping;
pub mod oidc;
pub mod provision;
pub mod sync;
pub mod tls;

use config::{ConfigProblem, IdentityConfig};
use std::sync::Arc;
use std::time::Duration;

/// What the identity handlers share: the configured providers and directory.
#[derive(Clone, Debug, Default)]
pub struct IdentityState {
    pub oidc: Vec<Arc<oidc::OidcProvider>>,
    pub directory: Option<ldap::Directory>,
    pub sync_guard: sync::SyncGuard,
    pub flow_ttl: Duration,
}

impl IdentityState {
    /// Builds the providers from the configuration; `public_url` is where browsers reach
    /// this server (for the default redirect URIs).
    pub fn new(config: &IdentityConfig, public_url: &str) -> Result<Self, ConfigProblem> {
        Ok(Self {
            oidc: config
                .oidc
                .iter()
                .map(|provider| oidc::OidcProvider::new(provider, public_url).map(Arc::new))
                .collect::<Result<_, _>>()?,
            directory: config.ldap.as_ref().map(ldap::Directory::new).transpose()?,
            sync_guard: sync::SyncGuard::default(),
            flow_ttl: Duration::from_secs(config.flow_timeout_seconds),
        })
    }

    pub fn provider(&self, id: &str) -> Option<&Arc<oidc::OidcProvider>> {
        self.oidc.iter().find(|p| p.config.id == id)
    }
}
