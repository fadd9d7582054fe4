//! Identity configuration (`[identity]` in `conclave.toml`): OpenID Connect providers, the
//! LDAP directory, and how their claims, attributes and groups map onto accounts. The
//! server embeds these types in its settings; `validate` names the wrong key.

use conclave_core::Role;
use serde::{Deserialize, Deserializer, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct IdentityConfig {
    /// Seconds a person has to finish an OpenID Connect sign-in at the provider.
    pub flow_timeout_seconds: u64,
    /// OpenID Connect providers, shown on the login page in this order.
    pub oidc: Vec<OidcProviderConfig>,
    /// The LDAP / Active Directory directory, for password login and directory sync.
    pub ldap: Option<LdapConfig>,
}

impl Default for IdentityConfig {
    fn default() -> Self {
        Self {
            flow_timeout_seconds: 600,
            oidc: Vec::new(),
            ldap: None,
        }
    }
}

/// Which claims of the ID token (or userinfo) fill an account. Dotted names reach into
/// nested objects (`realm_access.roles`).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ClaimMapping {
    pub username: String,
    pub email: String,
    /// The claim saying the provider verified `email` (the email is used only when it
    /// is `true`). Empty: the provider sends none and its emails are trusted (Entra ID,
    /// where admins set them).
    pub email_verified: String,
    pub display_name: String,
    pub groups: String,
}

