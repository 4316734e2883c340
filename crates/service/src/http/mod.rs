//! The HTTP API (DESIGN §3), built by a function tests can call with `oneshot`.

pub mod alertmanager;
pub mod docs;
pub mod error;
pub mod events;
pub mod extract;
pub mod incidents;
pub mod jobs;
pub mod openapi;
pub mod schedules;
pub mod server;
pub mod silences;

use std::sync::Arc;
use std::time::Duration;

use axum::BoxError;
use axum::error_handling::HandleErrorLayer;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderValue, Method, Uri, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router, middleware};
use lim_domain::ErrorKind;
use tower::ServiceBuilder;
use tower::timeout::TimeoutLayer;

use self::error::ApiError;
use self::extract::BodyDeadline;
use crate::incidents::IncidentManager;
use crate::telemetry::middleware::track_http;

#[derive(Debug, Clone)]
pub struct HttpOptions {
    pub max_body_bytes: usize,
    pub max_uri_bytes: usize,
    pub request_timeout: Duration,
    pub body_timeout: Duration,
}

pub fn router(
    manager: Arc<IncidentManager>,
    metrics: Arc<crate::telemetry::Metrics>,
    keys: Arc<crate::auth::Keys>,
    options: &HttpOptions,
) -> Router {
    Router::new()
        .route("/v1/events", post(events::submit_events))
        .route("/v1/integrations/alertmanager", post(alertmanager::receive_webhook))
        .route(
            "/v1/incidents",
            get(incidents::list_incidents).post(incidents::open_incident),
        )
        .route("/v1/incidents/{id}", get(incidents::get_incident))
        .route("/v1/incidents/{id}/assign", post(incidents::assign))
        .route("/v1/incidents/{id}/acknowledge", post(incidents::acknowledge))
        .route("/v1/incidents/{id}/start", post(incidents::start))
        .route("/v1/incidents/{id}/resolve", post(incidents::resolve))
        .route("/v1/incidents/{id}/reclassify", post(incidents::reclassify))
        .route(
            "/v1/incidents/{id}/comments",
            get(incidents::list_comments).post(incidents::add_comment),
        )
        .route("/v1/incidents/{id}/timeline", get(incidents::timeline))
        .route("/v1/jobs", get(jobs::list_jobs))
        .route("/v1/jobs/{id}", get(jobs::get_job))
        .route("/v1/jobs/{id}/retry", post(jobs::retry_job))
        .route(
            "/v1/silences",
            get(silences::list_silences).post(silences::create_silence),
        )
        .route(
            "/v1/silences/{id}",
            get(silences::get_silence).delete(silences::delete_silence),
        )
        .route("/v1/schedules", get(schedules::list_schedules))
        .route("/v1/schedules/{name}/oncall", get(schedules::oncall))
        .route("/v1/schedules/{name}/shifts", get(schedules::shifts))
        .route("/-/reload", post(reload))
        .route("/health/live", get(live))
        .route("/health/ready", get(ready))
        .route("/openapi.json", get(openapi))
        .merge(docs::routes())
        // After routing (the scope is the matched route's); an unknown path is a 404 to all.
        .route_layer(middleware::from_fn_with_state(keys, crate::auth::require_key))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(manager)
        .layer(DefaultBodyLimit::max(options.max_body_bytes))
        .layer(middleware::from_fn_with_state(
            RequestLimits::from(options),
            guard_request,
        ))
        // A request stuck behind a stalled store answers 503 rather than piling up.
        .layer(
            ServiceBuilder::new()
                .layer(HandleErrorLayer::new(timed_out))
                .layer(TimeoutLayer::new(options.request_timeout)),
        )
        // Outermost, so it also counts the 503 of a timed-out request.
        .layer(middleware::from_fn_with_state(metrics, track_http))
}

/// What [`guard_request`] checks before a handler runs.
#[derive(Debug, Clone, Copy)]
struct RequestLimits {
    max_body_bytes: usize,
    max_uri_bytes: usize,
    body_timeout: Duration,
}

