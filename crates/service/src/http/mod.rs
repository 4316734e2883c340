//! The HTTP API (DESIGN §3), built by a function tests can call with `oneshot`.

pub mod alertmanager;
pub mod error;
pub mod events;
pub mod incidents;

use std::sync::Arc;
use std::time::Duration;

use axum::BoxError;
use axum::error_handling::HandleErrorLayer;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{Method, Uri};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router, middleware};
use lim_domain::ErrorKind;
use tower::ServiceBuilder;
use tower::timeout::TimeoutLayer;
use utoipa::OpenApi;

use self::error::ApiError;
use crate::incidents::IncidentManager;
use crate::telemetry::middleware::track_http;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "llm-incident-manager",
        description = "Incident manager for teams that run LLMs in production"
    ),
    paths(
        events::submit_events,
        alertmanager::receive_webhook,
        incidents::list_incidents,
        incidents::open_incident,
        incidents::get_incident,
        incidents::assign,
        incidents::acknowledge,
        incidents::start,
        incidents::resolve,
        incidents::reclassify,
        incidents::add_comment,
        incidents::list_comments,
        incidents::timeline,
        live,
        ready,
    )
)]
pub struct ApiDoc;

pub struct HttpOptions {
    pub max_body_bytes: usize,
    pub request_timeout: Duration,
}

pub fn router(manager: Arc<IncidentManager>, metrics: Arc<crate::telemetry::Metrics>, options: &HttpOptions) -> Router {
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
        .route("/health/live", get(live))
        .route("/health/ready", get(ready))
        .route("/openapi.json", get(openapi))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(manager)
        .layer(DefaultBodyLimit::max(options.max_body_bytes))
        // A request stuck behind a stalled store answers 503 rather than piling up.
        .layer(
            ServiceBuilder::new()
                .layer(HandleErrorLayer::new(timed_out))
                .layer(TimeoutLayer::new(options.request_timeout)),
        )
        // Outermost, so it also counts the 503 of a timed-out request.
        .layer(middleware::from_fn_with_state(metrics, track_http))
}

async fn timed_out(error: BoxError) -> ApiError {
    if error.is::<tower::timeout::error::Elapsed>() {
        return ApiError::new(ErrorKind::Unavailable, "the request took too long; retry later");
    }
    tracing::error!(%error, "request failed in a middleware");
    ApiError::new(ErrorKind::Internal, "internal error; the cause is in the service log")
}

/// The process is up.
#[utoipa::path(get, path = "/health/live", tag = "health", responses((status = 200, description = "Alive")))]
pub async fn live() -> impl IntoResponse {
    Json(serde_json::json!({"status": "ok"}))
}

/// The store answers: ready for traffic.
#[utoipa::path(get, path = "/health/ready", tag = "health",
    responses((status = 200, description = "Ready"), (status = 503, body = error::ErrorBody)))]
pub async fn ready(State(manager): State<Arc<IncidentManager>>) -> Result<impl IntoResponse, ApiError> {
    manager.ready().await?;
    Ok(Json(serde_json::json!({"status": "ok"})))
}

async fn openapi() -> impl IntoResponse {
    // Generated from the code once; it cannot change while the process runs.
    static DOCUMENT: std::sync::LazyLock<utoipa::openapi::OpenApi> = std::sync::LazyLock::new(ApiDoc::openapi);
    Json(&*DOCUMENT)
}

async fn not_found(method: Method, uri: Uri) -> ApiError {
    ApiError::new(ErrorKind::NotFound, format!("no route for {method} {}", uri.path()))
}

async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        ErrorKind::MethodNotAllowed,
        format!("{method} is not allowed on {}", uri.path()),
    )
}
