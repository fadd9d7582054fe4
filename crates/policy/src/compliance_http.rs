//! HTTP routes of retention and legal holds, for compliance officers only (separation of
//! duties: an admin cannot place or lift a hold). Handlers parse, call the service
//! function and map its error; nothing else.

use crate::holds::{self, HoldInput, HoldView};
use crate::retention::{
    self, RetentionChange, RetentionJobView, RetentionPolicyView, RetentionPreview, RetentionScope,
    RoomPreview,
};
use crate::sweeper::{self, SweepReport, SweepView, SweeperStatus};
use actix_web::{HttpRequest, web};
use conclave_api::{ApiError, ErrorBody};
use conclave_auth::extract::audit_context;
use conclave_auth::{AuthState, ComplianceOfficer};
use conclave_core::retention::RetentionRule;
use utoipa::OpenApi;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/api/v1/compliance/retention-policies").route(web::get().to(list_policies)),
    )
    .service(
        web::resource("/api/v1/compliance/retention-policies/preview")
            .route(web::post().to(preview_policy)),
    )
    .service(
        web::resource("/api/v1/compliance/retention-policies/{scope}")
            .route(web::put().to(put_policy))
            .route(web::delete().to(delete_policy)),
    )
    .service(web::resource("/api/v1/compliance/retention-jobs").route(web::get().to(list_jobs)))
    .service(web::resource("/api/v1/compliance/sweeper").route(web::get().to(sweeper_status)))
    .service(
        web::resource("/api/v1/compliance/legal-holds")
            .route(web::get().to(list_holds))
            .route(web::post().to(place_hold)),
    )
    .service(
        web::resource("/api/v1/compliance/legal-holds/{hold_id}")
            .route(web::get().to(get_hold))
            .route(web::put().to(update_hold)),
    )
    .service(
        web::resource("/api/v1/compliance/legal-holds/{hold_id}/release")
            .route(web::post().to(release_hold)),
    );
}

/// A policy's bounds in days after send; at least one is required.
#[derive(serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RetentionPolicyRequest {
    /// Keep the compliance copy at least this many days (1 to 36500).
    pub min_days: Option<u32>,
    /// Destroy messages this many days after send (1 to 36500, not below `min_days`).
    pub max_days: Option<u32>,
}

/// A policy to preview: a scope and its bounds (neither: preview removing the policy).
#[derive(serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PreviewRequest {
    /// `org`, `group:<security group id>` or `room:<room id>`.
    pub scope: String,
    pub min_days: Option<u32>,
    pub max_days: Option<u32>,
}

#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct RetentionPolicyList {
    pub policies: Vec<RetentionPolicyView>,
}

#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct RetentionJobList {
    pub jobs: Vec<RetentionJobView>,
}

#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct HoldList {
    pub holds: Vec<HoldView>,
}

#[derive(serde::Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct HoldListQuery {
    /// Only holds not released yet.
    #[serde(default)]
    pub active: bool,
}

#[derive(OpenApi)]
#[openapi(
    paths(
        list_policies, put_policy, delete_policy, preview_policy, list_jobs, sweeper_status,
        list_holds, place_hold, get_hold, update_hold, release_hold,
    ),
    components(schemas(
        RetentionPolicyRequest, PreviewRequest, RetentionPolicyView, RetentionPolicyList, RetentionChange,
        RetentionJobView, RetentionJobList, RetentionPreview, RoomPreview, SweeperStatus, SweepView, SweepReport,
        HoldInput, HoldView, HoldList,
    )),
    tags((name = "compliance", description = "Retention policies, legal holds and the sweeper (compliance officers)"))
)]
pub struct ComplianceApi;

fn scope(raw: &str) -> Result<RetentionScope, ApiError> {
    Ok(RetentionScope::parse(raw)?)
}

/// Every retention policy (org, security groups, rooms).
#[utoipa::path(get, path = "/api/v1/compliance/retention-policies", tag = "compliance", security(("bearer" = [])),
    responses((status = 200, body = RetentionPolicyList), (status = 401, description = "No valid session", body = ErrorBody),
        (status = 403, description = "Not a compliance officer", body = ErrorBody)))]
async fn list_policies(
    state: web::Data<AuthState>,
    _officer: ComplianceOfficer,
) -> Result<web::Json<RetentionPolicyList>, ApiError> {
    Ok(web::Json(RetentionPolicyList {
        policies: state.db.run(retention::list).await?,
    }))
}

