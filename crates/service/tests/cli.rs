//! The binary as an operator runs it: configuration errors, the embedded default,
//! graceful shutdown on SIGTERM, and no acknowledged event lost to `kill -9`.

#[path = "support/service_process.rs"]
#[allow(dead_code)] // shared with the other process tests
mod service_process;

use std::process::Command;
use std::time::{Duration, Instant};

use service_process::{BINARY, ServiceProcess as Server};

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

/// What a client command prints, read as JSON.
fn client(server: &Server, args: &[&str]) -> serde_json::Value {
    serde_json::from_str(&run_client(server, args)).expect("the client prints JSON")
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

#[test]
fn an_empty_log_level_is_refused() {
    let output = Command::new(BINARY)
        .args(["config", "check", "--log-level", ""])
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("log.level: is empty"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// What a client command prints; it must succeed.
fn run_client(server: &Server, args: &[&str]) -> String {
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
    String::from_utf8(output.stdout).unwrap()
}

#[tokio::test]
async fn the_client_lists_page_by_page_or_all_and_as_a_table() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path()).await;
    for index in 0..5 {
        assert_eq!(post_event(&server.base, &format!("incident {index}")).await, 200);
    }

    let first = client(&server, &["incidents", "list", "--limit", "2"]);
    let cursor = first["next_cursor"].as_str().expect("a next page").to_owned();
    let second = client(&server, &["incidents", "list", "--limit", "2", "--cursor", &cursor]);
    let all = run_client(
        &server,
        &["incidents", "list", "--limit", "2", "--all", "--output", "json"],
    );
    let table = run_client(&server, &["incidents", "list", "--limit", "2", "--output", "table"]);

    let titles = |page: &serde_json::Value| -> Vec<String> {
        page["incidents"]
            .as_array()
            .unwrap()
            .iter()
            .map(|incident| incident["title"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(titles(&first), ["incident 4", "incident 3"]);
    assert_eq!(titles(&second), ["incident 2", "incident 1"]);
    let pages: Vec<serde_json::Value> = all.lines().map(|line| serde_json::from_str(line).unwrap()).collect();
    assert_eq!(pages.iter().flat_map(titles).count(), 5);
    assert_eq!(pages.len(), 3);
    let lines: Vec<&str> = table.lines().collect();
    assert!(
        lines[0].starts_with("ID ") && lines[0].contains("SEV") && lines[0].ends_with("TITLE"),
        "{table}"
    );
    assert!(lines[1].contains("P2") && lines[1].ends_with("incident 4"), "{table}");
    assert_eq!(lines[3], format!("(more: --cursor {cursor}, or --all)"));
    server.signal("-TERM");
    assert!(server.wait().success());
}

#[tokio::test]
async fn the_client_ends_quietly_when_its_reader_goes_away() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path()).await;
    for index in 0..3 {
        assert_eq!(post_event(&server.base, &format!("incident {index}")).await, 200);
    }
    let mut child = Command::new(BINARY)
        .args(["incidents", "list", "--all", "--server", &server.base])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // `| head -0`: the reader is gone before the client writes a byte.
    drop(child.stdout.take());

    let output = child.wait_with_output().unwrap();

    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    server.signal("-TERM");
    assert!(server.wait().success());
}

#[tokio::test]
async fn the_log_keeps_one_line_per_event_and_warns_of_alerts_changed_to_fit() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::launch(
        dir.path(),
        service_process::Launch {
            log_level: Some("info".into()),
            ..service_process::Launch::default()
        },
    )
    .await;
    let client = reqwest::Client::new();
    let labels: serde_json::Map<String, serde_json::Value> =
        (0..70).map(|n| (format!("l{n:02}"), serde_json::json!("v"))).collect();
    let webhook = serde_json::json!({"version": "4", "alerts": [
        {"status": "firing", "labels": labels, "fingerprint": "big"}
    ]});
    let answer = client
        .post(format!("{}/v1/integrations/alertmanager", server.base))
        .json(&webhook)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    let sent = client
        .post(format!("{}/v1/events", server.base))
        .json(&serde_json::json!({"source": "api", "title": "t"}))
        .send()
        .await
        .unwrap();
    let id = sent.json::<serde_json::Value>().await.unwrap()["incident_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let forged = "fixed\n2026-12-01T00:00:00.000000Z  INFO llm_incident_manager: admin granted";
    let answer = client
        .post(format!("{}/v1/incidents/{id}/resolve", server.base))
        .json(&serde_json::json!({"note": forged}))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    server.signal("-TERM");
    let log = server.log_text();
    assert!(server.wait().success());

    assert!(!log.contains('\u{1b}'), "no colour codes in a file: {log}");
    let warning = log
        .lines()
        .find(|line| line.contains("an event was changed to fit the limits"))
        .unwrap_or_else(|| panic!("no warning in:\n{log}"));
    assert!(
        warning.contains("WARN") && warning.contains("labels moved to the description"),
        "{warning}"
    );
    assert!(
        !log.lines().any(|line| line.starts_with("2026-12-01T00:00:00.000000Z")),
        "a note forged a log line:\n{log}"
    );
    assert!(log.contains("fixed\\n2026-12-01T00:00:00.000000Z"), "{log}");
}

/// A client command that must fail: its exit status and what it wrote to stderr.
fn failing_client(server: &Server, args: &[&str]) -> (Option<i32>, String) {
    let output = Command::new(BINARY)
        .args(args)
        .args(["--server", &server.base])
        .output()
        .expect("run the client");
    assert!(!output.status.success(), "{args:?} succeeded");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn time(value: &serde_json::Value) -> chrono::DateTime<chrono::FixedOffset> {
    chrono::DateTime::parse_from_rfc3339(value.as_str().expect("a time")).expect("an RFC 3339 time")
}

#[tokio::test]
async fn the_client_creates_lists_and_deletes_a_silence() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path()).await;

    let created = client(
        &server,
        &[
            "silences",
            "create",
            "--match",
            "source=shield",
            "--match",
            "severity=P0",
            "--match",
            "severity=P1",
            "--match-re",
            "labels.model=gpt-4.*",
            "--comment",
            "model upgrade",
            "--created-by",
            "ana",
            "--duration",
            "2h",
        ],
    );
    let id = created["id"].as_str().unwrap().to_owned();
    let listed = client(&server, &["silences", "list", "--output", "json"]);
    let table = run_client(&server, &["silences", "list", "--output", "table"]);
    let shown = client(&server, &["silences", "show", &id]);
    let expired = client(&server, &["silences", "delete", &id]);
    let active = client(&server, &["silences", "list", "--state", "active"]);
    let remaining = client(&server, &["silences", "list", "--output", "json"]);
    let (status, stderr) = failing_client(
        &server,
        &[
            "silences",
            "create",
            "--match",
            "source=shield",
            "--comment",
            "c",
            "--ends-at",
            "2030-01-01T00:00:00Z",
            "--duration",
            "1h",
        ],
    );

    assert_eq!(
        created["matchers"],
        serde_json::json!({"match": {"source": "shield", "severity": ["P0", "P1"]},
                           "match_re": {"labels.model": "gpt-4.*"}})
    );
    assert_eq!(created["comment"], "model upgrade");
    assert_eq!(created["created_by"], "ana");
    assert_eq!(created["state"], "active");
    let window = time(&created["ends_at"]) - time(&created["starts_at"]);
    assert!(
        window <= chrono::TimeDelta::hours(2) && window > chrono::TimeDelta::hours(2) - chrono::TimeDelta::seconds(30),
        "--duration 2h from now, by this machine's clock: {window}"
    );
    assert_eq!(listed["silences"].as_array().unwrap().len(), 1);
    assert_eq!(listed["silences"][0]["id"], id.as_str());
    assert_eq!(listed["silences"][0]["state"], "active");
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 2, "{table}");
    assert!(lines[0].starts_with("ID ") && lines[0].ends_with("COMMENT"), "{table}");
    assert!(lines[1].starts_with(&format!("{id}  active ")), "{table}");
    assert!(
        lines[1].contains("  severity=[P0,P1] source=shield labels.model=~gpt-4.*  ")
            && lines[1].ends_with("  model upgrade"),
        "{table}"
    );
    assert_eq!(shown, listed["silences"][0]);
    assert_eq!(expired["id"], id.as_str());
    assert_eq!(expired["state"], "expired");
    assert_eq!(active["silences"], serde_json::json!([]));
    assert_eq!(
        remaining["silences"],
        serde_json::json!([]),
        "a deleted silence is gone"
    );
    assert_eq!(status, Some(2), "clap refuses --ends-at with --duration");
    assert!(
        stderr.contains("'--ends-at <RFC3339>' cannot be used with '--duration <DURATION>'"),
        "{stderr}"
    );
    server.signal("-TERM");
    assert!(server.wait().success());
}

