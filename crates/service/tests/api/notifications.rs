//! Routes and channels end to end: the exact request each channel's receiver gets,
//! retries with backoff, the dead state and its retry, and routing decisions.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use llm_incident_manager::clock::ManualClock;
use serde_json::{Value, json};
use sha2::Sha256;

use crate::helpers::{TestApp, TestDatabase, event, id_of, start_time};
use crate::receiver::{Receiver, Script};
use crate::smtp::SmtpServer;

const WAIT: Duration = Duration::from_secs(20);
/// `whsec_` and base64 of the signing key.
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

async fn spawn(database: &TestDatabase, toml: &str) -> TestApp {
    TestApp::spawn_configured(database, Arc::new(ManualClock::new(start_time())), toml, |_| {}).await
}

/// Jobs retried quickly, so that tests see several attempts in a second or two.
const FAST_JOBS: &str = "[jobs]\nbackoff_base = \"200ms\"\nbackoff_max = \"1s\"\nmax_attempts = 3\n";

fn webhook_route(url: &str) -> String {
    format!(
        "{FAST_JOBS}[channels.ops]\ntype = \"webhook\"\nurl = \"{url}/hook\"\nsecret = \"{SECRET}\"\n\n\
         [[routes]]\nname = \"everything\"\nchannels = [\"ops\"]\n"
    )
}

/// Checks a Standard Webhooks signature the way a receiver would, with its own HMAC.
fn verify(secret: &str, id: &str, timestamp: &str, body: &str, signature: &str) -> bool {
    let key = STANDARD.decode(secret.strip_prefix("whsec_").unwrap()).unwrap();
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{id}.{timestamp}.{body}").as_bytes());
    let expected = format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()));
    signature.split(' ').any(|candidate| candidate == expected)
}

/// Jobs run on the application's clock: a retry is due only once the manual clock passes
/// its backoff. Moves the clock on by `step` until the receiver has `count` requests.
async fn advance_until(
    app: &TestApp,
    receiver: &Receiver,
    count: usize,
    step: chrono::TimeDelta,
) -> Vec<crate::receiver::Received> {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let received = receiver.received();
        if received.len() >= count {
            return received;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{} of {count} requests arrived",
            received.len()
        );
        app.clock.advance(step);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Nothing more than `count` requests reaches the receiver within half a second, while
/// the clock stands still.
async fn stays_at(receiver: &Receiver, count: usize) {
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        receiver.received().len(),
        count,
        "no attempt before its backoff has passed"
    );
}

