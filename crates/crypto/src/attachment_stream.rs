//! Attachment contents, encrypted in authenticated chunks with the STREAM construction
//! (`aead-stream`, big-endian 32-bit counter, over XChaCha20-Poly1305), so a file of any
//! size is encrypted and decrypted a chunk at a time, never held whole in memory. STREAM
//! marks the final chunk, so truncating the file, or reordering, dropping or duplicating
//! chunks, fails authentication.
//!
//! File layout: `MAGIC (8) || stream nonce (19) || chunk* || last chunk`, each chunk
//! `CHUNK_LEN` plaintext bytes plus a 16-byte tag; the last may be shorter (even empty).

use crate::envelope::{DecryptError, SecretKey};
use crate::{RandomnessUnavailable, random_bytes};
use aead_stream::{DecryptorBE32, EncryptorBE32, Nonce, StreamBE32};
use chacha20poly1305::XChaCha20Poly1305;
use chacha20poly1305::aead::Payload;

pub const MAGIC: &[u8; 8] = b"CNCLAT01";
const STREAM_NONCE_LEN: usize = 19;
pub const HEADER_LEN: usize = MAGIC.len() + STREAM_NONCE_LEN;
/// Plaintext bytes per chunk.
pub const CHUNK_LEN: usize = 64 * 1024;
/// Bytes per sealed chunk (all but the last).
pub const SEALED_CHUNK_LEN: usize = CHUNK_LEN + 16;

type StreamNonce = Nonce<XChaCha20Poly1305, StreamBE32<XChaCha20Poly1305>>;

/// Encrypts one attachment, chunk by chunk.
pub struct ChunkSealer {
    encryptor: EncryptorBE32<XChaCha20Poly1305>,
    aad: Vec<u8>,
}

impl ChunkSealer {
    /// Starts a stream; returns the sealer and the header to write first.
    pub fn start(key: &SecretKey, aad: Vec<u8>) -> Result<(Self, Vec<u8>), RandomnessUnavailable> {
        let nonce_bytes = random_bytes::<STREAM_NONCE_LEN>()?;
        let nonce = StreamNonce::from(nonce_bytes);
        let encryptor = EncryptorBE32::new(key.key(), &nonce);
        let mut header = Vec::with_capacity(HEADER_LEN);
        header.extend_from_slice(MAGIC);
        header.extend_from_slice(&nonce_bytes);
        Ok((Self { encryptor, aad }, header))
    }

    /// Seals a full chunk of exactly [`CHUNK_LEN`] bytes.
    pub fn seal_chunk(&mut self, chunk: &[u8]) -> Vec<u8> {
        assert_eq!(chunk.len(), CHUNK_LEN, "only the last chunk may be short");
        self.encryptor
            .encrypt_next(Payload {
                msg: chunk,
                aad: &self.aad,
            })
            .expect("STREAM counter has room for 2^32 chunks (256 TiB)")
    }

    /// Seals the final chunk (at most [`CHUNK_LEN`] bytes, possibly empty).
    pub fn seal_last(self, chunk: &[u8]) -> Vec<u8> {
        assert!(chunk.len() <= CHUNK_LEN);
        self.encryptor
            .encrypt_last(Payload {
                msg: chunk,
                aad: &self.aad,
            })
            .expect("sealing the last chunk of an in-memory buffer cannot fail")
    }
}

/// Decrypts one attachment, chunk by chunk.
pub struct ChunkOpener {
    decryptor: DecryptorBE32<XChaCha20Poly1305>,
    aad: Vec<u8>,
}

impl ChunkOpener {
    pub fn start(key: &SecretKey, aad: Vec<u8>, header: &[u8]) -> Result<Self, DecryptError> {
        if header.len() != HEADER_LEN || &header[..MAGIC.len()] != MAGIC {
            return Err(DecryptError("not a Conclave attachment file"));
        }
        let nonce_bytes: [u8; STREAM_NONCE_LEN] = header[MAGIC.len()..]
            .try_into()
            .expect("header length checked");
        let decryptor = DecryptorBE32::new(key.key(), &StreamNonce::from(nonce_bytes));
        Ok(Self { decryptor, aad })
    }