/// Create or replace the policy of a scope (audited); starts the job that recomputes
/// existing messages' deadlines. Preview first: this may destroy messages at the next sweep.
#[utoipa::path(put, path = "/api/v1/compliance/retention-policies/{scope}", tag = "compliance", security(("bearer" = [])),
    params(("scope" = String, Path, description = "`org`, `group:<id>` or `room:<id>`")), request_body = RetentionPolicyRequest,
    responses((status = 200, body = RetentionChange), (status = 401, description = "No valid session", body = ErrorBody),
        (status = 403, description = "Not a compliance officer", body = ErrorBody), (status = 404, description = "No such group or room", body = ErrorBody),
        (status = 422, description = "Bad scope or bounds", body = ErrorBody)))]
async fn put_policy(
    state: web::Data<AuthState>,
    req: HttpRequest,
    officer: ComplianceOfficer,
    path: web::Path<String>,
    body: conclave_api::extract::Json<RetentionPolicyRequest>,
) -> Result<web::Json<RetentionChange>, ApiError> {
    let scope = scope(&path)?;
    let rule = RetentionRule {
        min_days: body.min_days,
        max_days: body.max_days,
    };
    let (context, now, by) = (
        audit_context(&req, &officer),
        state.clock.now(),
        officer.user.id,
    );
    Ok(web::Json(
        state
            .db
            .run(move |conn| retention::set_policy(conn, &context, now, by, &scope, rule))
            .await?,
    ))
}

/// Remove a scope's policy (audited); starts the recomputation job.
#[utoipa::path(delete, path = "/api/v1/compliance/retention-policies/{scope}", tag = "compliance", security(("bearer" = [])),
    params(("scope" = String, Path, description = "`org`, `group:<id>` or `room:<id>`")),
    responses((status = 200, body = RetentionChange), (status = 401, description = "No valid session", body = ErrorBody),
        (status = 403, description = "Not a compliance officer", body = ErrorBody), (status = 404, description = "No policy for this scope", body = ErrorBody),
        (status = 422, description = "Bad scope", body = ErrorBody)))]
async fn delete_policy(
    state: web::Data<AuthState>,
    req: HttpRequest,
    officer: ComplianceOfficer,
    path: web::Path<String>,
) -> Result<web::Json<RetentionChange>, ApiError> {
    let scope = scope(&path)?;
    let (context, now, by) = (
        audit_context(&req, &officer),
        state.clock.now(),
        officer.user.id,
    );
    Ok(web::Json(
        state
            .db
            .run(move |conn| retention::delete_policy(conn, &context, now, by, &scope))
            .await?,
    ))
}

/// What a policy would destroy now and within 30 days, per room, before it is saved.
/// Changes nothing; walks every message in scope, so it takes a while on a large archive.
#[utoipa::path(post, path = "/api/v1/compliance/retention-policies/preview", tag = "compliance", security(("bearer" = [])),
    request_body = PreviewRequest,
    responses((status = 200, body = RetentionPreview), (status = 401, description = "No valid session", body = ErrorBody),
        (status = 403, description = "Not a compliance officer", body = ErrorBody), (status = 404, description = "No such group or room", body = ErrorBody),
        (status = 422, description = "Bad scope or bounds", body = ErrorBody)))]
async fn preview_policy(
    state: web::Data<AuthState>,
    _officer: ComplianceOfficer,
    body: conclave_api::extract::Json<PreviewRequest>,
) -> Result<web::Json<RetentionPreview>, ApiError> {
    let scope = scope(&body.scope)?;
    let rule = (body.min_days.is_some() || body.max_days.is_some()).then_some(RetentionRule {
        min_days: body.min_days,
        max_days: body.max_days,
    });
    let now = state.clock.now();
    Ok(web::Json(
        state
            .db
            .run(move |conn| retention::preview(conn, now, &scope, rule))
            .await?,
    ))
}

/// Recomputation jobs, newest first, with their progress.
#[utoipa::path(get, path = "/api/v1/compliance/retention-jobs", tag = "compliance", security(("bearer" = [])),
    responses((status = 200, body = RetentionJobList), (status = 401, description = "No valid session", body = ErrorBody),
        (status = 403, description = "Not a compliance officer", body = ErrorBody)))]
async fn list_jobs(
    state: web::Data<AuthState>,
    _officer: ComplianceOfficer,
) -> Result<web::Json<RetentionJobList>, ApiError> {
    Ok(web::Json(RetentionJobList {
        jobs: state.db.run(retention::jobs).await?,
    }))
}

/// The sweeper's recent runs and totals.
#[utoipa::path(get, path = "/api/v1/compliance/sweeper", tag = "compliance", security(("bearer" = [])),
    responses((status = 200, body = SweeperStatus), (status = 401, description = "No valid session", body = ErrorBody),
        (status = 403, description = "Not a compliance officer", body = ErrorBody)))]
async fn sweeper_status(
    state: web::Data<AuthState>,
    _officer: ComplianceOfficer,
) -> Result<web::Json<SweeperStatus>, ApiError> {
    Ok(web::Json(state.db.run(sweeper::status).await?))
}

