//! API keys: every route and RPC with no key, a wrong key, a key of each scope and a
//! revoked key; revocation within a second; the rate limit of failed attempts; the
//! Alertmanager webhook's basic authentication; the token of the metrics listener.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use lim_domain::auth::{ApiKey, Scope};
use lim_proto::v1::event_service_client::EventServiceClient;
use lim_proto::v1::incident_service_client::IncidentServiceClient;
use lim_proto::v1::*;
use llm_incident_manager::clock::ManualClock;
use serde_json::{Value, json};
use tonic::Code;
use tonic::metadata::MetadataValue;
use tonic::transport::Channel;

use crate::helpers::{TestApp, TestDatabase, event, id_of, start_time};

/// Keys of every scope, and a revoked admin key, stored before the application starts.
async fn keys(database: &TestDatabase) -> HashMap<&'static str, String> {
    let store = lim_store::connect(&database.url(), lim_store::StoreOptions::default())
        .await
        .unwrap();
    let mut keys = HashMap::new();
    for (name, scopes, revoked) in [
        ("ingest", vec![Scope::Ingest], false),
        ("read", vec![Scope::Read], false),
        ("write", vec![Scope::Write], false),
        ("admin", vec![Scope::Admin], false),
        ("revoked", vec![Scope::Admin], true),
    ] {
        let (key, hash) = llm_incident_manager::auth::new_key();
        store
            .create_api_key(ApiKey {
                name: name.into(),
                hash,
                scopes,
                created_at: start_time(),
                last_used_at: None,
                revoked_at: None,
            })
            .await
            .unwrap();
        if revoked {
            store.revoke_api_key(name, start_time()).await.unwrap();
        }
        keys.insert(name, key);
    }
    keys
}

async fn spawn(database: &TestDatabase, adjust: impl FnOnce(&mut llm_incident_manager::config::Settings)) -> TestApp {
    TestApp::spawn_with(database, Arc::new(ManualClock::new(start_time())), adjust).await
}