/// An email channel, two people it reaches, and a daily rotation between them that
/// hands over at 09:00 in Paris in winter.
const ONCALL_CONFIG: &str = "[channels.mail]\ntype = \"email\"\nsmtp = \"smtp://127.0.0.1:2525\"\n\
     from = \"im@example.com\"\nto = [\"ops@example.com\"]\n\n\
     [people.ana]\nemail = \"ana@example.com\"\n[people.bo]\nemail = \"bo@example.com\"\n\n\
     [schedules.primary]\nparticipants = [\"ana\", \"bo\"]\nrotation = \"daily\"\nstart = \"2026-01-05T09:00:00+01:00\"\n";

#[tokio::test]
async fn the_client_answers_who_is_on_call_and_lists_shifts() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::launch(
        dir.path(),
        service_process::Launch {
            config: Some(ONCALL_CONFIG.into()),
            ..service_process::Launch::default()
        },
    )
    .await;

    let monday_noon = client(
        &server,
        &["schedules", "oncall", "primary", "--at", "2026-01-05T12:00:00Z"],
    );
    let tuesday_morning = client(
        &server,
        &["schedules", "oncall", "primary", "--at", "2026-01-06T08:59:59+01:00"],
    );
    let shifts = client(
        &server,
        &[
            "schedules",
            "shifts",
            "primary",
            "--from",
            "2026-01-05T09:00:00+01:00",
            "--to",
            "2026-01-07T09:00:00+01:00",
        ],
    );
    let shift_table = run_client(
        &server,
        &[
            "schedules",
            "shifts",
            "primary",
            "--from",
            "2026-01-05T09:00:00+01:00",
            "--to",
            "2026-01-07T09:00:00+01:00",
            "--output",
            "table",
        ],
    );
    let schedules = client(&server, &["schedules", "list"]);
    let schedule_table = run_client(&server, &["schedules", "list", "--output", "table"]);
    let (_, unknown) = failing_client(&server, &["schedules", "oncall", "secondary"]);

    assert_eq!(
        monday_noon,
        serde_json::json!({"schedule": "primary", "person": "ana",
                           "from": "2026-01-05T09:00:00+01:00", "to": "2026-01-06T09:00:00+01:00"})
    );
    assert_eq!(tuesday_morning["person"], "ana");
    assert_eq!(
        shifts,
        serde_json::json!({"schedule": "primary", "shifts": [
            {"schedule": "primary", "person": "ana", "from": "2026-01-05T09:00:00+01:00", "to": "2026-01-06T09:00:00+01:00"},
            {"schedule": "primary", "person": "bo", "from": "2026-01-06T09:00:00+01:00", "to": "2026-01-07T09:00:00+01:00"},
        ]})
    );
    assert_eq!(
        shift_table.lines().collect::<Vec<_>>(),
        [
            format!("{:<20}  {:<25}  TO", "PERSON", "FROM"),
            format!("{:<20}  2026-01-05T09:00:00+01:00  2026-01-06T09:00:00+01:00", "ana"),
            format!("{:<20}  2026-01-06T09:00:00+01:00  2026-01-07T09:00:00+01:00", "bo"),
        ]
    );
    let primary = &schedules["schedules"][0];
    assert_eq!(schedules["schedules"].as_array().unwrap().len(), 1);
    assert_eq!(primary["name"], "primary");
    assert_eq!(primary["rotation"], "daily");
    assert_eq!(primary["participants"], serde_json::json!(["ana", "bo"]));
    assert_eq!(primary["start"], "2026-01-05T09:00:00+01:00");
    let now_on_call = primary["oncall"]["person"].as_str().unwrap();
    assert!(["ana", "bo"].contains(&now_on_call), "{primary}");
    let lines: Vec<&str> = schedule_table.lines().collect();
    assert_eq!(lines.len(), 2, "{schedule_table}");
    assert!(
        lines[0].starts_with("NAME ") && lines[0].ends_with("UNTIL"),
        "{schedule_table}"
    );
    assert!(
        lines[1].starts_with("primary ") && lines[1].contains("  daily "),
        "{schedule_table}"
    );
    assert!(
        lines[1].ends_with("+01:00"),
        "the shift ends in the schedule's offset: {schedule_table}"
    );
    assert!(unknown.contains("404 Not Found: "), "{unknown}");
    server.signal("-TERM");
    assert!(server.wait().success());
}

