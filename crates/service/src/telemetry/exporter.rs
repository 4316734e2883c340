//! The standalone `/metrics` listener Prometheus scrapes.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prometheus_client::encoding::{prometheus_text, text};

use crate::incidents::IncidentManager;

const OPENMETRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The `/metrics` listener; with `token`, it wants `Authorization: Bearer TOKEN`.
pub fn metrics_router(manager: Arc<IncidentManager>, token: Option<Arc<str>>) -> Router {
    let metrics = manager.metrics_handle();
    let router = Router::new()
        .route("/metrics", get(metrics_handler))
        .with_state(manager);
    match token {
        Some(token) => router.layer(axum::middleware::from_fn_with_state(
            (token, metrics),
            crate::auth::require_metrics_token,
        )),
        None => router,
    }
}

const REFRESH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// Refreshes the gauges that mirror the store, then encodes the registry in the format
/// the scraper asks for: OpenMetrics when its `Accept` names it, else Prometheus text 0.0.4.
async fn metrics_handler(State(manager): State<Arc<IncidentManager>>, headers: HeaderMap) -> Response {
    // A store that is slow to answer must not fail the scrape: every other metric is
    // still served, with the store gauges as last set.
    match tokio::time::timeout(REFRESH_TIMEOUT, manager.refresh_metrics()).await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => tracing::warn!(%error, "could not refresh store gauges before a scrape"),
        Err(_) => tracing::warn!("the store did not answer within {REFRESH_TIMEOUT:?}; store gauges not refreshed"),
    }
    let wants_openmetrics = headers
        .get(header::ACCEPT)
        .and_then(|accept| accept.to_str().ok())
        .is_some_and(|accept| accept.contains("application/openmetrics-text"));
    let registry = manager.metrics().registry();
    let mut body = String::with_capacity(64 * 1024);
    let (encoded, content_type) = if wants_openmetrics {
        (text::encode(&mut body, registry), OPENMETRICS_CONTENT_TYPE)
    } else {
        (
            prometheus_text::encode(&mut body, registry),
            prometheus_text::CONTENT_TYPE,
        )
    };
    match encoded {
        Ok(()) => ([(header::CONTENT_TYPE, content_type)], body).into_response(),
        Err(error) => {
            tracing::error!(%error, "could not encode metrics");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}
