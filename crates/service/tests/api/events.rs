use serde_json::json;

use crate::helpers::{TestApp, TestDatabase, event, id_of};

#[tokio::test]
async fn an_event_creates_an_incident() {
    let database = TestDatabase::sqlite();
    let app = TestApp::spawn(&database).await;

    let result = app.send_event(event("Latency over SLO")).await;

    assert_eq!(result["outcome"], "created");
    assert_eq!(result["deduplicated"], false);
    let incident = app.incident(&id_of(&result)).await;
    assert_eq!(incident["title"], "Latency over SLO");
    assert_eq!(incident["severity"], "P1");
    assert_eq!(incident["category"], "performance");
    assert_eq!(incident["source"], "sentinel");
    assert_eq!(incident["state"], "NEW");
    assert_eq!(incident["occurrence_count"], 1);
    assert_eq!(incident["labels"]["model"], "gpt-4o");
    assert_eq!(app.timeline_kinds(&id_of(&result)).await, ["created"]);
    app.stop().await;
}

#[tokio::test]
async fn a_second_event_with_the_same_fingerprint_is_deduplicated() {
    let database = TestDatabase::sqlite();
    let app = TestApp::spawn(&database).await;

    let first = app.send_event(event("Latency over SLO")).await;
    app.advance(30);
    let second = app.send_event(event("Latency over SLO")).await;

    assert_eq!(second["outcome"], "deduplicated");
    assert_eq!(second["deduplicated"], true);
    assert_eq!(second["occurrence_count"], 2);
    assert_eq!(id_of(&first), id_of(&second));
    assert_eq!(app.all_incidents().await.len(), 1);
    let incident = app.incident(&id_of(&first)).await;
    assert_eq!(incident["occurrence_count"], 2);
    assert_ne!(incident["first_seen"], incident["last_seen"]);
    assert_eq!(app.timeline_kinds(&id_of(&first)).await, ["created", "event_attached"]);
    app.stop().await;
}

#[tokio::test]
async fn a_sender_fingerprint_decides_dedup_whatever_the_title() {
    let database = TestDatabase::sqlite();
    let app = TestApp::spawn(&database).await;

    let first = app
        .send_event(json!({"source": "shield", "title": "Prompt injection", "fingerprint": "inj-1"}))
        .await;
    let second = app
        .send_event(json!({"source": "shield", "title": "Prompt injection again", "fingerprint": "inj-1"}))
        .await;

    assert_eq!(id_of(&first), id_of(&second));
    assert_eq!(second["occurrence_count"], 2);
    app.stop().await;
}

#[tokio::test]
async fn a_resolved_event_resolves_the_incident_and_a_new_firing_opens_another() {
    let database = TestDatabase::sqlite();
    let app = TestApp::spawn(&database).await;
    let opened = app.send_event(event("GPU memory")).await;
    app.advance(120);

    let mut resolved_event = event("GPU memory");
    resolved_event["status"] = json!("resolved");
    let resolved = app.send_event(resolved_event).await;

    assert_eq!(resolved["outcome"], "resolved");
    assert_eq!(id_of(&resolved), id_of(&opened));
    let incident = app.incident(&id_of(&opened)).await;
    assert_eq!(incident["state"], "RESOLVED");
    assert!(incident["resolved_at"].is_string());
    assert_eq!(app.timeline_kinds(&id_of(&opened)).await, ["created", "resolved"]);

    let reopened = app.send_event(event("GPU memory")).await;
    assert_eq!(reopened["outcome"], "created");
    assert_ne!(id_of(&reopened), id_of(&opened));
    app.stop().await;
}

#[tokio::test]
async fn a_resolved_event_with_nothing_open_is_ignored() {
    let database = TestDatabase::sqlite();
    let app = TestApp::spawn(&database).await;
    let mut resolved_event = event("never fired");
    resolved_event["status"] = json!("resolved");

    let result = app.send_event(resolved_event).await;

    assert_eq!(result["outcome"], "ignored");
    assert!(result["incident_id"].is_null());
    assert!(app.all_incidents().await.is_empty());
    app.stop().await;
}

#[tokio::test]
async fn a_batch_answers_each_event_in_order() {
    let database = TestDatabase::sqlite();
    let app = TestApp::spawn(&database).await;

    let (status, body) = app
        .post("/v1/events", json!([event("a"), event("b"), event("a")]))
        .await;

    assert_eq!(status, 200, "{body}");
    let outcomes: Vec<_> = body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|result| result["outcome"].clone())
        .collect();
    assert_eq!(outcomes, [json!("created"), json!("created"), json!("deduplicated")]);
    assert_eq!(app.all_incidents().await.len(), 2);
    app.stop().await;
}

#[tokio::test]
async fn incidents_are_listed_newest_first_with_filters_and_a_cursor() {
    let database = TestDatabase::sqlite();
    let app = TestApp::spawn(&database).await;
    for index in 0..5 {
        app.send_event(json!({"source": "sentinel", "title": format!("drift {index}"), "severity": "P3"}))
            .await;
    }
    app.send_event(json!({"source": "shield", "title": "jailbreak", "severity": "P0", "category": "security"}))
        .await;

    let (_, first_page) = app.get("/v1/incidents?source=sentinel&limit=3").await;
    let titles: Vec<_> = first_page["incidents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["title"].clone())
        .collect();
    assert_eq!(titles, [json!("drift 4"), json!("drift 3"), json!("drift 2")]);
    let cursor = first_page["next_cursor"].as_str().unwrap();
    let (_, second_page) = app
        .get(&format!("/v1/incidents?source=sentinel&limit=3&cursor={cursor}"))
        .await;
    assert_eq!(second_page["incidents"].as_array().unwrap().len(), 2);
    assert!(second_page["next_cursor"].is_null());

    let (_, security) = app
        .get("/v1/incidents?category=security&severity=P0,P1&state=NEW")
        .await;
    assert_eq!(security["incidents"].as_array().unwrap().len(), 1);
    assert_eq!(security["incidents"][0]["title"], "jailbreak");
    app.stop().await;
}

#[tokio::test]
async fn the_openapi_document_describes_the_routes() {
    let database = TestDatabase::sqlite();
    let app = TestApp::spawn(&database).await;

    let (status, document) = app.get("/openapi.json").await;

    assert_eq!(status, 200);
    assert!(document["openapi"].as_str().unwrap().starts_with("3."));
    for path in [
        "/v1/events",
        "/v1/integrations/alertmanager",
        "/v1/incidents",
        "/v1/incidents/{id}/acknowledge",
    ] {
        assert!(document["paths"][path].is_object(), "missing {path}");
    }
    app.stop().await;
}

#[tokio::test]
async fn health_answers_live_and_ready() {
    let database = TestDatabase::sqlite();
    let app = TestApp::spawn(&database).await;
    assert_eq!(app.get("/health/live").await.0, 200);
    assert_eq!(app.get("/health/ready").await.0, 200);
    app.stop().await;
}
