//! A real Prometheus (Debian's `prometheus`, on free loopback ports) scrapes the running
//! service: every metric family is ingested with its declared type and label names, and
//! `promtool check metrics` finds nothing to say about a scrape.

#[path = "api/helpers.rs"]
#[allow(dead_code)] // this target uses part of the API tests' harness
mod helpers;
#[path = "support/llm_server.rs"]
#[allow(dead_code)] // shared with the API tests
mod llm_server;
#[path = "support/receiver.rs"]
#[allow(dead_code)] // shared with the API tests
mod receiver;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;

use helpers::{TestApp, TestDatabase, event, id_of};

const DEADLINE: Duration = Duration::from_secs(60);

/// Every family the service exposes: name (as queried), type, label names.
const FAMILIES: &[(&str, &str, &[&str])] = &[
    ("http_requests_total", "counter", &["method", "path", "status"]),
    (
        "http_request_duration_seconds",
        "histogram",
        &["method", "path", "status"],
    ),
    ("http_requests_in_flight", "gauge", &["method", "path"]),
    ("grpc_requests_total", "counter", &["service", "method", "code"]),
    ("grpc_request_duration_seconds", "histogram", &["service", "method"]),
    ("auth_failures_total", "counter", &["reason"]),
    ("database_query_duration_seconds", "histogram", &["operation"]),
    ("database_connections_in_use", "gauge", &[]),
    ("database_connections_idle", "gauge", &[]),
    ("database_connections_max", "gauge", &[]),
    ("incidents_total", "counter", &["severity", "source", "category"]),
    ("incidents_active", "gauge", &["severity", "source", "category"]),
    (
        "incidents_unacknowledged_oldest_timestamp_seconds",
        "gauge",
        &["severity"],
    ),
    ("incidents_deduplicated_total", "counter", &["source"]),
    ("incident_acknowledgment_duration_seconds", "histogram", &["severity"]),
    (
        "incidents_resolved_total",
        "counter",
        &["severity", "source", "category"],
    ),
    (
        "incident_resolution_duration_seconds",
        "histogram",
        &["severity", "source"],
    ),
    (
        "incident_state_transitions_total",
        "counter",
        &["from_state", "to_state"],
    ),
    ("job_executions_total", "counter", &["job_type", "status"]),
    ("job_duration_seconds", "histogram", &["job_type"]),
    ("job_queue_depth", "gauge", &["job_type"]),
    ("jobs_in_progress", "gauge", &["job_type"]),
    ("jobs_dead_total", "counter", &["job_type"]),
    ("notifications_total", "counter", &["channel", "status"]),
    ("notification_duration_seconds", "histogram", &["channel"]),
    ("escalations_total", "counter", &["policy", "level"]),
    ("escalation_policy_last_level", "gauge", &["policy", "level"]),
    (
        "llm_requests_total",
        "counter",
        &["provider", "model", "operation", "status"],
    ),
    (
        "llm_request_duration_seconds",
        "histogram",
        &["provider", "model", "operation"],
    ),
    ("llm_tokens_total", "counter", &["provider", "model", "token_type"]),
    ("llm_cost_dollars_total", "counter", &["provider", "model"]),
    ("llm_errors_total", "counter", &["provider", "model", "error_type"]),
    ("cache_hits_total", "counter", &["cache"]),
    ("cache_misses_total", "counter", &["cache"]),
    ("config_last_reload_successful", "gauge", &[]),
    ("config_last_reload_success_timestamp_seconds", "gauge", &[]),
    ("build_info", "gauge", &["version", "backend"]),
    ("process_cpu_seconds_total", "counter", &[]),
    ("process_resident_memory_bytes", "gauge", &[]),
    ("process_virtual_memory_bytes", "gauge", &[]),
    ("process_open_fds", "gauge", &[]),
    ("process_max_fds", "gauge", &[]),
    ("process_threads", "gauge", &[]),
    ("process_start_time_seconds", "gauge", &[]),
    ("process_uptime_seconds", "gauge", &[]),
];