#[tokio::test]
async fn the_client_reloads_the_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::launch(
        dir.path(),
        service_process::Launch {
            config: Some(ONCALL_CONFIG.into()),
            ..service_process::Launch::default()
        },
    )
    .await;
    let port = server.http_addr.rsplit(':').next().unwrap();
    let file = dir.path().join(format!("config-{port}.toml"));
    assert!(file.exists(), "the configuration the server was started with");
    let names = |server: &Server| -> Vec<String> {
        client(server, &["schedules", "list"])["schedules"]
            .as_array()
            .unwrap()
            .iter()
            .map(|schedule| schedule["name"].as_str().unwrap().to_owned())
            .collect()
    };

    let secondary =
        "\n[schedules.secondary]\nparticipants = [\"bo\"]\nrotation = \"weekly\"\nstart = \"2026-01-05T09:00:00Z\"\n";
    std::fs::write(&file, format!("{ONCALL_CONFIG}{secondary}")).unwrap();
    let reloaded = client(&server, &["reload"]);
    let after_reload = names(&server);
    std::fs::write(
        &file,
        format!("{ONCALL_CONFIG}{secondary}\n[[routes]]\nname = \"all\"\nchannels = [\"pager\"]\n"),
    )
    .unwrap();
    let (status, stderr) = failing_client(&server, &["reload"]);
    let after_refusal = names(&server);

    assert_eq!(reloaded, serde_json::json!({"status": "ok"}));
    assert_eq!(after_reload, ["primary", "secondary"]);
    assert_eq!(status, Some(1));
    assert!(
        stderr.contains(
            "error: 422 Unprocessable Entity: invalid configuration: routes[0].channels: `pager` is no channel; define it as [channels.pager]"
        ),
        "{stderr}"
    );
    assert_eq!(
        after_refusal,
        ["primary", "secondary"],
        "the running configuration stays"
    );
    server.signal("-TERM");
    assert!(server.wait().success());
}

