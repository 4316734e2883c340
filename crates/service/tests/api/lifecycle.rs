use serde_json::{Value, json};

use crate::helpers::{TestApp, TestDatabase, event, id_of};

async fn lifecycle_through_the_api(database: TestDatabase) {
    let app = TestApp::spawn(&database).await;
    let id = id_of(&app.send_event(event("Hallucination rate up")).await);

    let (status, assigned) = app
        .post(
            &format!("/v1/incidents/{id}/assign"),
            json!({"assignee": "ana", "team": "ml-oncall"}),
        )
        .await;
    assert_eq!(status, 200, "{assigned}");
    assert_eq!(assigned["state"], "ASSIGNED");
    assert_eq!(assigned["assignee"], "ana");
    assert_eq!(assigned["team"], "ml-oncall");

    app.advance(90);
    let (status, acknowledged) = app
        .post(&format!("/v1/incidents/{id}/acknowledge"), json!({"actor": "ana"}))
        .await;
    assert_eq!(status, 200, "{acknowledged}");
    assert_eq!(acknowledged["state"], "ACKNOWLEDGED");
    assert_eq!(acknowledged["acknowledged_at"], "2026-01-01T00:01:30Z");

    let (status, started) = app.post(&format!("/v1/incidents/{id}/start"), json!({})).await;
    assert_eq!((status, started["state"].clone()), (200, json!("IN_PROGRESS")));

    let (status, comment) = app
        .post(
            &format!("/v1/incidents/{id}/comments"),
            json!({"author": "ana", "body": "rolling back"}),
        )
        .await;
    assert_eq!(status, 201, "{comment}");
    let (_, comments) = app.get(&format!("/v1/incidents/{id}/comments")).await;
    assert_eq!(comments["entries"][0]["message"], "rolling back");

    app.advance(600);
    let (status, resolved) = app
        .post(
            &format!("/v1/incidents/{id}/resolve"),
            json!({"note": "rolled back to v1.2"}),
        )
        .await;
    assert_eq!(status, 200, "{resolved}");
    assert_eq!(resolved["state"], "RESOLVED");
    assert_eq!(resolved["resolution_note"], "rolled back to v1.2");
    assert_eq!(resolved["resolved_at"], "2026-01-01T00:11:30Z");

    assert_eq!(
        app.timeline_kinds(&id).await,
        ["created", "assigned", "acknowledged", "started", "comment", "resolved"]
    );
    app.stop().await;
    database.drop_database().await;
}

#[tokio::test]
async fn the_whole_lifecycle_works_through_the_api_on_sqlite() {
    lifecycle_through_the_api(TestDatabase::sqlite()).await;
}

#[tokio::test]
async fn the_whole_lifecycle_works_through_the_api_on_postgres() {
    lifecycle_through_the_api(TestDatabase::postgres().await).await;
}

#[tokio::test]
async fn actions_without_a_body_use_the_default_actor() {
    let database = TestDatabase::sqlite();
    let app = TestApp::spawn(&database).await;
    let id = id_of(&app.send_event(event("x")).await);

    let response = app
        .client
        .post(format!("{}/v1/incidents/{id}/acknowledge", app.address))
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), 200);
    let (_, timeline) = app.get(&format!("/v1/incidents/{id}/timeline")).await;
    assert_eq!(timeline["entries"][1]["actor"], "api");
    app.stop().await;
}

/// Drives a fresh incident into `state` through the API.
async fn incident_in(app: &TestApp, state: &str) -> String {
    let id = id_of(
        &app.send_event(json!({"source": "api", "title": format!("in {state} {}", uuid::Uuid::now_v7())}))
            .await,
    );
    let steps: &[&str] = match state {
        "NEW" => &[],
        "ASSIGNED" => &["assign"],
        "ACKNOWLEDGED" => &["acknowledge"],
        "IN_PROGRESS" => &["acknowledge", "start"],
        "RESOLVED" => &["resolve"],
        other => panic!("unknown state {other}"),
    };
    for step in steps {
        let (status, body) = app.post(&format!("/v1/incidents/{id}/{step}"), action_body(step)).await;
        assert_eq!(status, 200, "{step}: {body}");
    }
    id
}

