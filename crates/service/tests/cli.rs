//! The binary as an operator runs it: configuration errors, the embedded default,
//! graceful shutdown on SIGTERM, and no acknowledged event lost to `kill -9`.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BINARY: &str = env!("CARGO_BIN_EXE_llm-incident-manager");

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

struct Server {
    child: Child,
    base: String,
    metrics: String,
    http_addr: String,
}

impl Server {
    /// Starts `serve` in `dir` with only the listen addresses given: the store is the default.
    async fn start(dir: &Path) -> Server {
        let (http, metrics, grpc) = (free_port(), free_port(), free_port());
        let child = Command::new(BINARY)
            .current_dir(dir)
            .args(["serve", "--http-addr", &format!("127.0.0.1:{http}")])
            .args([
                "--metrics-addr",
                &format!("127.0.0.1:{metrics}"),
                "--grpc-addr",
                &format!("127.0.0.1:{grpc}"),
            ])
            .env("LIM_LOG_LEVEL", "warn")
            .stdout(Stdio::null())
            .spawn()
            .expect("start the binary");
        let server = Server {
            child,
            base: format!("http://127.0.0.1:{http}"),
            metrics: format!("http://127.0.0.1:{metrics}/metrics"),
            http_addr: format!("127.0.0.1:{http}"),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(response) = reqwest::get(format!("{}/health/ready", server.base)).await
                && response.status() == 200
            {
                return server;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the service did not become ready");
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
    }

    fn wait(mut self) -> std::process::ExitStatus {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(Instant::now() < deadline, "the service did not stop");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// A test that fails half-way must not leave the service running: its inherited stderr
/// would keep the test command's output pipe open and hang the run.
impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn post_event(base: &str, title: &str) -> u16 {
    let event = serde_json::json!({"source": "api", "title": title});
    reqwest::Client::new()
        .post(format!("{base}/v1/events"))
        .json(&event)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn incident_count(base: &str) -> usize {
    let body: serde_json::Value = reqwest::get(format!("{base}/v1/incidents?limit=500"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    body["incidents"].as_array().unwrap().len()
}

#[test]
fn config_check_names_the_key_and_the_reason() {
    let output = Command::new(BINARY)
        .args(["config", "check", "--http-addr", "not-an-address"])
        .output()
        .expect("run config check");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("http.addr: `not-an-address` is not a socket address"),
        "{stderr}"
    );

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("config.toml");
    std::fs::write(&file, "[database]\nurl = \"mysql://db\"\n").unwrap();
    let output = Command::new(BINARY)
        .args(["config", "check", "--config"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("database.url"));

    let output = Command::new(BINARY).args(["config", "check"]).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
}

#[test]
fn serve_refuses_to_start_on_a_bad_value() {
    let output = Command::new(BINARY)
        .args(["serve", "--log-format", "xml"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("log.format"));
}

#[tokio::test]
async fn serve_runs_on_the_embedded_default_and_stops_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path()).await;
    assert_eq!(post_event(&server.base, "embedded").await, 200);

    server.signal("-TERM");

    assert!(server.wait().success(), "SIGTERM must end with exit code 0");
    assert!(
        dir.path().join("data/incidents.db").exists(),
        "the default store is ./data/incidents.db"
    );
}

#[tokio::test]
async fn no_acknowledged_event_is_lost_to_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path()).await;
    for index in 0..50 {
        assert_eq!(post_event(&server.base, &format!("event {index}")).await, 200);
    }

    server.signal("-KILL");
    server.wait();

    let server = Server::start(dir.path()).await;
    assert_eq!(incident_count(&server.base).await, 50);
    server.signal("-TERM");
    assert!(server.wait().success());
}

fn client(server: &Server, args: &[&str]) -> serde_json::Value {
    let output = Command::new(BINARY)
        .args(args)
        .args(["--server", &server.base])
        .output()
        .expect("run the client");
    assert!(
        output.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("the client prints JSON")
}

#[tokio::test]
async fn the_client_commands_work_an_incident_against_a_running_server() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path()).await;

    let sent = client(
        &server,
        &[
            "events",
            "send",
            "--source",
            "shield",
            "--title",
            "Jailbreak attempts",
            "--severity",
            "critical",
        ],
    );
    assert_eq!(sent["outcome"], "created");
    let id = sent["incident_id"].as_str().unwrap().to_owned();
    let listed = client(&server, &["incidents", "list", "--state", "NEW", "--severity", "P0"]);
    assert_eq!(listed["incidents"][0]["id"], id.as_str());
    assert_eq!(
        client(&server, &["incidents", "assign", &id, "--assignee", "ana"])["state"],
        "ASSIGNED"
    );
    assert_eq!(
        client(&server, &["incidents", "ack", &id, "--actor", "ana"])["state"],
        "ACKNOWLEDGED"
    );
    assert_eq!(
        client(&server, &["incidents", "resolve", &id, "--note", "blocked"])["state"],
        "RESOLVED"
    );
    let shown = client(&server, &["incidents", "show", &id]);
    assert_eq!(shown["timeline"].as_array().unwrap().len(), 4);

    let refused = Command::new(BINARY)
        .args(["incidents", "ack", &id, "--server", &server.base])
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("409 Conflict: cannot acknowledge"));
    server.signal("-TERM");
    assert!(server.wait().success());
}

#[tokio::test]
async fn sigterm_lets_a_request_in_flight_finish_and_store_its_event() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path()).await;
    let body = serde_json::json!({"source": "api", "title": "sent across a shutdown"}).to_string();
    let (first_half, second_half) = body.split_at(body.len() / 2);
    let mut stream = tokio::net::TcpStream::connect(&server.http_addr).await.unwrap();
    let head = format!(
        "POST /v1/events HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(first_half.as_bytes()).await.unwrap();
    // The request is in flight once the handler waits for the rest of its body.
    let in_flight = r#"http_requests_in_flight{method="POST",path="/v1/events"} 1"#;
    let deadline = Instant::now() + Duration::from_secs(30);
    while !reqwest::get(&server.metrics)
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
        .contains(in_flight)
    {
        assert!(Instant::now() < deadline, "the request never reached the handler");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    server.signal("-TERM");
    stream.write_all(second_half.as_bytes()).await.unwrap();

    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(server.wait().success(), "SIGTERM must end with exit code 0");
    let server = Server::start(dir.path()).await;
    assert_eq!(
        incident_count(&server.base).await,
        1,
        "the event answered during shutdown is stored"
    );
    server.signal("-TERM");
    assert!(server.wait().success());
}
