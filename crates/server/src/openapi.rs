//! The OpenAPI document, assembled from every service's annotated handlers, and the
//! browsable reference page (Swagger UI, vendored into the binary: no CDN). The errors
//! the HTTP edge gives any operation (a malformed or oversize body, a bad query, a CSRF or
//! password-change refusal, the database being away) are documented here once, for every
//! operation they can reach, rather than in each handler's annotation.

use actix_web::web;
use utoipa::openapi::path::{Operation, ParameterIn};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{Content, Ref, RefOr, ResponseBuilder};
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
    document_edge_errors(&mut doc);
    doc
}

/// The error answers the edge can give an operation, whatever its handler does: added
/// where the handler's annotation does not already describe that status.
fn edge_errors(path: &str, op: &Operation) -> Vec<(&'static str, &'static str)> {
    let mut errors = Vec::new();
    if op.request_body.is_some() {
        errors.extend([
            ("400", "Malformed body (`malformed_request`)"),
            ("413", "Body over the size limit (`payload_too_large`)"),
            ("415", "Wrong content type (`unsupported_media_type`)"),
            ("422", "Invalid input (`invalid_input`)"),
        ]);
    }
    let located = |place: ParameterIn| {
        op.parameters.iter().flatten().any(|p| match p {
            RefOr::T(p) => p.parameter_in == place,
            RefOr::Ref(_) => false,
        })
    };
    if located(ParameterIn::Query) {
        errors.push(("422", "Invalid query parameter (`invalid_input`)"));
    }
    if located(ParameterIn::Path) {
        errors.push(("404", "No such object, or a malformed id (`not_found`)"));
    }
    if op.security.is_some() {
        errors.extend([
            ("401", "No valid session (`unauthenticated`)"),
            (
                "403",
                "Not allowed: the role or room role is missing, the password must be changed \
                 first (`password_change_required`), or a cookie-authenticated change lacks \
                 its CSRF token",
            ),
        ]);
    }
    if path.starts_with("/api/v1/") {
        errors.push((
            "503",
            "The database is unavailable; retry shortly (`unavailable`)",
        ));
    }
    errors
}

fn document_edge_errors(doc: &mut utoipa::openapi::OpenApi) {
    for (path, item) in doc.paths.paths.iter_mut() {
        for op in [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
        ]
        .into_iter()
        .flatten()
        {
            for (status, description) in edge_errors(path, op) {
                op.responses
                    .responses
                    .entry(status.to_owned())
                    .or_insert_with(|| {
                        RefOr::T(
                            ResponseBuilder::new()
                                .description(description)
                                .content(
                                    "application/json",
                                    Content::new(Some(Ref::from_schema_name("ErrorBody"))),
                                )
                                .build(),
                        )
                    });
            }
        }
    }
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

    /// Every `$ref` in the document names a component that exists (a query parameter's
    /// enum once pointed at an unregistered schema, which schemathesis could not load).
    #[test]
    fn every_reference_resolves() {
        let doc = serde_json::to_value(document()).unwrap();
        let mut stack = vec![&doc];
        let mut references = 0;
        while let Some(value) = stack.pop() {
            match value {
                serde_json::Value::Object(map) => {
                    if let Some(serde_json::Value::String(target)) = map.get("$ref") {
                        let pointer = target.strip_prefix('#').expect("a local reference");
                        assert!(doc.pointer(pointer).is_some(), "{target} does not resolve");
                        references += 1;
                    }
                    stack.extend(map.values());
                }
                serde_json::Value::Array(items) => stack.extend(items),
                _ => {}
            }
        }
        assert!(references > 100, "{references}");
    }

    /// The edge's own answers are documented wherever they can happen.
    #[test]
    fn edge_errors_are_documented_on_every_operation_they_reach() {
        let doc = serde_json::to_value(document()).unwrap();
        let mut bodies = 0;
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                let responses = op["responses"].as_object().unwrap();
                let has = |status: &str| responses.contains_key(status);
                if op.get("requestBody").is_some() {
                    bodies += 1;
                    for status in ["400", "413", "415", "422"] {
                        assert!(has(status), "{method} {path} omits {status}");
                    }
                }
                let params = op["parameters"].as_array().cloned().unwrap_or_default();
                if params.iter().any(|p| p["in"] == "path") {
                    assert!(has("404"), "{method} {path} omits 404");
                }
                if params.iter().any(|p| p["in"] == "query") {
                    assert!(has("422"), "{method} {path} omits 422");
                }
                if op.get("security").is_some() {
                    assert!(has("401") && has("403"), "{method} {path} omits 401 or 403");
                }
                if path.starts_with("/api/v1/") {
                    assert!(has("503"), "{method} {path} omits 503");
                }
            }
        }
        assert!(bodies > 25, "{bodies}");
        // A handler's own description wins over the generic one.
        let reactivate = &doc["paths"]["/api/v1/admin/users/{user_id}/reactivate"]["post"];
        assert_eq!(
            reactivate["responses"]["403"]["description"], "Not an admin",
            "{reactivate}"
        );
    }

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
