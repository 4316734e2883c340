//! The gRPC API through the generated client: every RPC, the codes of bad input, unknown
//! ids and illegal transitions, the watch of changes made over HTTP (and, on PostgreSQL,
//! through a second service process), the request metrics, health and reflection.

use std::collections::HashMap;
use std::time::Duration;

use futures_util::StreamExt;
use lim_proto::v1::event_service_client::EventServiceClient;
use lim_proto::v1::incident_service_client::IncidentServiceClient;
use lim_proto::v1::{
    AcknowledgeIncidentRequest, AddCommentRequest, AssignIncidentRequest, Category, ChangeKind, CreateIncidentRequest,
    Event, EventStatus, GetIncidentRequest, GetTimelineRequest, IncidentChange, ListIncidentsRequest, Outcome,
    ResolveIncidentRequest, Severity, Source, StartIncidentRequest, State, SubmitEventRequest, WatchIncidentsRequest,
};
use serde_json::json;
use tonic::Code;
use tonic::transport::Channel;

use crate::helpers::{TestApp, TestDatabase, event, id_of};
use crate::service_process::{Launch, ServiceProcess};

async fn events(app: &TestApp) -> EventServiceClient<Channel> {
    EventServiceClient::connect(app.grpc_address.clone())
        .await
        .expect("connect")
}

async fn incidents(app: &TestApp) -> IncidentServiceClient<Channel> {
    IncidentServiceClient::connect(app.grpc_address.clone())
        .await
        .expect("connect")
}

async fn channel(app: &TestApp) -> Channel {
    Channel::from_shared(app.grpc_address.clone())
        .unwrap()
        .connect()
        .await
        .expect("connect")
}

fn grpc_event(title: &str) -> Event {
    Event {
        source: Source::Sentinel as i32,
        title: title.into(),
        description: "p99 over 2 s".into(),
        severity: Severity::P1 as i32,
        category: Category::Performance as i32,
        labels: HashMap::from([("model".into(), "gpt-4o".into())]),
        ..Event::default()
    }
}

fn submit(event: Event) -> SubmitEventRequest {
    SubmitEventRequest { event: Some(event) }
}

/// Asserts the code of a refusal and that its message names `names`.
#[track_caller]
fn refused<T: std::fmt::Debug>(result: Result<tonic::Response<T>, tonic::Status>, code: Code, names: &str) {
    let status = result.expect_err("refused");
    assert_eq!(status.code(), code, "{status:?}");
    assert!(
        status.message().contains(names),
        "`{}` does not name {names}",
        status.message()
    );
}

