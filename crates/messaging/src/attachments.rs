//! Attachments: streamed from the request to disk in authenticated chunks (never held
//! whole in memory), under the room's epoch data key, with the SHA-256 of the plaintext
//! computed on the way; streamed back decrypted, chunk by chunk, to room members only.
//! A failed or oversize upload leaves no file and no row behind.

use crate::error::MessagingError;
use crate::keys::{self, KeyCache};
use crate::rooms::{locked_membership, membership};
use crate::settings::MessagingState;
use crate::wire::AttachmentView;
use actix_web::web::Bytes;
use conclave_core::{AttachmentId, RoomId, Timestamp, UserId};
use conclave_crypto::attachment_stream::{
    CHUNK_LEN, ChunkOpener, ChunkSealer, HEADER_LEN, SEALED_CHUNK_LEN, sealed_len,
};
use conclave_crypto::envelope::associated_data;
use conclave_store::attachments::{self as attachment_store, AttachmentRecord};
use conclave_store::{messages as message_store, write_transaction};
use futures_util::{Stream, StreamExt};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn aad(attachment_id: &str, room_id: &str, epoch: i64) -> Vec<u8> {
    associated_data(
        "conclave-attachment-v1",
        &[
            attachment_id.as_bytes(),
            room_id.as_bytes(),
            &epoch.to_be_bytes(),
        ],
    )
}

/// A file name as shown to others: 1 to 255 characters, no control characters or path
/// separators.
pub fn parse_name(raw: &str) -> Result<String, MessagingError> {
    let name = raw.trim();
    if name.is_empty()
        || name.chars().count() > 255
        || name
            .chars()
            .any(|c| c.is_control() || c == '/' || c == '\\')
    {
        return Err(MessagingError::invalid(
            "name",
            "must be 1 to 255 characters without control characters or slashes",
        ));
    }
    Ok(name.to_owned())
}

/// A `type/subtype` media type, lower-cased, parameters dropped; anything else is stored
/// as `application/octet-stream`.
pub fn normalize_content_type(raw: Option<&str>) -> String {
    let essence = raw
        .unwrap_or_default()
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    let token = |part: &str| {
        !part.is_empty()
            && part
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&b))
    };
    match essence.split_once('/') {
        Some((kind, subtype)) if token(kind) && token(subtype) => essence,
        _ => "application/octet-stream".to_owned(),
    }
}

/// Removes a partly written file unless the upload completes.
struct PartialFile {
    path: PathBuf,
    keep: bool,
}

impl Drop for PartialFile {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

pub struct Upload {
    pub room_id: RoomId,
    pub uploader: UserId,
    pub name: String,
    pub content_type: String,
    /// From `Content-Length`, when the client sent one.
    pub declared_len: Option<u64>,
}

pub async fn upload<S, E>(
    state: &MessagingState,
    now: Timestamp,
    upload: Upload,
    mut body: S,
) -> Result<AttachmentView, MessagingError>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    let max = state.settings.max_attachment_bytes;
    let too_large = || MessagingError::TooLarge(format!("attachments are limited to {max} bytes"));
    if upload.declared_len.is_some_and(|len| len > max) {
        return Err(too_large());
    }
    let (room_id, uploader) = (upload.room_id, upload.uploader);
    let epoch = keys::epoch_of(now);
    let keyring = Arc::clone(&state.keyring);
    let (content_type, declared) = (
        upload.content_type.clone(),
        upload.declared_len.unwrap_or(0),
    );
    let (data_key, policy_max) = state
        .auth
        .db
        .run(move |conn| {
            write_transaction(conn, |conn| {
                locked_membership(conn, room_id, uploader)?;
                crate::rooms::require_writable(conn, room_id)?;
                // File sharing, type and size by policy, before a byte is stored.
                let policy = conclave_policy::effective(conn, uploader, Some(room_id))?;
                policy.check_file(&content_type, declared)?;
                let key = keys::data_key_for_writing(conn, &keyring, room_id, epoch, now)?;
                Ok::<_, MessagingError>((key, policy.file_max_bytes))
            })
        })
        .await?;
    let max = max.min(policy_max);
    let too_large = || MessagingError::TooLarge(format!("attachments are limited to {max} bytes"));

