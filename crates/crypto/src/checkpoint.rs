//! Signed checkpoints of the audit log: an Ed25519 signature over a sequence number and
//! the chain hash at it. The hash chain catches any edited, deleted, inserted or
//! reordered row; a checkpoint also catches the tail being cut off, since a log that ends
//! before a signed sequence number was truncated.

use crate::audit_chain::ChainHash;
use crate::{RandomnessUnavailable, random_bytes};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier};
use std::fmt;

/// The key that signs checkpoints. Never printed.
#[derive(Clone)]
pub struct CheckpointKey(SigningKey);

impl fmt::Debug for CheckpointKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CheckpointKey({})", self.key_id())
    }
}

fn message(seq: i64, hash: &ChainHash) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(b"conclave-audit-checkpoint-v1");
    out.extend_from_slice(&seq.to_be_bytes());
    out.extend_from_slice(hash);
    out
}

impl CheckpointKey {
    pub fn generate() -> Result<Self, RandomnessUnavailable> {
        Ok(Self(SigningKey::from_bytes(&random_bytes::<32>()?)))
    }

    /// From the base64 of its 32-byte seed.
    pub fn from_base64(encoded: &str) -> Result<Self, String> {
        let bytes = STANDARD
            .decode(encoded.trim())
            .map_err(|_| "not valid base64".to_owned())?;
        let seed: [u8; 32] = bytes
            .try_into()
            .map_err(|_| "must be 32 bytes (44 base64 characters)".to_owned())?;
        Ok(Self(SigningKey::from_bytes(&seed)))
    }

    pub fn to_base64(&self) -> String {
        STANDARD.encode(self.0.to_bytes())
    }

    /// A short public identifier: the first 8 bytes of the verifying key, hex.
    pub fn key_id(&self) -> String {
        hex::encode(&self.0.verifying_key().to_bytes()[..8])
    }

    pub fn sign(&self, seq: i64, hash: &ChainHash) -> [u8; 64] {
        self.0.sign(&message(seq, hash)).to_bytes()
    }

    pub fn verify(&self, seq: i64, hash: &ChainHash, signature: &[u8]) -> bool {
        let Ok(bytes) = <[u8; 64]>::try_from(signature) else {
            return false;
        };
        self.0
            .verifying_key()
            .verify(&message(seq, hash), &Signature::from_bytes(&bytes))
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_bind_sequence_and_hash() {
        let key = CheckpointKey::generate().unwrap();
        let signature = key.sign(7, &[1; 32]);
        assert!(key.verify(7, &[1; 32], &signature));
        assert!(!key.verify(8, &[1; 32], &signature));
        assert!(!key.verify(7, &[2; 32], &signature));
        assert!(
            !CheckpointKey::generate()
                .unwrap()
                .verify(7, &[1; 32], &signature)
        );
        assert!(!key.verify(7, &[1; 32], &signature[..10]));
    }

    #[test]
    fn keys_round_trip_and_do_not_print() {
        let key = CheckpointKey::generate().unwrap();
        let back = CheckpointKey::from_base64(&key.to_base64()).unwrap();
        assert_eq!(back.key_id(), key.key_id());
        assert!(!format!("{key:?}").contains(&key.to_base64()));
        assert!(CheckpointKey::from_base64("short").is_err());
    }
}
