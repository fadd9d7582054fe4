//! Master keys (KEKs). They come from a key file or one environment value and never touch
//! the database. Several may be loaded so that data keys wrapped by an older master key
//! stay readable during rotation; new data keys are wrapped by the active one.
//!
//! Key file (TOML, mode 0600):
//! ```toml
//! active = "k-20261125-3f9a1c"
//! [keys]
//! "k-20261125-3f9a1c" = "<base64 of 32 random bytes>"
//! ```
//! Environment form: `KEY_ID:BASE64` (one key, which is then active).

use crate::envelope::SecretKey;
use crate::{RandomnessUnavailable, random_bytes};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum KeyringError {
    #[error("master key file {path}: {message}")]
    File { path: String, message: String },
    #[error("master key: {0}")]
    Invalid(String),
    #[error(transparent)]
    Randomness(#[from] RandomnessUnavailable),
}

/// The loaded master keys.
#[derive(Clone)]
pub struct Keyring {
    active: String,
    keys: BTreeMap<String, SecretKey>,
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keyring")
            .field("active", &self.active)
            .field("key_ids", &self.keys.keys().collect::<Vec<_>>())
            .finish()
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyFile {
    active: String,
    keys: BTreeMap<String, String>,
}

impl Keyring {
    /// The key that wraps new data keys: its id and the key.
    pub fn active(&self) -> (&str, &SecretKey) {
        (&self.active, &self.keys[&self.active])
    }

    pub fn get(&self, key_id: &str) -> Option<&SecretKey> {
        self.keys.get(key_id)
    }

    pub fn key_ids(&self) -> impl Iterator<Item = &str> {
        self.keys.keys().map(String::as_str)
    }

    /// One key from its environment form, `KEY_ID:BASE64`.
    pub fn from_env_value(value: &str) -> Result<Self, KeyringError> {
        let (id, encoded) = value
            .split_once(':')
            .ok_or_else(|| KeyringError::Invalid("expected KEY_ID:BASE64".into()))?;
        let key = decode_key(id, encoded).map_err(KeyringError::Invalid)?;
        Ok(Self {
            active: id.to_owned(),
            keys: BTreeMap::from([(id.to_owned(), key)]),
        })
    }

    pub fn load(path: &Path) -> Result<Self, KeyringError> {
        let file_error = |message: String| KeyringError::File {
            path: path.display().to_string(),
            message,
        };
        let text = std::fs::read_to_string(path).map_err(|e| file_error(e.to_string()))?;
        let file: KeyFile = toml::from_str(&text).map_err(|e| file_error(e.to_string()))?;
        let mut keys = BTreeMap::new();
        for (id, encoded) in &file.keys {
            keys.insert(id.clone(), decode_key(id, encoded).map_err(file_error)?);
        }
        if !keys.contains_key(&file.active) {
            return Err(file_error(format!(
                "the active key `{}` is not among [keys]",
                file.active
            )));
        }
        Ok(Self {
            active: file.active,
            keys,
        })
    }

    /// A keyring with one new random key.
    pub fn generate() -> Result<Self, KeyringError> {
        let (id, key) = new_key()?;
        Ok(Self {
            active: id.clone(),
            keys: BTreeMap::from([(id, key)]),
        })
    }

    /// Adds a new random key and makes it active; returns its id.
    pub fn rotate(&mut self) -> Result<String, KeyringError> {
        let (id, key) = new_key()?;
        self.keys.insert(id.clone(), key);
        self.active = id.clone();
        Ok(id)
    }

    /// Removes a key that is no longer active (after every data key was rewrapped).
    pub fn remove(&mut self, key_id: &str) -> Result<(), KeyringError> {
        if key_id == self.active {
            return Err(KeyringError::Invalid(format!(
                "`{key_id}` is the active key"
            )));
        }
        self.keys
            .remove(key_id)
            .map(drop)
            .ok_or_else(|| KeyringError::Invalid(format!("no key `{key_id}`")))
    }

    /// Writes the key file atomically (a temporary file renamed over it), readable only
    /// by its owner.
    pub fn save(&self, path: &Path) -> Result<(), KeyringError> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let file_error = |message: String| KeyringError::File {
            path: path.display().to_string(),
            message,
        };
        let file = KeyFile {
            active: self.active.clone(),
            keys: self
                .keys
                .iter()
                .map(|(id, key)| (id.clone(), STANDARD.encode(key.as_slice())))
                .collect(),
        };
        let text = format!(
            "# Conclave master keys. Keep this file out of the database and its backups,\n\
             # and back it up separately: without it no message can be read.\n{}",
            toml::to_string(&file).map_err(|e| file_error(e.to_string()))?
        );
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| file_error(e.to_string()))?;
        }
        let temporary = path.with_extension("tmp");
        let mut out = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&temporary)
            .map_err(|e| file_error(e.to_string()))?;
        out.write_all(text.as_bytes())
            .and_then(|()| out.sync_all())
            .map_err(|e| file_error(e.to_string()))?;
        std::fs::rename(&temporary, path).map_err(|e| file_error(e.to_string()))
    }
}

