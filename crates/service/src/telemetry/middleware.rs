//! HTTP request metrics: a middleware around every route, labelled by the matched route
//! template (never the raw path) so unknown paths cannot create series.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;

use super::metrics::{HttpFlightLabels, HttpLabels, Metrics};

/// The `path` label of every request that matched no route.
pub const UNMATCHED_PATH: &str = "unmatched";

pub async fn track_http(State(metrics): State<Arc<Metrics>>, request: Request, next: Next) -> Response {
    let method = method_label(request.method());
    let path = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| UNMATCHED_PATH.to_owned(), |matched| matched.as_str().to_owned());
    let flight = HttpFlightLabels { method, path };
    let in_flight = metrics.http_in_flight.get_or_create_owned(&flight);
    in_flight.inc();
    let started = Instant::now();
    let response = next.run(request).await;
    let elapsed = started.elapsed().as_secs_f64();
    in_flight.dec();
    let labels = HttpLabels {
        method,
        path: flight.path,
        status: response.status().as_u16(),
    };
    metrics.http_requests.get_or_create(&labels).inc();
    metrics.http_duration.get_or_create(&labels).observe(elapsed);
    response
}

/// Standard methods by name; anything else shares one value.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}
