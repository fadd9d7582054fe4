//! `/healthz`: the process is alive. `/readyz`: the database answers and its schema is
//! current, so a load balancer can send traffic here; its body also says this node's
//! role and whether it leads the singleton workers.

use actix_web::{HttpResponse, web};
use conclave_api::{ApiError, ErrorBody};
use conclave_store::{Db, StoreError, migrations};
use serde::Serialize;
use std::time::Duration;
use utoipa::ToSchema;

/// How long readiness waits for a database connection: probes have short deadlines.
const READINESS_TIMEOUT: Duration = Duration::from_secs(2);

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/healthz").route(web::get().to(healthz)))
        .service(web::resource("/readyz").route(web::get().to(readyz)));
}

#[derive(Serialize, ToSchema)]
pub struct Health {
    /// `ok` or `ready`.
    pub status: &'static str,
}

#[derive(Serialize, ToSchema)]
pub struct Readiness {
    pub status: &'static str,
    /// `postgres` or `sqlite`.
    pub database: &'static str,
    /// `all`, `api` or `worker`.
    pub role: &'static str,
    /// Whether this node runs the singleton workers now (timers, sweeper, exports, …).
    pub worker_leader: bool,
}

/// This node's role and leadership, for the probes and `/metrics`.
#[derive(Clone, Debug)]
pub struct NodeStatus {
    pub role: crate::settings::Role,
    pub leadership: crate::leader::Leadership,
}

/// Liveness: answers as long as the process serves HTTP.
#[utoipa::path(get, path = "/healthz", tag = "health", responses((status = 200, body = Health)))]
pub async fn healthz() -> web::Json<Health> {
    web::Json(Health { status: "ok" })
}

/// Readiness: the database is reachable and every migration is applied.
#[utoipa::path(
    get, path = "/readyz", tag = "health",
    responses(
        (status = 200, body = Readiness),
        (status = 503, description = "Database unreachable or migrations pending", body = ErrorBody),
    )
)]
pub async fn readyz(
    db: web::Data<Db>,
    node: web::Data<NodeStatus>,
) -> Result<HttpResponse, ApiError> {
    let backend = db.backend().name();
    let checked = db
        .run_within(READINESS_TIMEOUT, migrations::has_pending)
        .await;
    match checked {
        Ok(false) => Ok(HttpResponse::Ok().json(Readiness {
            status: "ready",
            database: backend,
            role: node.role.name(),
            worker_leader: node.leadership.is_leader(),
        })),
        Ok(true) => Err(ApiError::unavailable(
            "database migrations are pending; run `conclave migrate`",
        )),
        Err(StoreError::Unavailable(cause)) => {
            tracing::warn!(error = %cause, "readiness: database unreachable");
            Err(ApiError::unavailable("the database is unreachable"))
        }
        Err(other) => {
            tracing::warn!(error = %other, "readiness check failed");
            Err(ApiError::unavailable("the database is not ready"))
        }
    }
}
