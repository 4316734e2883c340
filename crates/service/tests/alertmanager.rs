//! A real Alertmanager (Debian's `prometheus-alertmanager`, on free loopback ports) sends
//! its webhook to the running service: an alert posted to Alertmanager opens an incident,
//! and the same alert ended resolves it.

#[path = "support/alertmanager_process.rs"]
mod alertmanager_process;
#[path = "api/helpers.rs"]
#[allow(dead_code)] // this target uses part of the API tests' harness
mod helpers;

use std::time::{Duration, Instant};

use chrono::Utc;
use serde_json::{Value, json};

use alertmanager_process::AlertmanagerProcess;
use helpers::{TestApp, TestDatabase};

const DEADLINE: Duration = Duration::from_secs(60);

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