/// Legal holds, newest first.
#[utoipa::path(get, path = "/api/v1/compliance/legal-holds", tag = "compliance", security(("bearer" = [])),
    params(HoldListQuery),
    responses((status = 200, body = HoldList), (status = 401, description = "No valid session", body = ErrorBody),
        (status = 403, description = "Not a compliance officer", body = ErrorBody)))]
async fn list_holds(
    state: web::Data<AuthState>,
    _officer: ComplianceOfficer,
    query: web::Query<HoldListQuery>,
) -> Result<web::Json<HoldList>, ApiError> {
    let active = query.active;
    Ok(web::Json(HoldList {
        holds: state.db.run(move |conn| holds::list(conn, active)).await?,
    }))
}

/// Place a legal hold (audited): from now on nothing it covers is destroyed.
#[utoipa::path(post, path = "/api/v1/compliance/legal-holds", tag = "compliance", security(("bearer" = [])),
    request_body = HoldInput,
    responses((status = 201, body = HoldView), (status = 401, description = "No valid session", body = ErrorBody),
        (status = 403, description = "Not a compliance officer", body = ErrorBody), (status = 422, description = "Invalid hold", body = ErrorBody)))]
async fn place_hold(
    state: web::Data<AuthState>,
    req: HttpRequest,
    officer: ComplianceOfficer,
    body: conclave_api::extract::Json<HoldInput>,
) -> Result<actix_web::HttpResponse, ApiError> {
    let (context, now, by, input) = (
        audit_context(&req, &officer),
        state.clock.now(),
        officer.user.id,
        body.into_inner(),
    );
    let hold = state
        .db
        .run(move |conn| holds::place(conn, &context, now, by, &input))
        .await?;
    Ok(actix_web::HttpResponse::Created().json(hold))
}

/// One legal hold.
#[utoipa::path(get, path = "/api/v1/compliance/legal-holds/{hold_id}", tag = "compliance", security(("bearer" = [])),
    params(("hold_id" = String, Path)),
    responses((status = 200, body = HoldView), (status = 401, description = "No valid session", body = ErrorBody),
        (status = 403, description = "Not a compliance officer", body = ErrorBody), (status = 404, description = "No such hold", body = ErrorBody)))]
async fn get_hold(
    state: web::Data<AuthState>,
    _officer: ComplianceOfficer,
    path: web::Path<String>,
) -> Result<web::Json<HoldView>, ApiError> {
    let id = path.into_inner();
    Ok(web::Json(
        state.db.run(move |conn| holds::get(conn, &id)).await?,
    ))
}

/// Replace an active hold's name, reason, custodians, rooms and range (audited with
/// before and after).
#[utoipa::path(put, path = "/api/v1/compliance/legal-holds/{hold_id}", tag = "compliance", security(("bearer" = [])),
    params(("hold_id" = String, Path)), request_body = HoldInput,
    responses((status = 200, body = HoldView), (status = 401, description = "No valid session", body = ErrorBody),
        (status = 403, description = "Not a compliance officer", body = ErrorBody), (status = 404, description = "No such hold", body = ErrorBody),
        (status = 409, description = "The hold is released", body = ErrorBody), (status = 422, description = "Invalid hold", body = ErrorBody)))]
async fn update_hold(
    state: web::Data<AuthState>,
    req: HttpRequest,
    officer: ComplianceOfficer,
    path: web::Path<String>,
    body: conclave_api::extract::Json<HoldInput>,
) -> Result<web::Json<HoldView>, ApiError> {
    let (context, now, id, input) = (
        audit_context(&req, &officer),
        state.clock.now(),
        path.into_inner(),
        body.into_inner(),
    );
    Ok(web::Json(
        state
            .db
            .run(move |conn| holds::update(conn, &context, now, &id, &input))
            .await?,
    ))
}

/// Release a hold (audited): what it alone kept becomes due for the sweeper.
#[utoipa::path(post, path = "/api/v1/compliance/legal-holds/{hold_id}/release", tag = "compliance", security(("bearer" = [])),
    params(("hold_id" = String, Path)),
    responses((status = 200, body = HoldView), (status = 401, description = "No valid session", body = ErrorBody),
        (status = 403, description = "Not a compliance officer", body = ErrorBody), (status = 404, description = "No such hold", body = ErrorBody),
        (status = 409, description = "Already released", body = ErrorBody)))]
async fn release_hold(
    state: web::Data<AuthState>,
    req: HttpRequest,
    officer: ComplianceOfficer,
    path: web::Path<String>,
) -> Result<web::Json<HoldView>, ApiError> {
    let (context, now, by, id) = (
        audit_context(&req, &officer),
        state.clock.now(),
        officer.user.id,
        path.into_inner(),
    );
    Ok(web::Json(
        state
            .db
            .run(move |conn| holds::release(conn, &context, now, by, &id))
            .await?,
    ))
}
