//! The job queue under process failures and replicas: notifications survive `kill -9`,
//! and two service processes on one PostgreSQL database run each job once.

#[path = "support/receiver.rs"]
#[allow(dead_code)] // shared with the API tests
mod receiver;
#[path = "support/service_process.rs"]
#[allow(dead_code)] // shared with the other process tests
mod service_process;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use lim_store::testing::TestDatabase;
use receiver::{Receiver, Script};
use serde_json::{Value, json};
use service_process::{Launch, ServiceProcess};

fn route_to(receiver: &Receiver, extra: &str) -> String {
    format!(
        "[jobs]\nconcurrency = 8\nbackoff_base = \"100ms\"\n{extra}\n\
         [channels.hook]\ntype = \"webhook\"\nurl = \"{}/hook\"\n\n[[routes]]\nname = \"all\"\nchannels = [\"hook\"]\n",
        receiver.url
    )
}

/// Sends `count` events, each a new incident, in batches of 100.
async fn send_events(base: &str, count: usize, prefix: &str) {
    let client = reqwest::Client::new();
    for first in (0..count).step_by(100) {
        let batch: Vec<Value> = (first..(first + 100).min(count))
            .map(|n| json!({"source": "api", "title": format!("{prefix} {n}")}))
            .collect();
        let answer = client
            .post(format!("{base}/v1/events"))
            .json(&batch)
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 200);
    }
}

/// How many times each delivery (webhook-id) arrived.
fn deliveries(receiver: &Receiver) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for request in receiver.received() {
        *counts.entry(request.header("webhook-id").to_owned()).or_default() += 1;
    }
    counts
}

async fn wait_for_deliveries(receiver: &Receiver, distinct: usize, within: Duration) -> HashMap<String, usize> {
    let deadline = Instant::now() + within;
    loop {
        let counts = deliveries(receiver);
        if counts.len() >= distinct {
            return counts;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {distinct} deliveries arrived",
            counts.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn notifications_queued_or_in_flight_survive_kill_9() {
    let receiver = Receiver::start(Script {
        delay: Duration::from_millis(40),
        ..Script::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let config = route_to(&receiver, "");
    let launch = || Launch {
        config: Some(config.clone()),
        ..Launch::default()
    };
    let server = ServiceProcess::launch(dir.path(), launch()).await;
    send_events(&server.base, 500, "crash").await;
    // Some delivered, some in flight, most queued: then the process dies.
    receiver.wait_for(60, Duration::from_secs(30)).await;
    server.signal("-KILL");
    server.wait();
    let before_restart = deliveries(&receiver).len();
    assert!(
        before_restart < 500,
        "the kill came before the queue drained ({before_restart})"
    );

    let server = ServiceProcess::launch(dir.path(), launch()).await;
    let counts = wait_for_deliveries(&receiver, 500, Duration::from_secs(60)).await;

    assert_eq!(counts.len(), 500, "every notification delivered at least once");
    let twice = counts.values().filter(|count| **count == 2).count();
    assert!(
        counts.values().all(|count| *count <= 2),
        "none more than twice: {counts:?}"
    );
    assert!(
        twice <= 8,
        "only those in flight at the kill came twice ({twice}; 8 run at once)"
    );
    server.signal("-TERM");
    assert!(server.wait().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_processes_on_one_postgres_database_run_each_job_once() {
    llm_incident_manager::tls::install_crypto_provider();
    let receiver = Receiver::start(Script::default()).await;
    let database = TestDatabase::postgres().await;
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "{}\n[database]\nurl = \"{}\"\n",
        route_to(&receiver, ""),
        database.url()
    );
    let launch = || Launch {
        config: Some(config.clone()),
        ..Launch::default()
    };
    let first = ServiceProcess::launch(dir.path(), launch()).await;
    let second = ServiceProcess::launch(dir.path(), launch()).await;

    let (a, b) = tokio::join!(
        send_events(&first.base, 1000, "first"),
        send_events(&second.base, 1000, "second")
    );
    let _ = (a, b);
    let counts = wait_for_deliveries(&receiver, 2000, Duration::from_secs(120)).await;
    // Let anything that would run twice arrive.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let counts_after = deliveries(&receiver);

    assert_eq!(counts.len(), 2000);
    assert_eq!(counts_after.len(), 2000);
    let repeated: Vec<_> = counts_after.iter().filter(|(_, count)| **count > 1).collect();
    assert!(repeated.is_empty(), "run more than once: {repeated:?}");
    let runs = |metrics: &str| {
        let text = metrics.to_owned();
        async move {
            let scrape = reqwest::get(&text).await.unwrap().text().await.unwrap();
            scrape
                .lines()
                .find_map(|line| line.strip_prefix(r#"job_executions_total{job_type="notify",status="success"} "#))
                .map_or(0.0, |value| value.parse::<f64>().unwrap())
        }
    };
    let (by_first, by_second) = (runs(&first.metrics).await, runs(&second.metrics).await);
    assert_eq!(by_first + by_second, 2000.0);
    assert!(
        by_first > 0.0 && by_second > 0.0,
        "both processes ran jobs: {by_first} and {by_second}"
    );
    for server in [first, second] {
        server.signal("-TERM");
        assert!(server.wait().success());
    }
    database.drop_database().await;
}
