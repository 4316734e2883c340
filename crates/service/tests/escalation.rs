//! Escalations against the real binary, with levels a few seconds apart: a level keeps
//! its due time across a restart (SIGTERM, and `kill -9`) and is sent once; two processes
//! on one PostgreSQL database send every level of every incident exactly once; SIGHUP
//! reloads the configuration.

#[path = "support/receiver.rs"]
#[allow(dead_code)] // shared with the API tests
mod receiver;
#[path = "support/service_process.rs"]
#[allow(dead_code)] // shared with the other process tests
mod service_process;

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use lim_store::testing::TestDatabase;
use receiver::{Receiver, Script};
use serde_json::{Value, json};
use service_process::{Launch, ServiceProcess};

/// Level 1 four seconds after an incident opens (to `first`), level 2 after eight (to
/// `second`), for every incident.
fn two_levels(first: &Receiver, second: &Receiver, first_after: u32, second_after: u32) -> String {
    format!(
        "[channels.first]\ntype = \"webhook\"\nurl = \"{}/first\"\n\
         [channels.second]\ntype = \"webhook\"\nurl = \"{}/second\"\n\n\
         [escalation_policies.urgent]\n\
         levels = [{{ after = \"{first_after}s\", notify = [\"first\"] }}, {{ after = \"{second_after}s\", notify = [\"second\"] }}]\n\n\
         [[routes]]\nname = \"everything\"\nescalation_policy = \"urgent\"\n",
        first.url, second.url
    )
}

async fn send(base: &str, events: Value) -> Value {
    let answer = reqwest::Client::new()
        .post(format!("{base}/v1/events"))
        .json(&events)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    answer.json().await.unwrap()
}

async fn wait_until(receiver: &Receiver, count: usize, within: Duration) -> Instant {
    receiver.wait_for(count, within).await;
    Instant::now()
}

