//! What `/metrics` says after the lifecycle is driven through the HTTP API: exact values,
//! read back from the scrape Prometheus would take.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;

use crate::helpers::{TestApp, TestDatabase, event, id_of, sample};

const SENTINEL_P1_PERFORMANCE: &str = r#"severity="P1",source="sentinel",category="performance""#;
const SHIELD_P0_SECURITY: &str = r#"severity="P0",source="shield",category="security""#;

fn shield_event(title: &str) -> Value {
    json!({"source": "shield", "title": title, "severity": "critical", "category": "security"})
}

/// The value of a series that must be in the scrape.
fn value(scrape: &str, series: &str) -> f64 {
    sample(scrape, series).unwrap_or_else(|| panic!("no series {series} in the scrape:\n{scrape}"))
}

/// Every series of a scrape (name and labels, without the value).
fn series(scrape: &str) -> BTreeSet<&str> {
    scrape
        .lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .map(|line| line.rsplit_once(' ').map_or(line, |(series, _)| series))
        .collect()
}

async fn open_count(app: &TestApp, query: &str) -> usize {
    let (status, body) = app
        .get(&format!(
            "/v1/incidents?state=NEW,ASSIGNED,ACKNOWLEDGED,IN_PROGRESS&limit=500{query}"
        ))
        .await;
    assert_eq!(status, 200, "{body}");
    body["incidents"].as_array().unwrap().len()
}

async fn act(app: &TestApp, id: &str, action: &str, body: Value) {
    let (status, answer) = app.post(&format!("/v1/incidents/{id}/{action}"), body).await;
    assert_eq!(status, 200, "{action} refused: {answer}");
}

