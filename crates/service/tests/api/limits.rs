//! Each request costs bounded time: what no handler should wait for is refused at once,
//! a slow client is cut off, and every refusal, hyper's own included, is a JSON error.

use std::sync::Arc;
use std::time::{Duration, Instant};

use llm_incident_manager::clock::ManualClock;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::{TestApp, TestDatabase, start_time};

async fn spawn_with_limits(database: &TestDatabase) -> TestApp {
    TestApp::spawn_with(database, Arc::new(ManualClock::new(start_time())), |settings| {
        settings.http.header_timeout = Duration::from_secs(1);
        settings.http.body_timeout = Duration::from_secs(1);
    })
    .await
}

async fn connect(app: &TestApp) -> TcpStream {
    TcpStream::connect(app.address.trim_start_matches("http://"))
        .await
        .expect("connect")
}

/// Everything the server writes until it closes the connection (or 10 s pass).
async fn read_to_close(stream: &mut TcpStream) -> String {
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer)).await;
    String::from_utf8_lossy(&answer).into_owned()
}

/// The status and JSON body of a raw HTTP answer.
fn parse(answer: &str) -> (u16, Value) {
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {answer:?}"));
    let body = answer.split_once("\r\n\r\n").map_or("", |(_, body)| body);
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

#[tokio::test]
async fn a_declared_body_over_the_limit_is_refused_before_it_is_sent() {
    let database = TestDatabase::sqlite();
    let app = spawn_with_limits(&database).await;
    let mut stream = connect(&app).await;
    stream
        .write_all(b"POST /v1/events HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 99999999999\r\n\r\n{")
        .await
        .unwrap();

    let answer = read_to_close(&mut stream).await;

    let (status, body) = parse(&answer);
    assert_eq!(status, 413, "{answer}");
    assert_eq!(body["error"]["code"], "payload_too_large");
    assert!(
        body["error"]["message"].as_str().unwrap().contains("99999999999 bytes"),
        "{body}"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_body_that_arrives_too_slowly_gets_408() {
    let database = TestDatabase::sqlite();
    let app = spawn_with_limits(&database).await;
    let mut stream = connect(&app).await;
    stream
        .write_all(
            b"POST /v1/events HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{",
        )
        .await
        .unwrap();

    let started = Instant::now();
    let mut answer = vec![0; 4096];
    let read = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut answer))
        .await
        .expect("answered before the request timeout")
        .unwrap();

    let answer = String::from_utf8_lossy(&answer[..read]).into_owned();
    let (status, body) = parse(&answer);
    assert_eq!(status, 408, "{answer}");
    assert_eq!(body["error"]["code"], "request_timeout");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "after the body timeout, not the request's"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_connection_that_never_finishes_its_headers_is_closed() {
    let database = TestDatabase::sqlite();
    let app = spawn_with_limits(&database).await;
    let mut stream = connect(&app).await;
    stream
        .write_all(b"GET /health/live HTTP/1.1\r\nhost: x\r\n")
        .await
        .unwrap();

    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut rest)).await;

    assert!(
        matches!(closed, Ok(Ok(_))),
        "the server closed the connection: {closed:?}"
    );
    app.stop().await;
}

#[tokio::test]
async fn an_idle_connection_between_requests_is_closed_too() {
    let database = TestDatabase::sqlite();
    let app = spawn_with_limits(&database).await;
    let mut stream = connect(&app).await;
    stream
        .write_all(b"GET /health/live HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let mut answer = vec![0; 4096];
    let read = stream.read(&mut answer).await.unwrap();
    assert!(String::from_utf8_lossy(&answer[..read]).starts_with("HTTP/1.1 200"));

    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut rest)).await;

    assert!(
        matches!(closed, Ok(Ok(_))),
        "the idle connection was closed: {closed:?}"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_request_target_over_the_limit_gets_a_json_414_however_long() {
    let database = TestDatabase::sqlite();
    let app = spawn_with_limits(&database).await;
    for length in [10_000, 70_000] {
        let mut stream = connect(&app).await;
        let request = format!("GET /v1/incidents?q={} HTTP/1.1\r\nhost: x\r\n\r\n", "a".repeat(length));
        stream.write_all(request.as_bytes()).await.unwrap();

        let answer = read_to_close(&mut stream).await;

        let (status, body) = parse(&answer);
        assert_eq!(status, 414, "{length}: {answer}");
        assert_eq!(body["error"]["code"], "uri_too_long", "{length}: {answer}");
    }
    app.stop().await;
}

#[tokio::test]
async fn headers_too_large_and_requests_that_are_not_http_get_json_errors() {
    let database = TestDatabase::sqlite();
    let app = spawn_with_limits(&database).await;
    let huge = format!(
        "GET /health/live HTTP/1.1\r\nhost: x\r\nx-big: {}\r\n\r\n",
        "b".repeat(1_000_000)
    );
    for (request, status, code) in [
        (huge.as_str(), 431, "headers_too_large"),
        ("BLAH\x01 / HTTP/1.1\r\nhost: x\r\n\r\n", 400, "malformed_request"),
        ("GET / HTTP/1.1\r\nbad header\r\n\r\n", 400, "malformed_request"),
    ] {
        let mut stream = connect(&app).await;
        let _ = stream.write_all(request.as_bytes()).await;

        let answer = read_to_close(&mut stream).await;

        let (got, body) = parse(&answer);
        assert_eq!((got, body["error"]["code"].as_str()), (status, Some(code)), "{answer}");
        assert!(answer.contains("content-type: application/json"), "{answer}");
    }
    app.stop().await;
}
