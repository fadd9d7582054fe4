//! Envelope encryption (DESIGN.md, Encryption at rest). Master keys (KEKs) wrap per-room,
//! per-epoch data keys (DEKs); data keys seal message bodies with XChaCha20-Poly1305 under
//! a random 24-byte nonce. The associated data binds each ciphertext to its message id,
//! room id, sender, epoch and version, so a ciphertext copied into another row fails to
//! open instead of showing the wrong text.

use crate::{RandomnessUnavailable, random_bytes};
use chacha20poly1305::aead::{Aead, Payload};
use chacha20poly1305::{Key, KeyInit, XChaCha20Poly1305, XNonce};
use std::fmt;

const NONCE_LEN: usize = 24;

/// Opening failed: wrong key, tampered ciphertext, or ciphertext moved to another row.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("decryption failed: {0}")]
pub struct DecryptError(pub &'static str);

/// A 256-bit symmetric key; never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretKey(Key);

impl SecretKey {
    pub fn generate() -> Result<Self, RandomnessUnavailable> {
        Ok(Self(Key::from(random_bytes::<32>()?)))
    }

    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(Key::from(bytes))
    }

    pub(crate) fn as_slice(&self) -> &[u8] {
        self.0.as_slice()
    }

    pub(crate) fn key(&self) -> &Key {
        &self.0
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new(&self.0)
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretKey(<redacted>)")
    }
}

/// Seals `plaintext` with `key` and associated data `aad`: `nonce || ciphertext || tag`.
pub fn seal(
    key: &SecretKey,
    aad: &[u8],
    plaintext: &[u8],
) -> Result<Vec<u8>, RandomnessUnavailable> {
    let nonce_bytes = random_bytes::<NONCE_LEN>()?;
    let nonce = XNonce::from(nonce_bytes);
    let ciphertext = key
        .cipher()
        .encrypt(
            &nonce,
            Payload {
                msg: plaintext,
                aad,
            },
        )
        .expect("XChaCha20-Poly1305 encryption of an in-memory buffer cannot fail");
    let mut sealed = Vec::with_capacity(NONCE_LEN + ciphertext.len());
    sealed.extend_from_slice(&nonce_bytes);
    sealed.extend_from_slice(&ciphertext);
    Ok(sealed)
}

/// Opens what [`seal`] produced, given the same key and associated data.
pub fn open(key: &SecretKey, aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>, DecryptError> {
    if sealed.len() < NONCE_LEN + 16 {
        return Err(DecryptError("ciphertext is too short"));
    }
    let (nonce_bytes, ciphertext) = sealed.split_at(NONCE_LEN);
    let nonce_array: [u8; NONCE_LEN] = nonce_bytes.try_into().expect("split at the nonce length");
    key.cipher()
        .decrypt(
            &XNonce::from(nonce_array),
            Payload {
                msg: ciphertext,
                aad,
            },
        )
        .map_err(|_| {
            DecryptError("authentication failed (wrong key, tampered, or moved ciphertext)")
        })
}

/// Builds associated data as length-prefixed fields under a purpose label, so no two
/// different field lists encode alike.
pub fn associated_data(label: &str, fields: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    for field in std::iter::once(label.as_bytes()).chain(fields.iter().copied()) {
        out.extend_from_slice(&(field.len() as u32).to_be_bytes());
        out.extend_from_slice(field);
    }
    out
}

/// Where a message body version belongs; the associated data of its ciphertext.
#[derive(Debug, Clone, Copy)]
pub struct BodyBinding<'a> {
    pub message_id: &'a str,
    pub room_id: &'a str,
    pub sender_id: &'a str,
    pub epoch: i64,
    pub version: i64,
}

impl BodyBinding<'_> {
    pub fn aad(&self) -> Vec<u8> {
        associated_data(
            "conclave-message-body-v1",
            &[
                self.message_id.as_bytes(),
                self.room_id.as_bytes(),
                self.sender_id.as_bytes(),
                &self.epoch.to_be_bytes(),
                &self.version.to_be_bytes(),
            ],
        )
    }
}

/// Wraps a room's epoch data key under a master key; bound to the room, epoch and master
/// key id so a wrapped key cannot be swapped between rooms.
pub fn wrap_data_key(
    master: &SecretKey,
    master_key_id: &str,
    room_id: &str,
    epoch: i64,
    data_key: &SecretKey,
) -> Result<Vec<u8>, RandomnessUnavailable> {
    seal(
        master,
        &wrap_aad(master_key_id, room_id, epoch),
        data_key.as_slice(),
    )
}