fn new_key() -> Result<(String, SecretKey), KeyringError> {
    let suffix = hex::encode(random_bytes::<4>()?);
    let day = time_day_stamp();
    Ok((format!("k-{day}-{suffix}"), SecretKey::generate()?))
}

/// `YYYYMMDD` of today (UTC), for readable key ids.
fn time_day_stamp() -> String {
    let today = time::OffsetDateTime::now_utc().date();
    format!(
        "{:04}{:02}{:02}",
        today.year(),
        u8::from(today.month()),
        today.day()
    )
}

fn decode_key(id: &str, encoded: &str) -> Result<SecretKey, String> {
    if id.is_empty()
        || !id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(format!("key id `{id}` must be letters, digits, '-' or '_'"));
    }
    let bytes = STANDARD
        .decode(encoded.trim())
        .map_err(|_| format!("key `{id}` is not valid base64"))?;
    let array: [u8; 32] = bytes
        .try_into()
        .map_err(|_| format!("key `{id}` must be 32 bytes (44 base64 characters)"))?;
    Ok(SecretKey::from_bytes(array))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generate_save_load_rotate_remove() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys/master.toml");
        let ring = Keyring::generate().unwrap();
        ring.save(&path).unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let mut loaded = Keyring::load(&path).unwrap();
        assert_eq!(loaded.active().0, ring.active().0);
        assert_eq!(loaded.active().1, ring.active().1);
        let old = loaded.active().0.to_owned();
        let new = loaded.rotate().unwrap();
        assert_ne!(old, new);
        assert_eq!(loaded.active().0, new);
        assert!(loaded.get(&old).is_some());
        assert!(
            loaded.remove(&new).is_err(),
            "the active key cannot be removed"
        );
        loaded.remove(&old).unwrap();
        assert_eq!(loaded.key_ids().collect::<Vec<_>>(), vec![new.as_str()]);
        assert!(format!("{loaded:?}").contains(&new));
        assert!(!format!("{loaded:?}").contains(&STANDARD.encode(loaded.active().1.as_slice())));
    }

    #[test]
    fn env_values_and_errors_are_clear() {
        let encoded = STANDARD.encode([7u8; 32]);
        let ring = Keyring::from_env_value(&format!("prod1:{encoded}")).unwrap();
        assert_eq!(ring.active().0, "prod1");
        assert!(
            Keyring::from_env_value("no-colon")
                .unwrap_err()
                .to_string()
                .contains("KEY_ID:BASE64")
        );
        assert!(
            Keyring::from_env_value("k:!!!")
                .unwrap_err()
                .to_string()
                .contains("base64")
        );
        let short = STANDARD.encode([1u8; 16]);
        assert!(
            Keyring::from_env_value(&format!("k:{short}"))
                .unwrap_err()
                .to_string()
                .contains("32 bytes")
        );
    }

    #[test]
    fn a_file_whose_active_key_is_missing_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.toml");
        std::fs::write(
            &path,
            format!(
                "active = \"b\"\n[keys]\na = \"{}\"\n",
                STANDARD.encode([1u8; 32])
            ),
        )
        .unwrap();
        assert!(
            Keyring::load(&path)
                .unwrap_err()
                .to_string()
                .contains("`b`")
        );
    }

    #[test]
    fn day_stamp_is_a_date() {
        let stamp = time_day_stamp();
        assert_eq!(stamp.len(), 8);
        assert!(stamp.starts_with("20"));
    }
}