    let attachment_id = AttachmentId::new();
    let relative = format!("{room_id}/{attachment_id}.bin");
    let final_path = state.settings.attachments_dir.join(&relative);
    let part_path = final_path.with_extension("part");
    if let Some(parent) = part_path.parent() {
        tokio::fs::create_dir_all(parent).await?;
    }
    let mut partial = PartialFile {
        path: part_path.clone(),
        keep: false,
    };
    let mut file = tokio::fs::File::create(&part_path).await?;
    let (mut sealer, header) = ChunkSealer::start(
        &data_key,
        aad(&attachment_id.to_string(), &room_id.to_string(), epoch),
    )?;
    file.write_all(&header).await?;
    let mut hasher = Sha256::new();
    let mut pending: Vec<u8> = Vec::with_capacity(CHUNK_LEN * 2);
    let mut total: u64 = 0;
    while let Some(piece) = body.next().await {
        let piece = piece
            .map_err(|err| MessagingError::invalid("body", format!("upload interrupted: {err}")))?;
        total += piece.len() as u64;
        if total > max {
            return Err(too_large());
        }
        hasher.update(&piece);
        pending.extend_from_slice(&piece);
        // Seal a chunk only when more data follows it, so the last one is marked as such.
        while pending.len() > CHUNK_LEN {
            let sealed = sealer.seal_chunk(&pending[..CHUNK_LEN]);
            file.write_all(&sealed).await?;
            pending.drain(..CHUNK_LEN);
        }
    }
    file.write_all(&sealer.seal_last(&pending)).await?;
    file.flush().await?;
    file.sync_all().await?;
    drop(file);
    tokio::fs::rename(&part_path, &final_path).await?;
    partial.path = final_path.clone();

    let record = AttachmentRecord {
        id: attachment_id.to_string(),
        room_id: room_id.to_string(),
        uploader_id: uploader.to_string(),
        name: upload.name,
        content_type: upload.content_type,
        size_bytes: i64::try_from(total).unwrap_or(i64::MAX),
        sha256: hex::encode(hasher.finalize()),
        epoch,
        storage_path: relative,
        created_at: now.as_micros(),
    };
    let stored = record.clone();
    state
        .auth
        .db
        .run(move |conn| attachment_store::insert(conn, &stored).map_err(MessagingError::from))
        .await?;
    partial.keep = true;
    Ok(AttachmentView {
        id: attachment_id,
        name: record.name,
        content_type: record.content_type,
        size_bytes: record.size_bytes,
        sha256: record.sha256,
    })
}

/// An attachment ready to stream: its metadata and a stream of decrypted chunks.
pub struct Download {
    pub record: AttachmentRecord,
    pub body: std::pin::Pin<Box<dyn Stream<Item = Result<Bytes, std::io::Error>>>>,
}

pub async fn download(
    state: &MessagingState,
    viewer: UserId,
    room_id: RoomId,
    attachment_id: AttachmentId,
) -> Result<Download, MessagingError> {
    let now = state.auth.clock.now();
    let keyring = Arc::clone(&state.keyring);
    let (record, key) = state
        .auth
        .db
        .run(move |conn| {
            // A write: downloading is reading the message, which starts a burn-on-read timer.
            write_transaction(conn, |conn| {
                membership(conn, room_id, viewer)?;
                let record = attachment_store::find(conn, &attachment_id.to_string())?
                    .filter(|a| a.room_id == room_id.to_string())
                    .ok_or(MessagingError::NotFound)?;
                if !conclave_policy::effective(conn, viewer, Some(room_id))?.file_download_enabled {
                    return Err(MessagingError::PolicyViolation(
                        "file downloads are off (the policy's file_download_enabled)".into(),
                    ));
                }
                // Visible with its message, as a read of it: once the message is past the
                // viewer's deadline or deleted, so is the file. Before it is sent, only the
                // uploader sees it.
                let visible = match message_store::referencing_attachment(conn, attachment_id)? {
                    Some(message) => {
                        message.deleted_at.is_none()
                            && crate::messages::read_by(conn, &message, viewer, now)?
                    }
                    None => record.uploader_id == viewer.to_string(),
                };
                if !visible {
                    return Err(MessagingError::NotFound);
                }
                let key = KeyCache::default()
                    .get(conn, &keyring, room_id, record.epoch)?
                    .clone();
                Ok::<_, MessagingError>((record, key))
            })
        })
        .await?;
    let path = state.settings.attachments_dir.join(&record.storage_path);
    let mut file = open_checked(&path, &record).await?;
    let mut header = vec![0u8; HEADER_LEN];
    file.read_exact(&mut header).await?;
    let opener = ChunkOpener::start(
        &key,
        aad(&record.id, &record.room_id, record.epoch),
        &header,
    )?;
    let remaining = sealed_len(u64::try_from(record.size_bytes).unwrap_or(0)) - HEADER_LEN as u64;
    let body = futures_util::stream::unfold(Some((file, opener, remaining)), |state| async move {
        let (mut file, mut opener, remaining) = state?;
        let take = remaining.min(SEALED_CHUNK_LEN as u64) as usize;
        let mut sealed = vec![0u8; take];
        if let Err(err) = file.read_exact(&mut sealed).await {
            return Some((Err(err), None));
        }
        let left = remaining - take as u64;
        let opened = if left == 0 {
            opener.open_last(&sealed).map(|p| (p, None))
        } else {
            opener.open_chunk(&sealed).map(|p| (p, Some(opener)))
        };
        match opened {
            Ok((plain, Some(opener))) => Some((Ok(Bytes::from(plain)), Some((file, opener, left)))),
            Ok((plain, None)) => Some((Ok(Bytes::from(plain)), None)),
            Err(err) => {
                tracing::error!(error = %err, "attachment failed to decrypt mid-stream");
                Some((
                    Err(std::io::Error::other("attachment failed to decrypt")),
                    None,
                ))
            }
        }
    });
    Ok(Download {
        record,
        body: Box::pin(body),
    })
}