#[tokio::test]
async fn the_client_works_an_incident_over_grpc_and_watches_the_changes() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path()).await;
    let grpc = |args: &[&str]| {
        let mut args = args.to_vec();
        args.extend(["--grpc", "--grpc-server", &server.grpc]);
        client(&server, &args)
    };
    // A watch of P0 incidents, printing one JSON line per change.
    let mut watch = std::process::Command::new(BINARY)
        .args(["incidents", "watch", "--severity", "P0", "--grpc-server", &server.grpc])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The watch says on stderr when the server has subscribed it; its whole stderr is kept.
    let (subscribed, said) = std::sync::mpsc::channel();
    let watch_stderr = watch.stderr.take().unwrap();
    let watch_stderr = std::thread::spawn(move || {
        let mut all = String::new();
        for line in std::io::BufRead::lines(std::io::BufReader::new(watch_stderr)) {
            let line = line.unwrap();
            if line.starts_with("watching incidents") {
                let _ = subscribed.send(());
            }
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    tokio::task::spawn_blocking(move || said.recv_timeout(Duration::from_secs(20)))
        .await
        .unwrap()
        .expect("the watch connected");

    let sent = grpc(&[
        "events",
        "send",
        "--source",
        "shield",
        "--title",
        "Jailbreak attempts",
        "--severity",
        "critical",
    ]);
    assert_eq!(
        (sent["outcome"].as_str(), sent["severity"].as_str()),
        (Some("created"), Some("P0"))
    );
    let id = sent["incident_id"].as_str().unwrap().to_owned();
    let listed = grpc(&["incidents", "list", "--state", "NEW", "--severity", "P0"]);
    assert_eq!(listed["incidents"][0]["id"], id.as_str());
    // The same incident, printed as the HTTP API writes it.
    let over_http = client(&server, &["incidents", "list", "--state", "NEW", "--severity", "P0"]);
    assert_eq!(listed["incidents"][0], over_http["incidents"][0]);
    assert_eq!(
        grpc(&["incidents", "assign", &id, "--assignee", "ana"])["state"],
        "ASSIGNED"
    );
    assert_eq!(
        grpc(&["incidents", "ack", &id, "--actor", "ana"])["state"],
        "ACKNOWLEDGED"
    );
    assert_eq!(
        grpc(&["incidents", "resolve", &id, "--note", "blocked"])["state"],
        "RESOLVED"
    );
    let shown = grpc(&["incidents", "show", &id]);
    assert_eq!(shown["timeline"].as_array().unwrap().len(), 4);
    assert_eq!(shown, client(&server, &["incidents", "show", &id]));

    // Refusals name the code and the problem; HTTP-only commands refuse --grpc.
    let (_, stderr) = failing_client(
        &server,
        &["incidents", "ack", &id, "--grpc", "--grpc-server", &server.grpc],
    );
    assert!(stderr.contains("FailedPrecondition: cannot acknowledge"), "{stderr}");
    let (_, stderr) = failing_client(
        &server,
        &["events", "send", "--source", "nope", "--title", "t", "--grpc"],
    );
    assert!(stderr.contains("--source"), "{stderr}");
    let (_, stderr) = failing_client(&server, &["jobs", "list", "--grpc"]);
    assert!(stderr.contains("HTTP API only"), "{stderr}");

    // The watch printed the changes, then ends with the server.
    server.signal("-TERM");
    let output = tokio::task::spawn_blocking(move || watch.wait_with_output().unwrap())
        .await
        .unwrap();
    let kinds: Vec<String> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| {
            serde_json::from_str::<serde_json::Value>(line).unwrap()["kind"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(kinds, ["created", "state_changed", "state_changed", "state_changed"]);
    let stderr = watch_stderr.join().unwrap();
    assert!(stderr.contains("Unavailable: the server is shutting down"), "{stderr}");
    assert!(server.wait().success());
}
