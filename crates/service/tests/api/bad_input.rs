//! Each class of bad input gets its status and error body, and stores nothing.

use serde_json::{Value, json};

use crate::helpers::{TestApp, TestDatabase, event};

async fn assert_refused(app: &TestApp, (status, body): (u16, Value), expected_status: u16, code: &str, mentions: &str) {
    assert_eq!(status, expected_status, "{body}");
    assert_eq!(body["error"]["code"], code, "{body}");
    let message = body["error"]["message"].as_str().expect("a message");
    assert!(message.contains(mentions), "`{message}` should mention `{mentions}`");
    assert!(
        app.all_incidents().await.is_empty(),
        "a refused request stored something"
    );
}

#[tokio::test]
async fn malformed_json_is_a_400() {
    let database = TestDatabase::sqlite();
    let app = TestApp::spawn(&database).await;
    let response = app
        .post_raw(
            "/v1/events",
            Some("application/json"),
            r#"{"source": "sentinel", "title": "#,
        )
        .await;
    assert_refused(&app, response, 400, "malformed_json", "malformed JSON").await;
    app.stop().await;
}

#[tokio::test]
async fn a_missing_required_field_is_a_400_naming_it() {
    let database = TestDatabase::sqlite();
    let app = TestApp::spawn(&database).await;
    let response = app.post("/v1/events", json!({"source": "sentinel"})).await;
    assert_refused(&app, response, 400, "invalid_field", "title").await;
    let response = app.post("/v1/events", json!({"title": "no source"})).await;
    assert_refused(&app, response, 400, "invalid_field", "source").await;
    app.stop().await;
}

#[tokio::test]
async fn a_field_of_the_wrong_type_is_a_400_naming_it() {
    let database = TestDatabase::sqlite();
    let app = TestApp::spawn(&database).await;
    let response = app
        .post(
            "/v1/events",
            json!({"source": "sentinel", "title": "t", "labels": {"k": 5}}),
        )
        .await;
    assert_refused(&app, response, 400, "invalid_field", "labels.k").await;
    app.stop().await;
}

#[tokio::test]
async fn an_unknown_enum_value_is_a_400_listing_the_accepted_ones() {
    let database = TestDatabase::sqlite();
    let app = TestApp::spawn(&database).await;
    for (field, value) in [
        ("severity", "P9"),
        ("source", "nagios"),
        ("category", "vibes"),
        ("status", "maybe"),
    ] {
        let mut body = event("t");
        body[field] = json!(value);
        let response = app.post("/v1/events", body).await;
        assert_refused(
            &app,
            response,
            400,
            "invalid_field",
            &format!("unknown {field} `{value}`"),
        )
        .await;
    }
    let response = app.get("/v1/incidents?state=OPENISH").await;
    assert_eq!(response.0, 400, "{}", response.1);
    app.stop().await;
}

#[tokio::test]
async fn an_oversize_field_is_a_400_naming_it() {
    let database = TestDatabase::sqlite();
    let app = TestApp::spawn(&database).await;
    let response = app
        .post("/v1/events", json!({"source": "sentinel", "title": "x".repeat(513)}))
        .await;
    assert_refused(
        &app,
        response,
        400,
        "invalid_field",
        "title: is 513 characters long; the limit is 512",
    )
    .await;
    app.stop().await;
}

#[tokio::test]
async fn one_bad_event_refuses_the_whole_batch() {
    let database = TestDatabase::sqlite();
    let app = TestApp::spawn(&database).await;
    let response = app
        .post(
            "/v1/events",
            json!([event("good"), {"source": "sentinel", "title": ""}]),
        )
        .await;
    assert_refused(&app, response, 400, "invalid_field", "[1].title").await;
    let oversized_batch: Vec<Value> = (0..1001).map(|index| event(&format!("e{index}"))).collect();
    let response = app.post("/v1/events", Value::Array(oversized_batch)).await;
    assert_refused(&app, response, 400, "invalid_field", "at most 1000 events").await;
    app.stop().await;
}

#[tokio::test]
async fn a_body_over_the_limit_is_a_413() {
    let database = TestDatabase::sqlite();
    let app = TestApp::spawn_with(
        &database,
        std::sync::Arc::new(llm_incident_manager::clock::ManualClock::new(
            crate::helpers::start_time(),
        )),
        |settings| settings.http.max_body_bytes = 4096,
    )
    .await;
    let body = json!({"source": "sentinel", "title": "t", "description": "x".repeat(5000)}).to_string();
    let response = app.post_raw("/v1/events", Some("application/json"), body).await;
    assert_refused(&app, response, 413, "payload_too_large", "limit").await;
    app.stop().await;
}

