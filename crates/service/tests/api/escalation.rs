//! Escalation policies, silences and grouping end to end, on the application's manual
//! clock: a level is due only once the test moves the clock past its delay, so each test
//! shows a level arriving on time, and not before.

use std::sync::Arc;
use std::time::Duration;

use chrono::TimeDelta;
use llm_incident_manager::clock::ManualClock;
use serde_json::{Value, json};

use crate::helpers::{TestApp, TestDatabase, event, id_of, start_time};
use crate::receiver::{Received, Receiver, Script};
use crate::smtp::SmtpServer;

const WAIT: Duration = Duration::from_secs(20);

/// The application, and its database (which lives as long as the test holds it).
async fn spawn(toml: &str) -> (TestApp, TestDatabase) {
    let database = TestDatabase::sqlite();
    let app = TestApp::spawn_configured(&database, Arc::new(ManualClock::new(start_time())), toml, |_| {}).await;
    (app, database)
}

/// Two webhook channels, one per level of `urgent` (level 2 five minutes after the
/// start), and a route that gives every incident the policy.
fn two_levels(first: &Receiver, second: &Receiver, extra: &str) -> String {
    format!(
        "[channels.first]\ntype = \"webhook\"\nurl = \"{}/first\"\n\
         [channels.second]\ntype = \"webhook\"\nurl = \"{}/second\"\n\n\
         [escalation_policies.urgent]\n{extra}\
         levels = [{{ after = \"0s\", notify = [\"first\"] }}, {{ after = \"5m\", notify = [\"second\"] }}]\n\n\
         [[routes]]\nname = \"everything\"\nescalation_policy = \"urgent\"\n",
        first.url, second.url
    )
}

/// Nothing more than `count` requests reaches `receiver` while the clock stands still
/// (the executor looks for due jobs every 250 ms).
async fn stays_at(receiver: &Receiver, count: usize) {
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(receiver.received().len(), count, "{:#?}", receiver.received());
}

fn escalation(request: &Received) -> (String, Option<i64>, String) {
    let body = request.json();
    (
        body["type"].as_str().unwrap().to_owned(),
        body["level"].as_i64(),
        body["incident"]["id"].as_str().unwrap().to_owned(),
    )
}

