//! The OpenAPI document, assembled from every service's annotated handlers, and the
//! browsable reference page (Swagger UI, vendored into the binary: no CDN).

use actix_web::web;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_swagger_ui::SwaggerUi;

pub const DOCUMENT_PATH: &str = "/api/v1/openapi.json";
pub const REFERENCE_PATH: &str = "/api/v1/docs/";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Conclave API",
        description = "On-premises enterprise messaging. Errors share one shape: \
            `{\"error\": {\"code\", \"message\", \"request_id\"}}`.",
    ),
    paths(crate::health::healthz, crate::health::readyz),
    components(schemas(crate::health::Health, crate::health::Readiness)),
    tags((name = "health", description = "Liveness and readiness probes")),
    modifiers(&SecuritySchemes),
)]
struct ServerApi;

struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("The `token` from POST /api/v1/auth/login"))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "session_cookie",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                conclave_auth::extract::SESSION_COOKIE,
                "Browser session; state changes also need the X-CSRF-Token header",
            ))),
        );
    }
}

/// The whole API's document.
pub fn document() -> utoipa::openapi::OpenApi {
    let mut doc = ServerApi::openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").to_owned();
    doc.merge(conclave_auth::http::AuthApi::openapi());
    doc.merge(conclave_auth::identity::http::IdentityApi::openapi());
    doc.merge(conclave_audit::http::AuditApi::openapi());
    doc.merge(conclave_audit::exports_http::ExportsApi::openapi());
    doc.merge(conclave_policy::http::PolicyApi::openapi());
    doc.merge(conclave_policy::compliance_http::ComplianceApi::openapi());
    doc.merge(conclave_messaging::http::MessagingApi::openapi());
    doc
}

/// Serves the document and the reference page.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(SwaggerUi::new(format!("{REFERENCE_PATH}{{_:.*}}")).url(DOCUMENT_PATH, document()));
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The endpoints that open a session (or list how to), so cannot require one.
    const SIGN_IN_PATHS: &[&str] = &[
        "/api/v1/auth/login",
        "/api/v1/auth/providers",
        "/api/v1/auth/ldap/login",
        "/api/v1/auth/oidc/{provider}/login",
        "/api/v1/auth/oidc/{provider}/start",
        "/api/v1/auth/oidc/{provider}/callback",
        "/api/v1/auth/oidc/exchange",
    ];

    #[test]
    fn every_path_has_responses_and_mentions_its_errors() {
        let doc = document();
        assert!(doc.paths.paths.len() >= 12);
        for (path, item) in &doc.paths.paths {
            for (method, op) in [
                ("get", &item.get),
                ("post", &item.post),
                ("put", &item.put),
                ("patch", &item.patch),
                ("delete", &item.delete),
            ] {
                let Some(op) = op else { continue };
                assert!(
                    !op.responses.responses.is_empty(),
                    "{method} {path} documents no response"
                );
                if path.starts_with("/api/v1/") && !SIGN_IN_PATHS.contains(&path.as_str()) {
                    // Every authenticated endpoint documents 401.
                    assert!(
                        op.security.is_some(),
                        "{method} {path} documents no security"
                    );
                    assert!(
                        op.responses.responses.contains_key("401"),
                        "{method} {path} omits 401"
                    );
                }
            }
        }
    }
}