/// A request with `key` (none when `None`), its status and body.
async fn call(app: &TestApp, method: &str, path: &str, body: Option<Value>, key: Option<&str>) -> (u16, Value) {
    let url = format!("{}{path}", app.address);
    let mut request = match method {
        "GET" => app.client.get(url),
        "DELETE" => app.client.delete(url),
        _ => app.client.post(url),
    };
    if let Some(body) = body {
        request = request.json(&body);
    }
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

/// Which of the test's credentials may do what `needed` allows.
fn allowed(credential: &str, needed: Scope) -> bool {
    match credential {
        "ingest" => needed == Scope::Ingest,
        "read" => needed == Scope::Read,
        "write" => matches!(needed, Scope::Read | Scope::Write),
        "admin" => true,
        _ => false,
    }
}

#[tokio::test]
async fn every_route_wants_the_scope_it_needs_once_a_key_exists() {
    let database = TestDatabase::sqlite();
    let keys = keys(&database).await;
    let app = spawn(&database, |settings| settings.auth_max_failures = 1_000_000).await;
    let admin = keys["admin"].clone();
    let (_, created) = call(&app, "POST", "/v1/events", Some(event("keyed")), Some(&admin)).await;
    let id = id_of(&created);
    let (_, silence) = call(
        &app,
        "POST",
        "/v1/silences",
        Some(json!({"matchers": {"match": {"source": "api"}}, "comment": "matrix", "ends_at": "2026-01-02T00:00:00Z"})),
        Some(&admin),
    )
    .await;
    let silence = silence["id"]
        .as_str()
        .expect("the matrix's silence is created")
        .to_owned();
    let routes: Vec<(&str, String, Option<Value>, Scope)> = vec![
        ("POST", "/v1/events".into(), Some(event("matrix")), Scope::Ingest),
        (
            "POST",
            "/v1/integrations/alertmanager".into(),
            Some(json!({"version": "4", "status": "firing", "alerts": []})),
            Scope::Ingest,
        ),
        ("GET", "/v1/incidents".into(), None, Scope::Read),
        (
            "POST",
            "/v1/incidents".into(),
            Some(json!({"title": "by hand"})),
            Scope::Write,
        ),
        ("GET", format!("/v1/incidents/{id}"), None, Scope::Read),
        (
            "POST",
            format!("/v1/incidents/{id}/reclassify"),
            Some(json!({"severity": "P1"})),
            Scope::Write,
        ),
        (
            "POST",
            format!("/v1/incidents/{id}/comments"),
            Some(json!({"author": "ana", "body": "x"})),
            Scope::Write,
        ),
        ("GET", format!("/v1/incidents/{id}/comments"), None, Scope::Read),
        ("GET", format!("/v1/incidents/{id}/timeline"), None, Scope::Read),
        (
            "POST",
            format!("/v1/incidents/{id}/assign"),
            Some(json!({"assignee": "ana"})),
            Scope::Write,
        ),
        (
            "POST",
            format!("/v1/incidents/{id}/acknowledge"),
            Some(json!({})),
            Scope::Write,
        ),
        (
            "POST",
            format!("/v1/incidents/{id}/start"),
            Some(json!({})),
            Scope::Write,
        ),
        (
            "POST",
            format!("/v1/incidents/{id}/resolve"),
            Some(json!({})),
            Scope::Write,
        ),
        ("GET", "/v1/jobs".into(), None, Scope::Read),
        ("GET", "/v1/jobs/1".into(), None, Scope::Read),
        ("POST", "/v1/jobs/1/retry".into(), Some(json!({})), Scope::Write),
        ("GET", "/v1/silences".into(), None, Scope::Read),
        ("GET", format!("/v1/silences/{silence}"), None, Scope::Read),
        (
            "POST",
            "/v1/silences".into(),
            Some(
                json!({"matchers": {"match": {"source": "api"}}, "comment": "matrix", "ends_at": "2026-01-02T00:00:00Z"}),
            ),
            Scope::Write,
        ),
        ("DELETE", format!("/v1/silences/{silence}"), None, Scope::Write),
        ("GET", "/v1/schedules".into(), None, Scope::Read),
        ("GET", "/v1/schedules/none/oncall".into(), None, Scope::Read),
        ("GET", "/v1/schedules/none/shifts".into(), None, Scope::Read),
        ("POST", "/-/reload".into(), Some(json!({})), Scope::Admin),
    ];
    let credentials: Vec<(&str, Option<String>)> = vec![
        ("none", None),
        ("wrong", Some("lim_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".into())),
        ("ingest", Some(keys["ingest"].clone())),
        ("read", Some(keys["read"].clone())),
        ("write", Some(keys["write"].clone())),
        ("admin", Some(keys["admin"].clone())),
        ("revoked", Some(keys["revoked"].clone())),
    ];
    let mut checked = 0;
    for (method, path, body, needed) in &routes {
        for (credential, key) in &credentials {
            let (status, answer) = call(&app, method, path, body.clone(), key.as_deref()).await;
            let expected = if matches!(*credential, "none" | "wrong" | "revoked") {
                Some(401)
            } else if !allowed(credential, *needed) {
                Some(403)
            } else {
                None
            };
            match expected {
                Some(expected) => {
                    assert_eq!(status, expected, "{method} {path} with {credential}: {answer}");
                    let code = if expected == 401 {
                        "unauthenticated"
                    } else {
                        "forbidden"
                    };
                    assert_eq!(answer["error"]["code"], code, "{method} {path} with {credential}");
                }
                None => assert!(
                    ![401, 403, 429].contains(&status) && status < 500,
                    "{method} {path} with {credential}: {status} {answer}"
                ),
            }
            checked += 1;
        }
    }
    assert_eq!(checked, routes.len() * credentials.len());
    // Open whatever the keys.
    for path in ["/health/live", "/health/ready", "/openapi.json"] {
        assert_eq!(call(&app, "GET", path, None, None).await.0, 200, "{path}");
    }
    // Unknown paths are 404 to anyone.
    assert_eq!(call(&app, "GET", "/v1/nothing", None, None).await.0, 404);
    // What the refusals say.
    let (_, missing) = call(&app, "GET", "/v1/incidents", None, None).await;
    assert!(
        missing["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Authorization: Bearer")
    );
    let (_, revoked) = call(&app, "GET", "/v1/incidents", None, Some(&keys["revoked"])).await;
    assert_eq!(revoked["error"]["message"], "the key has been revoked");
    let (_, forbidden) = call(&app, "GET", "/v1/incidents", None, Some(&keys["ingest"])).await;
    assert_eq!(
        forbidden["error"]["message"],
        "the key lacks the `read` scope this route needs"
    );

    // The Alertmanager webhook takes the key as a basic-auth password too.
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("alertmanager:{}", keys["ingest"]));
    let response = app
        .client
        .post(format!("{}/v1/integrations/alertmanager", app.address))
        .header("authorization", format!("Basic {basic}"))
        .json(&json!({"version": "4", "status": "firing", "alerts": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);

    // Each refusal is counted by reason.
    let scrape = app.scrape().await;
    for reason in ["missing", "invalid", "revoked", "forbidden"] {
        let line = format!("auth_failures_total{{reason=\"{reason}\"}} ");
        let count: f64 = scrape
            .lines()
            .find_map(|text| text.strip_prefix(&line))
            .unwrap_or_else(|| panic!("no {line}"))
            .parse()
            .unwrap();
        assert!(count > 0.0, "{reason}");
    }
    app.stop().await;
}

async fn grpc_channel(app: &TestApp) -> Channel {
    Channel::from_shared(app.grpc_address.clone())
        .unwrap()
        .connect()
        .await
        .unwrap()
}

fn with_key<T>(message: T, key: Option<&str>) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Some(key) = key {
        let value: MetadataValue<_> = format!("Bearer {key}").parse().unwrap();
        request.metadata_mut().insert("authorization", value);
    }
    request
}

#[tokio::test]
async fn every_rpc_wants_the_scope_it_needs_once_a_key_exists() {
    let database = TestDatabase::sqlite();
    let keys = keys(&database).await;
    let app = spawn(&database, |settings| settings.auth_max_failures = 1_000_000).await;
    let (_, created) = call(&app, "POST", "/v1/events", Some(event("rpc")), Some(&keys["admin"])).await;
    let id = id_of(&created);
    let channel = grpc_channel(&app).await;
    let credentials: Vec<(&str, Option<String>)> = vec![
        ("none", None),
        ("wrong", Some("lim_nope".into())),
        ("ingest", Some(keys["ingest"].clone())),
        ("read", Some(keys["read"].clone())),
        ("write", Some(keys["write"].clone())),
        ("admin", Some(keys["admin"].clone())),
        ("revoked", Some(keys["revoked"].clone())),
    ];
    let event = || Event {
        source: Source::Api as i32,
        title: "over grpc".into(),
        ..Event::default()
    };
    for (credential, key) in &credentials {
        let key = key.as_deref();
        let mut events = EventServiceClient::new(channel.clone());
        let mut incidents = IncidentServiceClient::new(channel.clone());
        let mut codes: Vec<(&str, Scope, Result<(), tonic::Status>)> = Vec::new();
        codes.push((
            "SubmitEvent",
            Scope::Ingest,
            events
                .submit_event(with_key(SubmitEventRequest { event: Some(event()) }, key))
                .await
                .map(drop),
        ));
        let stream = futures_util::stream::iter(vec![SubmitEventRequest { event: Some(event()) }]);
        codes.push((
            "StreamEvents",
            Scope::Ingest,
            events.stream_events(with_key(stream, key)).await.map(drop),
        ));
        codes.push((
            "GetIncident",
            Scope::Read,
            incidents
                .get_incident(with_key(GetIncidentRequest { id: id.clone() }, key))
                .await
                .map(drop),
        ));
        codes.push((
            "ListIncidents",
            Scope::Read,
            incidents
                .list_incidents(with_key(ListIncidentsRequest::default(), key))
                .await
                .map(drop),
        ));
        codes.push((
            "GetTimeline",
            Scope::Read,
            incidents
                .get_timeline(with_key(
                    GetTimelineRequest {
                        id: id.clone(),
                        ..GetTimelineRequest::default()
                    },
                    key,
                ))
                .await
                .map(drop),
        ));
        codes.push((
            "WatchIncidents",
            Scope::Read,
            incidents
                .watch_incidents(with_key(WatchIncidentsRequest::default(), key))
                .await
                .map(drop),
        ));
        codes.push((
            "CreateIncident",
            Scope::Write,
            incidents
                .create_incident(with_key(
                    CreateIncidentRequest {
                        title: "by hand".into(),
                        ..CreateIncidentRequest::default()
                    },
                    key,
                ))
                .await
                .map(drop),
        ));
        codes.push((
            "AddComment",
            Scope::Write,
            incidents
                .add_comment(with_key(
                    AddCommentRequest {
                        id: id.clone(),
                        author: "ana".into(),
                        body: "x".into(),
                    },
                    key,
                ))
                .await
                .map(drop),
        ));
        codes.push((
            "AssignIncident",
            Scope::Write,
            incidents
                .assign_incident(with_key(
                    AssignIncidentRequest {
                        id: id.clone(),
                        assignee: "ana".into(),
                        ..AssignIncidentRequest::default()
                    },
                    key,
                ))
                .await
                .map(drop),
        ));
        for (rpc, action) in [("AcknowledgeIncident", 0), ("StartIncident", 1), ("ResolveIncident", 2)] {
            let result = match action {
                0 => incidents
                    .acknowledge_incident(with_key(
                        AcknowledgeIncidentRequest {
                            id: id.clone(),
                            actor: String::new(),
                        },
                        key,
                    ))
                    .await
                    .map(drop),
                1 => incidents
                    .start_incident(with_key(
                        StartIncidentRequest {
                            id: id.clone(),
                            actor: String::new(),
                        },
                        key,
                    ))
                    .await
                    .map(drop),
                _ => incidents
                    .resolve_incident(with_key(
                        ResolveIncidentRequest {
                            id: id.clone(),
                            ..ResolveIncidentRequest::default()
                        },
                        key,
                    ))
                    .await
                    .map(drop),
            };
            codes.push((rpc, Scope::Write, result));
        }
        for (rpc, needed, result) in codes {
            let code = result.err().map(|status| status.code());
            if matches!(*credential, "none" | "wrong" | "revoked") {
                assert_eq!(code, Some(Code::Unauthenticated), "{rpc} with {credential}");
            } else if !allowed(credential, needed) {
                assert_eq!(code, Some(Code::PermissionDenied), "{rpc} with {credential}");
            } else {
                assert!(
                    !matches!(
                        code,
                        Some(Code::Unauthenticated | Code::PermissionDenied | Code::Internal | Code::Unknown)
                    ),
                    "{rpc} with {credential}: {code:?}"
                );
            }
        }
    }
    // Health stays open.
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    health
        .check(tonic_health::pb::HealthCheckRequest { service: String::new() })
        .await
        .expect("health answers without a key");
    app.stop().await;
}

#[tokio::test]
async fn a_revoked_key_is_refused_within_a_second_and_failures_are_rate_limited() {
    let database = TestDatabase::sqlite();
    let keys = keys(&database).await;
    let app = spawn(&database, |_| {}).await;
    let read = keys["read"].clone();
    assert_eq!(call(&app, "GET", "/v1/incidents", None, Some(&read)).await.0, 200);
    let store = lim_store::connect(&database.url(), lim_store::StoreOptions::default())
        .await
        .unwrap();
    store.revoke_api_key("read", start_time()).await.unwrap();
    let revoked_at = Instant::now();
    while call(&app, "GET", "/v1/incidents", None, Some(&read)).await.0 != 401 {
        assert!(
            revoked_at.elapsed() < Duration::from_secs(1),
            "still accepted a second after its revocation"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The key's last use is recorded (written back twice a second).
    let mut recorded = false;
    while !recorded {
        assert!(
            revoked_at.elapsed() < Duration::from_secs(5),
            "the key's last use was not recorded"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
        let listed = store.api_keys().await.unwrap();
        recorded = listed
            .iter()
            .any(|key| key.name == "read" && key.last_used_at.is_some());
    }

    // 20 failures a minute, then 429 for every further failure; a valid key from the same
    // address still passes.
    for _ in 0..30 {
        let (status, _) = call(&app, "GET", "/v1/incidents", None, Some("lim_guess")).await;
        if status == 429 {
            break;
        }
        assert_eq!(status, 401);
    }
    assert_eq!(
        call(&app, "GET", "/v1/incidents", None, Some(&keys["admin"])).await.0,
        200
    );
    let response = app
        .client
        .get(format!("{}/v1/incidents", app.address))
        .bearer_auth("lim_guess")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 429);
    let retry_after: u64 = response.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "rate_limited");
    assert!(
        app.scrape()
            .await
            .contains("auth_failures_total{reason=\"rate_limited\"}")
    );
    // The same client is limited on the gRPC API too: a guess is refused, its key passes.
    let mut grpc = IncidentServiceClient::connect(app.grpc_address.clone()).await.unwrap();
    let refused = grpc
        .list_incidents(with_key(ListIncidentsRequest::default(), Some("lim_guess")))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    grpc.list_incidents(with_key(ListIncidentsRequest::default(), Some(&keys["admin"])))
        .await
        .expect("a valid key passes from a limited address");
    // Health stays open to a blocked client.
    assert_eq!(call(&app, "GET", "/health/ready", None, None).await.0, 200);
    app.stop().await;
}

#[tokio::test]
async fn the_metrics_listener_wants_its_token_when_one_is_set() {
    let database = TestDatabase::sqlite();
    let app = spawn(&database, |settings| {
        settings.metrics_token = Some(llm_incident_manager::config::Secret::resolve("scrape-me").unwrap());
    })
    .await;
    let scrape = |token: Option<&str>| {
        let mut request = app.client.get(format!("{}/metrics", app.metrics_address));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        async move { request.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(scrape(None).await, 401);
    assert_eq!(scrape(Some("wrong")).await, 401);
    assert_eq!(scrape(Some("scrape-me")).await, 200);
    // With no API key the API itself stays open on loopback.
    assert_eq!(call(&app, "GET", "/v1/incidents", None, None).await.0, 200);
    app.stop().await;
}
