//! HTTP routes of the policy service.

use crate::groups::{self, GroupDetail, GroupView};
use crate::{org_policy, set_org_policy};
use actix_web::HttpResponse;
use actix_web::{HttpRequest, web};
use conclave_api::{ApiError, ErrorBody};
use conclave_auth::extract::audit_context;
use conclave_auth::{AdminUser, AuthState, AuthUser};
use conclave_core::UserId;
use conclave_core::policy::{Policy, PolicyOverrides};
use utoipa::OpenApi;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/api/v1/admin/policy")
            .route(web::get().to(get_org_policy))
            .route(web::put().to(put_org_policy)),
    )
    .service(web::resource("/api/v1/me/policy").route(web::get().to(my_policy)))
    .service(
        web::resource("/api/v1/admin/security-groups")
            .route(web::get().to(list_groups))
            .route(web::post().to(create_group)),
    )
    .service(
        web::resource("/api/v1/admin/security-groups/{group_id}")
            .route(web::get().to(get_group))
            .route(web::patch().to(update_group))
            .route(web::delete().to(delete_group)),
    )
    .service(
        web::resource("/api/v1/admin/security-groups/{group_id}/members/{user_id}")
            .route(web::put().to(add_group_member))
            .route(web::delete().to(remove_group_member)),
    )
    .service(
        web::resource("/api/v1/admin/security-groups/{group_id}/policy")
            .route(web::put().to(put_group_policy)),
    );
}

#[derive(serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateGroupRequest {
    pub name: String,
    /// Lower wins when a user is in several groups (0 to 1000000).
    pub precedence: i64,
}

#[derive(serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateGroupRequest {
    pub name: Option<String>,
    pub precedence: Option<i64>,
}

#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct GroupList {
    pub groups: Vec<GroupView>,
}

#[derive(OpenApi)]
#[openapi(
    paths(
        get_org_policy, put_org_policy, my_policy, list_groups, create_group, get_group, update_group,
        delete_group, add_group_member, remove_group_member, put_group_policy,
    ),
    components(schemas(
        Policy, PolicyOverrides, conclave_core::policy::TimerSeconds, GroupView, GroupDetail, GroupList,
        CreateGroupRequest, UpdateGroupRequest,
    )),
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
    body: conclave_api::extract::Json<Policy>,
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

/// Security groups, in precedence order (the default group last).
#[utoipa::path(get, path = "/api/v1/admin/security-groups", tag = "policy", security(("bearer" = [])),
    responses((status = 200, body = GroupList), (status = 401, description = "No valid session", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody)))]
async fn list_groups(
    state: web::Data<AuthState>,
    _admin: AdminUser,
) -> Result<web::Json<GroupList>, ApiError> {
    Ok(web::Json(GroupList {
        groups: state.db.run(groups::list).await?,
    }))
}

/// Create a security group.
#[utoipa::path(post, path = "/api/v1/admin/security-groups", tag = "policy", security(("bearer" = [])), request_body = CreateGroupRequest,
    responses((status = 201, body = GroupView), (status = 401, description = "No valid session", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody), (status = 409, description = "Name taken", body = ErrorBody),
        (status = 422, description = "Invalid name or precedence", body = ErrorBody)))]
async fn create_group(
    state: web::Data<AuthState>,
    req: HttpRequest,
    admin: AdminUser,
    body: conclave_api::extract::Json<CreateGroupRequest>,
) -> Result<HttpResponse, ApiError> {
    let (context, now, body) = (
        audit_context(&req, &admin),
        state.clock.now(),
        body.into_inner(),
    );
    let created = state
        .db
        .run(move |conn| groups::create(conn, &context, now, &body.name, body.precedence))
        .await?;
    Ok(HttpResponse::Created().json(created))
}

/// A security group with its members and policy overrides.
#[utoipa::path(get, path = "/api/v1/admin/security-groups/{group_id}", tag = "policy", security(("bearer" = [])),
    params(("group_id" = String, Path)),
    responses((status = 200, body = GroupDetail), (status = 401, description = "No valid session", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody), (status = 404, description = "No such group", body = ErrorBody)))]
async fn get_group(
    state: web::Data<AuthState>,
    _admin: AdminUser,
    path: web::Path<String>,
) -> Result<web::Json<GroupDetail>, ApiError> {
    let id = path.into_inner();
    Ok(web::Json(
        state.db.run(move |conn| groups::detail(conn, &id)).await?,
    ))
}

