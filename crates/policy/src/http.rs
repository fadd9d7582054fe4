//! HTTP routes of the policy service.

use crate::{org_policy, set_org_policy};
use actix_web::{HttpRequest, web};
use conclave_api::{ApiError, ErrorBody};
use conclave_auth::extract::audit_context;
use conclave_auth::{AdminUser, AuthState, AuthUser};
use conclave_core::policy::{Policy, PolicyOverrides};
use utoipa::OpenApi;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/api/v1/admin/policy")
            .route(web::get().to(get_org_policy))
            .route(web::put().to(put_org_policy)),
    )
    .service(web::resource("/api/v1/me/policy").route(web::get().to(my_policy)));
}

#[derive(OpenApi)]
#[openapi(
    paths(get_org_policy, put_org_policy, my_policy),
    components(schemas(Policy, PolicyOverrides, conclave_core::policy::TimerSeconds)),
    tags((name = "policy", description = "Messaging policy: the org default (admins), room overrides, and what applies to the caller"))
)]
pub struct PolicyApi;

/// The org-wide messaging policy.
#[utoipa::path(get, path = "/api/v1/admin/policy", tag = "policy", security(("bearer" = [])),
    responses((status = 200, body = Policy), (status = 401, description = "No valid session", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody)))]
async fn get_org_policy(
    state: web::Data<AuthState>,
    _admin: AdminUser,
) -> Result<web::Json<Policy>, ApiError> {
    Ok(web::Json(state.db.run(org_policy).await?))
}

/// Replace the org-wide messaging policy (audited with before and after); applies to
/// what happens from now on.
#[utoipa::path(put, path = "/api/v1/admin/policy", tag = "policy", security(("bearer" = [])), request_body = Policy,
    responses((status = 200, body = Policy), (status = 401, description = "No valid session", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody), (status = 422, description = "Incoherent policy or a timer out of range", body = ErrorBody)))]
async fn put_org_policy(
    state: web::Data<AuthState>,
    req: HttpRequest,
    admin: AdminUser,
    body: web::Json<Policy>,
) -> Result<web::Json<Policy>, ApiError> {
    let (context, now, policy) = (
        audit_context(&req, &admin),
        state.clock.now(),
        body.into_inner(),
    );
    Ok(web::Json(
        state
            .db
            .run(move |conn| set_org_policy(conn, &context, now, policy))
            .await?,
    ))
}

/// The policy that applies to the caller outside any room (a room's own is at
/// `GET /api/v1/rooms/{room_id}/policy`): clients show the allowed timer choices from it.
#[utoipa::path(get, path = "/api/v1/me/policy", tag = "policy", security(("bearer" = [])),
    responses((status = 200, body = Policy), (status = 401, description = "No valid session", body = ErrorBody)))]
async fn my_policy(
    state: web::Data<AuthState>,
    user: AuthUser,
) -> Result<web::Json<Policy>, ApiError> {
    let me = user.user.id;
    Ok(web::Json(
        state
            .db
            .run(move |conn| crate::effective(conn, me, None))
            .await?,
    ))
}