#[tokio::test]
async fn a_body_that_is_not_json_is_a_415() {
    let database = TestDatabase::sqlite();
    let app = TestApp::spawn(&database).await;
    let response = app
        .post_raw("/v1/events", Some("text/plain"), event("t").to_string())
        .await;
    assert_refused(&app, response, 415, "unsupported_media_type", "application/json").await;
    let response = app.post_raw("/v1/events", None, event("t").to_string()).await;
    assert_refused(&app, response, 415, "unsupported_media_type", "application/json").await;
    // A route whose body is optional refuses a non-JSON body all the same.
    let unknown = "01900000-0000-7000-8000-000000000000";
    let path = format!("/v1/incidents/{unknown}/acknowledge");
    let response = app
        .post_raw(
            &path,
            Some("application/x-www-form-urlencoded"),
            r#"{"actor":"ana"}"#.to_owned(),
        )
        .await;
    assert_refused(&app, response, 415, "unsupported_media_type", "application/json").await;
    app.stop().await;
}

#[tokio::test]
async fn an_unknown_incident_is_a_404_and_a_bad_id_a_400() {
    let database = TestDatabase::sqlite();
    let app = TestApp::spawn(&database).await;
    let unknown = "01900000-0000-7000-8000-000000000000";
    for path in [
        format!("/v1/incidents/{unknown}"),
        format!("/v1/incidents/{unknown}/timeline"),
        format!("/v1/incidents/{unknown}/comments"),
    ] {
        let (status, body) = app.get(&path).await;
        assert_eq!(
            (status, body["error"]["code"].clone()),
            (404, json!("not_found")),
            "{path}: {body}"
        );
    }
    let (status, body) = app
        .post(&format!("/v1/incidents/{unknown}/acknowledge"), json!({}))
        .await;
    assert_eq!((status, body["error"]["code"].clone()), (404, json!("not_found")));
    // Not a UUID, and not even UTF-8 once decoded: both a JSON 400.
    for path in [
        "/v1/incidents/not-a-uuid",
        "/v1/incidents/%FF",
        "/v1/incidents/%FF/timeline",
    ] {
        let (status, body) = app.get(path).await;
        assert_eq!(
            (status, body["error"]["code"].clone()),
            (400, json!("invalid_field")),
            "{path}: {body}"
        );
    }
    let (status, body) = app.post("/v1/incidents/%FF/acknowledge", json!({})).await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (400, json!("invalid_field")),
        "{body}"
    );
    let (status, body) = app.get("/no/such/route").await;
    assert_eq!((status, body["error"]["code"].clone()), (404, json!("not_found")));
    app.stop().await;
}

async fn nul_characters_are_a_400_and_store_nothing(database: crate::helpers::TestDatabase) {
    let app = TestApp::spawn(&database).await;
    let response = app
        .post("/v1/events", json!({"source": "shield", "title": "a\u{0}b"}))
        .await;
    assert_refused(&app, response, 400, "invalid_field", "NUL").await;
    let response = app
        .post(
            "/v1/events",
            json!({"source": "shield", "title": "t", "labels": {"k": "\u{0}"}}),
        )
        .await;
    assert_refused(&app, response, 400, "invalid_field", "labels.k").await;
    app.stop().await;
    database.drop_database().await;
}

#[tokio::test]
async fn nul_characters_are_a_400_on_postgres_too() {
    nul_characters_are_a_400_and_store_nothing(TestDatabase::postgres().await).await;
}

