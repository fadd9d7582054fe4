//! The LDAP / Active Directory directory: RFC 4515 filter escaping, connections (ldap://,
//! ldaps://, StartTLS, a configured CA, connect and operation timeouts), the
//! search-then-bind check of a user's password, and reading an entry into a profile.
//!
//! Any failure to reach the directory is [`DirectoryError::Unavailable`] (503), never a
//! hang: every operation has a timeout and the whole exchange has one more around it.

use super::config::{ConfigProblem, LdapConfig, SecretString, resolve_secret};
use super::mapping::{self, ExternalProfile, GroupMappings};
use ldap3::{Ldap, LdapConnAsync, LdapConnSettings, LdapError, Scope, SearchEntry, SearchOptions};
use std::collections::HashMap;
use std::time::Duration;

/// Escapes a value for use inside an LDAP search filter (RFC 4515 section 3): `*`, `(`,
/// `)`, `\` and NUL become `\2a`, `\28`, `\29`, `\5c`, `\00`; so do all non-ASCII bytes
/// (of the UTF-8 encoding), which RFC 4515 permits and which keeps filters printable.
pub fn escape_filter_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        match byte {
            b'*' | b'(' | b')' | b'\\' | 0 | 0x80..=0xff => {
                out.push_str(&format!("\\{byte:02x}"));
            }
            _ => out.push(char::from(byte)),
        }
    }
    out
}

/// `(&{base}({attribute}={escaped value}))`.
pub fn user_filter(base: &str, attribute: &str, value: &str) -> String {
    format!(
        "(&{}({}={}))",
        base.trim(),
        attribute,
        escape_filter_value(value)
    )
}

#[derive(Debug, thiserror::Error)]
pub enum DirectoryError {
    /// Not reachable, timed out, TLS failed, or the service account was refused.
    #[error("the directory is unavailable: {0}")]
    Unavailable(String),
    #[error("invalid username or password")]
    InvalidCredentials,
}

impl From<DirectoryError> for crate::AuthError {
    fn from(err: DirectoryError) -> Self {
        match err {
            DirectoryError::Unavailable(reason) => crate::AuthError::DirectoryUnavailable(format!(
                "the LDAP directory is unavailable ({reason}); try again later"
            )),
            DirectoryError::InvalidCredentials => crate::AuthError::InvalidCredentials,
        }
    }
}

fn unavailable(err: LdapError) -> DirectoryError {
    let reason = match &err {
        LdapError::Timeout { .. } => "timed out".to_owned(),
        LdapError::Io { source } => match source.kind() {
            std::io::ErrorKind::ConnectionRefused => "connection refused".to_owned(),
            std::io::ErrorKind::TimedOut => "timed out".to_owned(),
            _ => format!("I/O error: {source}"),
        },
        LdapError::NativeTLS { .. } => "TLS handshake failed".to_owned(),
        LdapError::EndOfStream => "the connection was closed".to_owned(),
        other => other.to_string(),
    };
    tracing::warn!(error = %err, "LDAP directory unavailable");
    DirectoryError::Unavailable(reason)
}

/// One directory entry: its DN and attributes (names lower-cased).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DirectoryEntry {
    pub dn: String,
    pub attrs: HashMap<String, Vec<String>>,
}

/// Id attributes that hold raw bytes (Active Directory's GUID and SID).
const BINARY_IDS: [&str; 2] = ["objectguid", "objectsid"];

impl DirectoryEntry {
    pub fn from_search(entry: SearchEntry, id_attribute: &str) -> Self {
        let mut attrs: HashMap<String, Vec<String>> = entry
            .attrs
            .into_iter()
            .map(|(name, values)| (name.to_lowercase(), values))
            .collect();
        // A binary id (AD's objectGUID) is kept as lower-case hex. ldap3 hands a value
        // over as text whenever its bytes happen to be valid UTF-8 (about one GUID in ten
        // thousand, some with a NUL byte PostgreSQL refuses): those are hex-encoded too.
        let id_lower = id_attribute.to_lowercase();
        if BINARY_IDS.contains(&id_lower.as_str())
            && let Some(values) = attrs.get_mut(&id_lower)
        {
            for value in values.iter_mut() {
                *value = value.bytes().map(|b| format!("{b:02x}")).collect();
            }
        }
        for (name, values) in entry.bin_attrs {
            let name = name.to_lowercase();
            if name == id_attribute.to_lowercase() {
                attrs.insert(
                    name,
                    values
                        .iter()
                        .map(|v| v.iter().map(|b| format!("{b:02x}")).collect())
                        .collect(),
                );
            }
        }
        Self {
            dn: entry.dn,
            attrs,
        }
    }

    pub fn first(&self, attribute: &str) -> Option<&str> {
        self.attrs
            .get(&attribute.to_lowercase())
            .and_then(|values| values.first())
            .map(String::as_str)
    }

    pub fn all(&self, attribute: &str) -> Vec<String> {
        self.attrs
            .get(&attribute.to_lowercase())
            .cloned()
            .unwrap_or_default()
    }