/// Rename a group or change its precedence.
#[utoipa::path(patch, path = "/api/v1/admin/security-groups/{group_id}", tag = "policy", security(("bearer" = [])),
    params(("group_id" = String, Path)), request_body = UpdateGroupRequest,
    responses((status = 200, body = GroupView), (status = 401, description = "No valid session", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody), (status = 404, description = "No such group", body = ErrorBody),
        (status = 409, description = "Name taken", body = ErrorBody), (status = 422, description = "Invalid value", body = ErrorBody)))]
async fn update_group(
    state: web::Data<AuthState>,
    req: HttpRequest,
    admin: AdminUser,
    path: web::Path<String>,
    body: conclave_api::extract::Json<UpdateGroupRequest>,
) -> Result<web::Json<GroupView>, ApiError> {
    let (context, now, id, body) = (
        audit_context(&req, &admin),
        state.clock.now(),
        path.into_inner(),
        body.into_inner(),
    );
    Ok(web::Json(
        state
            .db
            .run(move |conn| {
                groups::update(
                    conn,
                    &context,
                    now,
                    &id,
                    body.name.as_deref(),
                    body.precedence,
                )
            })
            .await?,
    ))
}

/// Delete a group (only an empty one, never the default).
#[utoipa::path(delete, path = "/api/v1/admin/security-groups/{group_id}", tag = "policy", security(("bearer" = [])),
    params(("group_id" = String, Path)),
    responses((status = 204, description = "Deleted"), (status = 401, description = "No valid session", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody), (status = 404, description = "No such group", body = ErrorBody),
        (status = 409, description = "Not empty, or the default group", body = ErrorBody)))]
async fn delete_group(
    state: web::Data<AuthState>,
    req: HttpRequest,
    admin: AdminUser,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let (context, now, id) = (
        audit_context(&req, &admin),
        state.clock.now(),
        path.into_inner(),
    );
    state
        .db
        .run(move |conn| groups::delete(conn, &context, now, &id))
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Add a user to a group (by hand).
#[utoipa::path(put, path = "/api/v1/admin/security-groups/{group_id}/members/{user_id}", tag = "policy", security(("bearer" = [])),
    params(("group_id" = String, Path), ("user_id" = UserId, Path)),
    responses((status = 204, description = "A member"), (status = 401, description = "No valid session", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody), (status = 404, description = "No such group", body = ErrorBody),
        (status = 422, description = "No such user, or the default group", body = ErrorBody)))]
async fn add_group_member(
    state: web::Data<AuthState>,
    req: HttpRequest,
    admin: AdminUser,
    path: web::Path<(String, UserId)>,
) -> Result<HttpResponse, ApiError> {
    let (context, now) = (audit_context(&req, &admin), state.clock.now());
    let (id, user) = path.into_inner();
    state
        .db
        .run(move |conn| groups::add_member(conn, &context, now, &id, user, "manual"))
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Remove a user from a group.
#[utoipa::path(delete, path = "/api/v1/admin/security-groups/{group_id}/members/{user_id}", tag = "policy", security(("bearer" = [])),
    params(("group_id" = String, Path), ("user_id" = UserId, Path)),
    responses((status = 204, description = "Removed"), (status = 401, description = "No valid session", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody), (status = 404, description = "No such group or member", body = ErrorBody)))]
async fn remove_group_member(
    state: web::Data<AuthState>,
    req: HttpRequest,
    admin: AdminUser,
    path: web::Path<(String, UserId)>,
) -> Result<HttpResponse, ApiError> {
    let (context, now) = (audit_context(&req, &admin), state.clock.now());
    let (id, user) = path.into_inner();
    state
        .db
        .run(move |conn| groups::remove_member(conn, &context, now, &id, user))
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Replace a group's policy overrides (only ever tightening the org policy), including its
/// information barriers (ids of groups it may not communicate with).
#[utoipa::path(put, path = "/api/v1/admin/security-groups/{group_id}/policy", tag = "policy", security(("bearer" = [])),
    params(("group_id" = String, Path)), request_body = PolicyOverrides,
    responses((status = 200, body = GroupView), (status = 401, description = "No valid session", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody), (status = 404, description = "No such group", body = ErrorBody),
        (status = 422, description = "A timer out of range, or an unknown barrier group", body = ErrorBody)))]
async fn put_group_policy(
    state: web::Data<AuthState>,
    req: HttpRequest,
    admin: AdminUser,
    path: web::Path<String>,
    body: conclave_api::extract::Json<PolicyOverrides>,
) -> Result<web::Json<GroupView>, ApiError> {
    let (context, now, id, overrides) = (
        audit_context(&req, &admin),
        state.clock.now(),
        path.into_inner(),
        body.into_inner(),
    );
    Ok(web::Json(
        state
            .db
            .run(move |conn| groups::set_overrides(conn, &context, now, &id, overrides))
            .await?,
    ))
}
