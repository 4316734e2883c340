//! Every list pages the same way: `limit` (1–500, default 100), `cursor` from the
//! previous page's `next_cursor`, which is absent on the last page.

use serde_json::{Value, json};

use crate::helpers::{TestApp, TestDatabase, event, id_of};

/// Every page of `path`, following `next_cursor`.
async fn pages(app: &TestApp, path: &str, limit: u32) -> Vec<Value> {
    let mut pages = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let query = match &cursor {
            Some(cursor) => format!("{path}?limit={limit}&cursor={cursor}"),
            None => format!("{path}?limit={limit}"),
        };
        let (status, page) = app.get(&query).await;
        assert_eq!(status, 200, "{page}");
        cursor = page["next_cursor"].as_str().map(str::to_owned);
        pages.push(page);
        if cursor.is_none() {
            return pages;
        }
    }
}

fn messages(pages: &[Value]) -> Vec<Vec<String>> {
    pages
        .iter()
        .map(|page| {
            page["entries"]
                .as_array()
                .unwrap()
                .iter()
                .map(|entry| entry["message"].as_str().unwrap().to_owned())
                .collect()
        })
        .collect()
}

#[tokio::test]
async fn a_timeline_and_its_comments_are_read_a_page_at_a_time_oldest_first() {
    let database = TestDatabase::sqlite();
    let app = TestApp::spawn(&database).await;
    let id = id_of(&app.send_event(event("noisy")).await);
    for n in 0..4 {
        app.send_event(event("noisy")).await;
        app.post(
            &format!("/v1/incidents/{id}/comments"),
            json!({"author": "ana", "body": format!("note {n}")}),
        )
        .await;
    }

    let timeline = pages(&app, &format!("/v1/incidents/{id}/timeline"), 3).await;
    let comments = pages(&app, &format!("/v1/incidents/{id}/comments"), 3).await;

    assert_eq!(
        messages(&timeline),
        [
            vec!["P1 incident opened: noisy", "occurrence 2 of `noisy`", "note 0"],
            vec!["occurrence 3 of `noisy`", "note 1", "occurrence 4 of `noisy`"],
            vec!["note 2", "occurrence 5 of `noisy`", "note 3"],
        ]
    );
    assert_eq!(
        messages(&comments),
        [vec!["note 0", "note 1", "note 2"], vec!["note 3"]]
    );
    let (_, whole) = app.get(&format!("/v1/incidents/{id}/timeline")).await;
    assert_eq!(whole["entries"].as_array().unwrap().len(), 9);
    assert!(whole.get("next_cursor").is_none_or(Value::is_null), "{whole}");
    app.stop().await;
}

#[tokio::test]
async fn the_incident_list_gives_a_cursor_only_when_another_page_has_something() {
    let database = TestDatabase::sqlite();
    let app = TestApp::spawn(&database).await;
    for n in 0..4 {
        app.send_event(event(&format!("incident {n}"))).await;
    }

    let listed = pages(&app, "/v1/incidents", 2).await;

    assert_eq!(listed.len(), 2, "two full pages and no empty third: {listed:?}");
    let titles: Vec<&str> = listed
        .iter()
        .flat_map(|page| page["incidents"].as_array().unwrap())
        .map(|incident| incident["title"].as_str().unwrap())
        .collect();
    assert_eq!(titles, ["incident 3", "incident 2", "incident 1", "incident 0"]);
    app.stop().await;
}

#[tokio::test]
async fn a_bad_limit_or_cursor_is_a_400_naming_it() {
    let database = TestDatabase::sqlite();
    let app = TestApp::spawn(&database).await;
    let id = id_of(&app.send_event(event("t")).await);

    for (query, mentions) in [
        (
            format!("/v1/incidents/{id}/timeline?limit=0"),
            "limit: must be 1 to 500",
        ),
        (
            format!("/v1/incidents/{id}/timeline?limit=501"),
            "limit: must be 1 to 500",
        ),
        (format!("/v1/incidents/{id}/timeline?limit=x"), "limit"),
        (
            format!("/v1/incidents/{id}/comments?cursor=-3"),
            "cursor: `-3` is not a cursor",
        ),
        (
            "/v1/incidents?cursor=yesterday".to_owned(),
            "cursor: `yesterday` is not a cursor",
        ),
    ] {
        let (status, answer) = app.get(&query).await;
        assert_eq!(status, 400, "{query}: {answer}");
        let message = answer["error"]["message"].as_str().unwrap();
        assert!(message.contains(mentions), "{query}: {message}");
    }
    app.stop().await;
}
