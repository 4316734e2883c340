use serde_json::json;

use crate::helpers::{TestApp, TestDatabase, event, id_of};

async fn everything_survives_a_restart(database: TestDatabase) {
    let app = TestApp::spawn(&database).await;
    let first = id_of(&app.send_event(event("survives")).await);
    app.send_event(event("survives")).await;
    let second = id_of(
        &app.send_event(json!({"source": "governance", "title": "policy breach"}))
            .await,
    );
    app.post(&format!("/v1/incidents/{second}/acknowledge"), json!({"actor": "ana"}))
        .await;
    let incidents_before = app.all_incidents().await;
    let timeline_before = app.get(&format!("/v1/incidents/{first}/timeline")).await.1;
    app.stop().await;

    let app = TestApp::spawn(&database).await;

    assert_eq!(app.all_incidents().await, incidents_before);
    assert_eq!(
        app.get(&format!("/v1/incidents/{first}/timeline")).await.1,
        timeline_before
    );
    assert_eq!(app.incident(&second).await["state"], "ACKNOWLEDGED");
    // Dedup still holds across the restart.
    assert_eq!(app.send_event(event("survives")).await["occurrence_count"], 3);
    app.stop().await;
    database.drop_database().await;
}

#[tokio::test]
async fn incidents_and_timelines_survive_a_restart_on_sqlite() {
    everything_survives_a_restart(TestDatabase::sqlite()).await;
}

#[tokio::test]
async fn incidents_and_timelines_survive_a_restart_on_postgres() {
    everything_survives_a_restart(TestDatabase::postgres().await).await;
}
