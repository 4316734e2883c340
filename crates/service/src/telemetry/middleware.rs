//! HTTP request metrics: a middleware around every route, labelled by the matched route
//! template (never the raw path) so unknown paths cannot create series.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use prometheus_client::metrics::gauge::Gauge;

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
    let in_flight = InFlight::enter(metrics.http_in_flight.get_or_create_owned(&flight));
    let started = Instant::now();
    let response = next.run(request).await;
    let elapsed = started.elapsed().as_secs_f64();
    drop(in_flight);
    let labels = HttpLabels {
        method,
        path: flight.path,
        status: response.status().as_u16(),
    };
    metrics.http_requests.get_or_create(&labels).inc();
    metrics.http_duration.get_or_create(&labels).observe(elapsed);
    response
}

/// One request counted in `http_requests_in_flight` until dropped. The request future
/// can be dropped before it completes (a client that went away, a layer outside that gives
/// up on it), so the decrement cannot wait for the response.
struct InFlight(Gauge);

impl InFlight {
    fn enter(gauge: Gauge) -> Self {
        gauge.inc();
        InFlight(gauge)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use axum::Router;
    use axum::body::Body;
    use axum::routing::get;
    use tower::ServiceExt;

    use super::*;

    #[tokio::test]
    async fn a_request_dropped_before_its_response_is_no_longer_in_flight() {
        let metrics = Arc::new(Metrics::new("sqlite"));
        let app = Router::new()
            .route("/stuck", get(std::future::pending::<&'static str>))
            .layer(axum::middleware::from_fn_with_state(Arc::clone(&metrics), track_http));
        let in_flight = || {
            metrics
                .http_in_flight
                .get_or_create(&HttpFlightLabels {
                    method: "GET",
                    path: "/stuck".to_owned(),
                })
                .get()
        };

        let request = Request::get("/stuck").body(Body::empty()).unwrap();
        let mut pending = Box::pin(app.oneshot(request));
        let gave_up = tokio::time::timeout(Duration::from_millis(20), &mut pending).await;
        assert!(gave_up.is_err(), "the handler never answers");
        assert_eq!(in_flight(), 1);

        drop(pending);
        assert_eq!(in_flight(), 0);
    }
}