/// Hostile and odd bodies on every route that takes one: never a 5xx, and every refusal
/// carries an error body. (Some bodies are valid for some routes: a manual incident
/// ignores fields it does not know, so those may be 201.)
#[tokio::test]
async fn hostile_bodies_never_get_a_5xx() {
    let database = TestDatabase::sqlite();
    let app = TestApp::spawn(&database).await;
    let id = "01900000-0000-7000-8000-000000000000";
    let deep = format!("{}{}", "[".repeat(5000), "]".repeat(5000));
    let bodies: Vec<String> = vec![
        String::new(),
        "null".into(),
        "true".into(),
        "42".into(),
        "\"a string\"".into(),
        "[]".into(),
        "[null]".into(),
        "[1, 2, 3]".into(),
        "{}".into(),
        "{\"source\": null, \"title\": null}".into(),
        "{\"source\": [\"api\"], \"title\": {\"x\": 1}}".into(),
        "{\"source\": \"api\", \"title\": \"t\", \"labels\": [1]}".into(),
        "{\"source\": \"api\", \"title\": \"t\", \"labels\": {\"k\": {\"nested\": true}}}".into(),
        "{\"source\": \"api\", \"title\": \"t\", \"occurred_at\": \"yesterday\"}".into(),
        "{\"source\": \"api\", \"title\": \"t\", \"occurred_at\": 1e400}".into(),
        "{\"source\": \"api\", \"title\": \"t\", \"severity\": 1}".into(),
        "{\"source\": \"api\", \"title\": \"\\ud800\"}".into(),
        "{\"source\": \"api\", \"title\": \"t\"} trailing".into(),
        "{\"source\": \"api\", \"title\": \"t\",}".into(),
        "\u{feff}{\"source\": \"api\", \"title\": \"t\"}".into(),
        deep,
        format!(
            "{{\"source\": \"api\", \"title\": \"t\", \"labels\": {{{}}}}}",
            (0..65)
                .map(|i| format!("\"k{i}\": \"v\""))
                .collect::<Vec<_>>()
                .join(",")
        ),
        format!(
            "{{\"source\": \"api\", \"title\": \"t\", \"fingerprint\": \"{}\"}}",
            "f".repeat(257)
        ),
        "{\"version\": 4, \"alerts\": \"none\"}".into(),
        "{\"version\": \"4\", \"alerts\": [{\"status\": \"firing\", \"labels\": {\"severity\": 5}}]}".into(),
        "{\"assignee\": \"\", \"team\": 7}".into(),
        "{\"note\": [\"x\"]}".into(),
        "{\"author\": \"a\", \"body\": \"\"}".into(),
        "{\"severity\": \"P9\"}".into(),
    ];
    let paths = [
        "/v1/events".to_owned(),
        "/v1/integrations/alertmanager".to_owned(),
        "/v1/incidents".to_owned(),
        format!("/v1/incidents/{id}/assign"),
        format!("/v1/incidents/{id}/resolve"),
        format!("/v1/incidents/{id}/comments"),
        format!("/v1/incidents/{id}/reclassify"),
    ];
    for path in &paths {
        for body in &bodies {
            let (status, answer) = app.post_raw(path, Some("application/json"), body.clone()).await;
            let shown: String = body.chars().take(80).collect();
            assert!(status < 500, "POST {path} {shown}: {status} {answer}");
            if status >= 400 {
                assert!(answer["error"]["code"].is_string(), "POST {path} {shown}: {answer}");
            }
        }
    }
    let stored = app.all_incidents().await;
    assert!(
        stored.iter().all(|incident| incident["source"] == "api"),
        "only manual incidents: {stored:?}"
    );
    app.stop().await;
}

#[tokio::test]
async fn the_api_reference_is_served_with_everything_it_needs_and_nothing_from_elsewhere() {
    let database = TestDatabase::sqlite();
    let app = TestApp::spawn(&database).await;

    let page = app.client.get(format!("{}/docs", app.address)).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let policy = page.headers()["content-security-policy"].to_str().unwrap().to_owned();
    assert!(policy.starts_with("default-src 'self'"), "{policy}");
    let html = page.text().await.unwrap();
    let mut loaded = 0;
    for reference in html
        .split(['"', '\''])
        .filter(|part| part.starts_with('/') || part.contains("://"))
    {
        assert!(reference.starts_with("/docs/"), "the page loads {reference}");
        let asset = app
            .client
            .get(format!("{}{reference}", app.address))
            .send()
            .await
            .unwrap();
        assert_eq!(asset.status(), 200, "{reference}");
        assert!(!asset.bytes().await.unwrap().is_empty(), "{reference}");
        loaded += 1;
    }
    assert_eq!(loaded, 3, "style sheet, bundle and start script: {html}");
    let init = app
        .client
        .get(format!("{}/docs/init.js", app.address))
        .send()
        .await
        .unwrap();
    let init = init.text().await.unwrap();
    assert!(
        init.contains(r#"url: "/openapi.json""#) && init.contains("validatorUrl: null"),
        "{init}"
    );
    let (status, body) = app.get("/docs/nothing.js").await;
    assert_eq!((status, body["error"]["code"].clone()), (404, json!("not_found")));
    app.stop().await;
}
