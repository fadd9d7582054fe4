//! HTTP routes of the audit service (auditor role).

use crate::{AuditEventView, Verification, query, verify};
use actix_web::web;
use conclave_api::{ApiError, ErrorBody};
use conclave_auth::{Auditor, AuthState};
use conclave_core::ErrorCode;
use conclave_store::audit::AuditFilter;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, OpenApi, ToSchema};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/api/v1/audit/events").route(web::get().to(list_events)))
        .service(web::resource("/api/v1/audit/export").route(web::get().to(export_events)))
        .service(web::resource("/api/v1/audit/verification").route(web::get().to(verification)));
}

#[derive(OpenApi)]
#[openapi(
    paths(list_events, verification, export_events),
    components(schemas(AuditEventView, AuditPage, Verification, crate::export::Format)),
    tags((name = "audit", description = "The tamper-evident audit log (auditor role)"))
)]
pub struct AuditApi;

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// RFC 3339: events at or after.
    pub from: Option<String>,
    /// RFC 3339: events before.
    pub until: Option<String>,
    pub actor_id: Option<String>,
    /// For example `auth.login`, `user.suspend`, `policy.org_change`.
    pub action: Option<String>,
    pub target_id: Option<String>,
    /// Cursor: the `next_after` of the previous page.
    pub after: Option<i64>,
    /// 1 to 1000, default 100 (a value outside is clamped into that range).
    #[param(value_type = Option<u64>, maximum = 4_294_967_295_u64)]
    pub limit: Option<u32>,
}

#[derive(Serialize, ToSchema)]
pub struct AuditPage {
    pub events: Vec<AuditEventView>,
    /// Pass as `after` for the next page; absent on the last.
    pub next_after: Option<i64>,
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ExportQuery {
    /// `jsonl` or `csv`.
    pub format: crate::export::Format,
    /// RFC 3339: events at or after.
    pub from: Option<String>,
    /// RFC 3339: events before.
    pub until: Option<String>,
    pub actor_id: Option<String>,
    pub action: Option<String>,
    pub target_id: Option<String>,
}

/// Streams the audit log (filtered) as JSONL or CSV, a page at a time.
#[utoipa::path(get, path = "/api/v1/audit/export", tag = "audit", security(("bearer" = [])), params(ExportQuery),
    responses((status = 200, description = "The events, oldest first: JSON lines, or RFC 4180 CSV with a header row",
            content((String = "application/x-ndjson"), (String = "text/csv"))),
        (status = 401, description = "No valid session", body = ErrorBody), (status = 403, description = "Not an auditor", body = ErrorBody),
        (status = 422, description = "A bad format or filter", body = ErrorBody)))]
async fn export_events(
    state: web::Data<AuthState>,
    _auditor: Auditor,
    params: web::Query<ExportQuery>,
) -> Result<actix_web::HttpResponse, ApiError> {
    const PAGE: u32 = 1_000;
    let params = params.into_inner();
    let format = params.format;
    let filter = AuditFilter {
        from: instant("from", params.from.as_deref())?,
        until: instant("until", params.until.as_deref())?,
        actor_id: params.actor_id,
        action: params.action,
        target_id: params.target_id,
    };
    let db = state.db.clone();
    // (position, first page?, done?) per step; each step reads one page off the async executor.
    let body = futures_util::stream::unfold((0i64, true, false), move |(after, first, done)| {
        let (db, filter) = (db.clone(), filter.clone());
        async move {
            if done {
                return None;
            }
            let page = db
                .run(move |conn| {
                    query(conn, &filter, after, PAGE).map_err(conclave_auth::AuthError::from)
                })
                .await;
            match page {
                Ok(events) => {
                    let last = events.last().map_or(after, |e| e.seq);
                    let finished = events.len() < PAGE as usize;
                    let bytes = crate::export::encode(format, &events, first);
                    Some((
                        Ok::<_, actix_web::Error>(actix_web::web::Bytes::from(bytes)),
                        (last, false, finished),
                    ))
                }
                Err(err) => Some((
                    Err(actix_web::error::ErrorServiceUnavailable(ApiError::from(
                        err,
                    ))),
                    (after, false, true),
                )),
            }
        }
    });
    Ok(actix_web::HttpResponse::Ok()
        .content_type(format.content_type())
        .insert_header((
            actix_web::http::header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"audit-log.{}\"", format.extension()),
        ))
        .streaming(body))
}

fn instant(
    field: &'static str,
    raw: Option<&str>,
) -> Result<Option<conclave_core::Timestamp>, ApiError> {
    raw.map(|text| {
        conclave_core::Timestamp::parse_rfc3339(text).map_err(|_| {
            ApiError::new(
                ErrorCode::InvalidInput,
                format!("{field}: not an RFC 3339 time"),
            )
        })
    })
    .transpose()
}

/// Audit events, oldest first, filtered and paged by cursor.
#[utoipa::path(get, path = "/api/v1/audit/events", tag = "audit", security(("bearer" = [])), params(AuditQuery),
    responses((status = 200, body = AuditPage), (status = 401, description = "No valid session", body = ErrorBody),
        (status = 403, description = "Not an auditor", body = ErrorBody), (status = 422, description = "A bad filter", body = ErrorBody)))]
async fn list_events(
    state: web::Data<AuthState>,
    _auditor: Auditor,
    params: web::Query<AuditQuery>,
) -> Result<web::Json<AuditPage>, ApiError> {
    let params = params.into_inner();
    let filter = AuditFilter {
        from: instant("from", params.from.as_deref())?,
        until: instant("until", params.until.as_deref())?,
        actor_id: params.actor_id,
        action: params.action,
        target_id: params.target_id,
    };
    let (after, limit) = (
        params.after.unwrap_or(0),
        params.limit.unwrap_or(100).clamp(1, 1_000),
    );
    let events = state
        .db
        .run(move |conn| query(conn, &filter, after, limit).map_err(conclave_auth::AuthError::from))
        .await?;
    let next_after = (events.len() == limit as usize)
        .then(|| events.last().map(|e| e.seq))
        .flatten();
    Ok(web::Json(AuditPage { events, next_after }))
}

/// Checks the whole hash chain now.
#[utoipa::path(get, path = "/api/v1/audit/verification", tag = "audit", security(("bearer" = [])),
    responses((status = 200, body = Verification), (status = 401, description = "No valid session", body = ErrorBody),
        (status = 403, description = "Not an auditor", body = ErrorBody)))]
async fn verification(
    state: web::Data<AuthState>,
    key: web::Data<conclave_crypto::CheckpointKey>,
    _auditor: Auditor,
) -> Result<web::Json<Verification>, ApiError> {
    let key = key.get_ref().clone();
    Ok(web::Json(
        state
            .db
            .run(move |conn| verify(conn, &key).map_err(conclave_auth::AuthError::from))
            .await?,
    ))
}
