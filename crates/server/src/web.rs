//! The browser client and admin console: static files from `web/`, embedded into the
//! binary at compile time (no build step, nothing fetched at run time), served at `/` and
//! `/assets/…` with a strict Content-Security-Policy.
//!
//! The page loads only its own scripts and styles (no inline script or style, no other
//! origin), talks only to this server (`connect-src 'self'` covers the same-origin
//! WebSocket), and may not be framed. The other security headers (`nosniff`,
//! `no-referrer`, `Cache-Control: no-store`) come from [`crate::app::security_headers`].

use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, web};

/// The page's Content-Security-Policy.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
style-src 'self'; img-src 'self' blob: data:; connect-src 'self'; font-src 'self'; \
form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

/// One embedded file.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static str,
}

macro_rules! asset {
    ($name:literal, $type:expr) => {
        Asset {
            name: $name,
            content_type: $type,
            body: include_str!(concat!("../../../web/", $name)),
        }
    };
}

const JS: &str = "text/javascript; charset=utf-8";

const ASSETS: &[Asset] = &[
    asset!("index.html", "text/html; charset=utf-8"),
    asset!("app.css", "text/css; charset=utf-8"),
    asset!("app.js", JS),
    asset!("api.js", JS),
    asset!("realtime.js", JS),
    asset!("timers.js", JS),
    asset!("dom.js", JS),
    asset!("admin.js", JS),
    asset!("chat.js", JS),
];

fn find(name: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|asset| asset.name == name)
}

fn serve(asset: &Asset) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(asset.content_type)
        .insert_header((
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CONTENT_SECURITY_POLICY),
        ))
        .insert_header(("cross-origin-opener-policy", "same-origin"))
        .insert_header(("cross-origin-resource-policy", "same-origin"))
        .insert_header((
            "permissions-policy",
            "camera=(), microphone=(), geolocation=(), payment=()",
        ))
        .body(asset.body)
}

async fn index() -> HttpResponse {
    serve(find("index.html").expect("index.html is embedded"))
}

async fn asset(path: web::Path<String>) -> HttpResponse {
    match find(&path).filter(|asset| asset.name != "index.html") {
        Some(asset) => serve(asset),
        None => crate::app::not_found().await,
    }
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/").route(web::get().to(index)))
        .service(web::resource("/assets/{name}").route(web::get().to(asset)));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_page_loads_only_embedded_same_origin_files() {
        let index = find("index.html").unwrap().body;
        for asset in ASSETS {
            assert!(!asset.body.is_empty(), "{} is empty", asset.name);
            // No inline script or style: the policy would block them.
            if asset.name.ends_with(".html") {
                assert!(!asset.body.contains("<style"), "{}", asset.name);
                assert!(!asset.body.contains(" style="), "{}", asset.name);
                let inline_handler = asset.body.match_indices(" on").any(|(at, _)| {
                    let rest = &asset.body[at + 3..];
                    let name: String = rest.chars().take_while(char::is_ascii_lowercase).collect();
                    !name.is_empty() && rest[name.len()..].starts_with('=')
                });
                assert!(!inline_handler, "inline handler in {}", asset.name);
            }
            // Every module import names another embedded file.
            for line in asset.body.lines() {
                if let Some(rest) = line.trim().strip_prefix("import ")
                    && let Some(from) = rest.split("from ").nth(1)
                {
                    let target = from.trim_matches(|c| c == '\'' || c == '"' || c == ';');
                    let name = target.trim_start_matches("./");
                    assert!(find(name).is_some(), "{} imports {target}", asset.name);
                }
            }
        }
        for reference in index.split("/assets/").skip(1) {
            let name: String = reference.chars().take_while(|c| *c != '"').collect();
            assert!(find(&name).is_some(), "index.html names {name}");
        }
        assert!(!index.contains("http://") && !index.contains("https://"));
        assert!(CONTENT_SECURITY_POLICY.contains("frame-ancestors 'none'"));
        assert!(!CONTENT_SECURITY_POLICY.contains("unsafe"));
    }
}
