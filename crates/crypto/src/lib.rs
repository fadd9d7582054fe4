//! Conclave's cryptography, built only from maintained primitives (RustCrypto's
//! chacha20poly1305 and aead-stream, sha2, getrandom): envelope encryption of message
//! bodies under per-room data keys wrapped by master keys ([`envelope`], [`keyring`]),
//! chunked attachment encryption ([`attachment_stream`]), session tokens ([`token`]) and
//! the audit log's hash chain ([`audit_chain`]).
//!
//! Invariant: no secret (a key, a token, a password) is ever printed by a `Debug` or
//! `Display` implementation in this crate.

pub mod attachment_stream;
pub mod audit_chain;
pub mod checkpoint;
pub mod envelope;
pub mod keyring;
pub mod token;

pub use audit_chain::{AuditLink, ChainBreak, ChainHash, GENESIS_HASH};
pub use checkpoint::CheckpointKey;
pub use envelope::{BodyBinding, DecryptError, SecretKey};
pub use keyring::{Keyring, KeyringError};
pub use token::{SessionToken, TokenHash, random_password};

/// The operating system's randomness failed: nothing safe can be done without it.
#[derive(Debug, thiserror::Error)]
#[error("the operating system's random number generator failed: {0}")]
pub struct RandomnessUnavailable(String);

pub(crate) fn random_bytes<const N: usize>() -> Result<[u8; N], RandomnessUnavailable> {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).map_err(|err| RandomnessUnavailable(err.to_string()))?;
    Ok(bytes)
}
