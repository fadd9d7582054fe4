//! HTTP routes of compliance exports (compliance officers only: an admin or auditor may
//! not run one). Handlers parse, call the service function and map its error.

use crate::exports::{
    self, ExportError, ExportJobView, ExportRequest, MANIFEST, Progress, SIGNATURE,
};
use actix_web::{HttpRequest, HttpResponse, web};
use conclave_api::{ApiError, ErrorBody};
use conclave_auth::extract::audit_context;
use conclave_auth::{AuthState, ComplianceOfficer};
use conclave_core::ErrorCode;
use conclave_store::StoreError;
use std::path::PathBuf;
use utoipa::OpenApi;

/// Where export bundles are written (registered as app data by the server).
#[derive(Clone, Debug)]
pub struct ExportsDir(pub PathBuf);

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/api/v1/compliance/exports")
            .route(web::get().to(list_exports))
            .route(web::post().to(start_export)),
    )
    .service(
        web::resource("/api/v1/compliance/exports/{export_id}").route(web::get().to(get_export)),
    )
    .service(
        web::resource("/api/v1/compliance/exports/{export_id}/files/{path:.+}")
            .route(web::get().to(download_file)),
    );
}

impl From<ExportError> for ApiError {
    fn from(err: ExportError) -> Self {
        match err {
            ExportError::Invalid(message) => ApiError::new(ErrorCode::InvalidInput, message),
            ExportError::NotFound => ApiError::not_found(),
            ExportError::Store(StoreError::Unavailable(_)) => {
                ApiError::unavailable("the database is unavailable; retry shortly")
            }
            other => ApiError::internal(&other),
        }
    }
}

#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct ExportList {
    pub exports: Vec<ExportJobView>,
}

#[derive(OpenApi)]
#[openapi(
    paths(list_exports, start_export, get_export, download_file),
    components(schemas(ExportRequest, ExportJobView, ExportList, Progress)),
    tags((name = "compliance", description = "Retention policies, legal holds, the sweeper and exports (compliance officers)"))
)]
pub struct ExportsApi;

/// Export jobs, newest first, with their progress.
#[utoipa::path(get, path = "/api/v1/compliance/exports", tag = "compliance", security(("bearer" = [])),
    responses((status = 200, body = ExportList), (status = 401, description = "No valid session", body = ErrorBody),
        (status = 403, description = "Not a compliance officer", body = ErrorBody)))]
async fn list_exports(
    state: web::Data<AuthState>,
    _officer: ComplianceOfficer,
) -> Result<web::Json<ExportList>, ApiError> {
    Ok(web::Json(ExportList {
        exports: state.db.run(exports::list).await?,
    }))
}

/// Start an export of a time window, optionally only some rooms, custodians or what a
/// legal hold covers (audited). A worker runs it; watch its `status` and `progress`.
#[utoipa::path(post, path = "/api/v1/compliance/exports", tag = "compliance", security(("bearer" = [])),
    request_body = ExportRequest,
    responses((status = 201, body = ExportJobView), (status = 401, description = "No valid session", body = ErrorBody),
        (status = 403, description = "Not a compliance officer", body = ErrorBody), (status = 422, description = "Bad format, window, room, custodian or hold", body = ErrorBody)))]
async fn start_export(
    state: web::Data<AuthState>,
    req: HttpRequest,
    officer: ComplianceOfficer,
    body: conclave_api::extract::Json<ExportRequest>,
) -> Result<HttpResponse, ApiError> {
    let (context, now, request) = (
        audit_context(&req, &officer),
        state.clock.now(),
        body.into_inner(),
    );
    let job = state
        .db
        .run(move |conn| exports::start(conn, &context, now, &request, None))
        .await?;
    Ok(HttpResponse::Created().json(job))
}

/// One export job; once `done`, its files are listed in the manifest
/// (`files/manifest.json`) and downloadable one by one.
#[utoipa::path(get, path = "/api/v1/compliance/exports/{export_id}", tag = "compliance", security(("bearer" = [])),
    params(("export_id" = String, Path)),
    responses((status = 200, body = ExportJobView), (status = 401, description = "No valid session", body = ErrorBody),
        (status = 403, description = "Not a compliance officer", body = ErrorBody), (status = 404, description = "No such export", body = ErrorBody)))]
async fn get_export(
    state: web::Data<AuthState>,
    _officer: ComplianceOfficer,
    path: web::Path<String>,
) -> Result<web::Json<ExportJobView>, ApiError> {
    let id = path.into_inner();
    Ok(web::Json(
        state.db.run(move |conn| exports::get(conn, &id)).await?,
    ))
}

/// Download one file of a finished export: `manifest.json`, `manifest.sig`, or any path
/// the manifest lists (streamed; the manifest's SHA-256 checks it). Only the compliance
/// officer who ran the export may (anyone with the role, for a scheduled one).
#[utoipa::path(get, path = "/api/v1/compliance/exports/{export_id}/files/{path}", tag = "compliance", security(("bearer" = [])),
    params(("export_id" = String, Path), ("path" = String, Path, description = "A path the manifest lists, or manifest.json / manifest.sig")),
    responses((status = 200, description = "The file", content_type = "application/octet-stream"), (status = 401, description = "No valid session", body = ErrorBody),
        (status = 403, description = "Not the compliance officer who ran it", body = ErrorBody), (status = 404, description = "No such export or file, or not finished", body = ErrorBody)))]
async fn download_file(
    state: web::Data<AuthState>,
    dir: web::Data<ExportsDir>,
    officer: ComplianceOfficer,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (id, file) = path.into_inner();
    let lookup = id.clone();
    let job = state
        .db
        .run(move |conn| exports::get(conn, &lookup))
        .await?;
    if job.status != "done" {
        return Err(ApiError::not_found());
    }
    // The officer who ran it downloads it (a scheduled one: any compliance officer).
    if job
        .created_by
        .as_ref()
        .is_some_and(|by| *by != officer.user.id.to_string())
    {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            "only the compliance officer who ran this export may download it",
        ));
    }
    let bundle = exports::bundle_dir(&dir.0, &id)?;
    // Only what the signed manifest names (so no path can leave the bundle).
    let listed = file == MANIFEST
        || file == SIGNATURE
        || std::fs::read(bundle.join(MANIFEST))
            .ok()
            .and_then(|bytes| serde_json::from_slice::<exports::Manifest>(&bytes).ok())
            .is_some_and(|manifest| manifest.files.contains_key(&file));
    if !listed {
        return Err(ApiError::not_found());
    }
    let handle = tokio::fs::File::open(bundle.join(&file))
        .await
        .map_err(|_| ApiError::not_found())?;
    let body = futures_util::stream::unfold(Some(handle), |handle| async move {
        use tokio::io::AsyncReadExt;
        let mut handle = handle?;
        let mut buffer = vec![0u8; 64 * 1024];
        match handle.read(&mut buffer).await {
            Ok(0) => None,
            Ok(read) => {
                buffer.truncate(read);
                Some((
                    Ok::<_, std::io::Error>(web::Bytes::from(buffer)),
                    Some(handle),
                ))
            }
            Err(err) => Some((Err(err), None)),
        }
    });
    // A header carries visible ASCII only; the manifest has the real name.
    let name: String = file
        .rsplit('/')
        .next()
        .unwrap_or_default()
        .chars()
        .filter(|c| (c.is_ascii_graphic() || *c == ' ') && !matches!(c, '"' | '\\'))
        .collect();
    Ok(HttpResponse::Ok()
        .content_type("application/octet-stream")
        .insert_header((
            actix_web::http::header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"{name}\""),
        ))
        .streaming(body))
}
