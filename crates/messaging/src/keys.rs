//! Per-room, per-epoch data keys: created on first use in an epoch (one UTC day), stored
//! wrapped by the active master key, unwrapped on read. Master key rotation rewraps them
//! without touching message rows.

use crate::error::MessagingError;
use conclave_core::{RoomId, Timestamp};
use conclave_crypto::envelope::{unwrap_data_key, wrap_data_key};
use conclave_crypto::{Keyring, SecretKey};
use conclave_store::room_keys::{self, RoomKeyRecord};
use conclave_store::{DbConnection, write_transaction};
use std::collections::HashMap;

pub use conclave_crypto::envelope::{EPOCH_MICROS, epoch_of};

/// The room's data key for `epoch`, creating it if this is the epoch's first use. Call
/// inside the transaction that uses it, after locking the room (so two writers cannot
/// both create it).
pub fn data_key_for_writing(
    conn: &mut DbConnection,
    keyring: &Keyring,
    room_id: RoomId,
    epoch: i64,
    now: Timestamp,
) -> Result<SecretKey, MessagingError> {
    if let Some(record) = room_keys::find(conn, room_id, epoch)? {
        return unwrap(keyring, &record);
    }
    let data_key = SecretKey::generate()?;
    let (master_id, master) = keyring.active();
    let wrapped = wrap_data_key(master, master_id, &room_id.to_string(), epoch, &data_key)?;
    room_keys::insert(conn, room_id, epoch, master_id, &wrapped, now)?;
    Ok(data_key)
}

/// [`data_key_for_writing`] for a batch of sends: the keys of every `(room, epoch)` in
/// `wanted`, read with one query per epoch and created where missing (at `now`). Same
/// conditions: inside the transaction, the rooms locked.
pub fn data_keys_for_writing(
    conn: &mut DbConnection,
    keyring: &Keyring,
    wanted: &std::collections::BTreeSet<(RoomId, i64)>,
    now: Option<Timestamp>,
) -> Result<HashMap<(RoomId, i64), SecretKey>, MessagingError> {
    let mut keys = HashMap::with_capacity(wanted.len());
    let Some(now) = now else {
        return Ok(keys);
    };
    let mut by_epoch: std::collections::BTreeMap<i64, Vec<RoomId>> = Default::default();
    for (room_id, epoch) in wanted {
        by_epoch.entry(*epoch).or_default().push(*room_id);
    }
    for (epoch, rooms) in by_epoch {
        for record in room_keys::find_for_rooms(conn, &rooms, epoch)? {
            let room_id = record.room_id.parse().map_err(|_| {
                conclave_store::StoreError::Corrupt(format!(
                    "room key of {}: bad id",
                    record.room_id
                ))
            })?;
            keys.insert((room_id, epoch), unwrap(keyring, &record)?);
        }
        for room_id in rooms {
            if let std::collections::hash_map::Entry::Vacant(missing) = keys.entry((room_id, epoch))
            {
                missing.insert(data_key_for_writing(conn, keyring, room_id, epoch, now)?);
            }
        }
    }
    Ok(keys)
}

/// Unwraps data keys for reading, caching them for the length of one request.
#[derive(Default)]
pub struct KeyCache {
    keys: HashMap<(RoomId, i64), SecretKey>,
}

impl KeyCache {
    /// Whether the key of `(room_id, epoch)` is already unwrapped here.
    pub fn holds(&self, room_id: RoomId, epoch: i64) -> bool {
        self.keys.contains_key(&(room_id, epoch))
    }

    pub fn get(
        &mut self,
        conn: &mut DbConnection,
        keyring: &Keyring,
        room_id: RoomId,
        epoch: i64,
    ) -> Result<&SecretKey, MessagingError> {
        use std::collections::hash_map::Entry;
        match self.keys.entry((room_id, epoch)) {
            Entry::Occupied(entry) => Ok(entry.into_mut()),
            Entry::Vacant(entry) => {
                let record =
                    room_keys::find(conn, room_id, epoch)?.ok_or(MessagingError::Decrypt(
                        conclave_crypto::DecryptError("the data key of this epoch is gone"),
                    ))?;
                Ok(entry.insert(unwrap(keyring, &record)?))
            }
        }
    }
}

fn unwrap(keyring: &Keyring, record: &RoomKeyRecord) -> Result<SecretKey, MessagingError> {
    let master = keyring
        .get(&record.master_key_id)
        .ok_or_else(|| MessagingError::MissingMasterKey(record.master_key_id.clone()))?;
    Ok(unwrap_data_key(
        master,
        &record.master_key_id,
        &record.room_id,
        record.epoch,
        &record.wrapped_key,
    )?)
}

/// Rewraps every data key not yet under the active master key, in batches; returns how
/// many. Safe to run again after an interruption: it continues where it stopped.
pub fn rewrap_all(conn: &mut DbConnection, keyring: &Keyring) -> Result<u64, MessagingError> {
    let (active_id, active) = keyring.active();
    let mut rewrapped = 0;
    loop {
        let batch = room_keys::wrapped_by_other_than(conn, active_id, 500)?;
        if batch.is_empty() {
            return Ok(rewrapped);
        }
        write_transaction(conn, |conn| {
            for record in &batch {
                let data_key = unwrap(keyring, record)?;
                let wrapped =
                    wrap_data_key(active, active_id, &record.room_id, record.epoch, &data_key)?;
                room_keys::rewrap(conn, &record.room_id, record.epoch, active_id, &wrapped)?;
            }
            Ok::<_, MessagingError>(())
        })?;
        rewrapped += batch.len() as u64;
    }
}

/// Checks at start that every master key the database uses is loaded and is the right
/// key (one wrapped data key per master key must open), so a wrong or missing key file
/// stops the server instead of serving errors.
pub fn check_keyring(conn: &mut DbConnection, keyring: &Keyring) -> Result<(), MessagingError> {
    for (master_id, _) in room_keys::count_by_master_key(conn)? {
        if keyring.get(&master_id).is_none() {
            return Err(MessagingError::MissingMasterKey(master_id));
        }
        if let Some(sample) = room_keys::sample_for_master_key(conn, &master_id)? {
            unwrap(keyring, &sample)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epochs_are_utc_days() {
        assert_eq!(epoch_of(Timestamp::from_micros(0)), 0);
        assert_eq!(epoch_of(Timestamp::from_micros(EPOCH_MICROS - 1)), 0);
        assert_eq!(epoch_of(Timestamp::from_micros(EPOCH_MICROS)), 1);
        assert_eq!(epoch_of(Timestamp::from_micros(-1)), -1);
    }
}
