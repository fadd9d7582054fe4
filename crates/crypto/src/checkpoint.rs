//! Signed checkpoints of the audit log: an Ed25519 signature over a sequence number and
//! the chain hash at it. The hash chain catches any edited, deleted, inserted or
//! reordered row; a checkpoint also catches the tail being cut off, since a log that ends
//! before a signed sequence number was truncated. The same key signs compliance export
//! manifests (under its own domain-separation label), so one key outside the database
//! vouches for both.

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

    /// The verifying key, base64: what a recipient of an export checks it against.
    pub fn public_key_base64(&self) -> String {
        STANDARD.encode(self.0.verifying_key().to_bytes())
    }

    /// Signs an export manifest's exact bytes.
    pub fn sign_manifest(&self, manifest: &[u8]) -> [u8; 64] {
        self.0.sign(&manifest_message(manifest)).to_bytes()
    }

    pub fn verify_manifest(&self, manifest: &[u8], signature: &[u8]) -> bool {
        verify_manifest_with(
            &STANDARD.encode(self.0.verifying_key().to_bytes()),
            manifest,
            signature,
        )
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

fn manifest_message(manifest: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(manifest.len() + 32);
    out.extend_from_slice(b"conclave-export-manifest-v1");
    out.extend_from_slice(manifest);
    out
}

/// Checks a manifest signature against a verifying key given as base64 (as a manifest's
/// recipient holds it, without the signing key).
pub fn verify_manifest_with(public_key: &str, manifest: &[u8], signature: &[u8]) -> bool {
    let Ok(key) = STANDARD.decode(public_key.trim()) else {
        return false;
    };
    let (Ok(key), Ok(signature)) = (<[u8; 32]>::try_from(key), <[u8; 64]>::try_from(signature))
    else {
        return false;
    };
    let Ok(key) = ed25519_dalek::VerifyingKey::from_bytes(&key) else {
        return false;
    };
    key.verify(
        &manifest_message(manifest),
        &Signature::from_bytes(&signature),
    )
    .is_ok()
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

    #[test]
    fn manifest_signatures_bind_every_byte_and_the_key() {
        let key = CheckpointKey::generate().unwrap();
        let signature = key.sign_manifest(b"{\"files\":[]}");
        assert!(key.verify_manifest(b"{\"files\":[]}", &signature));
        assert!(verify_manifest_with(
            &key.public_key_base64(),
            b"{\"files\":[]}",
            &signature
        ));
        assert!(!key.verify_manifest(b"{\"files\":[1]}", &signature));
        let other = CheckpointKey::generate().unwrap();
        assert!(!verify_manifest_with(
            &other.public_key_base64(),
            b"{\"files\":[]}",
            &signature
        ));
        assert!(!verify_manifest_with("not base64", b"", &signature));
        // A checkpoint signature is not a manifest signature (domain separation).
        let checkpoint = key.sign(1, &[0; 32]);
        assert!(!key.verify_manifest(b"", &checkpoint));
    }
}