/// Labels Prometheus adds to every scraped series.
const TARGET_LABELS: &[&str] = &["__name__", "instance", "job"];

/// A Prometheus child process, killed when the test ends however it ends.
struct PrometheusProcess {
    child: std::process::Child,
    url: String,
    log: std::path::PathBuf,
}

impl PrometheusProcess {
    fn start(work_dir: &Path, metrics_target: &str) -> PrometheusProcess {
        let config = work_dir.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n\
                 scrape_configs:\n  - job_name: lim\n    static_configs:\n      - targets: ['{metrics_target}']\n"
            ),
        )
        .expect("write prometheus.yml");
        let address = free_address();
        let log = work_dir.join("prometheus.log");
        let log_file = std::fs::File::create(&log).expect("create prometheus.log");
        let child = std::process::Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", work_dir.join("tsdb").display()))
            .arg(format!("--web.listen-address={address}"))
            .stdout(log_file.try_clone().expect("log file"))
            .stderr(log_file)
            .spawn()
            .unwrap_or_else(|error| {
                panic!(
                    "cannot start `prometheus` ({error}); this test needs Debian's `prometheus` package \
                     (scripts/test.sh installs it: apt-get install -y prometheus)"
                )
            });
        PrometheusProcess {
            child,
            url: format!("http://{address}"),
            log,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for PrometheusProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A loopback address nothing listens on right now.
fn free_address() -> std::net::SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
}

async fn api(client: &reqwest::Client, prometheus: &PrometheusProcess, path_and_query: &str) -> Option<Value> {
    let response = client
        .get(format!("{}{path_and_query}", prometheus.url))
        .send()
        .await
        .ok()?;
    let body: Value = response.json().await.ok()?;
    (body["status"] == "success").then(|| body["data"].clone())
}

/// Creates, deduplicates, assigns, acknowledges, starts and resolves incidents so that
/// every family has at least one series.
async fn drive_traffic(app: &TestApp) {
    let first = id_of(&app.send_event(event("Latency over SLO")).await);
    app.send_event(event("Latency over SLO")).await;
    let (status, _) = app
        .post(
            &format!("/v1/incidents/{first}/assign"),
            json!({"assignee": "ana", "team": "ml-oncall"}),
        )
        .await;
    assert_eq!(status, 200);
    app.advance(90);
    assert_eq!(
        app.post(&format!("/v1/incidents/{first}/acknowledge"), json!({}))
            .await
            .0,
        200
    );
    assert_eq!(
        app.post(&format!("/v1/incidents/{first}/start"), json!({})).await.0,
        200
    );
    app.advance(3600);
    assert_eq!(
        app.post(
            &format!("/v1/incidents/{first}/resolve"),
            json!({"note": "rolled back"})
        )
        .await
        .0,
        200
    );
    app.send_event(
        json!({"source": "shield", "title": "Prompt injection", "severity": "critical", "category": "security"}),
    )
    .await;
    app.incident(&first).await;
    assert_eq!(app.get("/no/such/route").await.0, 404);
    let mut grpc = lim_proto::v1::incident_service_client::IncidentServiceClient::connect(app.grpc_address.clone())
        .await
        .expect("connect to the gRPC API");
    grpc.get_incident(lim_proto::v1::GetIncidentRequest { id: first })
        .await
        .expect("the incident over gRPC");
}

