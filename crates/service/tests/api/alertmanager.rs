use serde_json::{Value, json};

use crate::helpers::{TestApp, TestDatabase};

fn webhook(status: &str, alerts: Vec<Value>) -> Value {
    json!({
        "version": "4",
        "groupKey": "{}:{alertname=\"LLMLatencyHigh\"}",
        "truncatedAlerts": 0,
        "status": status,
        "receiver": "incident-manager",
        "groupLabels": {"alertname": "LLMLatencyHigh"},
        "commonLabels": {"alertname": "LLMLatencyHigh"},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager:9093",
        "alerts": alerts,
    })
}

fn alert(status: &str, instance: &str, fingerprint: &str) -> Value {
    json!({
        "status": status,
        "labels": {"alertname": "LLMLatencyHigh", "severity": "critical", "instance": instance},
        "annotations": {"summary": format!("p95 latency high on {instance}"), "description": "p95 over 2s for 5m"},
        "startsAt": "2026-01-01T00:00:00Z",
        "endsAt": if status == "resolved" { "2026-01-01T00:10:00Z" } else { "0001-01-01T00:00:00Z" },
        "generatorURL": "http://prometheus:9090/graph",
        "fingerprint": fingerprint,
    })
}

#[tokio::test]
async fn an_alertmanager_webhook_opens_and_then_resolves_incidents() {
    let database = TestDatabase::sqlite();
    let app = TestApp::spawn(&database).await;

    let firing = webhook(
        "firing",
        vec![alert("firing", "a", "f00d0001"), alert("firing", "b", "f00d0002")],
    );
    let (status, body) = app.post("/v1/integrations/alertmanager", firing.clone()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["results"][0]["outcome"], "created");
    assert_eq!(body["results"][1]["outcome"], "created");
    let incidents = app.all_incidents().await;
    assert_eq!(incidents.len(), 2);
    let incident = incidents
        .iter()
        .find(|incident| incident["fingerprint"] == "f00d0001")
        .unwrap();
    assert_eq!(incident["source"], "alertmanager");
    assert_eq!(incident["severity"], "P0");
    assert_eq!(incident["title"], "p95 latency high on a");
    assert_eq!(incident["description"], "p95 over 2s for 5m");

    // Alertmanager re-sends the group at every group_interval: unchanged alerts (same
    // fingerprint and startsAt) are recognised, not counted again.
    let (_, repeat) = app.post("/v1/integrations/alertmanager", firing).await;
    assert_eq!(repeat["results"][0]["outcome"], "redelivered");
    assert_eq!(repeat["results"][0]["occurrence_count"], 1);
    assert_eq!(
        app.incident(incident["id"].as_str().unwrap()).await["occurrence_count"],
        1
    );

    let resolved = webhook(
        "resolved",
        vec![alert("resolved", "a", "f00d0001"), alert("resolved", "b", "f00d0002")],
    );
    let (status, body) = app.post("/v1/integrations/alertmanager", resolved).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["results"][0]["outcome"], "resolved");
    let (_, open) = app
        .get("/v1/incidents?state=NEW,ASSIGNED,ACKNOWLEDGED,IN_PROGRESS")
        .await;
    assert!(open["incidents"].as_array().unwrap().is_empty(), "{open}");
    app.stop().await;
}

#[tokio::test]
async fn an_alertmanager_payload_of_another_version_is_refused() {
    let database = TestDatabase::sqlite();
    let app = TestApp::spawn(&database).await;
    let mut payload = webhook("firing", vec![alert("firing", "a", "f1")]);
    payload["version"] = json!("3");

    let (status, body) = app.post("/v1/integrations/alertmanager", payload).await;

    assert_eq!(status, 400, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("version"));
    assert!(app.all_incidents().await.is_empty());
    app.stop().await;
}

#[tokio::test]
async fn an_alert_with_an_over_long_summary_is_kept_with_a_shortened_title() {
    let database = TestDatabase::sqlite();
    let app = TestApp::spawn(&database).await;
    let mut long = alert("firing", "a", "f1");
    long["annotations"]["summary"] = json!("x".repeat(600));
    long["annotations"]["description"] = json!("y".repeat(20_000));

    let (status, body) = app
        .post(
            "/v1/integrations/alertmanager",
            webhook("firing", vec![long, alert("firing", "b", "f2")]),
        )
        .await;

    assert_eq!(status, 200, "{body}");
    let incidents = app.all_incidents().await;
    assert_eq!(incidents.len(), 2, "the group's other alert is kept too");
    let shortened = incidents
        .iter()
        .find(|incident| incident["fingerprint"] == "f1")
        .unwrap();
    let title = shortened["title"].as_str().unwrap();
    assert_eq!(title.chars().count(), 512);
    assert!(title.ends_with('…'), "{title}");
    assert_eq!(shortened["description"].as_str().unwrap().chars().count(), 16 * 1024);
    app.stop().await;
}

