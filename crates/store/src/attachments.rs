//! Attachment metadata. Contents live encrypted in files under the data directory.

use crate::DbConnection;
use crate::error::StoreError;
use crate::schema::attachments;
use diesel::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, Queryable, Selectable, Insertable)]
#[diesel(table_name = attachments)]
pub struct AttachmentRecord {
    pub id: String,
    pub room_id: String,
    pub uploader_id: String,
    pub name: String,
    pub content_type: String,
    pub size_bytes: i64,
    pub sha256: String,
    pub epoch: i64,
    /// Relative to the attachments directory.
    pub storage_path: String,
    pub created_at: i64,
}

pub fn insert(conn: &mut DbConnection, record: &AttachmentRecord) -> Result<(), StoreError> {
    diesel::insert_into(attachments::table)
        .values((
            attachments::id.eq(&record.id),
            attachments::room_id.eq(&record.room_id),
            attachments::uploader_id.eq(&record.uploader_id),
            attachments::name.eq(&record.name),
            attachments::content_type.eq(&record.content_type),
            attachments::size_bytes.eq(record.size_bytes),
            attachments::sha256.eq(&record.sha256),
            attachments::epoch.eq(record.epoch),
            attachments::storage_path.eq(&record.storage_path),
            attachments::created_at.eq(record.created_at),
        ))
        .execute(conn)?;
    Ok(())
}

pub fn find(conn: &mut DbConnection, id: &str) -> Result<Option<AttachmentRecord>, StoreError> {
    Ok(attachments::table
        .find(id)
        .select(AttachmentRecord::as_select())
        .get_result(conn)
        .optional()?)
}
