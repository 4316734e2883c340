//! A real Prometheus (Debian's `prometheus`, on free loopback ports) scrapes the running
//! service: every metric family is ingested with its declared type and label names, and
//! `promtool check metrics` finds nothing to say about a scrape. The operations kit of
//! `deploy/` is run the same way: Prometheus loads the shipped configuration and rules,
//! every dashboard query and recording rule runs through its query API against what the
//! service exported, and one of the shipped alerts goes through a real Alertmanager back to
//! the service, opening an incident that resolves when the condition clears.

#[path = "support/alertmanager_process.rs"]
mod alertmanager_process;
#[path = "api/helpers.rs"]
#[allow(dead_code)] // this target uses part of the API tests' harness
mod helpers;
#[path = "support/llm_server.rs"]
#[allow(dead_code)] // shared with the API tests
mod llm_server;
#[path = "support/promql.rs"]
mod promql;
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
        PrometheusProcess::start_with(work_dir, &config)
    }

    /// A Prometheus on the configuration file `config` (its rule files relative to it).
    fn start_with(work_dir: &Path, config: &Path) -> PrometheusProcess {
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

/// Waits until Prometheus has scraped the service as `job` successfully, failing with its
/// log after [`DEADLINE`] from `started`.
async fn wait_until_scraped(client: &reqwest::Client, prometheus: &PrometheusProcess, job: &str, started: Instant) {
    while !job_is_up(client, prometheus, job).await {
        assert!(
            started.elapsed() < DEADLINE,
            "Prometheus did not scrape the service as job `{job}` within {DEADLINE:?}; its log:\n{}",
            prometheus.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn job_is_up(client: &reqwest::Client, prometheus: &PrometheusProcess, job: &str) -> bool {
    query(client, prometheus, &format!("up{{job=\"{job}\"}}"))
        .await
        .ok()
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
    wait_until_scraped(&client, &prometheus, "lim", started).await;
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

/// An instant query: its `data`, or what Prometheus said was wrong with it.
async fn query(client: &reqwest::Client, prometheus: &PrometheusProcess, expr: &str) -> Result<Value, String> {
    let url = reqwest::Url::parse_with_params(&format!("{}/api/v1/query", prometheus.url), &[("query", expr)])
        .map_err(|error| format!("no URL: {error}"))?;
    let response = client
        .get(url)
        .send()
        .await
        .map_err(|error| format!("no answer: {error}"))?;
    let body: Value = response.json().await.map_err(|error| format!("not JSON: {error}"))?;
    if body["status"] == "success" {
        Ok(body["data"].clone())
    } else {
        Err(format!("{}: {}", body["errorType"], body["error"]))
    }
}

/// The repository's `deploy/` folder.
fn deploy_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy")
}

/// `text` with `from` replaced; the shipped file must hold it (else this test is stale).
fn replaced(text: &str, from: &str, to: &str) -> String {
    assert!(
        text.contains(from),
        "deploy/prometheus/prometheus.yml no longer holds `{from}`: update this test"
    );
    text.replace(from, to)
}

/// The shipped Prometheus configuration and rules, copied into `work_dir` and pointed at
/// the test: its one scrape job's targets become `metrics_target`, its Alertmanager
/// `alertmanager`, and the 15 s intervals 1 s. With `fast_alerts`, every alert's `for:`
/// becomes 1 s (the expressions stay as shipped). Returns the configuration's path.
fn shipped_prometheus(
    work_dir: &Path,
    metrics_target: &str,
    alertmanager: &str,
    fast_alerts: bool,
) -> std::path::PathBuf {
    let shipped = std::fs::read_to_string(deploy_dir().join("prometheus/prometheus.yml"))
        .expect("read the shipped prometheus.yml");
    let mut config = replaced(&shipped, "scrape_interval: 15s", "scrape_interval: 1s");
    config = replaced(&config, "evaluation_interval: 15s", "evaluation_interval: 1s");
    config = replaced(&config, "alertmanager:9093", alertmanager);
    // The static targets: the line `- targets:` and the example replicas under it.
    let mut lines = Vec::new();
    let mut targets = 0;
    for line in config.lines() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("- incident-manager-") {
            continue;
        }
        if trimmed == "- targets:" {
            targets += 1;
            let indent = &line[..line.len() - trimmed.len()];
            lines.push(format!("{indent}- targets: ['{metrics_target}']"));
        } else {
            lines.push(line.to_owned());
        }
    }
    assert_eq!(
        targets, 1,
        "the shipped prometheus.yml should have one static `- targets:` list"
    );
    let path = work_dir.join("prometheus.yml");
    std::fs::write(&path, lines.join("\n") + "\n").expect("write prometheus.yml");
    let rules = work_dir.join("rules");
    std::fs::create_dir_all(&rules).expect("create the rules folder");
    for entry in std::fs::read_dir(deploy_dir().join("prometheus/rules")).expect("read deploy/prometheus/rules") {
        let from = entry.expect("a rules file").path();
        let mut text = std::fs::read_to_string(&from).expect("read a rules file");
        if fast_alerts {
            text = text
                .lines()
                .map(|line| match line.trim_start().strip_prefix("for:") {
                    Some(_) => format!("{}for: 1s", &line[..line.len() - line.trim_start().len()]),
                    None => line.to_owned(),
                })
                .collect::<Vec<_>>()
                .join("\n");
        }
        std::fs::write(rules.join(from.file_name().expect("a file name")), text).expect("copy a rules file");
    }
    path
}

/// The metric names of a scrape (as Prometheus stores them) and each one's label names.
fn exported(scrape: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mut families: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in scrape.lines().filter(|line| !line.starts_with('#') && !line.is_empty()) {
        let end = line.find(['{', ' ']).unwrap_or(line.len());
        let labels = families.entry(line[..end].to_owned()).or_default();
        if line[end..].starts_with('{') {
            let names = promql::names(&format!(
                "x{}",
                &line[end..line.rfind('}').map_or(end, |close| close + 1)]
            ));
            labels.extend(names.selectors.into_iter().flat_map(|selector| selector.labels));
        }
    }
    families
}

/// Every PromQL expression of a dashboard: the `expr` of each panel's targets, rows
/// included, with its panel's title.
fn dashboard_queries(dashboard: &Value, out: &mut Vec<(String, String)>) {
    for panel in dashboard["panels"].as_array().into_iter().flatten() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            if let Some(expr) = target["expr"].as_str() {
                out.push((panel["title"].as_str().unwrap_or("?").to_owned(), expr.to_owned()));
            }
        }
        dashboard_queries(panel, out);
    }
}

/// A dashboard expression as Grafana would send it for this test's Prometheus.
fn substituted(expr: &str) -> String {
    [
        ("${job}", "llm-incident-manager"),
        ("$job", "llm-incident-manager"),
        ("${instance}", ".*"),
        ("$instance", ".*"),
        ("$__rate_interval", "1m"),
        ("$__interval", "1m"),
        ("$__range", "1h"),
    ]
    .iter()
    .fold(expr.to_owned(), |expr, (variable, value)| expr.replace(variable, value))
}

/// Selectors of the shipped queries that the test's traffic does not produce, so that
/// they return no data and that is right: server errors, over HTTP and over gRPC.
const NEVER_PRODUCED: &[&str] = &[
    r#"grpc_requests_total{code=~"UNKNOWN|INTERNAL|UNAVAILABLE|DATA_LOSS|DEADLINE_EXCEEDED"}"#,
    r#"http_requests_total{status=~"5.."}"#,
];

/// An expression to check: where it comes from, its text, and whether it must return
/// data when every series it reads has some (dashboards and recording rules: yes; an
/// alert: no, it fires only when something is wrong).
struct Check {
    origin: String,
    expr: String,
    wants_data: bool,
}

/// What is wrong with `check` now: names the service does not export, a parse error, or
/// no data although every selector it reads has some. `None` when it is right.
async fn check_problem(
    client: &reqwest::Client,
    prometheus: &PrometheusProcess,
    check: &Check,
    families: &BTreeMap<String, BTreeSet<String>>,
    recorded: &BTreeMap<String, BTreeSet<String>>,
    unproduced: &mut BTreeSet<String>,
) -> Option<String> {
    let names = promql::names(&check.expr);
    let mut allowed: BTreeSet<String> = ["job", "instance"].iter().map(|label| (*label).to_owned()).collect();
    allowed.extend(names.created.iter().cloned());
    for selector in &names.selectors {
        let labels = if selector.metric == "up" {
            Some(BTreeSet::new())
        } else if selector.metric.contains(':') {
            recorded.get(&selector.metric).cloned()
        } else {
            families.get(&selector.metric).cloned()
        };
        match labels {
            Some(labels) => allowed.extend(labels),
            None => {
                return Some(format!(
                    "names `{}`, which neither the service nor a recording rule makes",
                    selector.metric
                ));
            }
        }
    }
    if let Some(label) = names.labels().find(|label| !allowed.contains(*label)) {
        return Some(format!("names the label `{label}`, which none of its metrics has"));
    }
    let data = match query(client, prometheus, &check.expr).await {
        Ok(data) => data,
        Err(error) => return Some(format!("does not run: {error}")),
    };
    let empty = data["result"].as_array().is_some_and(Vec::is_empty);
    if !check.wants_data || !empty {
        return None;
    }
    for selector in &names.selectors {
        let alone = query(client, prometheus, &selector.text).await.unwrap_or_default();
        if alone["result"].as_array().is_none_or(Vec::is_empty) {
            // It reads a series the service has not produced: no data is right, if that
            // series is one the traffic is known not to produce (checked by the caller:
            // a misspelt label value also selects nothing).
            unproduced.insert(selector.text.clone());
            return None;
        }
    }
    Some("returns no data, although every series it reads has some".into())
}

/// The labels a recording rule's series carry, so that a query of them may name only
/// these: its aggregation's `by` list (`histogram_quantile` consumes `le`); with no `by`,
/// every label of the metrics it reads (none for a number such as `vector(5)`).
fn kept_labels(expr: &str, families: &BTreeMap<String, BTreeSet<String>>) -> BTreeSet<String> {
    let names = promql::names(expr);
    if names.by.is_empty() {
        return names
            .selectors
            .iter()
            .filter_map(|selector| families.get(&selector.metric))
            .flatten()
            .cloned()
            .collect();
    }
    let mut kept: BTreeSet<String> = names.by.into_iter().collect();
    if expr.trim_start().starts_with("histogram_quantile") {
        kept.remove("le");
    }
    kept
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_shipped_dashboard_query_and_recording_rule_runs_on_what_the_service_exports() {
    let database = TestDatabase::sqlite();
    let (app, refusing, _llm) = spawn_with_a_refusing_channel(&database).await;
    drive_traffic(&app).await;
    refusing.wait_for(1, DEADLINE).await;
    refuse_a_request(&app, &database).await;
    let work_dir = tempfile::tempdir().expect("temp dir");
    let target = app.metrics_address.trim_start_matches("http://");
    // No Alertmanager listens there: the alerts that fire are not what this test is about.
    let config = shipped_prometheus(work_dir.path(), target, "127.0.0.1:9", false);
    let prometheus = PrometheusProcess::start_with(work_dir.path(), &config);
    let client = reqwest::Client::new();
    let started = Instant::now();
    wait_until_scraped(&client, &prometheus, "llm-incident-manager", started).await;
    let families = exported(&app.scrape().await);

    // The rules Prometheus loaded from the shipped files.
    let rules = api(&client, &prometheus, "/api/v1/rules")
        .await
        .expect("the rules API answers");
    let mut checks = Vec::new();
    // Each recording rule's name and the labels its expression keeps.
    let mut recording: Vec<(String, BTreeSet<String>)> = Vec::new();
    for rule in rules["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|group| group["rules"].as_array().into_iter().flatten())
    {
        let (name, expr) = (
            rule["name"].as_str().unwrap_or("?"),
            rule["query"].as_str().unwrap_or(""),
        );
        let recording_rule = rule["type"] == "recording";
        if recording_rule {
            recording.push((name.to_owned(), kept_labels(expr, &families)));
        }
        checks.push(Check {
            origin: format!("{} rule {name}", if recording_rule { "recording" } else { "alerting" }),
            expr: expr.to_owned(),
            wants_data: recording_rule,
        });
        if recording_rule {
            // What the rule recorded, as a dashboard reads it.
            checks.push(Check {
                origin: format!("recording rule {name}, its series"),
                expr: name.to_owned(),
                wants_data: true,
            });
        }
    }
    assert!(
        !recording.is_empty() && checks.len() > recording.len() * 2,
        "Prometheus loaded no shipped rule: {rules}"
    );
    let mut dashboards = 0;
    for entry in std::fs::read_dir(deploy_dir().join("grafana/dashboards")).expect("read deploy/grafana/dashboards") {
        let path = entry.expect("a dashboard").path();
        let dashboard: Value = serde_json::from_str(&std::fs::read_to_string(&path).expect("read a dashboard"))
            .expect("a dashboard is JSON");
        let mut queries = Vec::new();
        dashboard_queries(&dashboard, &mut queries);
        assert!(!queries.is_empty(), "{} has no query", path.display());
        dashboards += 1;
        for (panel, expr) in queries {
            checks.push(Check {
                origin: format!(
                    "{} panel `{panel}`",
                    path.file_name().unwrap_or_default().to_string_lossy()
                ),
                expr: substituted(&expr),
                wants_data: true,
            });
        }
    }
    assert_eq!(dashboards, 4, "the four dashboards of the seed");

    // Until every check holds (rates want two scrapes, recording rules an evaluation).
    loop {
        let mut recorded: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (name, kept) in &recording {
            let series = query(&client, &prometheus, name).await.unwrap_or_default();
            let labels = recorded.entry(name.clone()).or_insert_with(|| kept.clone());
            for sample in series["result"].as_array().into_iter().flatten() {
                labels.extend(
                    sample["metric"]
                        .as_object()
                        .into_iter()
                        .flatten()
                        .map(|(label, _)| label.clone()),
                );
            }
        }
        let mut problems = Vec::new();
        let mut unproduced = BTreeSet::new();
        for check in &checks {
            if let Some(problem) =
                check_problem(&client, &prometheus, check, &families, &recorded, &mut unproduced).await
            {
                problems.push(format!("{}: {problem}\n    {}", check.origin, check.expr));
            }
        }
        if problems.is_empty() {
            // A query may go without data only where it reads series the test's traffic
            // never produces (no 5xx, no failed gRPC call): a misspelt label value selects
            // nothing too, and would otherwise pass. Recording rules' own series are
            // checked through their expressions.
            let unexpected: Vec<&String> = unproduced
                .iter()
                .filter(|selector| !selector.starts_with("lim:") && !NEVER_PRODUCED.contains(&selector.as_str()))
                .collect();
            assert!(
                unexpected.is_empty(),
                "these selectors match no series the service exports; a label value is misspelt, or the \
                 test's traffic does not produce them (then list them in NEVER_PRODUCED): {unexpected:#?}"
            );
        }
        if problems.is_empty() {
            break;
        }
        assert!(
            started.elapsed() < DEADLINE,
            "after {DEADLINE:?}, {} of {} shipped queries are wrong:\n{}\nPrometheus' log:\n{}",
            problems.len(),
            checks.len(),
            problems.join("\n"),
            prometheus.log()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    drop(prometheus);
    app.stop().await;
}

/// The shipped alert that the closed loop drives: a configuration reload that fails.
const RELOAD_ALERT: &str = "LimConfigReloadFailed";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shipped_alert_goes_through_a_real_alertmanager_and_opens_then_resolves_an_incident() {
    let database = TestDatabase::sqlite();
    let clock = std::sync::Arc::new(llm_incident_manager::clock::ManualClock::new(chrono::Utc::now()));
    let app = TestApp::spawn_configured(&database, clock, "", |_| {}).await;
    let work_dir = tempfile::tempdir().expect("temp dir");
    let alertmanager_dir = work_dir.path().join("alertmanager");
    std::fs::create_dir_all(&alertmanager_dir).expect("a folder for Alertmanager");
    let webhook = format!("{}/v1/integrations/alertmanager", app.address);
    let alertmanager = alertmanager_process::AlertmanagerProcess::start(&alertmanager_dir, &webhook);
    let target = app.metrics_address.trim_start_matches("http://");
    let config = shipped_prometheus(
        work_dir.path(),
        target,
        alertmanager.url.trim_start_matches("http://"),
        true,
    );
    let prometheus = PrometheusProcess::start_with(work_dir.path(), &config);
    let client = reqwest::Client::new();
    let logs = || {
        format!(
            "Prometheus' log:\n{}\nAlertmanager's log:\n{}",
            prometheus.log(),
            alertmanager.log()
        )
    };
    let started = Instant::now();
    wait_until_scraped(&client, &prometheus, "llm-incident-manager", started).await;

    // The condition: a configuration file that does not load, reloaded.
    std::fs::write(&app.config, "[http\n").expect("break the configuration file");
    let (status, body) = app.post("/-/reload", json!({})).await;
    assert!(status >= 400, "a broken file is refused: {status} {body}");
    let alert_incident = || async {
        app.all_incidents()
            .await
            .into_iter()
            .find(|incident| incident["labels"]["alertname"] == RELOAD_ALERT)
    };
    let opened = loop {
        if let Some(incident) = alert_incident().await {
            break incident;
        }
        assert!(
            started.elapsed() < DEADLINE * 2,
            "no incident for {RELOAD_ALERT} within {:?}; {}",
            DEADLINE * 2,
            logs()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert_eq!(opened["source"], "alertmanager", "{opened}");
    assert_ne!(opened["state"], "RESOLVED", "{opened}");

    // The condition clears: the file loads again.
    std::fs::write(&app.config, "").expect("repair the configuration file");
    assert_eq!(app.post("/-/reload", json!({})).await.0, 200);
    let cleared = Instant::now();
    loop {
        let incident = app.incident(opened["id"].as_str().expect("an id")).await;
        if incident["state"] == "RESOLVED" {
            break;
        }
        assert!(
            cleared.elapsed() < DEADLINE * 2,
            "{RELOAD_ALERT} cleared but its incident is {}; {}",
            incident["state"],
            logs()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    drop(prometheus);
    drop(alertmanager);
    app.stop().await;
}
