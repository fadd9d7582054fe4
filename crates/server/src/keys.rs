//! Master keys at start and from the command line: loading the keyring, generating it on
//! a new installation, refusing to start with a wrong or missing key, and `conclave keys
//! rotate | status | remove`.

use crate::settings::Settings;
use conclave_crypto::{Keyring, KeyringError};
use conclave_messaging::keys::{check_keyring, rewrap_all};
use conclave_store::{Db, room_keys};

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(transparent)]
    Keyring(#[from] KeyringError),
    #[error(
        "the master key file {0} is missing but the database holds data keys: restore the key file (or set keys.master_key); starting with a new key would make every message unreadable"
    )]
    MissingFile(String),
    #[error("the master keys do not match the database: {0}")]
    Mismatch(String),
    #[error("database: {0}")]
    Store(#[from] conclave_store::StoreError),
    #[error("{0}")]
    Usage(String),
}

impl From<conclave_messaging::MessagingError> for KeyError {
    fn from(err: conclave_messaging::MessagingError) -> Self {
        KeyError::Mismatch(err.to_string())
    }
}

/// The loaded keyring, and the file it was generated into when this start created it.
pub struct LoadedKeys {
    pub keyring: Keyring,
    pub generated: Option<std::path::PathBuf>,
}

/// Loads the keyring for serving: from `keys.master_key`, else the key file; on a new
/// installation (no file, no data keys yet) generates the file and says so. Then checks
/// that every master key the database uses is loaded and right.
pub fn load_for_serving(settings: &Settings, db: &Db) -> Result<LoadedKeys, KeyError> {
    let mut generated = None;
    let mut conn = db.conn()?;
    let keyring = if !settings.keys.master_key.expose().is_empty() {
        Keyring::from_env_value(settings.keys.master_key.expose())?
    } else {
        let path = settings.key_file();
        if path.exists() {
            Keyring::load(&path)?
        } else if room_keys::count_by_master_key(&mut conn)?.is_empty() {
            let keyring = Keyring::generate()?;
            keyring.save(&path)?;
            tracing::warn!(
                path = %path.display(),
                key_id = keyring.active().0,
                "generated a new master key file; back it up separately from the database"
            );
            generated = Some(path);
            keyring
        } else {
            return Err(KeyError::MissingFile(path.display().to_string()));
        }
    };
    check_keyring(&mut conn, &keyring)?;
    Ok(LoadedKeys { keyring, generated })
}

/// Loads the configured keyring for an operator command (never generates one) and
/// checks it against the database.
pub fn load_keyring(settings: &Settings, db: &Db) -> Result<Keyring, KeyError> {
    let keyring = if settings.keys.master_key.expose().is_empty() {
        let path = settings.key_file();
        if !path.exists() {
            return Err(KeyError::MissingFile(path.display().to_string()));
        }
        Keyring::load(&path)?
    } else {
        Keyring::from_env_value(settings.keys.master_key.expose())?
    };
    check_keyring(&mut *db.conn()?, &keyring)?;
    Ok(keyring)
}

fn key_file_only(settings: &Settings) -> Result<std::path::PathBuf, KeyError> {
    if !settings.keys.master_key.expose().is_empty() {
        return Err(KeyError::Usage(
            "keys.master_key is set: rotate by adding the new key to your secret store; `conclave keys` manages key files".into(),
        ));
    }
    Ok(settings.key_file())
}

/// Adds a new master key, makes it active, and rewraps every data key under it (message
/// rows are not touched). Safe to run again if interrupted.
pub fn rotate(settings: &Settings, db: &Db) -> Result<(), KeyError> {
    let path = key_file_only(settings)?;
    let mut keyring = Keyring::load(&path)?;
    let old = keyring.active().0.to_owned();
    let new = keyring.rotate()?;
    keyring.save(&path)?;
    println!("added master key {new} (now active; {old} stays loaded until removed)");
    let rewrapped = rewrap_all(&mut *db.conn()?, &keyring)?;
    println!("rewrapped {rewrapped} data key(s) under {new}");
    println!("once backups no longer need it: conclave keys remove {old}");
    Ok(())
}

