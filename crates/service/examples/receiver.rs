//! A webhook receiver for `bench/ingest.sh` and `bench/jobs.sh`: answers every `POST`
//! with 200 after a delay, and counts what it got (`GET /count` answers the number of
//! requests and of distinct `webhook-id`s).
//!
//! `cargo run --release -p llm-incident-manager --example receiver -- 127.0.0.1:18090 5000`
//! (address, delay in milliseconds)
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::{get, post};

#[derive(Default)]
struct Seen {
    requests: u64,
    ids: HashSet<String>,
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let address = args.next().unwrap_or_else(|| "127.0.0.1:18090".into());
    let delay = Duration::from_millis(args.next().and_then(|ms| ms.parse().ok()).unwrap_or(0));
    let seen: Arc<Mutex<Seen>> = Arc::default();
    let app = Router::new()
        .route(
            "/hook",
            post(
                move |State(seen): State<Arc<Mutex<Seen>>>, headers: HeaderMap| async move {
                    {
                        let mut seen = seen.lock().unwrap();
                        seen.requests += 1;
                        if let Some(id) = headers.get("webhook-id").and_then(|id| id.to_str().ok()) {
                            seen.ids.insert(id.to_owned());
                        }
                    }
                    tokio::time::sleep(delay).await;
                    "ok"
                },
            ),
        )
        .route(
            "/count",
            get(|State(seen): State<Arc<Mutex<Seen>>>| async move {
                let seen = seen.lock().unwrap();
                format!("{} {}\n", seen.requests, seen.ids.len())
            }),
        )
        .with_state(seen);
    let listener = tokio::net::TcpListener::bind(&address).await.expect("bind");
    axum::serve(listener, app).await.expect("serve");
}