#[tokio::test]
async fn a_group_of_more_alerts_than_a_batch_holds_is_taken_whole() {
    let database = TestDatabase::sqlite();
    let app = TestApp::spawn(&database).await;
    let alerts = (0..2500)
        .map(|n| alert("firing", &format!("i{n}"), &format!("f{n}")))
        .collect();

    let (status, body) = app
        .post("/v1/integrations/alertmanager", webhook("firing", alerts))
        .await;

    assert_eq!(status, 200, "{body}");
    let results = body["results"].as_array().unwrap();
    assert_eq!(results.len(), 2500);
    assert!(results.iter().all(|result| result["outcome"] == "created"));
    assert_eq!(
        app.metric(r#"incidents_total{severity="P0",source="alertmanager",category="other"}"#)
            .await,
        Some(2500.0)
    );
    app.stop().await;
}

#[tokio::test]
async fn an_alert_past_the_label_limits_is_kept_with_the_rest_of_its_group_and_marked() {
    let database = TestDatabase::sqlite();
    let app = TestApp::spawn(&database).await;
    let mut big = alert("firing", "a", "f1");
    for n in 0..80 {
        big["labels"][format!("extra_{n:02}")] = json!(format!("value {n}"));
    }
    big["labels"]["runbook"] = json!("r".repeat(2000));

    let (status, body) = app
        .post(
            "/v1/integrations/alertmanager",
            webhook("firing", vec![big, alert("firing", "b", "f2")]),
        )
        .await;

    assert_eq!(status, 200, "{body}");
    let incidents = app.all_incidents().await;
    assert_eq!(incidents.len(), 2, "the group's other alert is kept too");
    let kept = incidents
        .iter()
        .find(|incident| incident["fingerprint"] == "f1")
        .unwrap();
    let labels = kept["labels"].as_object().unwrap();
    assert_eq!(labels.len(), 64);
    assert_eq!(
        labels["alertname"], "LLMLatencyHigh",
        "the labels that matter stay labels"
    );
    assert!(
        labels.contains_key("extra_00") && !labels.contains_key("runbook"),
        "then key order"
    );
    let marker = labels["incident_manager.adjusted"].as_str().unwrap();
    assert!(marker.contains("1 label values shortened"), "{marker}");
    assert!(marker.contains("labels moved to the description"), "{marker}");
    let description = kept["description"].as_str().unwrap();
    assert!(description.starts_with("p95 over 2s for 5m"), "{description}");
    assert!(description.contains("Labels beyond the limit of 64:"), "{description}");
    assert!(
        description.ends_with(&format!("\nrunbook={}…", "r".repeat(1023))),
        "shortened, then folded"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_firing_alert_that_started_again_counts_as_a_new_occurrence() {
    let database = TestDatabase::sqlite();
    let app = TestApp::spawn(&database).await;
    let first = alert("firing", "a", "f1");
    let mut again = first.clone();
    again["startsAt"] = json!("2026-01-01T00:20:00Z");

    app.post("/v1/integrations/alertmanager", webhook("firing", vec![first]))
        .await;
    app.advance(30 * 60);
    let (status, body) = app
        .post("/v1/integrations/alertmanager", webhook("firing", vec![again.clone()]))
        .await;
    let (_, resent) = app
        .post("/v1/integrations/alertmanager", webhook("firing", vec![again]))
        .await;

    assert_eq!(status, 200, "{body}");
    assert_eq!(body["results"][0]["outcome"], "deduplicated");
    assert_eq!(body["results"][0]["occurrence_count"], 2);
    assert_eq!(resent["results"][0]["outcome"], "redelivered");
    app.stop().await;
}

#[tokio::test]
async fn an_alert_that_is_not_an_alert_is_named_by_its_index() {
    let database = TestDatabase::sqlite();
    let app = TestApp::spawn(&database).await;
    let alerts = vec![alert("firing", "a", "f1"), json!({"labels": {"a": "b"}})];

    let (status, body) = app
        .post("/v1/integrations/alertmanager", webhook("firing", alerts))
        .await;

    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["message"], "alerts[1]: missing field `status`");
    assert!(app.all_incidents().await.is_empty());
    app.stop().await;
}
