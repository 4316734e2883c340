//! What the metrics cost: the HTTP middleware per request (the same router with and
//! without `track_http`), and encoding a registry of 10,000 series for a scrape.
//!
//! `cargo bench -p llm-incident-manager --bench metrics`

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::http::Request;
use axum::middleware::{self, Next};
use axum::routing::get;
use criterion::{Criterion, criterion_group, criterion_main};
use llm_incident_manager::telemetry::Metrics;
use llm_incident_manager::telemetry::metrics::HttpLabels;
use llm_incident_manager::telemetry::middleware::track_http;
use prometheus_client::encoding::prometheus_text;
use tower::ServiceExt;

const SERIES: usize = 10_000;

enum Layer {
    None,
    /// An axum `from_fn` middleware that does nothing: what the middleware machinery
    /// alone costs, apart from recording the metrics.
    EmptyFromFn,
    TrackHttp(Arc<Metrics>),
}

fn router(layer: Layer) -> Router {
    let router = Router::new().route("/v1/incidents/{id}", get(|| async { "ok" }));
    match layer {
        Layer::None => router,
        Layer::EmptyFromFn => router.layer(middleware::from_fn(|request, next: Next| next.run(request))),
        Layer::TrackHttp(metrics) => router.layer(middleware::from_fn_with_state(metrics, track_http)),
    }
}

/// Runs `iterations` requests through `router` and returns the time they took.
fn serve(runtime: &tokio::runtime::Runtime, router: &Router, iterations: u64) -> Duration {
    runtime.block_on(async {
        let started = Instant::now();
        for _ in 0..iterations {
            let request = Request::get("/v1/incidents/0196d0c4-7b1e-7c4e-9f4a-2b1f3c4d5e6f")
                .body(Body::empty())
                .expect("request");
            let response = router.clone().oneshot(request).await.expect("infallible");
            std::hint::black_box(response);
        }
        started.elapsed()
    })
}

fn http_middleware(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
    let plain = router(Layer::None);
    let empty = router(Layer::EmptyFromFn);
    let tracked = router(Layer::TrackHttp(Arc::new(Metrics::new("sqlite"))));
    let mut group = c.benchmark_group("http_request");
    group.bench_function("without_track_http", |b| {
        b.iter_custom(|iterations| serve(&runtime, &plain, iterations))
    });
    group.bench_function("with_empty_from_fn", |b| {
        b.iter_custom(|iterations| serve(&runtime, &empty, iterations))
    });
    group.bench_function("with_track_http", |b| {
        b.iter_custom(|iterations| serve(&runtime, &tracked, iterations))
    });
    group.finish();
}

/// The service's registry (process collector included) with 10,000 `http_requests_total`
/// series: 10 methods × 100 route templates × 10 statuses.
fn registry_with_series() -> Metrics {
    let metrics = Metrics::new("sqlite");
    let methods = [
        "GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "OTHER", "TRACE", "CONNECT",
    ];
    let statuses = [200, 201, 204, 400, 404, 409, 413, 415, 500, 503];
    for method in methods {
        for route in 0..SERIES / (methods.len() * statuses.len()) {
            for status in statuses {
                let labels = HttpLabels {
                    method,
                    path: format!("/v1/route{route}/{{id}}"),
                    status,
                };
                metrics.http_requests.get_or_create(&labels).inc_by(route as u64 + 1);
            }
        }
    }
    metrics
}

fn encode_registry(c: &mut Criterion) {
    let metrics = registry_with_series();
    let mut body = String::new();
    prometheus_text::encode(&mut body, metrics.registry()).expect("encode");
    let series = body
        .lines()
        .filter(|line| line.starts_with("http_requests_total{"))
        .count();
    assert_eq!(series, SERIES);

    c.bench_function("encode_10k_series_prometheus_text", |b| {
        b.iter(|| {
            let mut body = String::with_capacity(1 << 20);
            prometheus_text::encode(&mut body, metrics.registry()).expect("encode");
            std::hint::black_box(body)
        })
    });
}

criterion_group!(benches, http_middleware, encode_registry);
criterion_main!(benches);