impl From<&HttpOptions> for RequestLimits {
    fn from(options: &HttpOptions) -> Self {
        RequestLimits {
            max_body_bytes: options.max_body_bytes,
            max_uri_bytes: options.max_uri_bytes,
            body_timeout: options.body_timeout,
        }
    }
}

/// Refuses at once what no handler should wait for: a request target over the limit
/// (414) and a declared body over the limit (413, before a byte of it is read); and gives
/// the body of every other request its deadline.
async fn guard_request(State(limits): State<RequestLimits>, mut request: Request, next: Next) -> Response {
    let target = request.uri().path_and_query().map_or(0, |target| target.as_str().len());
    if target > limits.max_uri_bytes {
        return ApiError::new(
            ErrorKind::UriTooLong,
            format!(
                "the request target is {target} bytes long; the limit is {} (http.max_uri_bytes)",
                limits.max_uri_bytes
            ),
        )
        .into_response();
    }
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.trim().parse::<u64>().ok());
    if let Some(declared) = declared.filter(|declared| *declared > limits.max_body_bytes as u64) {
        let mut response = ApiError::new(
            ErrorKind::PayloadTooLarge,
            format!(
                "the request body is {declared} bytes long; the limit is {} (http.max_body_bytes)",
                limits.max_body_bytes
            ),
        )
        .into_response();
        // The body is not read, so the connection cannot carry another request.
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        return response;
    }
    let deadline = tokio::time::Instant::now() + limits.body_timeout;
    request.extensions_mut().insert(BodyDeadline(deadline));
    next.run(request).await
}

async fn timed_out(error: BoxError) -> ApiError {
    if error.is::<tower::timeout::error::Elapsed>() {
        return ApiError::new(ErrorKind::Unavailable, "the request took too long; retry later");
    }
    tracing::error!(%error, "request failed in a middleware");
    ApiError::new(ErrorKind::Internal, "internal error; the cause is in the service log")
}

/// The process is up.
#[utoipa::path(get, path = "/health/live", tag = "health", responses((status = 200, description = "Alive", body = openapi::Health)))]
pub async fn live() -> impl IntoResponse {
    Json(serde_json::json!({"status": "ok"}))
}

/// A write would be stored: ready for traffic.
#[utoipa::path(get, path = "/health/ready", tag = "health",
    responses((status = 200, description = "Ready", body = openapi::Health), (status = 503, body = error::ErrorBody)))]
pub async fn ready(State(manager): State<Arc<IncidentManager>>) -> Result<impl IntoResponse, ApiError> {
    manager.ready().await?;
    Ok(Json(serde_json::json!({"status": "ok"})))
}

/// Read the configuration file again (as SIGHUP does): routes, channels, people,
/// schedules, escalation policies and event rules change at once; a file that does not
/// load leaves the running configuration and sets `config_last_reload_successful` to 0.
#[utoipa::path(post, path = "/-/reload", tag = "operations",
    responses((status = 200, description = "Reloaded", body = openapi::Health),
              (status = 422, description = "The file was refused; the running configuration stays", body = error::ErrorBody)))]
pub async fn reload(State(manager): State<Arc<IncidentManager>>) -> Result<impl IntoResponse, ApiError> {
    manager
        .reload()
        .await
        .map_err(|reason| ApiError::new(ErrorKind::InvalidConfiguration, reason))?;
    Ok(Json(serde_json::json!({"status": "ok"})))
}

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "documentation",
    responses((status = 200, description = "The OpenAPI 3.1 document of this API", body = Object)))]
pub async fn openapi() -> impl IntoResponse {
    // Generated from the code once; it cannot change while the process runs.
    static DOCUMENT: std::sync::LazyLock<serde_json::Value> = std::sync::LazyLock::new(openapi::document);
    Json(&*DOCUMENT)
}

async fn not_found(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        ErrorKind::NotFound,
        format!("no route for {method} {}", lim_domain::text::excerpt(uri.path())),
    )
}

async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        ErrorKind::MethodNotAllowed,
        format!("{method} is not allowed on {}", lim_domain::text::excerpt(uri.path())),
    )
}