    pub fn open_chunk(&mut self, sealed: &[u8]) -> Result<Vec<u8>, DecryptError> {
        self.decryptor
            .decrypt_next(Payload {
                msg: sealed,
                aad: &self.aad,
            })
            .map_err(|_| DecryptError("attachment chunk failed authentication"))
    }

    pub fn open_last(self, sealed: &[u8]) -> Result<Vec<u8>, DecryptError> {
        self.decryptor
            .decrypt_last(Payload {
                msg: sealed,
                aad: &self.aad,
            })
            .map_err(|_| DecryptError("attachment's last chunk failed authentication (truncated?)"))
    }
}

/// The number of sealed bytes an attachment of `plaintext_len` bytes takes on disk.
pub fn sealed_len(plaintext_len: u64) -> u64 {
    // A chunk is sealed as full only when more data follows it, so there is always one
    // last chunk and never an empty one after a full one.
    let chunks = plaintext_len.div_ceil(CHUNK_LEN as u64).max(1);
    HEADER_LEN as u64 + plaintext_len + chunks * 16
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seal_all(key: &SecretKey, data: &[u8]) -> Vec<u8> {
        let (mut sealer, mut out) = ChunkSealer::start(key, b"att-1".to_vec()).unwrap();
        let mut rest = data;
        // A chunk is sealed as full only when more data follows, as a streaming upload does.
        while rest.len() > CHUNK_LEN {
            out.extend(sealer.seal_chunk(&rest[..CHUNK_LEN]));
            rest = &rest[CHUNK_LEN..];
        }
        out.extend(sealer.seal_last(rest));
        out
    }

    fn open_all(key: &SecretKey, aad: &[u8], file: &[u8]) -> Result<Vec<u8>, DecryptError> {
        let mut opener = ChunkOpener::start(key, aad.to_vec(), &file[..HEADER_LEN])?;
        let mut body = &file[HEADER_LEN..];
        let mut out = Vec::new();
        while body.len() > SEALED_CHUNK_LEN {
            out.extend(opener.open_chunk(&body[..SEALED_CHUNK_LEN])?);
            body = &body[SEALED_CHUNK_LEN..];
        }
        out.extend(opener.open_last(body)?);
        Ok(out)
    }

    #[test]
    fn round_trips_at_every_boundary() {
        let key = SecretKey::generate().unwrap();
        for len in [
            0,
            1,
            CHUNK_LEN - 1,
            CHUNK_LEN,
            CHUNK_LEN + 1,
            3 * CHUNK_LEN + 17,
        ] {
            let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let file = seal_all(&key, &data);
            assert_eq!(file.len() as u64, sealed_len(len as u64), "len {len}");
            assert_eq!(open_all(&key, b"att-1", &file).unwrap(), data, "len {len}");
        }
    }

    #[test]
    fn truncation_reordering_and_rebinding_fail() {
        let key = SecretKey::generate().unwrap();
        let data = vec![42u8; 3 * CHUNK_LEN];
        let file = seal_all(&key, &data);
        // Truncated after the first full chunk: the last chunk marker is missing.
        assert!(open_all(&key, b"att-1", &file[..HEADER_LEN + SEALED_CHUNK_LEN]).is_err());
        // Two chunks swapped.
        let mut swapped = file.clone();
        let (a, b) = (HEADER_LEN, HEADER_LEN + SEALED_CHUNK_LEN);
        let first: Vec<u8> = swapped[a..b].to_vec();
        let second: Vec<u8> = swapped[b..b + SEALED_CHUNK_LEN].to_vec();
        swapped[a..b].copy_from_slice(&second);
        swapped[b..b + SEALED_CHUNK_LEN].copy_from_slice(&first);
        assert!(open_all(&key, b"att-1", &swapped).is_err());
        // Bound to its attachment id.
        assert!(open_all(&key, b"att-2", &file).is_err());
        // Not a Conclave file.
        assert!(ChunkOpener::start(&key, vec![], &[0u8; HEADER_LEN]).is_err());
    }
}
