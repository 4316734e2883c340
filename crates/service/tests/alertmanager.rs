//! A real Alertmanager (Debian's `prometheus-alertmanager`, on free loopback ports) sends
//! its webhook to the running service: an alert posted to Alertmanager opens an incident,
//! and the same alert ended resolves it.

#[path = "api/helpers.rs"]
#[allow(dead_code)] // this target uses part of the API tests' harness
mod helpers;

use std::path::Path;
use std::time::{Duration, Instant};

use chrono::Utc;
use serde_json::{Value, json};

use helpers::{TestApp, TestDatabase};

const DEADLINE: Duration = Duration::from_secs(60);

/// An Alertmanager child process, killed when the test ends however it ends.
struct AlertmanagerProcess {
    child: std::process::Child,
    url: String,
    log: std::path::PathBuf,
}

impl AlertmanagerProcess {
    fn start(work_dir: &Path, webhook_url: &str) -> AlertmanagerProcess {
        let config = work_dir.join("alertmanager.yml");
        std::fs::write(
            &config,
            format!(
                "route:\n  receiver: lim\n  group_by: ['alertname']\n  group_wait: 100ms\n  \
                 group_interval: 1s\n  repeat_interval: 1h\n\
                 receivers:\n  - name: lim\n    webhook_configs:\n      - url: '{webhook_url}'\n        \
                 send_resolved: true\n"
            ),
        )
        .expect("write alertmanager.yml");
        let address = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port");
        let log = work_dir.join("alertmanager.log");
        let log_file = std::fs::File::create(&log).expect("create alertmanager.log");
        let child = std::process::Command::new("prometheus-alertmanager")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.path={}", work_dir.join("data").display()))
            .arg(format!("--web.listen-address={address}"))
            // A single instance: no gossip port to find and hold.
            .arg("--cluster.listen-address=")
            .stdout(log_file.try_clone().expect("log file"))
            .stderr(log_file)
            .spawn()
            .unwrap_or_else(|error| {
                panic!(
                    "cannot start `prometheus-alertmanager` ({error}); this test needs Debian's \
                     `prometheus-alertmanager` package (scripts/test.sh installs it)"
                )
            });
        AlertmanagerProcess {
            child,
            url: format!("http://{address}"),
            log,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for AlertmanagerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `check` until it answers something or the deadline passes.
async fn eventually<T, F: std::future::Future<Output = Option<T>>>(
    alertmanager: &AlertmanagerProcess,
    what: &str,
    mut check: impl FnMut() -> F,
) -> T {
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "{what} did not happen within {DEADLINE:?}; Alertmanager's log:\n{}",
            alertmanager.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn alert(ends_at: Option<chrono::DateTime<Utc>>) -> Value {
    let mut alert = json!({
        "labels": {"alertname": "LLMLatencyHigh", "severity": "critical", "instance": "gpu-7"},
        "annotations": {"summary": "p95 latency high on gpu-7", "description": "p95 over 2s for 5m"},
        "startsAt": (Utc::now() - chrono::Duration::minutes(5)).to_rfc3339(),
    });
    if let Some(ends_at) = ends_at {
        alert["endsAt"] = json!(ends_at.to_rfc3339());
    }
    alert
}

#[tokio::test]
async fn an_alert_sent_through_a_real_alertmanager_opens_and_then_resolves_an_incident() {
    let database = TestDatabase::sqlite();
    let app = TestApp::spawn(&database).await;
    let work_dir = tempfile::tempdir().expect("a work dir");
    let webhook = format!("{}/v1/integrations/alertmanager", app.address);
    let alertmanager = AlertmanagerProcess::start(work_dir.path(), &webhook);
    let client = reqwest::Client::new();
    eventually(&alertmanager, "Alertmanager ready", || async {
        let response = client.get(format!("{}/-/ready", alertmanager.url)).send().await.ok()?;
        response.status().is_success().then_some(())
    })
    .await;
    let post_alert = |alert: Value| {
        let request = client
            .post(format!("{}/api/v2/alerts", alertmanager.url))
            .json(&json!([alert]));
        async move {
            let response = request.send().await.expect("post to Alertmanager");
            assert!(response.status().is_success(), "{}", response.status());
        }
    };

    post_alert(alert(None)).await;
    let incident = eventually(&alertmanager, "an incident from Alertmanager's webhook", || async {
        app.all_incidents().await.into_iter().next()
    })
    .await;

    assert_eq!(incident["source"], "alertmanager");
    assert_eq!(incident["title"], "p95 latency high on gpu-7");
    assert_eq!(incident["severity"], "P0");
    assert_eq!(incident["state"], "NEW");
    assert_eq!(incident["labels"]["instance"], "gpu-7");

    post_alert(alert(Some(Utc::now()))).await;
    let id = incident["id"].as_str().unwrap().to_owned();
    let resolved = eventually(&alertmanager, "the incident resolved by the webhook", || async {
        let incident = app.incident(&id).await;
        (incident["state"] == "RESOLVED").then_some(incident)
    })
    .await;
    assert_eq!(app.all_incidents().await.len(), 1, "the resolution opened nothing new");
    assert_eq!(resolved["occurrence_count"], 1);
    app.stop().await;
}
