//! Input that would silently mean something else is refused, naming the problem; input
//! that repeats what is stored is recognised.

use serde_json::{Value, json};

use crate::helpers::{TestApp, TestDatabase, event, id_of};

async fn refused(app: &TestApp, path: &str, body: Value) -> String {
    let (status, answer) = app.post(path, body).await;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(answer["error"]["code"], "invalid_field", "{answer}");
    answer["error"]["message"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn an_unknown_field_is_refused_with_the_field_it_probably_meant() {
    let database = TestDatabase::sqlite();
    let app = TestApp::spawn(&database).await;
    let id = id_of(&app.send_event(event("t")).await);

    let mut misspelt = event("x");
    misspelt["severty"] = json!("P0");
    assert_eq!(
        refused(&app, "/v1/events", misspelt.clone()).await,
        "severty: unknown field; did you mean `severity`?"
    );
    assert_eq!(
        refused(&app, "/v1/events", json!([event("y"), misspelt])).await,
        "[1].severty: unknown field; did you mean `severity`?"
    );
    let assign = format!("/v1/incidents/{id}/assign");
    assert_eq!(
        refused(&app, &assign, json!({"assignee": "ana", "tema": "ml"})).await,
        "tema: unknown field; did you mean `team`?"
    );
    let resolve = format!("/v1/incidents/{id}/resolve");
    assert_eq!(
        refused(&app, &resolve, json!({"notes": "fixed"})).await,
        "notes: unknown field; did you mean `note`?"
    );
    assert_eq!(
        refused(&app, "/v1/incidents", json!({"titel": "by hand"})).await,
        "titel: unknown field; did you mean `title`?"
    );
    assert_eq!(app.all_incidents().await.len(), 1, "nothing refused was stored");
    assert_eq!(app.incident(&id).await["state"], "NEW");
    app.stop().await;
}

#[tokio::test]
async fn a_time_beyond_the_clock_skew_is_refused_and_one_within_it_kept() {
    let database = TestDatabase::sqlite();
    let app = TestApp::spawn(&database).await;
    let mut far = event("t");
    far["occurred_at"] = json!("9999-01-01T00:00:00Z");

    let message = refused(&app, "/v1/events", far).await;

    assert!(
        message.starts_with("occurred_at: is ")
            && message.ends_with("in the future; at most 10m is allowed (events.max_clock_skew)"),
        "{message}"
    );
    let mut near = event("t");
    near["occurred_at"] = json!("2026-01-01T00:05:00Z");
    let id = id_of(&app.send_event(near).await);
    assert_eq!(app.incident(&id).await["last_seen"], "2026-01-01T00:05:00Z");
    app.stop().await;
}

#[tokio::test]
async fn an_event_cannot_claim_the_fingerprint_of_a_manual_incident() {
    let database = TestDatabase::sqlite();
    let app = TestApp::spawn(&database).await;
    let (status, manual) = app.post("/v1/incidents", json!({"title": "by hand"})).await;
    assert_eq!(status, 201, "{manual}");
    let mut event = event("t");
    event["fingerprint"] = manual["fingerprint"].clone();

    let message = refused(&app, "/v1/events", event).await;

    assert_eq!(
        message,
        "fingerprint: the prefix `manual:` is reserved for incidents opened by hand"
    );
    assert_eq!(
        app.incident(manual["id"].as_str().unwrap()).await["occurrence_count"],
        1
    );
    app.stop().await;
}

#[tokio::test]
async fn only_the_documented_spellings_are_taken_and_an_error_lists_them_all() {
    let database = TestDatabase::sqlite();
    let app = TestApp::spawn(&database).await;
    let id = id_of(&app.send_event(event("t")).await);
    let mut ok = event("t");
    ok["status"] = json!("ok");

    let message = refused(&app, "/v1/events", ok).await;

    assert_eq!(
        message,
        "status: unknown status `ok`; expected one of: firing (or trigger, triggered), resolved (or resolve)"
    );
    let mut lower = event("t");
    lower["severity"] = json!("p1");
    let message = refused(&app, "/v1/events", lower).await;
    assert!(message.contains("P0 (or critical, fatal, emergency)"), "{message}");
    assert_eq!(app.incident(&id).await["state"], "NEW", "`ok` resolved nothing");
    let mut resolve = event("t");
    resolve["status"] = json!("resolve");
    assert_eq!(app.send_event(resolve).await["outcome"], "resolved");
    app.stop().await;
}

async fn a_repeat_event_raises_the_severity_on_the_timeline_and_in_the_metrics(database: TestDatabase) {
    let app = TestApp::spawn(&database).await;
    let first = app.send_event(event("GPU memory")).await;
    let id = id_of(&first);
    assert_eq!(
        (first["severity"].clone(), first["category"].clone()),
        (json!("P1"), json!("performance"))
    );
    let mut worse = event("GPU memory");
    worse["severity"] = json!("critical");
    let mut milder = event("GPU memory");
    milder["severity"] = json!("P4");
    let active = |severity: &str| {
        format!(r#"incidents_active{{severity="{severity}",source="sentinel",category="performance"}}"#)
    };
    assert_eq!(app.metric(&active("P1")).await, Some(1.0));

    let raised = app.send_event(worse).await;
    let kept = app.send_event(milder).await;

    assert_eq!(
        (raised["outcome"].clone(), raised["severity"].clone()),
        (json!("deduplicated"), json!("P0"))
    );
    assert_eq!(kept["severity"], "P0", "never lowered");
    assert_eq!(app.incident(&id).await["severity"], "P0");
    assert_eq!(
        app.timeline_kinds(&id).await,
        ["created", "event_attached", "classified", "event_attached"]
    );
    assert_eq!(app.metric(&active("P0")).await, Some(1.0));
    assert_eq!(app.metric(&active("P1")).await, Some(0.0));
    app.stop().await;
    database.drop_database().await;
}

#[tokio::test]
async fn a_repeat_event_raises_the_severity_on_sqlite() {
    a_repeat_event_raises_the_severity_on_the_timeline_and_in_the_metrics(TestDatabase::sqlite()).await;
}

#[tokio::test]
async fn a_repeat_event_raises_the_severity_on_postgres() {
    a_repeat_event_raises_the_severity_on_the_timeline_and_in_the_metrics(TestDatabase::postgres().await).await;
}

#[tokio::test]
async fn an_event_sent_again_with_its_time_is_counted_once() {
    let database = TestDatabase::sqlite();
    let app = TestApp::spawn(&database).await;
    let mut stated = event("retried after a timeout");
    stated["occurred_at"] = json!("2025-12-31T23:59:00Z");

    let first = app.send_event(stated.clone()).await;
    let retry = app.send_event(stated).await;

    assert_eq!(retry["outcome"], "redelivered");
    assert_eq!(retry["incident_id"], first["incident_id"]);
    assert_eq!(retry["occurrence_count"], 1);
    assert_eq!(
        app.metric(r#"incidents_deduplicated_total{source="sentinel"}"#).await,
        None,
        "a redelivery is not a deduplicated event"
    );
    app.stop().await;
}

#[tokio::test]
async fn errors_name_fields_as_the_body_does_and_quote_little() {
    let database = TestDatabase::sqlite();
    let app = TestApp::spawn(&database).await;
    let id = id_of(&app.send_event(event("t")).await);

    let message = refused(
        &app,
        &format!("/v1/incidents/{id}/comments"),
        json!({"author": "a".repeat(200), "body": "hi"}),
    )
    .await;
    assert_eq!(message, "author: is 200 characters long; the limit is 128");

    let mut long = event("t");
    long["source"] = json!("s".repeat(100_000));
    let message = refused(&app, "/v1/events", long).await;
    assert!(message.len() < 600, "{} characters", message.len());
    assert!(
        message.starts_with(&format!("source: unknown source `{}…`", "s".repeat(64))),
        "{message}"
    );

    let (status, answer) = app.get(&format!("/v1/incidents/{}", "x".repeat(5000))).await;
    assert_eq!(status, 400);
    assert!(answer["error"]["message"].as_str().unwrap().len() < 200, "{answer}");

    let type_error = refused(&app, "/v1/events", json!([event("a"), {"source": "api", "title": 5}])).await;
    let validation = refused(&app, "/v1/events", json!([event("a"), {"source": "api", "title": ""}])).await;
    assert!(type_error.starts_with("[1].title: "), "{type_error}");
    assert!(validation.starts_with("[1].title: "), "{validation}");
    app.stop().await;
}

#[tokio::test]
async fn a_batch_past_the_limit_is_refused_however_long_it_is() {
    let database = TestDatabase::sqlite();
    let app = TestApp::spawn(&database).await;
    let body = format!("[{}]", vec!["{}"; 1_000_000].join(","));

    let (status, answer) = app.post_raw("/v1/events", Some("application/json"), body).await;

    assert_eq!(status, 400, "{answer}");
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("a batch holds at most 1000 events"),
        "{answer}"
    );
    let labels: serde_json::Map<String, Value> = (0..100_000).map(|n| (format!("k{n}"), json!("v"))).collect();
    let message = refused(
        &app,
        "/v1/events",
        json!({"source": "api", "title": "t", "labels": labels}),
    )
    .await;
    assert_eq!(message, "labels: has more than 64 entries; the limit is 64");
    app.stop().await;
}