/// The entries of `kind` once there are `count` of them (a job's entries are written when
/// it finishes, just after its request is answered).
async fn wait_entries(app: &TestApp, id: &str, kind: &str, count: usize) -> Vec<String> {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let entries = entries_of(app, id, kind).await;
        if entries.len() >= count || std::time::Instant::now() > deadline {
            return entries;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn entries_of(app: &TestApp, id: &str, kind: &str) -> Vec<String> {
    app.timeline(id)
        .await
        .into_iter()
        .filter(|entry| entry["kind"] == kind)
        .map(|entry| entry["message"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn an_unacknowledged_incident_escalates_level_by_level_on_time() {
    let (first, second) = (
        Receiver::start(Script::default()).await,
        Receiver::start(Script::default()).await,
    );
    let (app, _database) = spawn(&two_levels(&first, &second, "")).await;

    let id = id_of(&app.send_event(event("GPU memory")).await);
    assert_eq!(app.incident(&id).await["escalation_policy"], "urgent");

    let level_one = first.wait_for(1, WAIT).await;
    assert_eq!(
        escalation(&level_one[0]),
        ("incident.escalated".into(), Some(1), id.clone())
    );
    let incident = app.incident(&id).await;
    assert_eq!(
        incident["next_escalation"],
        json!({"level": 2, "due_at": "2026-01-01T00:05:00Z"})
    );
    app.clock.advance(TimeDelta::seconds(299));
    stays_at(&second, 0).await;
    app.clock.advance(TimeDelta::seconds(2));
    let level_two = second.wait_for(1, WAIT).await;
    assert_eq!(
        escalation(&level_two[0]),
        ("incident.escalated".into(), Some(2), id.clone())
    );

    let escalated = wait_entries(&app, &id, "escalated", 2).await;
    assert_eq!(
        escalated,
        [
            "escalated to level 1: notified first",
            "escalated to level 2: notified second"
        ]
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        app.incident(&id).await["next_escalation"],
        Value::Null,
        "no level is left"
    );
    for level in ["1", "2"] {
        assert_eq!(
            app.metric(&format!(r#"escalations_total{{policy="urgent",level="{level}"}}"#))
                .await,
            Some(1.0)
        );
    }
    app.stop().await;
}

#[tokio::test]
async fn acknowledging_stops_the_escalation_and_cancels_its_pending_level() {
    let (first, second) = (
        Receiver::start(Script::default()).await,
        Receiver::start(Script::default()).await,
    );
    let (app, _database) = spawn(&two_levels(&first, &second, "")).await;
    let id = id_of(&app.send_event(event("drift")).await);
    first.wait_for(1, WAIT).await;

    let (status, acknowledged) = app
        .post(&format!("/v1/incidents/{id}/acknowledge"), json!({"actor": "ana"}))
        .await;
    assert_eq!(status, 200, "{acknowledged}");
    assert_eq!(acknowledged["next_escalation"], Value::Null);

    app.clock.advance(TimeDelta::minutes(10));
    stays_at(&second, 0).await;
    let (_, cancelled) = app.get("/v1/jobs?state=cancelled&kind=escalate").await;
    assert_eq!(cancelled["jobs"].as_array().unwrap().len(), 1, "{cancelled}");
    assert_eq!(cancelled["jobs"][0]["payload"]["level"], 2);
    assert_eq!(
        app.metric(r#"escalations_total{policy="urgent",level="2"}"#).await,
        None
    );
    app.stop().await;
}

#[tokio::test]
async fn repeat_runs_the_levels_again_while_nobody_acknowledges() {
    let (first, second) = (
        Receiver::start(Script::default()).await,
        Receiver::start(Script::default()).await,
    );
    // Levels at 0 and 5 minutes; a run lasts 5 + 5 minutes; one repeat.
    let (app, _database) = spawn(&two_levels(&first, &second, "repeat = 1\n")).await;
    let id = id_of(&app.send_event(event("drift")).await);

    first.wait_for(1, WAIT).await;
    app.clock.advance(TimeDelta::minutes(5));
    second.wait_for(1, WAIT).await;
    app.clock.advance(TimeDelta::minutes(4));
    stays_at(&first, 1).await;
    app.clock.advance(TimeDelta::minutes(1));
    first.wait_for(2, WAIT).await;
    app.clock.advance(TimeDelta::minutes(5));
    second.wait_for(2, WAIT).await;
    app.clock.advance(TimeDelta::hours(1));
    stays_at(&first, 2).await;
    assert_eq!(second.received().len(), 2, "the repeat ran once");

    let escalated = wait_entries(&app, &id, "escalated", 4).await;
    assert_eq!(
        escalated,
        [
            "escalated to level 1: notified first",
            "escalated to level 2: notified second",
            "escalated to level 1 (repeat 1 of 1): notified first",
            "escalated to level 2 (repeat 1 of 1): notified second",
        ]
    );
    assert_eq!(
        app.metric(r#"escalations_total{policy="urgent",level="1"}"#).await,
        Some(1.0),
        "a level counts once per incident"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_resolved_incident_notifies_nobody_further() {
    let (first, second) = (
        Receiver::start(Script::default()).await,
        Receiver::start(Script::default()).await,
    );
    let (app, _database) = spawn(&two_levels(&first, &second, "repeat = 3\n")).await;
    let id = id_of(&app.send_event(event("drift")).await);
    first.wait_for(1, WAIT).await;

    let (status, _) = app.post(&format!("/v1/incidents/{id}/resolve"), json!({})).await;
    assert_eq!(status, 200);

    app.clock.advance(TimeDelta::hours(2));
    stays_at(&first, 1).await;
    assert_eq!(second.received().len(), 0);
    assert_eq!(app.incident(&id).await["next_escalation"], Value::Null);
    app.stop().await;
}

#[tokio::test]
async fn a_level_reaches_the_person_on_call_through_their_own_contact() {
    let folder = tempfile::tempdir().unwrap();
    let smtp = SmtpServer::start(folder.path());
    let slack = Receiver::start(Script::default()).await;
    let toml = format!(
        "[channels.mail]\ntype = \"email\"\nsmtp = \"smtp://127.0.0.1:{}\"\nfrom = \"incidents@example.com\"\n\
         to = [\"ops@example.com\"]\n\
         [channels.chat]\ntype = \"slack\"\nurl = \"{}/slack\"\n\n\
         [people.ana]\nemail = \"ana@example.com\"\n\
         [people.bo]\nemail = \"bo@example.com\"\nslack = \"U024BE7LH\"\n\n\
         [schedules.primary]\nparticipants = [\"ana\", \"bo\"]\nrotation = \"daily\"\n\
         start = \"2025-12-30T09:00:00+01:00\"\n\n\
         [escalation_policies.page]\nlevels = [{{ after = \"0s\", notify = [\"oncall:primary\"] }}]\n\n\
         [[routes]]\nname = \"everything\"\nassignee = \"oncall:primary\"\nescalation_policy = \"page\"\n",
        smtp.port, slack.url
    );
    let (app, _database) = spawn(&toml).await;

    // 2026-01-01T00:00Z is 01:00 in Paris: in the shift that began on 31 December at
    // 09:00, the second of the rotation: bo's.
    let id = id_of(&app.send_event(event("drift")).await);

    assert_eq!(app.incident(&id).await["assignee"], "bo");
    let mails = smtp.wait_for(1, WAIT).await;
    assert!(mails[0].contains("To: bo@example.com"), "{}", mails[0]);
    assert!(!mails[0].contains("ops@example.com"), "only the person: {}", mails[0]);
    assert!(mails[0].contains("escalated to level 1"), "{}", mails[0]);
    let message = slack.wait_for(1, WAIT).await[0].json();
    assert!(
        message["text"]
            .as_str()
            .unwrap()
            .starts_with("<@U024BE7LH> [P1] escalated to level 1"),
        "{message}"
    );
    let escalated = wait_entries(&app, &id, "escalated", 1).await;
    assert_eq!(
        escalated,
        ["escalated to level 1: notified bo (on call on primary) through mail and chat"]
    );
    app.stop().await;
}

/// A silence over the API that holds incidents of the model `gpt-4o` for ten minutes.
async fn silence(app: &TestApp, minutes: i64) -> String {
    let ends_at = (start_time() + TimeDelta::minutes(minutes)).to_rfc3339();
    let (status, body) = app
        .post(
            "/v1/silences",
            json!({"matchers": {"match": {"labels.model": "gpt-4o"}}, "ends_at": ends_at,
                   "comment": "model upgrade", "created_by": "ana"}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["state"], "active");
    body["id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_silenced_incident_notifies_nobody_until_the_silence_ends_then_escalates() {
    let (first, second) = (
        Receiver::start(Script::default()).await,
        Receiver::start(Script::default()).await,
    );
    let created = Receiver::start(Script::default()).await;
    let mut toml = two_levels(&first, &second, "");
    toml = format!(
        "[channels.news]\ntype = \"webhook\"\nurl = \"{}/news\"\n{}channels = [\"news\"]\n",
        created.url, toml
    );
    let (app, _database) = spawn(&toml).await;
    let silence_id = silence(&app, 10).await;

    let id = id_of(&app.send_event(event("drift during the upgrade")).await);

    stays_at(&first, 0).await;
    assert_eq!(created.received().len(), 0, "the created notification is held too");
    assert_eq!(
        app.metric(r#"incidents_total{severity="P1",source="sentinel",category="performance"}"#)
            .await,
        Some(1.0),
        "a silenced incident is still recorded and counted"
    );
    let silenced = wait_entries(&app, &id, "silenced", 2).await;
    assert_eq!(silenced.len(), 2, "{silenced:?}");
    assert!(
        silenced.iter().all(|message| message.contains(&silence_id)),
        "the timeline names the silence: {silenced:?}"
    );
    assert!(
        silenced
            .iter()
            .any(|message| message.starts_with("escalation held at level 1: silenced by")),
        "{silenced:?}"
    );
    let incident = app.incident(&id).await;
    assert_eq!(
        incident["next_escalation"],
        json!({"level": 1, "due_at": "2026-01-01T00:10:00Z"})
    );

    app.clock.advance(TimeDelta::minutes(10));
    let level_one = first.wait_for(1, WAIT).await;
    assert_eq!(escalation(&level_one[0]).1, Some(1));
    // Level 2 now counts from the end of the silence.
    app.clock.advance(TimeDelta::minutes(4));
    stays_at(&second, 0).await;
    app.clock.advance(TimeDelta::minutes(1));
    second.wait_for(1, WAIT).await;
    app.stop().await;
}

#[tokio::test]
async fn a_deleted_silence_no_longer_holds_and_its_escalations_start_at_once() {
    let (first, second) = (
        Receiver::start(Script::default()).await,
        Receiver::start(Script::default()).await,
    );
    let (app, _database) = spawn(&two_levels(&first, &second, "")).await;
    let silence_id = silence(&app, 60).await;
    let id = id_of(&app.send_event(event("drift")).await);
    stays_at(&first, 0).await;

    let (status, deleted) = app.delete(&format!("/v1/silences/{silence_id}")).await;
    assert_eq!(status, 200, "{deleted}");
    let (status, _) = app.get(&format!("/v1/silences/{silence_id}")).await;
    assert_eq!(status, 404);

    first.wait_for(1, WAIT).await;
    let second_incident = id_of(&app.send_event(event("after the upgrade")).await);
    let both = first.wait_for(2, WAIT).await;
    assert_eq!(escalation(&both[1]).2, second_incident, "nothing holds a new incident");
    assert!(!id.is_empty());
    app.stop().await;
}

#[tokio::test]
async fn an_expired_silence_no_longer_holds() {
    let (first, second) = (
        Receiver::start(Script::default()).await,
        Receiver::start(Script::default()).await,
    );
    let (app, _database) = spawn(&two_levels(&first, &second, "")).await;
    silence(&app, 10).await;
    app.clock.advance(TimeDelta::minutes(11));
    let (_, expired) = app.get("/v1/silences?state=expired").await;
    assert_eq!(expired["silences"].as_array().unwrap().len(), 1, "{expired}");

    app.send_event(event("drift")).await;

    first.wait_for(1, WAIT).await;
    app.stop().await;
}

#[tokio::test]
async fn fifty_incidents_a_route_opens_within_its_group_wait_reach_a_webhook_as_one_request() {
    let receiver = Receiver::start(Script::default()).await;
    let toml = format!(
        "[channels.ops]\ntype = \"webhook\"\nurl = \"{}/hook\"\n\n\
         [[routes]]\nname = \"storm\"\nchannels = [\"ops\"]\ngroup_wait = \"30s\"\n",
        receiver.url
    );
    let (app, _database) = spawn(&toml).await;
    for batch in 0..5 {
        let events: Vec<Value> = (0..10)
            .map(|i| event(&format!("GPU {} failed", batch * 10 + i)))
            .collect();
        app.send_event(Value::Array(events)).await;
        app.clock.advance(TimeDelta::seconds(5));
    }

    stays_at(&receiver, 0).await;
    app.clock.advance(TimeDelta::seconds(6));
    let requests = receiver.wait_for(1, WAIT).await;
    stays_at(&receiver, 1).await;

    let body = requests[0].json();
    assert_eq!(body["type"], "incidents.grouped");
    assert_eq!(body["route"], "storm");
    assert_eq!(body["incident_count"], 50);
    let incidents = body["incidents"].as_array().unwrap();
    assert_eq!(incidents.len(), 50);
    let titles: std::collections::BTreeSet<&str> = incidents
        .iter()
        .map(|incident| incident["title"].as_str().unwrap())
        .collect();
    assert!(titles.contains("GPU 0 failed") && titles.contains("GPU 49 failed") && titles.len() == 50);
    let id = incidents[49]["id"].as_str().unwrap();
    let notified = wait_entries(&app, id, "notified", 1).await;
    assert_eq!(
        notified,
        ["notified ops (webhook) in a group of 50: delivered (attempt 1)"]
    );
    // The next incident opens the next group.
    app.send_event(event("GPU 50 failed")).await;
    app.clock.advance(TimeDelta::seconds(31));
    let requests = receiver.wait_for(2, WAIT).await;
    assert_eq!(requests[1].json()["incident_count"], 1);
    app.stop().await;
}
