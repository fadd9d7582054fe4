//! Password hashing with argon2id at the crate's defaults (OWASP's recommended
//! m=19 MiB, t=2, p=1), stored in PHC string form so parameters can be raised later
//! without invalidating existing hashes.

use crate::error::AuthError;
use argon2::{Argon2, PasswordHasher, PasswordVerifier};
use std::sync::OnceLock;

pub fn hash(password: &str) -> Result<String, AuthError> {
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|hash| hash.to_string())
        .map_err(|err| AuthError::Hashing(err.to_string()))
}

/// Whether `password` matches the stored PHC `hash`. A malformed stored hash never matches.
pub fn verify(password: &str, hash: &str) -> bool {
    Argon2::default()
        .verify_password(password.as_bytes(), hash)
        .is_ok()
}

/// Spends the same work as a real verification, so an unknown username takes as long
/// to refuse as a wrong password and response times do not reveal which accounts exist.
pub fn verify_against_nothing(password: &str) {
    static DUMMY: OnceLock<String> = OnceLock::new();
    let dummy = DUMMY.get_or_init(|| hash("conclave-timing-equalizer").unwrap_or_default());
    let _ = verify(password, dummy);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_verify_and_are_salted() {
        let a = hash("correct horse battery staple").unwrap();
        let b = hash("correct horse battery staple").unwrap();
        assert!(a.starts_with("$argon2id$"));
        assert_ne!(a, b, "each hash has its own salt");
        assert!(verify("correct horse battery staple", &a));
        assert!(!verify("correct horse battery stapl", &a));
        assert!(!verify("anything", "not a phc string"));
    }
}
