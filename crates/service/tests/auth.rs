//! API keys through the binary as an operator runs it: the service refuses to serve an
//! open API on a non-loopback address; `keys create`, `list` and `revoke`; and no key,
//! hash or token ever appears in the log, the metrics or an answer.

#[path = "support/service_process.rs"]
#[allow(dead_code)] // shared with the other process tests
mod service_process;

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use service_process::{BINARY, Launch, ServiceProcess, free_port};

fn keys(dir: &std::path::Path, args: &[&str]) -> (bool, String, String) {
    let output = Command::new(BINARY)
        .current_dir(dir)
        .arg("keys")
        .args(args)
        .env_remove("LIM_CONFIG")
        .output()
        .expect("run keys");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_guard_a_public_api_and_no_secret_leaks() {
    llm_incident_manager::tls::install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();

    // With no key, the service will not serve the API on a public address.
    let refused = Command::new(BINARY)
        .current_dir(dir.path())
        .args(["serve", "--http-addr", &format!("0.0.0.0:{}", free_port())])
        .args(["--grpc-addr", &format!("127.0.0.1:{}", free_port())])
        .args(["--metrics-addr", &format!("127.0.0.1:{}", free_port())])
        .env_remove("LIM_CONFIG")
        .output()
        .unwrap();
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("refusing to serve the API on http.addr 0.0.0.0:"),
        "{stderr}"
    );
    assert!(
        stderr.contains("keys create") && stderr.contains("auth.allow_anonymous"),
        "{stderr}"
    );
    // Unless the operator says so.
    let open = ServiceProcess::launch(
        dir.path(),
        Launch {
            host: Some("0.0.0.0".into()),
            config: Some("[auth]\nallow_anonymous = true\n".into()),
            ..Launch::default()
        },
    )
    .await;
    open.signal("-TERM");
    assert!(open.wait().success());

    // Keys, made against the same (default) store.
    let (created, key, note) = keys(dir.path(), &["create", "--name", "ops", "--scope", "admin"]);
    assert!(created, "{note}");
    let key = key.trim().to_owned();
    assert!(key.starts_with("lim_") && note.contains("shown once"), "{key} / {note}");
    let (created, ingest_key, _) = keys(dir.path(), &["create", "--name", "alertmanager", "--scope", "ingest"]);
    assert!(created);
    let ingest_key = ingest_key.trim().to_owned();
    let (duplicate, _, error) = keys(dir.path(), &["create", "--name", "ops", "--scope", "read"]);
    assert!(
        !duplicate && error.contains("an API key named `ops` exists already"),
        "{error}"
    );
    let (bad, _, error) = keys(dir.path(), &["create", "--name", "x", "--scope", "root"]);
    assert!(!bad && error.contains("--scope"), "{error}");
    let hash = {
        use sha2::Digest;
        sha2::Sha256::digest(key.as_bytes())
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect::<String>()
    };

    // Now it serves on every address, and wants the keys.
    let server = ServiceProcess::launch(
        dir.path(),
        Launch {
            host: Some("0.0.0.0".into()),
            config: Some("[metrics]\ntoken = \"metrics-token-secret\"\n".into()),
            log_level: Some("debug".into()),
            ..Launch::default()
        },
    )
    .await;
    let client = reqwest::Client::new();
    let answers = std::sync::Mutex::new(Vec::new());
    let send = async |method: &str, path: &str, key: Option<&str>, body: Option<Value>| {
        let url = format!("{}{path}", server.base);
        let mut request = if method == "GET" {
            client.get(url)
        } else {
            client.post(url)
        };
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let headers = format!("{:?}", response.headers());
        let text = response.text().await.unwrap();
        answers.lock().unwrap().push(format!("{headers}\n{text}"));
        status
    };
    let event = json!({"source": "api", "title": "with a key"});
    assert_eq!(send("POST", "/v1/events", None, Some(event.clone())).await, 401);
    assert_eq!(
        send("POST", "/v1/events", Some("lim_wrong"), Some(event.clone())).await,
        401
    );
    assert_eq!(
        send("POST", "/v1/events", Some(&ingest_key), Some(event.clone())).await,
        200
    );
    assert_eq!(send("GET", "/v1/incidents", Some(&ingest_key), None).await, 403);
    assert_eq!(send("GET", "/v1/incidents", Some(&key), None).await, 200);
    assert_eq!(send("POST", "/-/reload", Some(&key), Some(json!({}))).await, 200);
    assert_eq!(send("GET", "/health/ready", None, None).await, 200);
    let mut grpc = lim_proto::v1::incident_service_client::IncidentServiceClient::connect(server.grpc.clone())
        .await
        .unwrap();
    let mut request = tonic::Request::new(lim_proto::v1::ListIncidentsRequest::default());
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {key}").parse().unwrap());
    assert_eq!(
        grpc.list_incidents(request).await.unwrap().into_inner().incidents.len(),
        1
    );
    let unauthenticated = grpc
        .list_incidents(lim_proto::v1::ListIncidentsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(unauthenticated.code(), tonic::Code::Unauthenticated);
    answers.lock().unwrap().push(format!("{unauthenticated:?}"));
    // A watch made with the key, which its revocation below ends.
    let mut watch_request = tonic::Request::new(lim_proto::v1::WatchIncidentsRequest::default());
    watch_request
        .metadata_mut()
        .insert("authorization", format!("Bearer {key}").parse().unwrap());
    let mut watch = grpc.watch_incidents(watch_request).await.unwrap().into_inner();
    let scrape = client
        .get(&server.metrics)
        .bearer_auth("metrics-token-secret")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        scrape.contains("auth_failures_total{reason=\"forbidden\"} 1"),
        "{scrape}"
    );

    // The command-line client sends its --key (or LIM_API_KEY), over HTTP and gRPC.
    for over_grpc in [false, true] {
        let mut command = Command::new(BINARY);
        command
            .args([
                "incidents",
                "list",
                "--server",
                &server.base,
                "--grpc-server",
                &server.grpc,
            ])
            .env("LIM_API_KEY", &key);
        if over_grpc {
            command.arg("--grpc");
        }
        let output = command.output().unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        let listed: Value = serde_json::from_slice(&output.stdout).unwrap();
        assert_eq!(listed["incidents"].as_array().unwrap().len(), 1);
        let refused = Command::new(BINARY)
            .args([
                "incidents",
                "list",
                "--server",
                &server.base,
                "--grpc-server",
                &server.grpc,
            ])
            .args(if over_grpc { vec!["--grpc"] } else { vec![] })
            .env_remove("LIM_API_KEY")
            .output()
            .unwrap();
        assert!(!refused.status.success());
        let stderr = String::from_utf8_lossy(&refused.stderr);
        assert!(stderr.contains("401") || stderr.contains("Unauthenticated"), "{stderr}");
    }

    // `keys list` shows no key; a revoked key is refused within a second.
    // The key was used: its last use is written back within a second or so.
    let listing = Instant::now();
    let list = loop {
        let (listed, list, _) = keys(dir.path(), &["list"]);
        assert!(listed);
        let list: Value = serde_json::from_str(&list).unwrap();
        if list[1]["last_used_at"].is_string() {
            break list;
        }
        assert!(
            listing.elapsed() < Duration::from_secs(5),
            "no last use recorded: {list}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(list[1]["name"], "ops");
    assert_eq!(list[1]["scopes"], json!(["admin"]));
    // And an event stream made with it, which takes events until the key is revoked.
    let (feed, fed) = tokio::sync::mpsc::channel::<lim_proto::v1::SubmitEventRequest>(4);
    let events = futures_util::stream::unfold(fed, |mut fed| async move { fed.recv().await.map(|event| (event, fed)) });
    let mut stream_request = tonic::Request::new(events);
    stream_request
        .metadata_mut()
        .insert("authorization", format!("Bearer {key}").parse().unwrap());
    let mut events_client = lim_proto::v1::event_service_client::EventServiceClient::connect(server.grpc.clone())
        .await
        .unwrap();
    let streaming = tokio::spawn(async move { events_client.stream_events(stream_request).await });
    let streamed = |title: &str| lim_proto::v1::SubmitEventRequest {
        event: Some(lim_proto::v1::Event {
            source: lim_proto::v1::Source::Sentinel as i32,
            title: title.into(),
            ..lim_proto::v1::Event::default()
        }),
    };
    feed.send(streamed("streamed before the revocation")).await.unwrap();
    let (revoked, answer, _) = keys(dir.path(), &["revoke", "ops"]);
    assert!(revoked, "{answer}");
    let revoked_at = Instant::now();
    while send("GET", "/v1/incidents", Some(&key), None).await != 401 {
        assert!(
            revoked_at.elapsed() < Duration::from_secs(2),
            "a revoked key is still accepted"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The watch opened with it ends too, UNAUTHENTICATED (after the change the stream's
    // first event made, which it saw).
    let ended = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match watch.message().await {
                Ok(Some(_change)) => continue,
                other => return other,
            }
        }
    })
    .await
    .expect("the watch of a revoked key goes on");
    let status = ended.expect_err("the watch ends with a status");
    assert_eq!(status.code(), tonic::Code::Unauthenticated, "{status:?}");
    assert!(status.message().contains("revoked"), "{status:?}");
    feed.send(streamed("streamed after the revocation")).await.unwrap();
    let status = tokio::time::timeout(Duration::from_secs(5), streaming)
        .await
        .expect("the event stream of a revoked key goes on")
        .unwrap()
        .expect_err("the event stream ends with a status");
    assert_eq!(status.code(), tonic::Code::Unauthenticated, "{status:?}");
    assert!(
        status.message().contains("[1]: the API key of this stream was revoked"),
        "{status:?}"
    );
    let (_, after, _) = keys(dir.path(), &["list"]);

    server.signal("-TERM");
    let log_path = server.log.clone();
    assert!(server.wait().success());
    let log = std::fs::read_to_string(log_path).unwrap();
    let answers = answers.into_inner().unwrap();
    assert!(log.lines().count() > 5, "the debug log was written");
    // A refused client is named at its first failure of a minute, with the reason (twice
    // should a slow run cross into a second minute).
    let named = log
        .lines()
        .filter(|line| line.contains("refused an API request for its key"))
        .collect::<Vec<_>>();
    assert!(
        (1..=2).contains(&named.len())
            && named[0].contains("client=127.0.0.1")
            && named[0].contains("reason=\"missing\""),
        "{named:?}"
    );
    for (what, text) in [
        ("the log", log.as_str()),
        ("the metrics", scrape.as_str()),
        ("the answers", &answers.join("\n")),
        ("keys list", &format!("{list}{after}")),
    ] {
        for secret in [key.as_str(), ingest_key.as_str(), hash.as_str(), "metrics-token-secret"] {
            // `keys list` and the answers may name a key, never show it.
            assert!(!text.contains(secret), "{what} shows a secret");
        }
    }
}
