//! Session tokens: 256 random bits, given to the client once and stored only as a SHA-256
//! hash, so a copy of the database yields no usable session.

use crate::{RandomnessUnavailable, random_bytes};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};
use std::fmt;

/// A bearer token as the client holds it. Never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct SessionToken(String);

impl SessionToken {
    /// A fresh token of 256 random bits, URL-safe base64 (43 characters).
    pub fn generate() -> Result<Self, RandomnessUnavailable> {
        Ok(Self(URL_SAFE_NO_PAD.encode(random_bytes::<32>()?)))
    }

    /// Wraps a token received from a client. Its shape is not checked: an unknown token
    /// simply matches no stored hash.
    pub fn from_client(raw: &str) -> Self {
        Self(raw.to_owned())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn hash(&self) -> TokenHash {
        TokenHash(Sha256::digest(self.0.as_bytes()).into())
    }

    /// The CSRF token that goes with this session for cookie-authenticated browsers
    /// (a double-submit value the page must echo in `X-CSRF-Token`). Derived rather than
    /// stored: it is a domain-separated hash of the session token, so it proves the
    /// page could read the login response without revealing the token.
    pub fn csrf_token(&self) -> String {
        let mut hasher = Sha256::new();
        hasher.update(b"conclave-csrf-v1\0");
        hasher.update(self.0.as_bytes());
        hex::encode(hasher.finalize())
    }
}

impl fmt::Debug for SessionToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionToken(<redacted>)")
    }
}

/// What the database keeps of a token.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TokenHash(pub [u8; 32]);

impl TokenHash {
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TokenHash({}…)", &hex::encode(self.0)[..8])
    }
}

/// A random password for a new local account or the first admin, to be changed at first
/// login: 20 characters from an alphabet without look-alikes (about 116 bits).
pub fn random_password() -> Result<String, RandomnessUnavailable> {
    const ALPHABET: &[u8] = b"abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    // Rejection sampling keeps every character equally likely.
    let limit = 256 - (256 % ALPHABET.len());
    let mut password = String::with_capacity(20);
    while password.len() < 20 {
        for byte in random_bytes::<32>()? {
            if (byte as usize) < limit && password.len() < 20 {
                password.push(ALPHABET[byte as usize % ALPHABET.len()] as char);
            }
        }
    }
    Ok(password)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_256_bits_and_distinct() {
        let a = SessionToken::generate().unwrap();
        let b = SessionToken::generate().unwrap();
        assert_eq!(URL_SAFE_NO_PAD.decode(a.expose()).unwrap().len(), 32);
        assert_ne!(a, b);
        assert_ne!(a.hash(), b.hash());
    }

    #[test]
    fn hash_is_sha256_of_the_token_text() {
        let token = SessionToken::from_client("abc");
        assert_eq!(
            hex::encode(token.hash().0),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn secrets_do_not_print() {
        let token = SessionToken::generate().unwrap();
        assert!(!format!("{token:?}").contains(token.expose()));
    }

    #[test]
    fn csrf_token_is_bound_to_the_session_and_differs_from_it() {
        let token = SessionToken::generate().unwrap();
        assert_eq!(token.csrf_token(), token.csrf_token());
        assert_ne!(
            token.csrf_token(),
            SessionToken::generate().unwrap().csrf_token()
        );
        assert!(!token.csrf_token().contains(token.expose()));
    }

    #[test]
    fn random_passwords() {
        let a = random_password().unwrap();
        assert_eq!(a.len(), 20);
        assert!(
            a.chars()
                .all(|c| c.is_ascii_alphanumeric() && !"l0O1I".contains(c))
        );
        assert_ne!(a, random_password().unwrap());
    }
}
