//! A local HTTP receiver standing in for a webhook endpoint, Slack or PagerDuty: it keeps
//! every request it gets and answers as a test scripts it (statuses in turn, then a
//! default; a delay; `Retry-After`).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};

/// One request as the receiver got it.
#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    pub headers: HeaderMap,
    pub body: String,
}

impl Received {
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .unwrap_or("")
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|error| panic!("not JSON ({error}): {}", self.body))
    }
}

/// How the receiver answers.
#[derive(Debug, Clone)]
pub struct Script {
    /// Answered in turn, one per request; then `then`.
    pub first: Vec<u16>,
    pub then: u16,
    pub delay: Duration,
    pub retry_after: Option<u64>,
}

impl Default for Script {
    fn default() -> Self {
        Script {
            first: Vec::new(),
            then: 200,
            delay: Duration::ZERO,
            retry_after: None,
        }
    }
}

#[derive(Clone)]
struct Shared {
    received: Arc<Mutex<Vec<Received>>>,
    pending: Arc<Mutex<VecDeque<u16>>>,
    script: Script,
}

pub struct Receiver {
    pub url: String,
    shared: Shared,
    server: tokio::task::JoinHandle<()>,
}

impl Receiver {
    pub async fn start(script: Script) -> Receiver {
        let shared = Shared {
            received: Arc::default(),
            pending: Arc::new(Mutex::new(script.first.iter().copied().collect())),
            script,
        };
        let app = Router::new().fallback(receive).with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Receiver { url, shared, server }
    }

    pub fn received(&self) -> Vec<Received> {
        self.shared.received.lock().unwrap().clone()
    }

    /// Waits until `count` requests have come (or fails after `within`).
    pub async fn wait_for(&self, count: usize, within: Duration) -> Vec<Received> {
        let deadline = Instant::now() + within;
        loop {
            let received = self.received();
            if received.len() >= count {
                return received;
            }
            assert!(
                Instant::now() < deadline,
                "{} of {count} requests arrived: {received:#?}",
                received.len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn receive(State(shared): State<Shared>, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    shared.received.lock().unwrap().push(Received {
        path: uri.path().to_owned(),
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    });
    let status = shared.pending.lock().unwrap().pop_front().unwrap_or(shared.script.then);
    if !shared.script.delay.is_zero() {
        tokio::time::sleep(shared.script.delay).await;
    }
    let status = StatusCode::from_u16(status).unwrap();
    match shared.script.retry_after.filter(|_| !status.is_success()) {
        Some(seconds) => (status, [("retry-after", seconds.to_string())], "scripted").into_response(),
        None => (status, "scripted").into_response(),
    }
}
