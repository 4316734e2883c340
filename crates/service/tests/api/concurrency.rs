use serde_json::json;

use crate::helpers::{TestApp, TestDatabase};

/// 100 concurrent posts of one fingerprint make exactly one incident with count 100.
async fn concurrent_posts_make_one_incident(database: TestDatabase) {
    let app = TestApp::spawn(&database).await;
    let posts = (0..100).map(|_| {
        let client = app.client.clone();
        let url = format!("{}/v1/events", app.address);
        tokio::spawn(async move {
            let event = json!({"source": "edge-agent", "title": "Edge node unreachable", "fingerprint": "edge-17"});
            client
                .post(url)
                .json(&event)
                .send()
                .await
                .expect("request")
                .status()
                .as_u16()
        })
    });
    let statuses: Vec<u16> = futures_join(posts).await;

    assert!(statuses.iter().all(|status| *status == 200), "{statuses:?}");
    let incidents = app.all_incidents().await;
    assert_eq!(incidents.len(), 1, "{incidents:?}");
    assert_eq!(incidents[0]["occurrence_count"], 100);
    let id = incidents[0]["id"].as_str().unwrap();
    assert_eq!(app.timeline_kinds(id).await.len(), 100);
    app.stop().await;
    database.drop_database().await;
}

async fn futures_join(tasks: impl Iterator<Item = tokio::task::JoinHandle<u16>>) -> Vec<u16> {
    let mut statuses = Vec::new();
    for task in tasks.collect::<Vec<_>>() {
        statuses.push(task.await.expect("task"));
    }
    statuses
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hundred_concurrent_posts_of_one_fingerprint_make_one_incident_on_sqlite() {
    concurrent_posts_make_one_incident(TestDatabase::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hundred_concurrent_posts_of_one_fingerprint_make_one_incident_on_postgres() {
    concurrent_posts_make_one_incident(TestDatabase::postgres().await).await;
}