    /// Active Directory's `userAccountControl` ACCOUNTDISABLE bit (0x2).
    pub fn is_disabled(&self) -> bool {
        self.first("userAccountControl")
            .and_then(|v| v.trim().parse::<i64>().ok())
            .is_some_and(|flags| flags & 0x2 != 0)
    }
}

/// The configured directory, ready to connect.
#[derive(Clone)]
pub struct Directory {
    pub config: LdapConfig,
    bind_password: SecretString,
    tls: Option<native_tls::TlsConnector>,
}

impl std::fmt::Debug for Directory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Directory")
            .field("url", &self.config.url)
            .finish_non_exhaustive()
    }
}

impl Directory {
    pub fn new(config: &LdapConfig) -> Result<Self, ConfigProblem> {
        let bind_password = resolve_secret(
            "identity.ldap.bind_password",
            &config.bind_password,
            config.bind_password_file.as_ref(),
        )?;
        let tls = match &config.ca_file {
            Some(path) => {
                Some(
                    super::tls::connector(Some(path)).map_err(|message| ConfigProblem {
                        key: "identity.ldap.ca_file".into(),
                        message,
                    })?,
                )
            }
            None => None,
        };
        Ok(Self {
            config: config.clone(),
            bind_password,
            tls,
        })
    }