/// Finishes a rotation interrupted before the rewrap completed.
pub fn rewrap(settings: &Settings, db: &Db) -> Result<(), KeyError> {
    let keyring = Keyring::load(&key_file_only(settings)?)?;
    let rewrapped = rewrap_all(&mut *db.conn()?, &keyring)?;
    println!(
        "rewrapped {rewrapped} data key(s) under {}",
        keyring.active().0
    );
    Ok(())
}

pub fn status(settings: &Settings, db: &Db) -> Result<(), KeyError> {
    let keyring = if settings.keys.master_key.expose().is_empty() {
        Keyring::load(&settings.key_file())?
    } else {
        Keyring::from_env_value(settings.keys.master_key.expose())?
    };
    let counts = room_keys::count_by_master_key(&mut *db.conn()?)?;
    println!("{:<28} {:<8} {:>10}", "MASTER KEY", "ACTIVE", "DATA KEYS");
    for id in keyring.key_ids() {
        let count = counts
            .iter()
            .find(|(key, _)| key == id)
            .map_or(0, |(_, n)| *n);
        println!(
            "{id:<28} {:<8} {count:>10}",
            if id == keyring.active().0 { "yes" } else { "" }
        );
    }
    for (id, count) in counts.iter().filter(|(id, _)| keyring.get(id).is_none()) {
        println!("{id:<28} MISSING  {count:>10}");
    }
    Ok(())
}

/// Removes a master key that no data key uses any more.
pub fn remove(settings: &Settings, db: &Db, key_id: &str) -> Result<(), KeyError> {
    let path = key_file_only(settings)?;
    let mut keyring = Keyring::load(&path)?;
    let in_use = room_keys::count_by_master_key(&mut *db.conn()?)?
        .into_iter()
        .find(|(id, _)| id == key_id)
        .map_or(0, |(_, n)| n);
    if in_use > 0 {
        return Err(KeyError::Usage(format!(
            "{in_use} data key(s) are still wrapped by {key_id}: run `conclave keys rewrap` first"
        )));
    }
    keyring
        .remove(key_id)
        .map_err(|e| KeyError::Usage(e.to_string()))?;
    keyring.save(&path)?;
    println!("removed master key {key_id}");
    Ok(())
}

/// The audit checkpoint signing key: `audit.signing_key`, else the key file, generated
/// when `create` (serving) and absent.
pub fn load_audit_key(
    settings: &Settings,
    create: bool,
) -> Result<conclave_crypto::CheckpointKey, KeyError> {
    use conclave_crypto::CheckpointKey;
    if !settings.audit.signing_key.expose().is_empty() {
        return CheckpointKey::from_base64(settings.audit.signing_key.expose())
            .map_err(|e| KeyError::Usage(format!("audit.signing_key: {e}")));
    }
    let path = settings.audit_key_file();
    if path.exists() {
        let text = std::fs::read_to_string(&path)
            .map_err(|e| KeyError::Usage(format!("{}: {e}", path.display())))?;
        return CheckpointKey::from_base64(&text)
            .map_err(|e| KeyError::Usage(format!("{}: {e}", path.display())));
    }
    if !create {
        return Err(KeyError::Usage(format!(
            "no audit signing key: {} is missing and audit.signing_key is not set",
            path.display()
        )));
    }
    let key = CheckpointKey::generate().map_err(|e| KeyError::Usage(e.to_string()))?;
    write_secret_file(&path, &key.to_base64())
        .map_err(|e| KeyError::Usage(format!("{}: {e}", path.display())))?;
    tracing::warn!(path = %path.display(), key_id = %key.key_id(), "generated the audit checkpoint signing key");
    Ok(key)
}

fn write_secret_file(path: &std::path::Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(contents.as_bytes())?;
    file.sync_all()
}
