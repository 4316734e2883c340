//! A local stand-in for an LLM provider that speaks its real wire format: OpenAI Chat
//! Completions (also Azure's and OpenAI-compatible servers') or Anthropic Messages. It
//! records every request and answers each with the next scripted reply, then with a good
//! answer, usage figures included.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// Prompt and completion tokens every good answer reports.
pub const PROMPT_TOKENS: u64 = 1200;
pub const COMPLETION_TOKENS: u64 = 80;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    OpenAi,
    Anthropic,
}

/// One scripted answer.
#[derive(Debug, Clone)]
pub enum Reply {
    /// A good answer: the classification or insights the request asks for, with this
    /// classification's severity and category.
    Good {
        severity: &'static str,
        category: &'static str,
    },
    /// This model text in a well-formed envelope.
    Content(String),
    /// A status with a body (and `Retry-After` seconds).
    Status(u16, Option<u64>),
    /// A body that is not the provider's format.
    Garbage,
    /// No answer before the client gives up.
    Stall,
}

#[derive(Debug, Clone)]
pub struct Request {
    pub path: String,
    pub query: Option<String>,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|value| value.to_str().ok())
    }

    /// `classify` or `insights`, from the schema the request asks to follow.
    pub fn operation(&self) -> &'static str {
        let text = self.body.to_string();
        if text.contains("probable_cause") {
            "insights"
        } else {
            "classify"
        }
    }

    /// Every message's text, system prompt included.
    pub fn text(&self) -> String {
        self.body.to_string()
    }
}

#[derive(Clone)]
struct Shared {
    format: Format,
    script: Arc<Mutex<VecDeque<Reply>>>,
    received: Arc<Mutex<Vec<Request>>>,
    good: Arc<Mutex<(&'static str, &'static str)>>,
}

pub struct LlmServer {
    pub url: String,
    shared: Shared,
    server: tokio::task::JoinHandle<()>,
}

impl LlmServer {
    pub async fn start(format: Format, script: Vec<Reply>) -> LlmServer {
        let shared = Shared {
            format,
            script: Arc::new(Mutex::new(script.into())),
            received: Arc::default(),
            good: Arc::new(Mutex::new(("P1", "security"))),
        };
        let app = Router::new().fallback(answer).with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        LlmServer { url, shared, server }
    }

    pub fn received(&self) -> Vec<Request> {
        self.shared.received.lock().unwrap().clone()
    }

    /// Waits until `count` requests have come (or fails after `within`).
    pub async fn wait_for(&self, count: usize, within: Duration) -> Vec<Request> {
        let deadline = std::time::Instant::now() + within;
        loop {
            let received = self.received();
            if received.len() >= count {
                return received;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{} of {count} requests arrived",
                received.len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for LlmServer {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn answer(State(shared): State<Shared>, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let request = Request {
        path: uri.path().to_owned(),
        query: uri.query().map(str::to_owned),
        headers,
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
    };
    let operation = request.operation();
    shared.received.lock().unwrap().push(request);
    let next = shared.script.lock().unwrap().pop_front();
    let (severity, category) = *shared.good.lock().unwrap();
    let reply = next.unwrap_or(Reply::Good { severity, category });
    let content = match reply {
        Reply::Good { severity, category } => good(operation, severity, category),
        Reply::Content(text) => text,
        Reply::Status(code, retry_after) => {
            let status = StatusCode::from_u16(code).unwrap();
            let body = json!({"error": {"message": "scripted", "type": "scripted"}}).to_string();
            return match retry_after {
                Some(seconds) => (status, [("retry-after", seconds.to_string())], body).into_response(),
                None => (status, body).into_response(),
            };
        }
        Reply::Garbage => return (StatusCode::OK, "<html>gateway</html>").into_response(),
        Reply::Stall => {
            tokio::time::sleep(Duration::from_secs(30)).await;
            return StatusCode::GATEWAY_TIMEOUT.into_response();
        }
    };
    let body = match shared.format {
        Format::OpenAi => json!({
            "id": "chatcmpl-1", "object": "chat.completion", "model": "scripted",
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": content}}],
            "usage": {"prompt_tokens": PROMPT_TOKENS, "completion_tokens": COMPLETION_TOKENS,
                      "total_tokens": PROMPT_TOKENS + COMPLETION_TOKENS},
        }),
        Format::Anthropic => {
            let input: Value = serde_json::from_str(&content).unwrap_or(Value::String(content));
            json!({
                "id": "msg_1", "type": "message", "role": "assistant", "model": "scripted",
                "stop_reason": "tool_use",
                "content": [{"type": "tool_use", "id": "toolu_1", "name": "record", "input": input}],
                "usage": {"input_tokens": PROMPT_TOKENS, "output_tokens": COMPLETION_TOKENS},
            })
        }
    };
    (StatusCode::OK, axum::Json(body)).into_response()
}

fn good(operation: &str, severity: &str, category: &str) -> String {
    match operation {
        "insights" => json!({
            "summary": "Jailbreak attempts against the chat model.",
            "probable_cause": "A prompt list circulating on a forum.",
            "remediation": ["Block the offending keys", "Tighten the input filter"],
        }),
        _ => json!({"severity": severity, "category": category, "confidence": 0.87,
                    "reasoning": "Repeated jailbreak attempts."}),
    }
    .to_string()
}