    pub fn mappings(&self) -> GroupMappings<'_> {
        GroupMappings {
            roles: &self.config.role_mappings,
            security_groups: &self.config.security_group_mappings,
        }
    }

    fn operation_timeout(&self) -> Duration {
        Duration::from_secs(self.config.operation_timeout_seconds)
    }

    /// An upper bound for a whole login exchange (connect, two binds, one search).
    fn exchange_timeout(&self) -> Duration {
        Duration::from_secs(self.config.connect_timeout_seconds) + self.operation_timeout() * 4
    }

    /// The attributes every search asks for (operational ones must be named).
    pub fn attributes(&self) -> Vec<String> {
        let c = &self.config;
        vec![
            c.username_attribute.clone(),
            c.id_attribute.clone(),
            c.email_attribute.clone(),
            c.display_name_attribute.clone(),
            c.group_attribute.clone(),
            "userAccountControl".to_owned(),
        ]
    }

    /// Opens a connection (with TLS as configured) and drives it in the background.
    pub async fn connect(&self) -> Result<Ldap, DirectoryError> {
        let mut settings = LdapConnSettings::new()
            .set_conn_timeout(Duration::from_secs(self.config.connect_timeout_seconds))
            .set_starttls(self.config.starttls);
        if let Some(tls) = &self.tls {
            settings = settings.set_connector(tls.clone());
        }
        let connecting = LdapConnAsync::with_settings(settings, &self.config.url);
        // The TCP connect has its own timeout; the TLS handshake (ldaps, StartTLS) does
        // not, so the whole connect is bounded too.
        let budget =
            Duration::from_secs(self.config.connect_timeout_seconds) + self.operation_timeout();
        let (conn, ldap) = tokio::time::timeout(budget, connecting)
            .await
            .map_err(|_| DirectoryError::Unavailable("timed out connecting".into()))?
            .map_err(unavailable)?;
        ldap3::drive!(conn);
        Ok(ldap)
    }

    /// Connects and binds as the service account.
    pub async fn connect_as_service(&self) -> Result<Ldap, DirectoryError> {
        let mut ldap = self.connect().await?;
        if !self.config.bind_dn.is_empty() {
            let result = ldap
                .with_timeout(self.operation_timeout())
                .simple_bind(&self.config.bind_dn, self.bind_password.expose())
                .await
                .map_err(unavailable)?;
            if result.rc != 0 {
                tracing::warn!(rc = result.rc, text = %result.text, "LDAP service account bind refused");
                return Err(DirectoryError::Unavailable(
                    "the service account was refused; check identity.ldap.bind_dn and bind_password".into(),
                ));
            }
        }
        Ok(ldap)
    }

    /// Checks a username and password: finds the one entry for the username with the
    /// service account and an escaped filter, then binds as that entry's DN.
    pub async fn authenticate(
        &self,
        username: &str,
        password: &str,
    ) -> Result<DirectoryEntry, DirectoryError> {
        // An empty password would be an unauthenticated bind, which "succeeds".
        if username.trim().is_empty() || password.is_empty() {
            return Err(DirectoryError::InvalidCredentials);
        }
        tokio::time::timeout(
            self.exchange_timeout(),
            self.search_and_bind(username.trim(), password),
        )
        .await
        .map_err(|_| DirectoryError::Unavailable("timed out".into()))?
    }

    async fn search_and_bind(
        &self,
        username: &str,
        password: &str,
    ) -> Result<DirectoryEntry, DirectoryError> {
        let entry = {
            let mut ldap = self.connect_as_service().await?;
            let filter = user_filter(
                &self.config.user_filter,
                &self.config.username_attribute,
                username,
            );
            let ldap3::SearchResult(entries, result) = ldap
                .with_timeout(self.operation_timeout())
                .with_search_options(SearchOptions::new().sizelimit(2))
                .search(
                    &self.config.user_base_dn,
                    Scope::Subtree,
                    &filter,
                    self.attributes(),
                )
                .await
                .map_err(unavailable)?;
            match result.rc {
                // sizeLimitExceeded: more than one entry matched; refused below.
                0 | 4 => {}
                rc => {
                    tracing::warn!(rc, text = %result.text, "LDAP user search failed");
                    return Err(DirectoryError::Unavailable(format!(
                        "the user search failed with result code {rc}; check identity.ldap.user_base_dn"
                    )));
                }
            }
            let _ = ldap.unbind().await;
            if result.rc != 0 || entries.len() != 1 {
                return Err(DirectoryError::InvalidCredentials);
            }
            let entry = entries
                .into_iter()
                .next()
                .ok_or(DirectoryError::InvalidCredentials)?;
            DirectoryEntry::from_search(SearchEntry::construct(entry), &self.config.id_attribute)
        };
        if entry.is_disabled() {
            return Err(DirectoryError::InvalidCredentials);
        }
        let mut ldap = self.connect().await?;
        let bound = ldap
            .with_timeout(self.operation_timeout())
            .simple_bind(&entry.dn, password)
            .await
            .map_err(unavailable)?;
        let _ = ldap.unbind().await;
        match bound.rc {
            0 => Ok(entry),
            // invalidCredentials, and AD's variants of "may not log in now".
            49 | 53 | 50 => Err(DirectoryError::InvalidCredentials),
            rc => {
                tracing::warn!(rc, text = %bound.text, "LDAP user bind failed");
                Err(DirectoryError::Unavailable(format!(
                    "the directory answered {rc}"
                )))
            }
        }
    }

    /// The profile an entry describes.
    /// The entry's stable id (the configured id attribute), if it has one.
    pub fn subject<'e>(&self, entry: &'e DirectoryEntry) -> Option<&'e str> {
        entry.first(&self.config.id_attribute)
    }

    pub fn profile(
        &self,
        entry: &DirectoryEntry,
    ) -> Result<ExternalProfile, conclave_core::ValidationError> {
        let c = &self.config;
        let subject = entry.first(&c.id_attribute).unwrap_or_default();
        mapping::profile(
            subject,
            &entry.dn,
            entry.first(&c.username_attribute).unwrap_or_default(),
            entry.first(&c.display_name_attribute),
            entry.first(&c.email_attribute),
            entry.all(&c.group_attribute),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_binary_id_is_hex_even_when_its_bytes_look_like_text() {
        let entry = SearchEntry {
            dn: "cn=x".into(),
            attrs: HashMap::from([("objectGUID".to_owned(), vec!["ab\0c".to_owned()])]),
            bin_attrs: HashMap::new(),
        };
        let parsed = DirectoryEntry::from_search(entry, "objectGUID");
        assert_eq!(parsed.first("objectGUID"), Some("61620063"));
        let entry = SearchEntry {
            dn: "cn=y".into(),
            attrs: HashMap::from([("entryUUID".to_owned(), vec!["a-b".to_owned()])]),
            bin_attrs: HashMap::new(),
        };
        assert_eq!(
            DirectoryEntry::from_search(entry, "entryUUID").first("entryUUID"),
            Some("a-b")
        );
    }

    #[test]
    fn filter_metacharacters_are_escaped() {
        assert_eq!(escape_filter_value("alice"), "alice");
        assert_eq!(escape_filter_value("*)(uid=*"), "\\2a\\29\\28uid=\\2a");
        assert_eq!(escape_filter_value("a\\b"), "a\\5cb");
        assert_eq!(escape_filter_value("nul\0byte"), "nul\\00byte");
        assert_eq!(escape_filter_value("(cn=x)"), "\\28cn=x\\29");
        assert_eq!(escape_filter_value(""), "");
    }

    #[test]
    fn non_ascii_is_escaped_byte_by_byte() {
        // U+00E9 is C3 A9 in UTF-8; U+1F600 is F0 9F 98 80.
        assert_eq!(escape_filter_value("ren\u{e9}"), "ren\\c3\\a9");
        assert_eq!(escape_filter_value("\u{1f600}"), "\\f0\\9f\\98\\80");
    }

    #[test]
    fn an_injection_shaped_username_cannot_widen_the_filter() {
        let filter = user_filter("(objectClass=inetOrgPerson)", "uid", "*)(uid=*");
        assert_eq!(
            filter,
            "(&(objectClass=inetOrgPerson)(uid=\\2a\\29\\28uid=\\2a))"
        );
        // Exactly the parentheses of the template remain unescaped.
        let open = filter.matches('(').count();
        assert_eq!(open, 3);
        assert_eq!(filter.matches(')').count(), 3);
        assert!(!filter.contains("=*"));
    }

    #[test]
    fn disabled_bit_of_user_account_control() {
        let mut entry = DirectoryEntry::default();
        assert!(!entry.is_disabled());
        entry
            .attrs
            .insert("useraccountcontrol".into(), vec!["512".into()]);
        assert!(!entry.is_disabled());
        entry
            .attrs
            .insert("useraccountcontrol".into(), vec!["514".into()]);
        assert!(entry.is_disabled());
    }
}