/// Decrypts a stored attachment into `dest` (compliance exports), chunk by chunk in
/// constant memory, checking every chunk and the file's length; a failure removes
/// whatever was written.
pub fn decrypt_to_file(
    conn: &mut conclave_store::DbConnection,
    keyring: &conclave_crypto::Keyring,
    attachments_dir: &Path,
    record: &AttachmentRecord,
    dest: &Path,
) -> Result<(), MessagingError> {
    use std::io::{Read, Write};
    let room_id: RoomId = record
        .room_id
        .parse()
        .map_err(|_| MessagingError::NotFound)?;
    let key = KeyCache::default()
        .get(conn, keyring, room_id, record.epoch)?
        .clone();
    let mut file = std::fs::File::open(attachments_dir.join(&record.storage_path))?;
    let expected = sealed_len(u64::try_from(record.size_bytes).unwrap_or(0));
    if file.metadata()?.len() != expected {
        return Err(MessagingError::Decrypt(conclave_crypto::DecryptError(
            "attachment file has the wrong length",
        )));
    }
    let mut header = vec![0u8; HEADER_LEN];
    file.read_exact(&mut header)?;
    let mut opener = ChunkOpener::start(
        &key,
        aad(&record.id, &record.room_id, record.epoch),
        &header,
    )?;
    let written = (|| -> Result<(), MessagingError> {
        let mut out = std::io::BufWriter::new(std::fs::File::create(dest)?);
        let mut remaining = expected - HEADER_LEN as u64;
        let mut sealed = vec![0u8; SEALED_CHUNK_LEN];
        loop {
            let take = remaining.min(SEALED_CHUNK_LEN as u64) as usize;
            file.read_exact(&mut sealed[..take])?;
            remaining -= take as u64;
            if remaining == 0 {
                out.write_all(&opener.open_last(&sealed[..take])?)?;
                break;
            }
            out.write_all(&opener.open_chunk(&sealed[..take])?)?;
        }
        out.flush()?;
        Ok(())
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(dest);
    }
    written
}

/// Opens the file and checks its length against the metadata before any byte is sent,
/// so a truncated or missing file is an error response, not a cut-off download.
async fn open_checked(
    path: &Path,
    record: &AttachmentRecord,
) -> Result<tokio::fs::File, MessagingError> {
    let file = tokio::fs::File::open(path).await?;
    let expected = sealed_len(u64::try_from(record.size_bytes).unwrap_or(0));
    let actual = file.metadata().await?.len();
    if actual != expected {
        return Err(MessagingError::Decrypt(conclave_crypto::DecryptError(
            "attachment file has the wrong length",
        )));
    }
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_types() {
        assert_eq!(parse_name(" report.pdf ").unwrap(), "report.pdf");
        assert!(parse_name("../etc/passwd").is_err());
        assert!(parse_name("").is_err());
        assert!(parse_name("a\nb").is_err());
        assert_eq!(
            normalize_content_type(Some("Image/PNG; charset=x")),
            "image/png"
        );
        assert_eq!(
            normalize_content_type(Some("text/html<script>")),
            "application/octet-stream"
        );
        assert_eq!(normalize_content_type(None), "application/octet-stream");
    }
}