/// Stores an API key, then sends a request without one until it is refused (the service
/// reads the keys twice a second): `auth_failures_total` gets its series. Run it last,
/// since every request after it needs the key.
async fn refuse_a_request(app: &TestApp, database: &TestDatabase) {
    let store = lim_store::connect(&database.url(), lim_store::StoreOptions::default())
        .await
        .expect("open the store");
    let (_key, hash) = llm_incident_manager::auth::new_key();
    store
        .create_api_key(lim_domain::auth::ApiKey {
            name: "scraper-test".into(),
            hash,
            scopes: vec![lim_domain::auth::Scope::Read],
            created_at: helpers::start_time(),
            last_used_at: None,
            revoked_at: None,
        })
        .await
        .expect("store a key");
    let started = Instant::now();
    while app.get("/v1/incidents").await.0 != 401 {
        assert!(started.elapsed() < DEADLINE, "a request without a key is still served");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The label names of every series of `name` that Prometheus holds, without its own.
async fn label_names(client: &reqwest::Client, prometheus: &PrometheusProcess, name: &str) -> Vec<BTreeSet<String>> {
    let Some(series) = api(client, prometheus, &format!("/api/v1/series?match[]={name}")).await else {
        return Vec::new();
    };
    series
        .as_array()
        .map(|series| {
            series
                .iter()
                .map(|labels| {
                    labels
                        .as_object()
                        .map(|labels| {
                            labels
                                .keys()
                                .filter(|key| !TARGET_LABELS.contains(&key.as_str()))
                                .cloned()
                                .collect()
                        })
                        .unwrap_or_default()
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The name under which the metadata API files a family. Prometheus negotiates
/// OpenMetrics, whose counter families are named without `_total`.
fn metadata_name<'a>(name: &'a str, kind: &str) -> &'a str {
    match kind {
        "counter" => name.strip_suffix("_total").unwrap_or(name),
        _ => name,
    }
}

/// What is still wrong with what Prometheus ingested; empty when everything is right.
async fn problems(client: &reqwest::Client, prometheus: &PrometheusProcess) -> Vec<String> {
    let Some(metadata) = api(client, prometheus, "/api/v1/metadata").await else {
        return vec!["the metadata API does not answer yet".into()];
    };
    let mut problems = Vec::new();
    for (name, kind, labels) in FAMILIES {
        let declared = metadata[metadata_name(name, kind)][0]["type"].as_str();
        if declared != Some(*kind) {
            problems.push(format!("{name}: metadata type {declared:?}, expected {kind}"));
        }
        let expected: BTreeSet<String> = labels.iter().map(|label| (*label).to_owned()).collect();
        let mut shapes = BTreeMap::new();
        if *kind == "histogram" {
            let mut with_le = expected.clone();
            with_le.insert("le".to_owned());
            shapes.insert(format!("{name}_bucket"), with_le);
            shapes.insert(format!("{name}_count"), expected.clone());
            shapes.insert(format!("{name}_sum"), expected);
        } else {
            shapes.insert((*name).to_owned(), expected);
        }
        for (series_name, expected) in shapes {
            let found = label_names(client, prometheus, &series_name).await;
            if found.is_empty() {
                problems.push(format!("{series_name}: no series ingested"));
            }
            for labels in found.iter().filter(|labels| **labels != expected) {
                problems.push(format!("{series_name}: labels {labels:?}, expected {expected:?}"));
            }
        }
    }
    problems
}

async fn target_is_up(client: &reqwest::Client, prometheus: &PrometheusProcess) -> bool {
    api(client, prometheus, "/api/v1/query?query=up%7Bjob%3D%22lim%22%7D")
        .await
        .is_some_and(|data| data["result"][0]["value"][1] == "1")
}

/// The app with a route to a receiver that refuses every delivery (each new incident
/// makes a notification job that fails once and is dead) and escalates to it, and an LLM
/// provider that refuses the first question and answers the others: every job,
/// notification, escalation, LLM and cache family has a series.
async fn spawn_with_a_refusing_channel(
    database: &TestDatabase,
) -> (TestApp, receiver::Receiver, llm_server::LlmServer) {
    let refusing = receiver::Receiver::start(receiver::Script {
        then: 400,
        ..receiver::Script::default()
    })
    .await;
    let llm =
        llm_server::LlmServer::start(llm_server::Format::OpenAi, vec![llm_server::Reply::Status(401, None)]).await;
    let toml = format!(
        "[channels.hook]\ntype = \"webhook\"\nurl = \"{}\"\n\
         [escalation_policies.page]\nlevels = [{{ after = \"0s\", notify = [\"hook\"] }}]\n\
         [[routes]]\nname = \"all\"\nchannels = [\"hook\"]\nescalation_policy = \"page\"\n\
         [llm]\nprovider = \"openai-compatible\"\nmodel = \"local\"\nbase_url = \"{}/v1\"\n\
         [llm.prices.local]\nprompt_per_million = 1.0\ncompletion_per_million = 2.0\n",
        refusing.url, llm.url
    );
    let clock = std::sync::Arc::new(llm_incident_manager::clock::ManualClock::new(helpers::start_time()));
    let app = TestApp::spawn_configured(database, clock, &toml, |_| {}).await;
    (app, refusing, llm)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_prometheus_ingests_every_family_with_its_type_and_labels() {
    let database = TestDatabase::sqlite();
    let (app, refusing, _llm) = spawn_with_a_refusing_channel(&database).await;
    drive_traffic(&app).await;
    refusing.wait_for(1, DEADLINE).await;
    refuse_a_request(&app, &database).await;
    let work_dir = tempfile::tempdir().expect("temp dir");
    let target = app.metrics_address.trim_start_matches("http://");
    let prometheus = PrometheusProcess::start(work_dir.path(), target);
    let client = reqwest::Client::new();

    let started = Instant::now();
    while !target_is_up(&client, &prometheus).await {
        assert!(
            started.elapsed() < DEADLINE,
            "Prometheus did not scrape {target} successfully within {DEADLINE:?}; its log:\n{}",
            prometheus.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut remaining = problems(&client, &prometheus).await;
    while !remaining.is_empty() {
        assert!(
            started.elapsed() < DEADLINE,
            "after {DEADLINE:?} Prometheus still shows:\n{}\nits log:\n{}",
            remaining.join("\n"),
            prometheus.log()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
        remaining = problems(&client, &prometheus).await;
    }

    // Values went through unchanged: one resolution, after 3690 s.
    let resolved = api(
        &client,
        &prometheus,
        "/api/v1/query?query=incident_resolution_duration_seconds_sum",
    )
    .await
    .expect("query answers");
    assert_eq!(resolved["result"][0]["value"][1], "3690", "{resolved}");
    // Scraped as OpenMetrics, bucket bounds are floats: `le="7200.0"`.
    for (bound, count) in [("3600.0", "0"), ("7200.0", "1")] {
        let query = format!("incident_resolution_duration_seconds_bucket%7Ble%3D%22{bound}%22%7D");
        let bucket = api(&client, &prometheus, &format!("/api/v1/query?query={query}"))
            .await
            .expect("query answers");
        assert_eq!(bucket["result"][0]["value"][1], count, "le={bound}: {bucket}");
    }
    drop(prometheus);
    app.stop().await;
}

#[tokio::test]
async fn promtool_finds_no_problem_in_a_scrape() {
    let database = TestDatabase::sqlite();
    let (app, refusing, _llm) = spawn_with_a_refusing_channel(&database).await;
    drive_traffic(&app).await;
    refusing.wait_for(1, DEADLINE).await;
    refuse_a_request(&app, &database).await;
    let scrape = app.scrape().await;

    let mut promtool = tokio::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|error| {
            panic!(
                "cannot start `promtool` ({error}); this test needs Debian's `prometheus` package \
                 (scripts/test.sh installs it: apt-get install -y prometheus)"
            )
        });
    let mut stdin = promtool.stdin.take().expect("promtool stdin");
    stdin.write_all(scrape.as_bytes()).await.expect("feed promtool");
    drop(stdin);
    let output = promtool.wait_with_output().await.expect("promtool runs");

    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success() && said.is_empty(),
        "promtool says ({}):\n{said}",
        output.status
    );
    app.stop().await;
}