/// Stops the service with `signal` while level 1 is pending, restarts it after level 1's
/// due time, and checks both levels arrive at their original due times, once each.
async fn an_escalation_keeps_its_due_time_across_a_stop(signal: &str) {
    let (first, second) = (
        Receiver::start(Script::default()).await,
        Receiver::start(Script::default()).await,
    );
    let dir = tempfile::tempdir().unwrap();
    let config = two_levels(&first, &second, 4, 8);
    let launch = || Launch {
        config: Some(config.clone()),
        ..Launch::default()
    };
    let server = ServiceProcess::launch(dir.path(), launch()).await;
    let opened = Instant::now();
    send(&server.base, json!({"source": "api", "title": "GPU memory"})).await;
    server.signal(signal);
    server.wait();
    assert!(
        opened.elapsed() < Duration::from_secs(3),
        "stopped while level 1 was pending"
    );
    assert_eq!(first.received().len(), 0);

    tokio::time::sleep(Duration::from_secs(5).saturating_sub(opened.elapsed())).await;
    let restarted = Instant::now();
    let server = ServiceProcess::launch(dir.path(), launch()).await;

    // Level 1 was due at 4 s, before the restart: it goes at once, not 4 s after it.
    let level_one = wait_until(&first, 1, Duration::from_secs(20)).await;
    assert!(
        level_one - restarted < Duration::from_millis(3500),
        "level 1 came {:?} after the restart",
        level_one - restarted
    );
    // Level 2 comes at 8 s after the incident opened, not 8 s after the restart.
    let level_two = wait_until(&second, 1, Duration::from_secs(20)).await;
    let at = level_two - opened;
    assert!(
        at >= Duration::from_millis(7800) && at < Duration::from_millis(11_500),
        "level 2 came {at:?} after the incident opened"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        (first.received().len(), second.received().len()),
        (1, 1),
        "no level twice"
    );
    let body = first.received()[0].json();
    assert_eq!(
        (body["type"].as_str(), body["level"].as_i64()),
        (Some("incident.escalated"), Some(1))
    );
    server.signal("-TERM");
    assert!(server.wait().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_pending_escalation_survives_sigterm_and_keeps_its_due_time() {
    an_escalation_keeps_its_due_time_across_a_stop("-TERM").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_pending_escalation_survives_kill_9_and_keeps_its_due_time() {
    an_escalation_keeps_its_due_time_across_a_stop("-KILL").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_on_one_postgres_database_send_every_level_of_every_incident_once() {
    llm_incident_manager::tls::install_crypto_provider();
    let (first, second) = (
        Receiver::start(Script::default()).await,
        Receiver::start(Script::default()).await,
    );
    let database = TestDatabase::postgres().await;
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "{}\n[database]\nurl = \"{}\"\n",
        two_levels(&first, &second, 1, 3),
        database.url()
    );
    let launch = || Launch {
        config: Some(config.clone()),
        ..Launch::default()
    };
    let one = ServiceProcess::launch(dir.path(), launch()).await;
    let two = ServiceProcess::launch(dir.path(), launch()).await;
    let batch = |replica: &str| -> Value {
        (0..100)
            .map(|n| json!({"source": "api", "title": format!("{replica} {n}")}))
            .collect()
    };

    let (a, b) = tokio::join!(send(&one.base, batch("one")), send(&two.base, batch("two")));
    assert_eq!(
        a["results"].as_array().unwrap().len() + b["results"].as_array().unwrap().len(),
        200
    );

    first.wait_for(200, Duration::from_secs(60)).await;
    second.wait_for(200, Duration::from_secs(60)).await;
    // Anything sent twice would come in the next moments.
    tokio::time::sleep(Duration::from_secs(2)).await;
    for (receiver, level) in [(&first, 1), (&second, 2)] {
        let requests = receiver.received();
        let ids: HashMap<&str, usize> = requests.iter().fold(HashMap::new(), |mut ids, request| {
            *ids.entry(request.header("webhook-id")).or_default() += 1;
            ids
        });
        let incidents: std::collections::HashSet<String> = requests
            .iter()
            .map(|request| {
                let body = request.json();
                assert_eq!(body["level"], level);
                body["incident"]["id"].as_str().unwrap().to_owned()
            })
            .collect();
        println!(
            "level {level}: {} requests, {} distinct webhook-ids, {} incidents",
            requests.len(),
            ids.len(),
            incidents.len()
        );
        assert_eq!(requests.len(), 200, "level {level}: one request per incident");
        assert_eq!(ids.len(), 200, "level {level}: distinct webhook-ids");
        assert_eq!(incidents.len(), 200, "level {level}: every incident");
    }
    let escalated = |metrics: String| async move {
        let scrape = reqwest::get(&metrics).await.unwrap().text().await.unwrap();
        ["1", "2"].map(|level| {
            let series = format!(r#"escalations_total{{policy="urgent",level="{level}"}} "#);
            scrape
                .lines()
                .find_map(|line| line.strip_prefix(series.as_str()))
                .map_or(0.0, |value| value.parse::<f64>().unwrap())
        })
    };
    let (by_one, by_two) = (
        escalated(one.metrics.clone()).await,
        escalated(two.metrics.clone()).await,
    );
    assert_eq!([by_one[0] + by_two[0], by_one[1] + by_two[1]], [200.0, 200.0]);
    for server in [one, two] {
        server.signal("-TERM");
        assert!(server.wait().success());
    }
    database.drop_database().await;
}

async fn metric(server: &ServiceProcess, series: &str) -> Option<f64> {
    let scrape = reqwest::get(&server.metrics).await.unwrap().text().await.unwrap();
    scrape
        .lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

async fn assignee_of_a_new_incident(server: &ServiceProcess, title: &str) -> Value {
    let answer = send(&server.base, json!({"source": "api", "title": title})).await;
    let id = answer["incident_id"].as_str().unwrap();
    let incident: Value = reqwest::get(format!("{}/v1/incidents/{id}", server.base))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    incident["assignee"].clone()
}

/// Rewrites the configuration, sends SIGHUP, and waits until the reload metrics say
/// `successful`.
async fn reload_with(server: &ServiceProcess, config: &str, successful: f64) {
    let path: &Path = server.config.as_deref().unwrap();
    std::fs::write(path, config).unwrap();
    server.signal("-HUP");
    let deadline = Instant::now() + Duration::from_secs(10);
    while metric(server, "config_last_reload_successful").await != Some(successful) {
        assert!(Instant::now() < deadline, "the reload never reported {successful}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sighup_reloads_the_routes_and_a_broken_file_keeps_the_running_ones() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServiceProcess::launch(
        dir.path(),
        Launch {
            config: Some("[[routes]]\nname = \"first\"\nassignee = \"ana\"\n".into()),
            ..Launch::default()
        },
    )
    .await;
    assert_eq!(assignee_of_a_new_incident(&server, "before").await, "ana");
    let loaded = metric(&server, "config_last_reload_success_timestamp_seconds")
        .await
        .unwrap();

    // Reloads are told apart by their success time, in seconds.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    reload_with(&server, "[[routes]]\nname = \"second\"\nassignee = \"bo\"\n", 1.0).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while metric(&server, "config_last_reload_success_timestamp_seconds").await == Some(loaded) {
        assert!(Instant::now() < deadline, "the reload never happened");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(assignee_of_a_new_incident(&server, "after").await, "bo");

    reload_with(&server, "[[routes]]\nname = \"third\"\nassignee = \n", 0.0).await;
    assert_eq!(
        assignee_of_a_new_incident(&server, "still").await,
        "bo",
        "the running routes stay"
    );
    assert!(
        server.log_text().contains("configuration reload refused"),
        "the log says why: {}",
        server.log_text()
    );
    server.signal("-TERM");
    assert!(server.wait().success());
}
