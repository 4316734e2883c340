//! The yardstick of `bench/ingest.sh`: an axum handler that takes `POST /v1/events`,
//! reads the body and stores nothing. The service's figures are read against it, since
//! the machine's speed drifts between runs.
//!
//! `cargo run --release -p llm-incident-manager --example null_server -- 127.0.0.1:18080`
use axum::Router;
use axum::body::Bytes;
use axum::routing::post;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() {
    let address = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:18080".into());
    let app = Router::new().route(
        "/v1/events",
        post(|body: Bytes| async move { format!("{{\"bytes\":{}}}", body.len()) }),
    );
    let listener = tokio::net::TcpListener::bind(&address).await.expect("bind");
    axum::serve(listener, app).await.expect("serve");
}