impl Default for ClaimMapping {
    fn default() -> Self {
        Self {
            username: "preferred_username".into(),
            email: "email".into(),
            email_verified: "email_verified".into(),
            display_name: "name".into(),
            groups: "groups".into(),
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct OidcProviderConfig {
    /// Short id used in URLs (`/api/v1/auth/oidc/{id}/login`): a-z, 0-9, '-'.
    pub id: String,
    /// Shown on the login page ("Sign in with …").
    pub display_name: String,
    /// The issuer URL; metadata comes from `{issuer}/.well-known/openid-configuration`.
    pub issuer: String,
    pub client_id: String,
    /// The client secret, or empty with `client_secret_file` set.
    #[serde(default)]
    pub client_secret: SecretString,
    #[serde(default)]
    pub client_secret_file: Option<PathBuf>,
    /// Scopes requested besides `openid`.
    #[serde(default = "default_scopes")]
    pub scopes: Vec<String>,
    /// The redirect URI registered at the provider; default
    /// `{public_url}/api/v1/auth/oidc/{id}/callback`.
    #[serde(default)]
    pub redirect_url: Option<String>,
    /// Also read claims from the userinfo endpoint (when the ID token lacks them).
    #[serde(default)]
    pub use_userinfo: bool,
    #[serde(default)]
    pub claims: ClaimMapping,
    /// Provider group -> Conclave roles. When any is set, the provider manages the roles
    /// of its accounts: they are recomputed at every login.
    #[serde(default)]
    pub role_mappings: BTreeMap<String, Vec<Role>>,
    /// Provider group -> Conclave security group (by name); memberships made this way
    /// have source `directory` and follow the provider.
    #[serde(default)]
    pub security_group_mappings: BTreeMap<String, String>,
    /// After logout, send the browser to the provider's end-session endpoint (when its
    /// metadata has one).
    #[serde(default = "yes")]
    pub end_session: bool,
    /// Where the provider sends the browser after its logout; default `{public_url}/`.
    #[serde(default)]
    pub post_logout_redirect_url: Option<String>,
    /// PEM file of the CA that signed the provider's TLS certificate (default: the system's).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Seconds for each request to the provider.
    #[serde(default = "default_http_timeout")]
    pub timeout_seconds: u64,
}

fn default_scopes() -> Vec<String> {
    vec!["email".into(), "profile".into()]
}
fn yes() -> bool {
    true
}
fn default_http_timeout() -> u64 {
    10
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LdapConfig {
    /// `ldap://host:389` or `ldaps://host:636`.
    pub url: String,
    /// Upgrade an `ldap://` connection with StartTLS.
    pub starttls: bool,
    /// PEM file of the CA that signed the directory's certificate (default: the system's).
    pub ca_file: Option<PathBuf>,
    /// The service account that searches the directory.
    pub bind_dn: String,
    pub bind_password: SecretString,
    pub bind_password_file: Option<PathBuf>,
    /// Where users are searched (subtree).
    pub user_base_dn: String,
    /// Which entries are users that may sign in (AD: add
    /// `(!(userAccountControl:1.2.840.113556.1.4.803:=2))` to leave disabled ones out).
    pub user_filter: String,
    /// The attribute people type as their username (AD: `sAMAccountName`).
    pub username_attribute: String,
    /// A stable unique id (OpenLDAP `entryUUID`, AD `objectGUID`).
    pub id_attribute: String,
    pub email_attribute: String,
    pub display_name_attribute: String,
    /// Group DNs of the user (`memberOf`); a mapping key matches a DN or its first RDN's
    /// value (`cn=staff,ou=groups,…` matches `staff`).
    pub group_attribute: String,
    pub role_mappings: BTreeMap<String, Vec<Role>>,
    pub security_group_mappings: BTreeMap<String, String>,
    /// Allow password login against the directory.
    pub login: bool,
    pub connect_timeout_seconds: u64,
    pub operation_timeout_seconds: u64,
    /// Entries per page of a sync (RFC 2696 paged results).
    pub page_size: u32,
    /// Minutes between scheduled syncs; 0 runs sync only on demand.
    pub sync_interval_minutes: u64,
    /// Suspend accounts gone from (or disabled in) the directory, ending their sessions.
    pub deprovision: bool,
}

impl Default for LdapConfig {
    fn default() -> Self {
        Self {
            url: String::new(),
            starttls: false,
            ca_file: None,
            bind_dn: String::new(),
            bind_password: SecretString::default(),
            bind_password_file: None,
            user_base_dn: String::new(),
            user_filter: "(objectClass=inetOrgPerson)".into(),
            username_attribute: "uid".into(),
            id_attribute: "entryUUID".into(),
            email_attribute: "mail".into(),
            display_name_attribute: "cn".into(),
            group_attribute: "memberOf".into(),
            role_mappings: BTreeMap::new(),
            security_group_mappings: BTreeMap::new(),
            login: true,
            connect_timeout_seconds: 5,
            operation_timeout_seconds: 10,
            page_size: 500,
            sync_interval_minutes: 60,
            deprovision: true,
        }
    }
}

/// A secret configuration value (client secret, bind password): never printed.
#[derive(Clone, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct SecretString(String);

impl SecretString {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for SecretString {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(SecretString)
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_empty() {
            "\"\""
        } else {
            "\"<redacted>\""
        })
    }
}

/// A configuration problem at a key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid value for `{key}`: {message}")]
pub struct ConfigProblem {
    pub key: String,
    pub message: String,
}

fn problem(key: impl Into<String>, message: impl Into<String>) -> ConfigProblem {
    ConfigProblem {
        key: key.into(),
        message: message.into(),
    }
}

/// A secret given inline or in a file (trailing newline dropped); file wins when set.
pub fn resolve_secret(
    key: &str,
    inline: &SecretString,
    file: Option<&PathBuf>,
) -> Result<SecretString, ConfigProblem> {
    match file {
        Some(path) => std::fs::read_to_string(path)
            .map(|text| SecretString(text.trim_end_matches(['\r', '\n']).to_owned()))
            .map_err(|err| problem(format!("{key}_file"), format!("{}: {err}", path.display()))),
        None => Ok(inline.clone()),
    }
}

fn check_url(key: &str, url: &str, schemes: &[&str]) -> Result<(), ConfigProblem> {
    match url::Url::parse(url) {
        Ok(parsed) if schemes.contains(&parsed.scheme()) && parsed.host().is_some() => Ok(()),
        Ok(_) => Err(problem(
            key,
            format!("must be a {} URL", schemes.join(" or ")),
        )),
        Err(err) => Err(problem(key, err.to_string())),
    }
}

fn check_mappings(prefix: &str, roles: &BTreeMap<String, Vec<Role>>) -> Result<(), ConfigProblem> {
    for (group, granted) in roles {
        if let Err(err) =
            conclave_core::RoleSet::new(granted.iter().copied()).check_separation_of_duties()
        {
            return Err(problem(
                format!("{prefix}.role_mappings.{group}"),
                err.to_string(),
            ));
        }
    }
    Ok(())
}

impl IdentityConfig {
    pub fn validate(&self) -> Result<(), ConfigProblem> {
        if !(60..=3600).contains(&self.flow_timeout_seconds) {
            return Err(problem(
                "identity.flow_timeout_seconds",
                "must be between 60 and 3600",
            ));
        }
        let mut ids = std::collections::BTreeSet::new();
        for (index, provider) in self.oidc.iter().enumerate() {
            let key = format!("identity.oidc[{index}]");
            let valid_id = !provider.id.is_empty()
                && provider.id.len() <= 32
                && provider
                    .id
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
            if !valid_id {
                return Err(problem(
                    format!("{key}.id"),
                    "1 to 32 characters of a-z, 0-9, '-'",
                ));
            }
            if !ids.insert(provider.id.clone()) {
                return Err(problem(
                    format!("{key}.id"),
                    format!("`{}` is used twice", provider.id),
                ));
            }
            if provider.display_name.trim().is_empty() {
                return Err(problem(format!("{key}.display_name"), "must not be empty"));
            }
            check_url(
                &format!("{key}.issuer"),
                &provider.issuer,
                &["https", "http"],
            )?;
            if provider.client_id.is_empty() {
                return Err(problem(format!("{key}.client_id"), "must not be empty"));
            }
            let secret = resolve_secret(
                &format!("{key}.client_secret"),
                &provider.client_secret,
                provider.client_secret_file.as_ref(),
            )?;
            if secret.expose().is_empty() {
                return Err(problem(
                    format!("{key}.client_secret"),
                    "set client_secret or client_secret_file (confidential clients only)",
                ));
            }
            if let Some(url) = &provider.redirect_url {
                check_url(&format!("{key}.redirect_url"), url, &["https", "http"])?;
            }
            if let Some(url) = &provider.post_logout_redirect_url {
                check_url(
                    &format!("{key}.post_logout_redirect_url"),
                    url,
                    &["https", "http"],
                )?;
            }
            if let Some(path) = &provider.ca_file {
                crate::identity::tls::read_ca(path)
                    .map_err(|m| problem(format!("{key}.ca_file"), m))?;
            }
            if !(1..=300).contains(&provider.timeout_seconds) {
                return Err(problem(
                    format!("{key}.timeout_seconds"),
                    "must be between 1 and 300",
                ));
            }
            for (name, claim) in [
                ("username", &provider.claims.username),
                ("email", &provider.claims.email),
                ("display_name", &provider.claims.display_name),
                ("groups", &provider.claims.groups),
            ] {
                if claim.trim().is_empty() {
                    return Err(problem(format!("{key}.claims.{name}"), "must name a claim"));
                }
            }
            check_mappings(&key, &provider.role_mappings)?;
        }
        if let Some(ldap) = &self.ldap {
            let key = "identity.ldap";
            check_url(&format!("{key}.url"), &ldap.url, &["ldap", "ldaps"])?;
            if ldap.starttls && ldap.url.starts_with("ldaps:") {
                return Err(problem(
                    format!("{key}.starttls"),
                    "StartTLS applies to ldap:// URLs only",
                ));
            }
            if let Some(path) = &ldap.ca_file {
                crate::identity::tls::read_ca(path)
                    .map_err(|m| problem(format!("{key}.ca_file"), m))?;
            }
            resolve_secret(
                &format!("{key}.bind_password"),
                &ldap.bind_password,
                ldap.bind_password_file.as_ref(),
            )?;
            for (name, value) in [
                ("user_base_dn", &ldap.user_base_dn),
                ("username_attribute", &ldap.username_attribute),
                ("id_attribute", &ldap.id_attribute),
                ("email_attribute", &ldap.email_attribute),
                ("display_name_attribute", &ldap.display_name_attribute),
                ("group_attribute", &ldap.group_attribute),
            ] {
                if value.trim().is_empty() {
                    return Err(problem(format!("{key}.{name}"), "must not be empty"));
                }
            }
            let filter = ldap.user_filter.trim();
            if !(filter.starts_with('(') && filter.ends_with(')')) {
                return Err(problem(
                    format!("{key}.user_filter"),
                    "must be an LDAP filter in parentheses",
                ));
            }
            if !(1..=300).contains(&ldap.connect_timeout_seconds) {
                return Err(problem(
                    format!("{key}.connect_timeout_seconds"),
                    "must be between 1 and 300",
                ));
            }
            if !(1..=3600).contains(&ldap.operation_timeout_seconds) {
                return Err(problem(
                    format!("{key}.operation_timeout_seconds"),
                    "must be between 1 and 3600",
                ));
            }
            if !(1..=10_000).contains(&ldap.page_size) {
                return Err(problem(
                    format!("{key}.page_size"),
                    "must be between 1 and 10000",
                ));
            }
            check_mappings(key, &ldap.role_mappings)?;
        }
        Ok(())
    }
}