pub fn unwrap_data_key(
    master: &SecretKey,
    master_key_id: &str,
    room_id: &str,
    epoch: i64,
    wrapped: &[u8],
) -> Result<SecretKey, DecryptError> {
    let bytes = open(master, &wrap_aad(master_key_id, room_id, epoch), wrapped)?;
    let array: [u8; 32] = bytes
        .try_into()
        .map_err(|_| DecryptError("unwrapped key is not 32 bytes"))?;
    Ok(SecretKey::from_bytes(array))
}

fn wrap_aad(master_key_id: &str, room_id: &str, epoch: i64) -> Vec<u8> {
    associated_data(
        "conclave-data-key-v1",
        &[
            master_key_id.as_bytes(),
            room_id.as_bytes(),
            &epoch.to_be_bytes(),
        ],
    )
}

/// How long one data key epoch lasts: one UTC day.
pub const EPOCH_MICROS: i64 = 86_400 * 1_000_000;

/// The epoch (UTC day number) an instant falls in; a room's messages of one epoch share a
/// data key, which crypto-shredding destroys once none of them is retained.
pub fn epoch_of(at: conclave_core::Timestamp) -> i64 {
    at.as_micros().div_euclid(EPOCH_MICROS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binding(message_id: &str) -> BodyBinding<'_> {
        BodyBinding {
            message_id,
            room_id: "room-1",
            sender_id: "alice",
            epoch: 20_000,
            version: 1,
        }
    }

    #[test]
    fn seal_and_open_round_trip_with_fresh_nonces() {
        let key = SecretKey::generate().unwrap();
        let aad = binding("m1").aad();
        let a = seal(&key, &aad, b"hello").unwrap();
        let b = seal(&key, &aad, b"hello").unwrap();
        assert_ne!(a, b, "a fresh nonce each time");
        assert!(
            !a.windows(5).any(|w| w == b"hello"),
            "no plaintext in the ciphertext"
        );
        assert_eq!(open(&key, &aad, &a).unwrap(), b"hello");
    }

    #[test]
    fn a_ciphertext_moved_to_another_binding_fails() {
        let key = SecretKey::generate().unwrap();
        let sealed = seal(&key, &binding("m1").aad(), b"secret").unwrap();
        assert!(open(&key, &binding("m2").aad(), &sealed).is_err());
        let other_sender = BodyBinding {
            sender_id: "mallory",
            ..binding("m1")
        };
        assert!(open(&key, &other_sender.aad(), &sealed).is_err());
        let other_version = BodyBinding {
            version: 2,
            ..binding("m1")
        };
        assert!(open(&key, &other_version.aad(), &sealed).is_err());
    }

    #[test]
    fn wrong_key_tampering_and_truncation_fail() {
        let key = SecretKey::generate().unwrap();
        let aad = binding("m1").aad();
        let mut sealed = seal(&key, &aad, b"secret").unwrap();
        assert!(open(&SecretKey::generate().unwrap(), &aad, &sealed).is_err());
        assert!(open(&key, &aad, &sealed[..10]).is_err());
        let last = sealed.len() - 1;
        sealed[last] ^= 1;
        assert!(open(&key, &aad, &sealed).is_err());
    }

    #[test]
    fn data_keys_wrap_and_are_bound_to_room_and_epoch() {
        let master = SecretKey::generate().unwrap();
        let data = SecretKey::generate().unwrap();
        let wrapped = wrap_data_key(&master, "k1", "room-1", 7, &data).unwrap();
        assert_eq!(
            unwrap_data_key(&master, "k1", "room-1", 7, &wrapped).unwrap(),
            data
        );
        assert!(unwrap_data_key(&master, "k1", "room-2", 7, &wrapped).is_err());
        assert!(unwrap_data_key(&master, "k1", "room-1", 8, &wrapped).is_err());
        assert!(unwrap_data_key(&master, "k2", "room-1", 7, &wrapped).is_err());
    }

    #[test]
    fn associated_data_is_unambiguous() {
        assert_ne!(
            associated_data("l", &[b"ab", b"c"]),
            associated_data("l", &[b"a", b"bc"])
        );
    }

    #[test]
    fn keys_do_not_print() {
        assert_eq!(
            format!("{:?}", SecretKey::generate().unwrap()),
            "SecretKey(<redacted>)"
        );
    }
}
