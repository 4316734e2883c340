//! `GET /docs`: a human-readable API reference of `/openapi.json`, rendered by Swagger UI
//! (npm's `swagger-ui-dist`, Apache-2.0, see `assets/swagger-ui/`) served from the binary.
//! The page loads nothing from elsewhere: its Content-Security-Policy allows this origin
//! alone, and the online validator badge is off.

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use lim_domain::ErrorKind;

use super::error::ApiError;

const PAGE: &str = r##"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>llm-incident-manager API reference</title>
<link rel="stylesheet" href="/docs/swagger-ui.css">
</head>
<body>
<div id="swagger-ui"></div>
<script src="/docs/swagger-ui-bundle.js"></script>
<script src="/docs/init.js"></script>
</body>
</html>
"##;

const INIT: &str = r##"window.ui = SwaggerUIBundle({
  url: "/openapi.json",
  dom_id: "#swagger-ui",
  deepLinking: true,
  validatorUrl: null,
  defaultModelsExpandDepth: 0
});
"##;

/// What the page and its scripts may load: this origin only (and inline styles and
/// `data:` images, which Swagger UI uses).
const POLICY: &str = "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; connect-src 'self'; frame-ancestors 'none'";

/// The files under `/docs/`, built into the binary.
const ASSETS: &[(&str, &str, &[u8])] = &[
    (
        "swagger-ui.css",
        "text/css; charset=utf-8",
        include_bytes!("../../assets/swagger-ui/swagger-ui.css"),
    ),
    (
        "swagger-ui-bundle.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../assets/swagger-ui/swagger-ui-bundle.js"),
    ),
    ("init.js", "text/javascript; charset=utf-8", INIT.as_bytes()),
    (
        "LICENSE",
        "text/plain; charset=utf-8",
        include_bytes!("../../assets/swagger-ui/LICENSE"),
    ),
];

/// The names `/docs/{file}` serves.
pub fn asset_names() -> Vec<&'static str> {
    ASSETS.iter().map(|(name, _, _)| *name).collect()
}

pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/docs", get(reference))
        .route("/docs/{file}", get(asset))
}

/// The API reference, rendered in the browser from `/openapi.json`.
#[utoipa::path(get, path = "/docs", tag = "documentation",
    responses((status = 200, description = "The reference page (HTML)", content_type = "text/html")))]
pub async fn reference() -> Response {
    with_policy(([(header::CONTENT_TYPE, "text/html; charset=utf-8")], PAGE).into_response())
}

async fn asset(Path(file): Path<String>) -> Response {
    match ASSETS.iter().find(|(name, _, _)| *name == file) {
        Some((_, content_type, bytes)) => with_policy(
            (
                [
                    (header::CONTENT_TYPE, *content_type),
                    (header::CACHE_CONTROL, "public, max-age=3600"),
                ],
                *bytes,
            )
                .into_response(),
        ),
        None => ApiError::new(
            ErrorKind::NotFound,
            format!("no file `{}` under /docs", lim_domain::text::excerpt(&file)),
        )
        .into_response(),
    }
}

fn with_policy(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(POLICY));
    response
}
