//! OpenID Connect sign-ins in progress, in the database so that any node can finish a
//! flow another node started. Rows are used once and expire within minutes.

use crate::DbConnection;
use crate::error::StoreError;
use crate::schema::oidc_flows;
use conclave_core::{Timestamp, UserId};
use diesel::prelude::*;

#[derive(Clone, PartialEq, Eq, Queryable, Selectable)]
#[diesel(table_name = oidc_flows)]
pub struct FlowRecord {
    /// SHA-256 (hex) of the `state` parameter.
    pub id: String,
    pub provider: String,
    pub nonce: String,
    pub pkce_verifier: String,
    pub binding_hash: Vec<u8>,
    /// `browser` or `token`.
    pub mode: String,
    pub return_to: Option<String>,
    pub completed_user_id: Option<String>,
    pub created_at: i64,
    pub expires_at: i64,
}

impl std::fmt::Debug for FlowRecord {
    // The nonce and PKCE verifier stay out of debug output.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlowRecord")
            .field("provider", &self.provider)
            .field("mode", &self.mode)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

pub fn insert(conn: &mut DbConnection, flow: &FlowRecord) -> Result<(), StoreError> {
    diesel::insert_into(oidc_flows::table)
        .values((
            oidc_flows::id.eq(&flow.id),
            oidc_flows::provider.eq(&flow.provider),
            oidc_flows::nonce.eq(&flow.nonce),
            oidc_flows::pkce_verifier.eq(&flow.pkce_verifier),
            oidc_flows::binding_hash.eq(&flow.binding_hash),
            oidc_flows::mode.eq(&flow.mode),
            oidc_flows::return_to.eq(&flow.return_to),
            oidc_flows::completed_user_id.eq(&flow.completed_user_id),
            oidc_flows::created_at.eq(flow.created_at),
            oidc_flows::expires_at.eq(flow.expires_at),
        ))
        .execute(conn)?;
    Ok(())
}

pub fn find(conn: &mut DbConnection, id: &str) -> Result<Option<FlowRecord>, StoreError> {
    Ok(oidc_flows::table
        .find(id)
        .select(FlowRecord::as_select())
        .get_result(conn)
        .optional()?)
}

/// Deletes a flow; returns whether this call did (so two nodes cannot both use it).
pub fn take(conn: &mut DbConnection, id: &str) -> Result<bool, StoreError> {
    Ok(diesel::delete(oidc_flows::table.find(id)).execute(conn)? == 1)
}

/// Marks a token-mode flow as completed by `user`, to be exchanged for a session once.
/// Marks an API-client flow signed in by `user`, rebinding it to `binding` (what the
/// exchange must then present); only once.
pub fn complete(
    conn: &mut DbConnection,
    id: &str,
    user: UserId,
    binding: &[u8],
) -> Result<bool, StoreError> {
    Ok(diesel::update(
        oidc_flows::table
            .find(id)
            .filter(oidc_flows::completed_user_id.is_null()),
    )
    .set((
        oidc_flows::completed_user_id.eq(user.to_string()),
        oidc_flows::binding_hash.eq(binding.to_vec()),
    ))
    .execute(conn)?
        == 1)
}

/// Removes flows that expired before `now`; returns how many.
pub fn delete_expired(conn: &mut DbConnection, now: Timestamp) -> Result<usize, StoreError> {
    Ok(
        diesel::delete(oidc_flows::table.filter(oidc_flows::expires_at.lt(now.as_micros())))
            .execute(conn)?,
    )
}
