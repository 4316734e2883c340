//! On-call schedules and live reload over the API.

use std::sync::Arc;

use llm_incident_manager::clock::ManualClock;
use serde_json::json;

use crate::helpers::{TestApp, TestDatabase, event, id_of, start_time};

/// Two people reached by mail, and a daily rotation between them that hands over at
/// 09:00 in Paris in winter, with bo covering one afternoon.
const SCHEDULE: &str = "[channels.mail]\ntype = \"email\"\nsmtp = \"smtp://127.0.0.1:1\"\n\
    from = \"incidents@example.com\"\nto = [\"ops@example.com\"]\n\n\
    [people.ana]\nemail = \"ana@example.com\"\n[people.bo]\nemail = \"bo@example.com\"\n\n\
    [schedules.primary]\nparticipants = [\"ana\", \"bo\"]\nrotation = \"daily\"\n\
    start = \"2026-01-05T09:00:00+01:00\"\n\
    overrides = [{ from = \"2026-01-05T14:00:00+01:00\", to = \"2026-01-05T18:00:00+01:00\", who = \"bo\" }]\n";

async fn spawn(toml: &str) -> (TestApp, TestDatabase) {
    let database = TestDatabase::sqlite();
    let app = TestApp::spawn_configured(&database, Arc::new(ManualClock::new(start_time())), toml, |_| {}).await;
    (app, database)
}

#[tokio::test]
async fn the_api_answers_who_is_on_call_at_a_given_time_in_the_schedules_offset() {
    let (app, _database) = spawn(SCHEDULE).await;
    let oncall = |at: &'static str| {
        let app = &app;
        async move {
            let (status, body) = app
                .get(&format!("/v1/schedules/primary/oncall?at={}", at.replace('+', "%2B")))
                .await;
            assert_eq!(status, 200, "{body}");
            body
        }
    };

    assert_eq!(
        oncall("2026-01-05T08:00:00Z").await,
        json!({"schedule": "primary", "person": "ana", "from": "2026-01-05T09:00:00+01:00",
               "to": "2026-01-05T14:00:00+01:00"}),
        "ana until the override cuts in"
    );
    assert_eq!(
        oncall("2026-01-05T15:00:00+01:00").await["person"],
        "bo",
        "the override"
    );
    assert_eq!(
        oncall("2026-01-05T18:00:00+01:00").await,
        json!({"schedule": "primary", "person": "ana", "from": "2026-01-05T18:00:00+01:00",
               "to": "2026-01-06T09:00:00+01:00"}),
        "ana again after it"
    );
    assert_eq!(
        oncall("2026-01-06T08:00:00Z").await["person"],
        "bo",
        "the handoff at 09:00 Paris"
    );
    assert_eq!(
        oncall("2026-01-06T07:59:59Z").await["person"],
        "ana",
        "one second before it"
    );
    assert_eq!(
        oncall("2026-01-01T00:00:00Z").await,
        json!({"schedule": "primary", "person": null, "from": null, "to": null}),
        "nobody before the rotation starts"
    );
    let (status, body) = app.get("/v1/schedules/nosuch/oncall").await;
    assert_eq!((status, body["error"]["code"].as_str()), (404, Some("not_found")));
    let (status, body) = app.get("/v1/schedules/primary/oncall?at=yesterday").await;
    assert_eq!(status, 400);
    assert!(body["error"]["message"].as_str().unwrap().starts_with("at: "), "{body}");
    app.stop().await;
}

#[tokio::test]
async fn the_api_lists_the_shifts_of_a_window_split_by_overrides() {
    let (app, _database) = spawn(SCHEDULE).await;

    let (status, body) = app
        .get("/v1/schedules/primary/shifts?from=2026-01-05T08:00:00Z&to=2026-01-07T08:00:00Z")
        .await;

    assert_eq!(status, 200, "{body}");
    let shifts: Vec<(&str, &str, &str)> = body["shifts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|shift| {
            (
                shift["person"].as_str().unwrap(),
                shift["from"].as_str().unwrap(),
                shift["to"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        shifts,
        [
            ("ana", "2026-01-05T09:00:00+01:00", "2026-01-05T14:00:00+01:00"),
            ("bo", "2026-01-05T14:00:00+01:00", "2026-01-05T18:00:00+01:00"),
            ("ana", "2026-01-05T18:00:00+01:00", "2026-01-06T09:00:00+01:00"),
            ("bo", "2026-01-06T09:00:00+01:00", "2026-01-07T09:00:00+01:00"),
        ]
    );
    assert!(body.get("next_from").is_none(), "{body}");
    let (_, schedules) = app.get("/v1/schedules").await;
    assert_eq!(schedules["schedules"][0]["name"], "primary");
    assert_eq!(schedules["schedules"][0]["rotation"], "daily");
    app.stop().await;
}

#[tokio::test]
async fn a_changed_route_takes_effect_at_a_reload_and_a_broken_file_keeps_the_running_one() {
    let (app, _database) = spawn("[[routes]]\nname = \"first\"\nassignee = \"ana\"\n").await;
    assert_eq!(app.metric("config_last_reload_successful").await, Some(1.0));
    let loaded_at = app.metric("config_last_reload_success_timestamp_seconds").await;
    assert_eq!(loaded_at, Some(start_time().timestamp() as f64));
    let before = id_of(&app.send_event(event("before the reload")).await);
    assert_eq!(app.incident(&before).await["assignee"], "ana");

    std::fs::write(&app.config, "[[routes]]\nname = \"second\"\nassignee = \"bo\"\n").unwrap();
    app.advance(60);
    let (status, body) = app.post("/-/reload", json!(null)).await;
    assert_eq!((status, body), (200, json!({"status": "ok"})));

    let after = id_of(&app.send_event(event("after the reload")).await);
    assert_eq!(
        app.incident(&after).await["assignee"],
        "bo",
        "the new route, without a restart"
    );
    assert_eq!(
        app.metric("config_last_reload_success_timestamp_seconds").await,
        Some(start_time().timestamp() as f64 + 60.0)
    );

    std::fs::write(&app.config, "[[routes]]\nname = \"third\"\nchannels = [\"nowhere\"]\n").unwrap();
    let (status, body) = app.post("/-/reload", json!(null)).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["code"], "invalid_configuration");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("routes[0].channels"),
        "the refusal names the key: {body}"
    );
    assert_eq!(app.metric("config_last_reload_successful").await, Some(0.0));
    assert_eq!(
        app.metric("config_last_reload_success_timestamp_seconds").await,
        Some(start_time().timestamp() as f64 + 60.0),
        "the last success is kept"
    );
    let still = id_of(&app.send_event(event("after the refused reload")).await);
    assert_eq!(
        app.incident(&still).await["assignee"],
        "bo",
        "the running configuration stays"
    );
    app.stop().await;
}