fn action_body(action: &str) -> Value {
    if action == "assign" {
        json!({"assignee": "bo"})
    } else {
        json!({})
    }
}

#[tokio::test]
async fn every_illegal_transition_returns_409_and_changes_nothing() {
    let database = TestDatabase::sqlite();
    let app = TestApp::spawn(&database).await;
    let illegal = [
        ("NEW", "start"),
        ("ASSIGNED", "start"),
        ("ACKNOWLEDGED", "acknowledge"),
        ("IN_PROGRESS", "acknowledge"),
        ("IN_PROGRESS", "start"),
        ("RESOLVED", "assign"),
        ("RESOLVED", "acknowledge"),
        ("RESOLVED", "start"),
        ("RESOLVED", "resolve"),
    ];
    for (state, action) in illegal {
        let id = incident_in(&app, state).await;
        let before = app.incident(&id).await;
        let timeline_before = app.timeline_kinds(&id).await;

        let (status, body) = app
            .post(&format!("/v1/incidents/{id}/{action}"), action_body(action))
            .await;

        assert_eq!(status, 409, "{action} from {state}: {body}");
        assert_eq!(body["error"]["code"], "illegal_transition");
        assert!(body["error"]["message"].as_str().unwrap().contains(state), "{body}");
        assert_eq!(
            app.incident(&id).await,
            before,
            "{action} from {state} changed the incident"
        );
        assert_eq!(app.timeline_kinds(&id).await, timeline_before);
    }
    app.stop().await;
}

#[tokio::test]
async fn every_legal_transition_is_accepted() {
    let database = TestDatabase::sqlite();
    let app = TestApp::spawn(&database).await;
    let legal = [
        ("NEW", "assign"),
        ("NEW", "acknowledge"),
        ("NEW", "resolve"),
        ("ASSIGNED", "assign"),
        ("ASSIGNED", "acknowledge"),
        ("ASSIGNED", "resolve"),
        ("ACKNOWLEDGED", "start"),
        ("ACKNOWLEDGED", "assign"),
        ("ACKNOWLEDGED", "resolve"),
        ("IN_PROGRESS", "assign"),
        ("IN_PROGRESS", "resolve"),
    ];
    for (state, action) in legal {
        let id = incident_in(&app, state).await;
        let (status, body) = app
            .post(&format!("/v1/incidents/{id}/{action}"), action_body(action))
            .await;
        assert_eq!(status, 200, "{action} from {state}: {body}");
        let target = match action {
            "assign" => "ASSIGNED",
            "acknowledge" => "ACKNOWLEDGED",
            "start" => "IN_PROGRESS",
            _ => "RESOLVED",
        };
        assert_eq!(body["state"], target, "{action} from {state}: {body}");
    }
    app.stop().await;
}

#[tokio::test]
async fn a_manual_incident_is_opened_and_never_absorbs_events() {
    let database = TestDatabase::sqlite();
    let app = TestApp::spawn(&database).await;

    let (status, incident) = app
        .post(
            "/v1/incidents",
            json!({"title": "Vendor outage", "severity": "P0", "category": "availability"}),
        )
        .await;

    assert_eq!(status, 201, "{incident}");
    assert_eq!(incident["source"], "manual");
    assert_eq!(incident["state"], "NEW");
    let (status, again) = app.post("/v1/incidents", json!({"title": "Vendor outage"})).await;
    assert_eq!(status, 201, "{again}");
    assert_ne!(again["id"], incident["id"]);
    // An event with the same title and source opens an incident of its own.
    let (status, body) = app
        .post("/v1/events", json!({"source": "manual", "title": "Vendor outage"}))
        .await;
    assert_eq!((status, body["outcome"].clone()), (200, json!("created")), "{body}");
    let id = incident["id"].as_str().unwrap();
    assert_eq!(app.incident(id).await["occurrence_count"], 1);
    app.stop().await;
}