async fn every_rpc_through_the_generated_client(database: TestDatabase) {
    let app = TestApp::spawn(&database).await;
    let (mut events, mut incidents) = (events(&app).await, incidents(&app).await);

    // SubmitEvent: created, then the same fingerprint again is deduplicated.
    let created = events
        .submit_event(submit(grpc_event("latency high")))
        .await
        .unwrap()
        .into_inner()
        .result
        .unwrap();
    assert_eq!(created.outcome(), Outcome::Created);
    assert_eq!(
        (created.severity(), created.category()),
        (Severity::P1, Category::Performance)
    );
    let again = events
        .submit_event(submit(grpc_event("latency high")))
        .await
        .unwrap()
        .into_inner()
        .result
        .unwrap();
    assert_eq!((again.outcome(), again.deduplicated), (Outcome::Deduplicated, true));
    assert_eq!(
        (again.incident_id.as_str(), again.occurrence_count),
        (created.incident_id.as_str(), 2)
    );

    // An event naming neither severity nor category is classified offline, as over HTTP.
    let triaged = Event {
        severity: 0,
        category: 0,
        title: "GPU memory exhausted on inference node".into(),
        description: "CUDA out of memory errors".into(),
        ..grpc_event("")
    };
    let triaged = events
        .submit_event(submit(triaged))
        .await
        .unwrap()
        .into_inner()
        .result
        .unwrap();
    assert_ne!(triaged.severity(), Severity::Unspecified);
    assert_ne!(triaged.category(), Category::Unspecified);

    // StreamEvents: one answer at the end, one result per event in order.
    let stream = futures_util::stream::iter(vec![
        submit(grpc_event("stream one")),
        submit(grpc_event("stream two")),
        submit(grpc_event("stream one")),
        submit(Event {
            status: EventStatus::Resolved as i32,
            ..grpc_event("stream two")
        }),
    ]);
    let results = events.stream_events(stream).await.unwrap().into_inner().results;
    let outcomes: Vec<Outcome> = results.iter().map(|result| result.outcome()).collect();
    assert_eq!(
        outcomes,
        [
            Outcome::Created,
            Outcome::Created,
            Outcome::Deduplicated,
            Outcome::Resolved
        ]
    );
    assert_eq!(results[0].incident_id, results[2].incident_id);
    assert_eq!(results[1].incident_id, results[3].incident_id);

    // GetIncident: the same incident HTTP shows.
    let incident = incidents
        .get_incident(GetIncidentRequest {
            id: created.incident_id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (incident.title.as_str(), incident.occurrence_count),
        ("latency high", 2)
    );
    assert_eq!((incident.state(), incident.source()), (State::New, Source::Sentinel));
    assert_eq!(incident.labels["model"], "gpt-4o");
    let (status, over_http) = app.get(&format!("/v1/incidents/{}", created.incident_id)).await;
    assert_eq!(status, 200);
    assert_eq!(over_http["occurrence_count"], 2);

    // ListIncidents: filters, then pages.
    let resolved = incidents
        .list_incidents(ListIncidentsRequest {
            states: vec![State::Resolved as i32],
            ..ListIncidentsRequest::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(resolved.incidents.len(), 1);
    assert_eq!(resolved.incidents[0].id, results[1].incident_id);
    let mut seen = Vec::new();
    let mut cursor = String::new();
    loop {
        let page = incidents
            .list_incidents(ListIncidentsRequest {
                limit: 2,
                cursor: cursor.clone(),
                ..ListIncidentsRequest::default()
            })
            .await
            .unwrap()
            .into_inner();
        seen.extend(page.incidents.into_iter().map(|incident| incident.id));
        if page.next_cursor.is_empty() {
            break;
        }
        cursor = page.next_cursor;
    }
    assert_eq!(seen.len(), 4, "every incident once, newest first: {seen:?}");

    // CreateIncident, then the lifecycle.
    let manual = incidents
        .create_incident(CreateIncidentRequest {
            title: "Vector index corrupted".into(),
            severity: Severity::P0 as i32,
            category: Category::DataQuality as i32,
            ..CreateIncidentRequest::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((manual.source(), manual.severity()), (Source::Manual, Severity::P0));
    let id = manual.id.clone();
    let assigned = incidents
        .assign_incident(AssignIncidentRequest {
            id: id.clone(),
            assignee: "ana".into(),
            team: "ml-oncall".into(),
            actor: "lead".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((assigned.state(), assigned.assignee.as_str()), (State::Assigned, "ana"));
    app.advance(60);
    let acknowledged = incidents
        .acknowledge_incident(AcknowledgeIncidentRequest {
            id: id.clone(),
            actor: "ana".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(acknowledged.state(), State::Acknowledged);
    assert_eq!(acknowledged.acknowledged_at.unwrap().seconds, 1_767_225_660);
    let started = incidents
        .start_incident(StartIncidentRequest {
            id: id.clone(),
            actor: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(started.state(), State::InProgress);
    let comment = incidents
        .add_comment(AddCommentRequest {
            id: id.clone(),
            author: "ana".into(),
            body: "restoring from the snapshot".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((comment.kind.as_str(), comment.actor.as_str()), ("comment", "ana"));
    let resolved = incidents
        .resolve_incident(ResolveIncidentRequest {
            id: id.clone(),
            note: "restored".into(),
            actor: "ana".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (resolved.state(), resolved.resolution_note.as_str()),
        (State::Resolved, "restored")
    );

    // GetTimeline, a page at a time, oldest first.
    let mut kinds = Vec::new();
    let mut cursor = String::new();
    loop {
        let page = incidents
            .get_timeline(GetTimelineRequest {
                id: id.clone(),
                limit: 2,
                cursor: cursor.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        kinds.extend(page.entries.into_iter().map(|entry| entry.kind));
        if page.next_cursor.is_empty() {
            break;
        }
        cursor = page.next_cursor;
    }
    assert_eq!(
        kinds,
        ["created", "assigned", "acknowledged", "started", "comment", "resolved"]
    );
    app.stop().await;
    database.drop_database().await;
}

#[tokio::test]
async fn every_rpc_through_the_generated_client_sqlite() {
    every_rpc_through_the_generated_client(TestDatabase::sqlite()).await;
}

#[tokio::test]
async fn every_rpc_through_the_generated_client_postgres() {
    every_rpc_through_the_generated_client(TestDatabase::postgres().await).await;
}

#[tokio::test]
async fn bad_input_unknown_ids_and_illegal_transitions_get_the_codes_of_the_error_table() {
    let database = TestDatabase::sqlite();
    let app = TestApp::spawn_with(
        &database,
        std::sync::Arc::new(llm_incident_manager::clock::ManualClock::new(
            crate::helpers::start_time(),
        )),
        |settings| settings.grpc_max_message_bytes = 4096,
    )
    .await;
    let (mut events, mut incidents) = (events(&app).await, incidents(&app).await);

    refused(
        events.submit_event(submit(grpc_event(""))).await,
        Code::InvalidArgument,
        "title",
    );
    refused(
        events.submit_event(SubmitEventRequest { event: None }).await,
        Code::InvalidArgument,
        "event",
    );
    refused(
        events
            .submit_event(submit(Event {
                severity: 42,
                ..grpc_event("x")
            }))
            .await,
        Code::InvalidArgument,
        "severity: 42 is not a value",
    );
    refused(
        events
            .submit_event(submit(Event {
                source: 0,
                ..grpc_event("x")
            }))
            .await,
        Code::InvalidArgument,
        "source",
    );
    let many_labels = (0..65).map(|index| (format!("k{index}"), "v".to_owned())).collect();
    refused(
        events
            .submit_event(submit(Event {
                labels: many_labels,
                ..grpc_event("x")
            }))
            .await,
        Code::InvalidArgument,
        "labels",
    );
    refused(
        events
            .submit_event(submit(Event {
                occurred_at: Some(lim_proto::prost_types::Timestamp { seconds: 0, nanos: -5 }),
                ..grpc_event("x")
            }))
            .await,
        Code::InvalidArgument,
        "occurred_at",
    );
    // A message over grpc.max_message_bytes: RESOURCE_EXHAUSTED, nothing stored.
    refused(
        events
            .submit_event(submit(Event {
                description: "x".repeat(5000),
                ..grpc_event("too big")
            }))
            .await,
        Code::ResourceExhausted,
        "4096 bytes",
    );

    // A stream: the refused event is named by its index; those before it are stored.
    let stream = futures_util::stream::iter(vec![
        submit(grpc_event("first")),
        submit(grpc_event("second")),
        submit(grpc_event("")),
        submit(grpc_event("never read")),
    ]);
    refused(events.stream_events(stream).await, Code::InvalidArgument, "[2].title");
    let oversize = futures_util::stream::iter(vec![
        submit(grpc_event("third")),
        submit(Event {
            description: "x".repeat(5000),
            ..grpc_event("too big")
        }),
    ]);
    refused(events.stream_events(oversize).await, Code::ResourceExhausted, "[1]");
    let (_, list) = app.get("/v1/incidents").await;
    let titles: Vec<&str> = list["incidents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|incident| incident["title"].as_str().unwrap())
        .collect();
    assert_eq!(titles, ["third", "second", "first"]);

    // Ids, pages and filters.
    refused(
        incidents.get_incident(GetIncidentRequest { id: "nope".into() }).await,
        Code::InvalidArgument,
        "id: `nope` is not an incident id",
    );
    refused(
        incidents.get_incident(GetIncidentRequest { id: String::new() }).await,
        Code::InvalidArgument,
        "id: is required",
    );
    let unknown = "01900000-0000-7000-8000-000000000000";
    refused(
        incidents.get_incident(GetIncidentRequest { id: unknown.into() }).await,
        Code::NotFound,
        unknown,
    );
    refused(
        incidents
            .acknowledge_incident(AcknowledgeIncidentRequest {
                id: unknown.into(),
                actor: String::new(),
            })
            .await,
        Code::NotFound,
        unknown,
    );
    refused(
        incidents
            .add_comment(AddCommentRequest {
                id: unknown.into(),
                author: "ana".into(),
                body: "hello".into(),
            })
            .await,
        Code::NotFound,
        unknown,
    );
    refused(
        incidents
            .list_incidents(ListIncidentsRequest {
                limit: 501,
                ..ListIncidentsRequest::default()
            })
            .await,
        Code::InvalidArgument,
        "limit",
    );
    refused(
        incidents
            .list_incidents(ListIncidentsRequest {
                cursor: "garbage".into(),
                ..ListIncidentsRequest::default()
            })
            .await,
        Code::InvalidArgument,
        "cursor",
    );
    refused(
        incidents
            .list_incidents(ListIncidentsRequest {
                severities: vec![9],
                ..ListIncidentsRequest::default()
            })
            .await,
        Code::InvalidArgument,
        "severities[0]",
    );
    refused(
        incidents.create_incident(CreateIncidentRequest::default()).await,
        Code::InvalidArgument,
        "title",
    );

    // An illegal transition: FAILED_PRECONDITION naming the states.
    let id = titles_id(&app, "first").await;
    refused(
        incidents
            .start_incident(StartIncidentRequest {
                id: id.clone(),
                actor: String::new(),
            })
            .await,
        Code::FailedPrecondition,
        "NEW",
    );
    refused(
        incidents
            .assign_incident(AssignIncidentRequest {
                id: id.clone(),
                ..AssignIncidentRequest::default()
            })
            .await,
        Code::InvalidArgument,
        "assignee",
    );
    incidents
        .resolve_incident(ResolveIncidentRequest {
            id: id.clone(),
            ..ResolveIncidentRequest::default()
        })
        .await
        .unwrap();
    refused(
        incidents
            .acknowledge_incident(AcknowledgeIncidentRequest {
                id: id.clone(),
                actor: String::new(),
            })
            .await,
        Code::FailedPrecondition,
        "RESOLVED",
    );
    app.stop().await;
}

async fn titles_id(app: &TestApp, title: &str) -> String {
    let (_, list) = app.get("/v1/incidents").await;
    list["incidents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|incident| incident["title"] == title)
        .expect("the incident")["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// The next change of a watch, within a few seconds.
async fn next_change(watch: &mut tonic::Streaming<IncidentChange>) -> IncidentChange {
    tokio::time::timeout(Duration::from_secs(10), watch.next())
        .await
        .expect("a change arrives")
        .expect("the watch goes on")
        .expect("a change, not an error")
}

async fn a_watcher_receives_changes_made_through_the_http_api(database: TestDatabase) {
    let app = TestApp::spawn(&database).await;
    let mut incidents = incidents(&app).await;
    // Only P0 incidents, as they are after each change.
    let mut watch = incidents
        .watch_incidents(WatchIncidentsRequest {
            severities: vec![Severity::P0 as i32],
            ..WatchIncidentsRequest::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut all = incidents
        .watch_incidents(WatchIncidentsRequest::default())
        .await
        .unwrap()
        .into_inner();

    let ignored = id_of(&app.send_event(event("P1, filtered out")).await);
    let mut critical = event("model endpoint down");
    critical["severity"] = json!("P0");
    let id = id_of(&app.send_event(critical.clone()).await);
    let change = next_change(&mut watch).await;
    assert_eq!(change.kind(), ChangeKind::Created);
    let incident = change.incident.unwrap();
    assert_eq!((incident.id.as_str(), incident.severity()), (id.as_str(), Severity::P0));
    assert_eq!(next_change(&mut all).await.incident.unwrap().id, ignored);
    assert_eq!(next_change(&mut all).await.incident.unwrap().id, id);

    app.send_event(critical).await;
    let change = next_change(&mut watch).await;
    assert_eq!(change.kind(), ChangeKind::Deduplicated);
    assert_eq!(change.incident.unwrap().occurrence_count, 2);

    let (status, _) = app
        .post(&format!("/v1/incidents/{id}/acknowledge"), json!({"actor": "ana"}))
        .await;
    assert_eq!(status, 200);
    let change = next_change(&mut watch).await;
    assert_eq!(change.kind(), ChangeKind::StateChanged);
    assert_eq!(change.incident.unwrap().state(), State::Acknowledged);

    let (status, _) = app
        .post(
            &format!("/v1/incidents/{id}/comments"),
            json!({"author": "ana", "body": "on it"}),
        )
        .await;
    assert_eq!(status, 201);
    assert_eq!(next_change(&mut watch).await.kind(), ChangeKind::Commented);

    let (status, _) = app
        .post(
            &format!("/v1/incidents/{id}/reclassify"),
            json!({"category": "security"}),
        )
        .await;
    assert_eq!(status, 200);
    let change = next_change(&mut watch).await;
    assert_eq!(change.kind(), ChangeKind::Classified);
    assert_eq!(change.incident.unwrap().category(), Category::Security);

    // At shutdown the watch ends with UNAVAILABLE rather than holding the drain.
    app.stop().await;
    let ended = tokio::time::timeout(Duration::from_secs(10), watch.next())
        .await
        .expect("the watch ends at shutdown");
    match ended {
        Some(Err(status)) => assert_eq!(status.code(), Code::Unavailable, "{status:?}"),
        other => panic!("expected UNAVAILABLE, got {other:?}"),
    }
    database.drop_database().await;
}

#[tokio::test]
async fn a_watcher_receives_changes_made_through_the_http_api_sqlite() {
    a_watcher_receives_changes_made_through_the_http_api(TestDatabase::sqlite()).await;
}

#[tokio::test]
async fn a_watcher_receives_changes_made_through_the_http_api_postgres() {
    a_watcher_receives_changes_made_through_the_http_api(TestDatabase::postgres().await).await;
}

/// Commits larger than one read of the store (1,000 incidents), and commits that come while
/// the hub reads (it reads them together): the watcher still gets every change.
#[tokio::test]
async fn a_watcher_receives_every_change_of_commits_larger_than_one_read() {
    let database = TestDatabase::sqlite();
    let app = TestApp::spawn(&database).await;
    let mut all = incidents(&app)
        .await
        .watch_incidents(WatchIncidentsRequest::default())
        .await
        .unwrap()
        .into_inner();
    let batch = |round: usize| {
        let events: Vec<serde_json::Value> = (0..1000).map(|n| event(&format!("batch {round} event {n}"))).collect();
        serde_json::Value::Array(events)
    };
    let (first, second, third) = tokio::join!(
        app.post("/v1/events", batch(0)),
        app.post("/v1/events", batch(1)),
        app.post("/v1/events", batch(2))
    );
    assert_eq!((first.0, second.0, third.0), (200, 200, 200));

    let mut created = std::collections::HashSet::new();
    while created.len() < 3000 {
        let change = next_change(&mut all).await;
        assert_eq!(change.kind(), ChangeKind::Created);
        created.insert(change.incident.unwrap().id);
    }
    app.stop().await;
}

#[tokio::test]
async fn on_postgres_a_watcher_receives_changes_made_through_a_second_service_process() {
    let database = TestDatabase::postgres().await;
    let app = TestApp::spawn(&database).await;
    let dir = tempfile::tempdir().unwrap();
    let other = ServiceProcess::launch(
        dir.path(),
        Launch {
            config: Some(format!("[database]\nurl = \"{}\"\n", database.url())),
            ..Launch::default()
        },
    )
    .await;
    let mut watch = incidents(&app)
        .await
        .watch_incidents(WatchIncidentsRequest::default())
        .await
        .unwrap()
        .into_inner();
    let client = reqwest::Client::new();
    // The watcher's replica may still be connecting its listener: send until it hears.
    let mut heard = None;
    for attempt in 0..50 {
        let response = client
            .post(format!("{}/v1/events", other.base))
            .json(&event(&format!("through the other replica {attempt}")))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let id = id_of(&response.json().await.unwrap());
        if let Ok(Some(change)) = tokio::time::timeout(Duration::from_millis(200), watch.next()).await {
            heard = Some((id, change.expect("a change")));
            break;
        }
    }
    let (_, change) = heard.expect("the watcher heard of a change made through the other process");
    assert_eq!(change.kind(), ChangeKind::Created);
    assert!(change.incident.unwrap().title.starts_with("through the other replica"));

    // And a lifecycle change made there.
    let response = client
        .post(format!("{}/v1/events", other.base))
        .json(&event("acknowledged over there"))
        .send()
        .await
        .unwrap();
    let id = id_of(&response.json().await.unwrap());
    let response = client
        .post(format!("{}/v1/incidents/{id}/acknowledge", other.base))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut kinds = Vec::new();
    while kinds.last() != Some(&ChangeKind::StateChanged) {
        let change = next_change(&mut watch).await;
        if change.incident.as_ref().unwrap().id == id {
            kinds.push(change.kind());
        }
    }
    assert_eq!(kinds, [ChangeKind::Created, ChangeKind::StateChanged]);
    drop(other);
    app.stop().await;
    database.drop_database().await;
}

#[tokio::test]
async fn a_watcher_that_does_not_read_is_dropped_and_ingest_goes_on() {
    let database = TestDatabase::sqlite();
    let app = TestApp::spawn(&database).await;
    let mut watch = incidents(&app)
        .await
        .watch_incidents(WatchIncidentsRequest::default())
        .await
        .unwrap()
        .into_inner();
    // The watcher reads nothing while thousands of changes are made: more than the hub
    // keeps and both sides' HTTP/2 windows (a few MB) hold.
    let batch: Vec<_> = (0..500).map(|index| event(&format!("flood {index}"))).collect();
    for round in 0..60 {
        let mut batch = batch.clone();
        for event in &mut batch {
            event["fingerprint"] = json!(format!("{round}-{}", event["title"]));
        }
        let (status, _) = app.post("/v1/events", json!(batch)).await;
        assert_eq!(status, 200, "ingest never waits for a watcher");
    }
    // Reading now: what was kept, then RESOURCE_EXHAUSTED.
    let ended = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(item) = watch.next().await {
            if let Err(status) = item {
                return status;
            }
        }
        panic!("the watch ended without a status");
    })
    .await
    .expect("the slow watch ends");
    assert_eq!(ended.code(), Code::ResourceExhausted, "{ended:?}");
    assert!(ended.message().contains("behind"), "{}", ended.message());
    app.stop().await;
}

#[tokio::test]
async fn request_metrics_count_successes_and_errors_by_code() {
    let database = TestDatabase::sqlite();
    let app = TestApp::spawn(&database).await;
    let (mut events, mut incidents) = (events(&app).await, incidents(&app).await);
    let created = events
        .submit_event(submit(grpc_event("counted")))
        .await
        .unwrap()
        .into_inner()
        .result
        .unwrap();
    for _ in 0..2 {
        incidents
            .get_incident(GetIncidentRequest {
                id: created.incident_id.clone(),
            })
            .await
            .unwrap();
    }
    let unknown = "01900000-0000-7000-8000-000000000000".to_owned();
    let _ = incidents.get_incident(GetIncidentRequest { id: unknown.clone() }).await;
    let _ = incidents.get_incident(GetIncidentRequest { id: "bad".into() }).await;
    let _ = events.submit_event(submit(grpc_event(""))).await;
    let _ = incidents
        .start_incident(StartIncidentRequest {
            id: created.incident_id.clone(),
            actor: String::new(),
        })
        .await;
    let stream = futures_util::stream::iter(vec![submit(grpc_event("streamed"))]);
    events.stream_events(stream).await.unwrap();

    let text = app.scrape().await;
    for series in [
        r#"grpc_requests_total{service="incident_manager.v1.EventService",method="SubmitEvent",code="OK"} 1"#,
        r#"grpc_requests_total{service="incident_manager.v1.EventService",method="SubmitEvent",code="INVALID_ARGUMENT"} 1"#,
        r#"grpc_requests_total{service="incident_manager.v1.EventService",method="StreamEvents",code="OK"} 1"#,
        r#"grpc_requests_total{service="incident_manager.v1.IncidentService",method="GetIncident",code="OK"} 2"#,
        r#"grpc_requests_total{service="incident_manager.v1.IncidentService",method="GetIncident",code="NOT_FOUND"} 1"#,
        r#"grpc_requests_total{service="incident_manager.v1.IncidentService",method="GetIncident",code="INVALID_ARGUMENT"} 1"#,
        r#"grpc_requests_total{service="incident_manager.v1.IncidentService",method="StartIncident",code="FAILED_PRECONDITION"} 1"#,
        r#"grpc_request_duration_seconds_count{service="incident_manager.v1.IncidentService",method="GetIncident"} 4"#,
    ] {
        assert!(text.contains(series), "missing {series} in\n{}", grpc_lines(&text));
    }
    // A path no service answers shares one series.
    let mut unknown_client = tonic::client::Grpc::new(channel(&app).await);
    unknown_client.ready().await.unwrap();
    let path = tonic::codegen::http::uri::PathAndQuery::from_static("/incident_manager.v1.Nope/Nothing");
    let answer: Result<tonic::Response<()>, _> = unknown_client
        .unary(
            tonic::Request::new(()),
            path,
            tonic_prost::ProstCodec::<(), ()>::default(),
        )
        .await;
    assert_eq!(answer.unwrap_err().code(), Code::Unimplemented);
    let text = app.scrape().await;
    assert!(
        text.contains(r#"grpc_requests_total{service="unknown",method="unknown",code="UNIMPLEMENTED"} 1"#),
        "{}",
        grpc_lines(&text)
    );
    app.stop().await;
}

fn grpc_lines(text: &str) -> String {
    text.lines()
        .filter(|line| line.starts_with("grpc_"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test]
async fn reflection_lists_the_services_and_health_follows_the_store() {
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::health_client::HealthClient;
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

    let database = TestDatabase::postgres().await;
    let url = database.url();
    let app = TestApp::spawn(&database).await;

    let mut reflection = ServerReflectionClient::new(channel(&app).await);
    let request = futures_util::stream::iter(vec![ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    }]);
    let mut answers = reflection.server_reflection_info(request).await.unwrap().into_inner();
    let answer = answers.next().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = answer.message_response else {
        panic!("not a list of services: {answer:?}");
    };
    let names: Vec<String> = list.service.into_iter().map(|service| service.name).collect();
    for expected in [
        "incident_manager.v1.EventService",
        "incident_manager.v1.IncidentService",
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
    ] {
        assert!(names.iter().any(|name| name == expected), "{expected} not in {names:?}");
    }
    // v1alpha too (older grpcurl and grpcui ask it).
    let mut alpha =
        tonic_reflection::pb::v1alpha::server_reflection_client::ServerReflectionClient::new(channel(&app).await);
    let request = futures_util::stream::iter(vec![tonic_reflection::pb::v1alpha::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(
            tonic_reflection::pb::v1alpha::server_reflection_request::MessageRequest::ListServices(String::new()),
        ),
    }]);
    assert!(
        alpha
            .server_reflection_info(request)
            .await
            .unwrap()
            .into_inner()
            .next()
            .await
            .unwrap()
            .is_ok()
    );

    let mut health = HealthClient::new(channel(&app).await);
    let check = |service: &str| HealthCheckRequest {
        service: service.into(),
    };
    for service in [
        "",
        "incident_manager.v1.EventService",
        "incident_manager.v1.IncidentService",
    ] {
        let answer = health.check(check(service)).await.unwrap().into_inner();
        assert_eq!(answer.status(), ServingStatus::Serving, "{service:?}");
    }

    // The store goes away: NOT_SERVING within a few health intervals.
    database.drop_database().await;
    let mut status = ServingStatus::Serving;
    for _ in 0..100 {
        status = health.check(check("")).await.unwrap().into_inner().status();
        if status == ServingStatus::NotServing {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status, ServingStatus::NotServing, "the store at {url} is gone");
    let answer = health
        .check(check("incident_manager.v1.EventService"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(answer.status(), ServingStatus::NotServing);
    drop(app);
}