#[tokio::test]
async fn incidents_total_counts_each_label_set_apart_and_dedup_counts_by_source() {
    let database = TestDatabase::sqlite();
    let app = TestApp::spawn(&database).await;

    app.send_event(event("Latency over SLO")).await;
    app.send_event(event("Latency over SLO")).await;
    app.send_event(event("Latency over SLO")).await;
    app.send_event(event("Token budget exceeded")).await;
    app.send_event(shield_event("Prompt injection")).await;
    let (status, manual) = app
        .post(
            "/v1/incidents",
            json!({"title": "Vendor outage", "severity": "P3", "category": "availability"}),
        )
        .await;
    assert_eq!(status, 201, "{manual}");

    let scrape = app.scrape().await;
    assert_eq!(
        value(&scrape, &format!("incidents_total{{{SENTINEL_P1_PERFORMANCE}}}")),
        2.0
    );
    assert_eq!(value(&scrape, &format!("incidents_total{{{SHIELD_P0_SECURITY}}}")), 1.0);
    assert_eq!(
        value(
            &scrape,
            r#"incidents_total{severity="P3",source="manual",category="availability"}"#
        ),
        1.0
    );
    assert_eq!(
        value(&scrape, r#"incidents_deduplicated_total{source="sentinel"}"#),
        2.0
    );
    assert_eq!(
        sample(&scrape, r#"incidents_deduplicated_total{source="shield"}"#),
        None
    );
    app.stop().await;
}

#[tokio::test]
async fn incidents_active_goes_up_on_creation_down_on_resolution_and_agrees_with_the_api() {
    let database = TestDatabase::sqlite();
    let app = TestApp::spawn(&database).await;
    let active = format!("incidents_active{{{SENTINEL_P1_PERFORMANCE}}}");
    let resolved = format!("incidents_resolved_total{{{SENTINEL_P1_PERFORMANCE}}}");

    let first = id_of(&app.send_event(event("first")).await);
    app.send_event(event("second")).await;
    let third = id_of(&app.send_event(event("third")).await);
    app.send_event(shield_event("Prompt injection")).await;
    let scrape = app.scrape().await;
    assert_eq!(value(&scrape, &active), 3.0);
    assert_eq!(
        value(&scrape, &format!("incidents_active{{{SHIELD_P0_SECURITY}}}")),
        1.0
    );
    assert_eq!(sample(&scrape, &resolved), None);

    // Acknowledging keeps an incident open.
    act(&app, &third, "acknowledge", json!({})).await;
    assert_eq!(app.metric(&active).await, Some(3.0));

    act(&app, &first, "resolve", json!({"note": "fixed"})).await;
    let scrape = app.scrape().await;
    assert_eq!(value(&scrape, &active), 2.0);
    assert_eq!(value(&scrape, &resolved), 1.0);

    let mut resolved_event = event("second");
    resolved_event["status"] = json!("resolved");
    assert_eq!(app.send_event(resolved_event).await["outcome"], "resolved");
    let scrape = app.scrape().await;
    assert_eq!(value(&scrape, &active), 1.0);
    assert_eq!(value(&scrape, &resolved), 2.0);

    assert_eq!(
        value(&scrape, &active) as usize,
        open_count(&app, "&source=sentinel&severity=P1&category=performance").await
    );
    assert_eq!(
        value(&scrape, &format!("incidents_active{{{SHIELD_P0_SECURITY}}}")) as usize,
        open_count(&app, "&source=shield").await
    );
    let all_active: f64 = scrape
        .lines()
        .filter(|line| line.starts_with("incidents_active{"))
        .map(|line| line.rsplit_once(' ').unwrap().1.parse::<f64>().unwrap())
        .sum();
    assert_eq!(all_active as usize, open_count(&app, "").await);
    app.stop().await;
}

#[tokio::test]
async fn state_transitions_are_counted_by_from_and_to_state() {
    let database = TestDatabase::sqlite();
    let app = TestApp::spawn(&database).await;
    let id = id_of(&app.send_event(event("walks the whole lifecycle")).await);
    act(&app, &id, "assign", json!({"assignee": "ana"})).await;
    act(&app, &id, "assign", json!({"assignee": "bo"})).await;
    act(&app, &id, "acknowledge", json!({})).await;
    act(&app, &id, "start", json!({})).await;
    act(&app, &id, "resolve", json!({})).await;
    let refused = app.post(&format!("/v1/incidents/{id}/start"), json!({})).await;
    assert_eq!(refused.0, 409, "{}", refused.1);
    let other = app.send_event(event("resolved by its source")).await;
    let mut resolved_event = event("resolved by its source");
    resolved_event["status"] = json!("resolved");
    app.send_event(resolved_event).await;
    let direct = id_of(&app.send_event(event("acknowledged at once")).await);
    act(&app, &direct, "acknowledge", json!({})).await;

    let scrape = app.scrape().await;
    let transitions = |from: &str, to: &str| {
        sample(
            &scrape,
            &format!(r#"incident_state_transitions_total{{from_state="{from}",to_state="{to}"}}"#),
        )
    };
    assert_eq!(transitions("NEW", "ASSIGNED"), Some(1.0));
    assert_eq!(transitions("ASSIGNED", "ASSIGNED"), Some(1.0));
    assert_eq!(transitions("ASSIGNED", "ACKNOWLEDGED"), Some(1.0));
    assert_eq!(transitions("ACKNOWLEDGED", "IN_PROGRESS"), Some(1.0));
    assert_eq!(transitions("IN_PROGRESS", "RESOLVED"), Some(1.0));
    assert_eq!(transitions("NEW", "RESOLVED"), Some(1.0), "resolved event of {other}");
    assert_eq!(transitions("NEW", "ACKNOWLEDGED"), Some(1.0));
    // The refused start changed nothing.
    assert_eq!(transitions("RESOLVED", "IN_PROGRESS"), None);
    let total: usize = scrape
        .lines()
        .filter(|line| line.starts_with("incident_state_transitions_total{"))
        .count();
    assert_eq!(total, 7, "{scrape}");
    app.stop().await;
}

#[tokio::test]
async fn acknowledgment_and_resolution_durations_land_in_their_buckets() {
    let database = TestDatabase::sqlite();
    let app = TestApp::spawn(&database).await;
    let id = id_of(&app.send_event(event("slow to fix")).await);

    app.advance(90);
    act(&app, &id, "acknowledge", json!({})).await;
    // A hand-over and a second acknowledgement keep the first time to acknowledge.
    act(&app, &id, "assign", json!({"assignee": "bo"})).await;
    app.advance(60);
    act(&app, &id, "acknowledge", json!({})).await;
    app.advance(2 * 3600 - 150);
    act(&app, &id, "resolve", json!({})).await;

    let scrape = app.scrape().await;
    let acknowledgment = |suffix: &str| value(&scrape, &format!("incident_acknowledgment_duration_seconds{suffix}"));
    assert_eq!(acknowledgment(r#"_count{severity="P1"}"#), 1.0);
    assert_eq!(acknowledgment(r#"_sum{severity="P1"}"#), 90.0);
    assert_eq!(acknowledgment(r#"_bucket{severity="P1",le="60"}"#), 0.0);
    assert_eq!(acknowledgment(r#"_bucket{severity="P1",le="300"}"#), 1.0);
    assert_eq!(acknowledgment(r#"_bucket{severity="P1",le="+Inf"}"#), 1.0);

    let resolution = |suffix: &str| value(&scrape, &format!("incident_resolution_duration_seconds{suffix}"));
    let labels = r#"severity="P1",source="sentinel""#;
    assert_eq!(resolution(&format!("_count{{{labels}}}")), 1.0);
    assert_eq!(resolution(&format!("_sum{{{labels}}}")), 7200.0);
    assert_eq!(resolution(&format!(r#"_bucket{{{labels},le="3600"}}"#)), 0.0);
    assert_eq!(resolution(&format!(r#"_bucket{{{labels},le="7200"}}"#)), 1.0);
    app.stop().await;
}

#[tokio::test]
async fn http_requests_are_labelled_by_route_template_never_by_raw_path() {
    let database = TestDatabase::sqlite();
    let app = TestApp::spawn(&database).await;
    let id = id_of(&app.send_event(event("labelled")).await);
    app.incident(&id).await;
    app.incident(&id).await;
    let unknown = uuid::Uuid::now_v7().to_string();
    assert_eq!(app.get(&format!("/v1/incidents/{unknown}")).await.0, 404);
    act(&app, &id, "acknowledge", json!({})).await;

    let scrape = app.scrape().await;
    let route = |method: &str, path: &str, status: u16| {
        sample(
            &scrape,
            &format!(r#"http_requests_total{{method="{method}",path="{path}",status="{status}"}}"#),
        )
    };
    assert_eq!(route("GET", "/v1/incidents/{id}", 200), Some(2.0));
    assert_eq!(route("GET", "/v1/incidents/{id}", 404), Some(1.0));
    assert_eq!(route("POST", "/v1/incidents/{id}/acknowledge", 200), Some(1.0));
    assert_eq!(route("POST", "/v1/events", 200), Some(1.0));
    assert_eq!(
        value(
            &scrape,
            r#"http_request_duration_seconds_count{method="GET",path="/v1/incidents/{id}",status="200"}"#
        ),
        2.0
    );
    assert_eq!(
        value(
            &scrape,
            r#"http_requests_in_flight{method="GET",path="/v1/incidents/{id}"}"#
        ),
        0.0
    );
    assert!(!scrape.contains(&id) && !scrape.contains(&unknown), "{scrape}");
    app.stop().await;
}

#[tokio::test]
async fn store_connections_build_and_process_are_described() {
    let database = TestDatabase::sqlite();
    let app = TestApp::spawn(&database).await;
    app.send_event(event("one")).await;
    let ingests = r#"database_query_duration_seconds_count{operation="ingest_events"}"#;
    let before = app.metric(ingests).await.expect("ingest_events is timed");

    app.send_event(json!([event("two"), event("three")])).await;
    app.send_event(event("four")).await;

    let scrape = app.scrape().await;
    // One transaction per POST, whatever the batch size.
    assert_eq!(value(&scrape, ingests), before + 2.0);
    assert!(value(&scrape, r#"database_query_duration_seconds_count{operation="migrate"}"#) >= 1.0);
    let max = value(&scrape, "database_connections_max");
    assert!(max >= 1.0);
    assert_eq!(
        value(&scrape, "database_connections_in_use") + value(&scrape, "database_connections_idle"),
        max
    );
    assert_eq!(
        value(
            &scrape,
            &format!(
                r#"build_info{{version="{}",backend="sqlite"}}"#,
                env!("CARGO_PKG_VERSION")
            )
        ),
        1.0
    );

    assert!(
        value(&scrape, "process_cpu_seconds_total") > 0.0,
        "the test process has run"
    );
    assert!(value(&scrape, "process_resident_memory_bytes") > 1_000_000.0);
    assert!(value(&scrape, "process_virtual_memory_bytes") >= value(&scrape, "process_resident_memory_bytes"));
    // The listeners and the SQLite files alone hold more than these.
    assert!(value(&scrape, "process_open_fds") >= 5.0);
    assert!(value(&scrape, "process_max_fds") >= value(&scrape, "process_open_fds"));
    assert!(value(&scrape, "process_threads") >= 2.0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let started = value(&scrape, "process_start_time_seconds");
    assert!(
        started <= now && started > now - 3600.0,
        "started at {started}, now {now}"
    );
    let uptime = value(&scrape, "process_uptime_seconds");
    assert!((uptime - (now - started)).abs() < 5.0, "uptime {uptime}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_requests_to_unknown_paths_add_no_series() {
    const REQUESTS: usize = 10_000;
    const TASKS: usize = 4;
    let database = TestDatabase::sqlite();
    let app = TestApp::spawn(&database).await;
    let unmatched = r#"http_requests_total{method="GET",path="unmatched",status="404"}"#;
    assert_eq!(app.get("/warm-up").await.0, 404);
    // The first housekeeping run, due at the start, adds its series (the job's, its
    // queries') as it goes; the last is its job's being finished in the store.
    let housekeeping = r#"database_query_duration_seconds_count{operation="finish_job"}"#;
    let mut before = app.scrape().await;
    for _ in 0..200 {
        if before.contains(housekeeping) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        before = app.scrape().await;
    }
    assert!(before.contains(housekeeping), "the first housekeeping run never ended");

    let tasks: Vec<_> = (0..TASKS)
        .map(|_| {
            let client = app.client.clone();
            let address = app.address.clone();
            tokio::spawn(async move {
                for _ in 0..REQUESTS / TASKS {
                    let path = format!("{address}/{}/{}", uuid::Uuid::now_v7(), uuid::Uuid::now_v7().simple());
                    let status = client.get(path).send().await.expect("request").status();
                    assert_eq!(status, 404);
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("request task");
    }

    let after = app.scrape().await;
    let (before_series, after_series) = (series(&before), series(&after));
    let added: Vec<_> = after_series.difference(&before_series).collect();
    let gone: Vec<_> = before_series.difference(&after_series).collect();
    assert!(added.is_empty() && gone.is_empty(), "added {added:#?}, gone {gone:#?}");
    assert_eq!(value(&after, unmatched), value(&before, unmatched) + REQUESTS as f64);
    app.stop().await;
}

async fn active_matches_the_database_after_a_restart(database: TestDatabase) {
    let app = TestApp::spawn(&database).await;
    let mut sentinel = Vec::new();
    for title in ["a", "b", "c"] {
        sentinel.push(id_of(&app.send_event(event(title)).await));
    }
    let shield = id_of(&app.send_event(shield_event("Prompt injection")).await);
    app.send_event(shield_event("Jailbreak")).await;
    act(&app, &sentinel[0], "resolve", json!({})).await;
    act(&app, &shield, "acknowledge", json!({})).await;
    app.stop().await;

    let app = TestApp::spawn(&database).await;
    let scrape = app.scrape().await;
    assert_eq!(
        value(&scrape, &format!("incidents_active{{{SENTINEL_P1_PERFORMANCE}}}")),
        2.0
    );
    assert_eq!(
        value(&scrape, &format!("incidents_active{{{SHIELD_P0_SECURITY}}}")),
        2.0
    );
    assert_eq!(open_count(&app, "&source=sentinel").await, 2);
    assert_eq!(open_count(&app, "&source=shield").await, 2);
    // Counters restart from zero: only the gauge mirrors the store.
    assert_eq!(
        sample(&scrape, &format!("incidents_total{{{SENTINEL_P1_PERFORMANCE}}}")),
        None
    );

    act(&app, &sentinel[1], "resolve", json!({})).await;
    assert_eq!(
        app.metric(&format!("incidents_active{{{SENTINEL_P1_PERFORMANCE}}}"))
            .await,
        Some(1.0)
    );
    app.stop().await;
    database.drop_database().await;
}

#[tokio::test]
async fn incidents_active_matches_the_database_after_a_restart_on_sqlite() {
    active_matches_the_database_after_a_restart(TestDatabase::sqlite()).await;
}

#[tokio::test]
async fn incidents_active_matches_the_database_after_a_restart_on_postgres() {
    active_matches_the_database_after_a_restart(TestDatabase::postgres().await).await;
}

#[tokio::test]
async fn the_exporter_speaks_prometheus_text_by_default_and_openmetrics_on_request() {
    let database = TestDatabase::sqlite();
    let app = TestApp::spawn(&database).await;
    app.send_event(event("formats")).await;
    let url = format!("{}/metrics", app.metrics_address);

    let plain = app.client.get(&url).send().await.expect("scrape");
    assert_eq!(
        plain.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let plain = plain.text().await.unwrap();
    assert!(plain.contains("# TYPE http_requests_total counter\n"), "{plain}");
    assert!(!plain.contains("# EOF"));

    // What Prometheus 2.42 sends.
    let accept = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,\
                  text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
    let open = app
        .client
        .get(&url)
        .header("accept", accept)
        .send()
        .await
        .expect("scrape");
    assert_eq!(
        open.headers()["content-type"],
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    let open = open.text().await.unwrap();
    assert!(open.contains("# TYPE http_requests counter\n"), "{open}");
    assert!(open.contains(r#"incidents_total{severity="P1",source="sentinel",category="performance"} 1"#));
    assert!(open.ends_with("# EOF\n"));
    app.stop().await;
}

#[tokio::test]
async fn a_request_cut_short_by_the_timeout_is_counted_as_503_and_leaves_flight() {
    let database = TestDatabase::sqlite();
    let clock = std::sync::Arc::new(llm_incident_manager::clock::ManualClock::new(
        crate::helpers::start_time(),
    ));
    // The body's own deadline is set past the request's, so the request timeout fires first.
    let app = TestApp::spawn_with(&database, clock, |settings| {
        settings.http.request_timeout = Duration::from_secs(1);
        settings.http.body_timeout = Duration::from_secs(5);
    })
    .await;
    let in_flight = r#"http_requests_in_flight{method="POST",path="/v1/events"}"#;
    let timed_out = r#"http_requests_total{method="POST",path="/v1/events",status="503"}"#;

    // A body that never finishes keeps the handler waiting until the timeout gives up.
    let address = app.address.trim_start_matches("http://");
    let mut stalled = tokio::net::TcpStream::connect(address).await.expect("connect");
    stalled
        .write_all(
            b"POST /v1/events HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{",
        )
        .await
        .expect("write");
    app.wait_for_metric(in_flight, 1.0).await;
    app.wait_for_metric(timed_out, 1.0).await;
    assert_eq!(app.metric(in_flight).await, Some(0.0));
    assert_eq!(
        app.metric(r#"http_request_duration_seconds_count{method="POST",path="/v1/events",status="503"}"#)
            .await,
        Some(1.0)
    );
    drop(stalled);
    app.stop().await;
}

#[tokio::test]
async fn a_reclassified_incident_moves_between_incidents_active_label_sets() {
    let database = TestDatabase::sqlite();
    let app = TestApp::spawn(&database).await;
    let id = id_of(&app.send_event(event("looks like latency")).await);
    app.send_event(event("real latency")).await;
    let before = format!("incidents_active{{{SENTINEL_P1_PERFORMANCE}}}");
    let after = r#"incidents_active{severity="P0",source="sentinel",category="security"}"#;
    assert_eq!(app.metric(&before).await, Some(2.0));

    act(
        &app,
        &id,
        "reclassify",
        json!({"severity": "P0", "category": "security", "actor": "ana"}),
    )
    .await;

    let scrape = app.scrape().await;
    assert_eq!(value(&scrape, &before), 1.0);
    assert_eq!(value(&scrape, after), 1.0);
    assert_eq!(open_count(&app, "&severity=P0&category=security").await, 1);
    let transitions: f64 = scrape
        .lines()
        .filter(|line| line.starts_with("incident_state_transitions_total{"))
        .map(|line| line.rsplit_once(' ').unwrap().1.parse::<f64>().unwrap())
        .sum();
    assert_eq!(transitions, 0.0, "a reclassification is not a state transition");
    assert_eq!(app.timeline_kinds(&id).await, ["created", "classified"]);

    act(&app, &id, "resolve", json!({})).await;
    let (status, body) = app
        .post(&format!("/v1/incidents/{id}/reclassify"), json!({"severity": "P3"}))
        .await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(app.metric(after).await, Some(0.0));
    app.stop().await;
}