async fn notified_entries(app: &TestApp, id: &str) -> Vec<String> {
    app.timeline(id)
        .await
        .into_iter()
        .filter(|entry| entry["kind"] == "notified")
        .map(|entry| entry["message"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn a_webhook_gets_the_incident_signed_per_standard_webhooks() {
    let receiver = Receiver::start(Script::default()).await;
    let database = TestDatabase::sqlite();
    let app = spawn(&database, &webhook_route(&receiver.url)).await;

    let id = id_of(&app.send_event(event("GPU memory")).await);

    let request = &receiver.wait_for(1, WAIT).await[0];
    assert_eq!(request.path, "/hook");
    assert_eq!(request.header("content-type"), "application/json");
    let webhook_id = request.header("webhook-id");
    assert!(webhook_id.starts_with("msg_"), "{webhook_id}");
    let timestamp = request.header("webhook-timestamp");
    assert!(timestamp.parse::<i64>().is_ok(), "{timestamp}");
    assert!(
        verify(
            SECRET,
            webhook_id,
            timestamp,
            &request.body,
            request.header("webhook-signature")
        ),
        "the signature verifies with the secret"
    );
    let body = request.json();
    assert_eq!(body["type"], "incident.created");
    assert_eq!(body["level"], Value::Null);
    assert!(body["sent_at"].is_string());
    assert_eq!(body["incident"]["id"], id.as_str());
    assert_eq!(body["incident"]["title"], "GPU memory");
    assert_eq!(body["incident"]["route"], "everything");
    assert_eq!(
        body["incident"],
        app.incident(&id).await,
        "the object of GET /v1/incidents/{{id}}"
    );
    app.stop().await;
}

#[tokio::test]
async fn slack_and_pagerduty_get_their_own_wire_formats_in_lifecycle_order() {
    let slack = Receiver::start(Script::default()).await;
    let pagerduty = Receiver::start(Script {
        then: 202,
        ..Script::default()
    })
    .await;
    let database = TestDatabase::sqlite();
    let toml = format!(
        "[channels.slack]\ntype = \"slack\"\nurl = \"{}/services/T000/B000/XXXX\"\n\n\
         [channels.pd]\ntype = \"pagerduty\"\nrouting_key = \"R0UT1NGKEY\"\nurl = \"{}/v2/enqueue\"\n\n\
         [[routes]]\nname = \"critical\"\nmatch = {{ severity = \"P0\" }}\nchannels = [\"slack\", \"pd\"]\n",
        slack.url, pagerduty.url
    );
    let app = spawn(&database, &toml).await;
    let mut critical = event("Jailbreak attempts");
    critical["severity"] = json!("critical");
    let sent = app.send_event(critical).await;
    let id = id_of(&sent);
    let fingerprint = app.incident(&id).await["fingerprint"].as_str().unwrap().to_owned();
    pagerduty.wait_for(1, WAIT).await;

    app.post(&format!("/v1/incidents/{id}/acknowledge"), json!({"actor": "ana"}))
        .await;
    app.post(&format!("/v1/incidents/{id}/resolve"), json!({"note": "blocked"}))
        .await;

    let events: Vec<Value> = pagerduty
        .wait_for(3, WAIT)
        .await
        .iter()
        .map(|request| request.json())
        .collect();
    let actions: Vec<&str> = events
        .iter()
        .map(|event| event["event_action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["trigger", "acknowledge", "resolve"]);
    assert!(events.iter().all(|event| event["dedup_key"] == fingerprint.as_str()));
    assert!(events.iter().all(|event| event["routing_key"] == "R0UT1NGKEY"));
    assert_eq!(events[0]["payload"]["severity"], "critical");
    assert_eq!(events[0]["payload"]["summary"], "Jailbreak attempts");
    assert_eq!(events[0]["payload"]["source"], "sentinel");
    assert!(events[1].get("payload").is_none(), "acknowledge carries no payload");

    let messages = slack.wait_for(3, WAIT).await;
    let created = messages[0].json();
    assert_eq!(messages[0].path, "/services/T000/B000/XXXX");
    let text = created["text"].as_str().unwrap();
    assert!(text.starts_with("[P0] created NEW: Jailbreak attempts"), "{text}");
    assert!(text.contains(&format!("/v1/incidents/{id}")), "a link: {text}");
    assert!(
        messages[2].json()["text"]
            .as_str()
            .unwrap()
            .contains("resolved RESOLVED")
    );
    app.stop().await;
}

#[tokio::test]
async fn an_email_reaches_a_real_smtp_server_with_its_subject_and_recipients() {
    let dir = tempfile::tempdir().unwrap();
    let smtp = SmtpServer::start(dir.path());
    let database = TestDatabase::sqlite();
    let toml = format!(
        "[channels.mail]\ntype = \"email\"\nsmtp = \"smtp://127.0.0.1:{}\"\nfrom = \"incidents@example.com\"\n\
         to = [\"oncall@example.com\", \"lead@example.com\"]\n\n[[routes]]\nname = \"all\"\nchannels = [\"mail\"]\n",
        smtp.port
    );
    let app = spawn(&database, &toml).await;

    let id = id_of(&app.send_event(event("Hallucination rate up")).await);

    let mail = &smtp.wait_for(1, WAIT).await[0];
    assert!(
        mail.contains("Subject: [P1] created NEW: Hallucination rate up"),
        "{mail}"
    );
    assert!(mail.contains("From: incidents@example.com"), "{mail}");
    assert!(
        mail.contains("oncall@example.com") && mail.contains("lead@example.com"),
        "{mail}"
    );
    assert!(
        mail.contains("X-RcptTo: oncall@example.com, lead@example.com"),
        "{mail}"
    );
    assert!(mail.contains(&format!("/v1/incidents/{id}")), "{mail}");
    app.stop().await;
}

#[tokio::test]
async fn a_receiver_that_fails_twice_gets_the_third_attempt_with_one_webhook_id() {
    let receiver = Receiver::start(Script {
        first: vec![500, 500],
        ..Script::default()
    })
    .await;
    let database = TestDatabase::sqlite();
    let app = spawn(&database, &webhook_route(&receiver.url)).await;

    let id = id_of(&app.send_event(event("flaky receiver")).await);

    receiver.wait_for(1, WAIT).await;
    // Each retry waits for its backoff (at least 100 ms at first, 200 ms after) on the
    // application's clock, which stands still until the test moves it.
    stays_at(&receiver, 1).await;
    advance_until(&app, &receiver, 2, chrono::TimeDelta::milliseconds(250)).await;
    stays_at(&receiver, 2).await;
    let attempts = advance_until(&app, &receiver, 3, chrono::TimeDelta::milliseconds(250)).await;
    let ids: Vec<&str> = attempts.iter().map(|request| request.header("webhook-id")).collect();
    assert_eq!(ids, [ids[0]; 3], "one delivery, three attempts");
    let entries = loop {
        let entries = notified_entries(&app, &id).await;
        if entries.len() == 3 {
            break entries;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(
        entries[0].starts_with("notifying ops (webhook) failed (attempt 1 of 3): the webhook answered 500"),
        "{entries:?}"
    );
    assert!(
        entries[1].starts_with("notifying ops (webhook) failed (attempt 2 of 3)"),
        "{entries:?}"
    );
    assert_eq!(entries[2], "notified ops (webhook): delivered (attempt 3)");
    assert_eq!(
        app.metric(r#"notifications_total{channel="webhook",status="failed"}"#)
            .await,
        Some(2.0)
    );
    assert_eq!(
        app.metric(r#"notifications_total{channel="webhook",status="sent"}"#)
            .await,
        Some(1.0)
    );
    assert_eq!(
        app.metric(r#"job_executions_total{job_type="notify",status="failure"}"#)
            .await,
        Some(2.0)
    );
    app.stop().await;
}

#[tokio::test]
async fn a_receiver_always_down_leaves_a_dead_job_that_can_be_retried() {
    let receiver = Receiver::start(Script {
        first: vec![503, 503, 503],
        ..Script::default()
    })
    .await;
    let database = TestDatabase::sqlite();
    let app = spawn(&database, &webhook_route(&receiver.url)).await;
    app.send_event(event("down")).await;
    advance_until(&app, &receiver, 3, chrono::TimeDelta::seconds(1)).await;

    let dead = loop {
        let (_, page) = app.get("/v1/jobs?state=dead").await;
        if let Some(job) = page["jobs"].as_array().unwrap().first() {
            break job.clone();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };

    assert_eq!(dead["kind"], "notify");
    assert_eq!(dead["attempts"], 3);
    assert_eq!(dead["last_error"], "the webhook answered 503 Service Unavailable");
    assert_eq!(dead["payload"]["channel"], "ops");
    assert_eq!(app.metric(r#"jobs_dead_total{job_type="notify"}"#).await, Some(1.0));
    assert_eq!(
        app.metric(r#"notifications_total{channel="webhook",status="dead"}"#)
            .await,
        Some(1.0)
    );
    let (status, retried) = app.post(&format!("/v1/jobs/{}/retry", dead["id"]), json!({})).await;
    assert_eq!(status, 200, "{retried}");
    assert_eq!(
        (retried["state"].as_str(), retried["attempts"].as_i64()),
        (Some("queued"), Some(0))
    );
    let delivered = receiver.wait_for(4, WAIT).await;
    assert_eq!(delivered[3].header("webhook-id"), delivered[0].header("webhook-id"));
    let (status, again) = app.post(&format!("/v1/jobs/{}/retry", dead["id"]), json!({})).await;
    assert_eq!(
        (status, again["error"]["code"].clone()),
        (409, json!("illegal_transition")),
        "{again}"
    );
    let (status, _) = app.post("/v1/jobs/99999999/retry", json!({})).await;
    assert_eq!(status, 404);
    app.stop().await;
}

#[tokio::test]
async fn a_refusal_is_not_retried_and_retry_after_is_honoured() {
    let refusing = Receiver::start(Script {
        then: 400,
        ..Script::default()
    })
    .await;
    let throttling = Receiver::start(Script {
        first: vec![429],
        retry_after: Some(1),
        ..Script::default()
    })
    .await;
    let database = TestDatabase::sqlite();
    let toml = format!(
        "{FAST_JOBS}[channels.refusing]\ntype = \"webhook\"\nurl = \"{}\"\n\
         [channels.throttling]\ntype = \"webhook\"\nurl = \"{}\"\n\n\
         [[routes]]\nname = \"all\"\nchannels = [\"refusing\", \"throttling\"]\n",
        refusing.url, throttling.url
    );
    let app = spawn(&database, &toml).await;
    app.send_event(event("t")).await;

    throttling.wait_for(1, WAIT).await;
    // The backoff alone would be at most 200 ms; `Retry-After: 1` asks for a second.
    app.clock.advance(chrono::TimeDelta::milliseconds(900));
    stays_at(&throttling, 1).await;
    app.clock.advance(chrono::TimeDelta::milliseconds(150));
    throttling.wait_for(2, WAIT).await;
    assert_eq!(refusing.received().len(), 1, "a 400 is final");
    let (_, page) = app.get("/v1/jobs?state=dead").await;
    assert_eq!(page["jobs"][0]["attempts"], 1);
    app.stop().await;
}

#[tokio::test]
async fn the_first_matching_route_decides_and_an_unmatched_incident_stays_new() {
    let database = TestDatabase::sqlite();
    let toml = "[[routes]]\nname = \"gpu\"\nmatch = { severity = [\"critical\", \"P1\"] }\n\
                match_re = { \"labels.model\" = \"gpt-4.*\" }\nassignee = \"ana\"\nteam = \"ml-oncall\"\n\n\
                [[routes]]\nname = \"shield\"\nmatch = { source = \"shield\" }\nteam = \"security\"\n";
    let app = spawn(&database, toml).await;

    let matched = id_of(&app.send_event(event("latency")).await);
    let mut other_model = event("latency elsewhere");
    other_model["labels"]["model"] = json!("claude");
    let unmatched = id_of(&app.send_event(other_model).await);
    let shield = id_of(
        &app.send_event(json!({"source": "shield", "title": "abuse", "severity": "P1"}))
            .await,
    );

    let matched = app.incident(&matched).await;
    assert_eq!(
        (
            matched["state"].clone(),
            matched["assignee"].clone(),
            matched["route"].clone()
        ),
        (json!("ASSIGNED"), json!("ana"), json!("gpu"))
    );
    let kinds: Vec<String> = app.timeline_kinds(matched["id"].as_str().unwrap()).await;
    assert_eq!(kinds, ["created", "assigned"]);
    let unmatched = app.incident(&unmatched).await;
    assert_eq!(
        (unmatched["state"].clone(), unmatched["route"].clone()),
        (json!("NEW"), Value::Null)
    );
    let shield = app.incident(&shield).await;
    assert_eq!(
        (shield["state"].clone(), shield["team"].clone(), shield["route"].clone()),
        (json!("NEW"), json!("security"), json!("shield"))
    );
    assert_eq!(
        app.metric(r#"incident_state_transitions_total{from_state="NEW",to_state="ASSIGNED"}"#)
            .await,
        Some(1.0),
        "a route's assignment counts as a transition"
    );
    app.stop().await;
}

#[tokio::test]
async fn the_job_gauges_export_every_kind_from_the_start() {
    let database = TestDatabase::sqlite();
    let app = spawn(&database, "").await;
    let scrape = app.scrape().await;
    for kind in ["notify", "escalate", "llm_classify", "llm_insights", "housekeeping"] {
        assert!(
            scrape.contains(&format!("job_queue_depth{{job_type=\"{kind}\"}}")),
            "{kind}"
        );
        assert!(
            scrape.contains(&format!("jobs_in_progress{{job_type=\"{kind}\"}}")),
            "{kind}"
        );
    }
    app.stop().await;
}
