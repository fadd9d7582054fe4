//! Conclave's cryptography, built only from maintained primitives (sha2, getrandom):
//! session tokens and their stored hashes, and the audit log's SHA-256 hash chain.
//! Envelope encryption of message content arrives with the messaging service.
//!
//! Invariant: no secret (a token, a password) is ever printed by a `Debug` or `Display`
//! implementation in this crate.

pub mod audit_chain;
pub mod token;

pub use audit_chain::{AuditLink, ChainBreak, ChainHash, GENESIS_HASH};
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
