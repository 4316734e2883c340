//! Three service processes on one PostgreSQL database, as the Kubernetes deployment runs
//! them: dedup exact across them, every notification delivered once, the gauges equal on
//! every replica; `kill -9` of one under load loses no acknowledged event and its pending
//! work is finished by the others; a replica cut off from its database answers 503 and
//! reports not ready rather than hanging, and recovers when the link returns.

#[path = "support/proxy.rs"]
mod proxy;
#[path = "support/receiver.rs"]
#[allow(dead_code)] // shared with the API tests
mod receiver;
#[path = "support/service_process.rs"]
#[allow(dead_code)] // shared with the other process tests
mod service_process;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use lim_store::testing::TestDatabase;
use proxy::{Link, Proxy};
use receiver::{Receiver, Script};
use serde_json::{Value, json};
use service_process::{Launch, ServiceProcess};

/// A webhook route for every incident, notified when it opens.
fn routed(receiver: &Receiver, database_url: &str, extra: &str) -> String {
    format!(
        "[database]\nurl = \"{database_url}\"\n\n[jobs]\nlease = \"3s\"\n{extra}\n\
         [channels.hook]\ntype = \"webhook\"\nurl = \"{}/hook\"\ntimeout = \"2s\"\n\n\
         [[routes]]\nname = \"everything\"\nchannels = [\"hook\"]\nnotify_on = [\"created\"]\n",
        receiver.url
    )
}

async fn three_replicas(dir: &std::path::Path, config: &str) -> Vec<ServiceProcess> {
    let launch = || Launch {
        config: Some(config.to_owned()),
        ..Launch::default()
    };
    // Started together: their migrations race, and must not trip on each other.
    let (one, two, three) = tokio::join!(
        ServiceProcess::launch(dir, launch()),
        ServiceProcess::launch(dir, launch()),
        ServiceProcess::launch(dir, launch())
    );
    vec![one, two, three]
}

async fn post_event(client: &reqwest::Client, base: &str, event: &Value) -> Option<Value> {
    let response = client
        .post(format!("{base}/v1/events"))
        .json(event)
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .ok()?;
    if !response.status().is_success() {
        return None;
    }
    response.json().await.ok()
}

/// Every series of `name` in a scrape, by its labels.
async fn series(server: &ServiceProcess, name: &str) -> BTreeMap<String, f64> {
    let scrape = reqwest::get(&server.metrics).await.unwrap().text().await.unwrap();
    scrape
        .lines()
        .filter_map(|line| {
            let rest = line.strip_prefix(name)?;
            let (labels, value) = rest.rsplit_once(' ')?;
            (labels.is_empty() || labels.starts_with('{')).then(|| (labels.to_owned(), value.parse().unwrap()))
        })
        .collect()
}

async fn all_incidents(base: &str) -> Vec<Value> {
    let mut incidents = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut url = format!("{base}/v1/incidents?limit=500");
        if let Some(cursor) = &cursor {
            url.push_str(&format!("&cursor={cursor}"));
        }
        let page: Value = reqwest::get(url).await.unwrap().json().await.unwrap();
        incidents.extend(page["incidents"].as_array().unwrap().iter().cloned());
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return incidents,
        }
    }
}

/// Requests per `webhook-id`, and the incidents they named.
fn deliveries(receiver: &Receiver) -> (HashMap<String, usize>, HashMap<String, usize>) {
    let mut by_id: HashMap<String, usize> = HashMap::new();
    let mut by_incident: HashMap<String, usize> = HashMap::new();
    for request in receiver.received() {
        *by_id.entry(request.header("webhook-id").to_owned()).or_default() += 1;
        let incident = request.json()["incident"]["id"].as_str().unwrap_or_default().to_owned();
        *by_incident.entry(incident).or_default() += 1;
    }
    (by_id, by_incident)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_replicas_dedup_exactly_notify_once_and_agree_on_the_gauges() {
    llm_incident_manager::tls::install_crypto_provider();
    let receiver = Receiver::start(Script::default()).await;
    let database = TestDatabase::postgres().await;
    let dir = tempfile::tempdir().unwrap();
    let replicas = three_replicas(dir.path(), &routed(&receiver, &database.url(), "")).await;
    let bases: Vec<String> = replicas.iter().map(|replica| replica.base.clone()).collect();

    // 1,000 events over 50 fingerprints, all at once, round-robin to the three.
    let client = reqwest::Client::new();
    let sends: Vec<_> = (0..1000)
        .map(|index| {
            let (client, base) = (client.clone(), bases[index % 3].clone());
            let event = json!({"source": "api", "title": format!("fingerprint {}", index % 50), "severity": "P1"});
            tokio::spawn(async move { post_event(&client, &base, &event).await })
        })
        .collect();
    let mut answered = 0;
    for send in sends {
        answered += usize::from(send.await.unwrap().is_some());
    }
    assert_eq!(answered, 1000, "every event is answered 2xx");

    let incidents = all_incidents(&bases[0]).await;
    let occurrences: i64 = incidents
        .iter()
        .map(|incident| incident["occurrence_count"].as_i64().unwrap())
        .sum();
    println!("{} incidents, {occurrences} occurrences", incidents.len());
    assert_eq!(incidents.len(), 50, "one incident per fingerprint across the replicas");
    assert_eq!(occurrences, 1000);

    // One notification per incident, whichever replica ran it, each sent once.
    receiver.wait_for(50, Duration::from_secs(60)).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (by_id, by_incident) = deliveries(&receiver);
    println!(
        "{} deliveries, {} distinct webhook-ids, {} incidents",
        receiver.received().len(),
        by_id.len(),
        by_incident.len()
    );
    assert_eq!(receiver.received().len(), 50);
    assert_eq!(by_id.len(), 50, "distinct webhook-ids = requests");
    assert_eq!(by_incident.len(), 50);

    // Every replica reports the store's count of open incidents and of queued jobs.
    let first = series(&replicas[0], "incidents_active").await;
    assert_eq!(first.values().sum::<f64>(), 50.0, "{first:?}");
    for replica in &replicas[1..] {
        assert_eq!(series(replica, "incidents_active").await, first);
    }
    let queued = series(&replicas[0], "job_queue_depth").await;
    for replica in &replicas[1..] {
        assert_eq!(series(replica, "job_queue_depth").await, queued);
    }
    let created: f64 = {
        let mut total = 0.0;
        for replica in &replicas {
            total += series(replica, "incidents_total").await.values().sum::<f64>();
        }
        total
    };
    assert_eq!(
        created, 50.0,
        "each incident counted once, by the replica that opened it"
    );
    for replica in replicas {
        replica.signal("-TERM");
        assert!(replica.wait().success());
    }
    database.drop_database().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_of_a_replica_under_load_loses_no_acknowledged_event_and_its_work_is_finished() {
    llm_incident_manager::tls::install_crypto_provider();
    // Deliveries take a moment, so that some are in flight when the replica dies.
    let receiver = Receiver::start(Script {
        delay: Duration::from_millis(50),
        ..Script::default()
    })
    .await;
    let database = TestDatabase::postgres().await;
    let dir = tempfile::tempdir().unwrap();
    let mut replicas = three_replicas(dir.path(), &routed(&receiver, &database.url(), "concurrency = 8\n")).await;
    let bases: Vec<String> = replicas.iter().map(|replica| replica.base.clone()).collect();

    // Twelve senders, four per replica, each sending an event every 50 ms or so until told
    // to stop (about 200 a second: what the deliveries, 50 ms each, keep up with); every
    // 2xx is recorded.
    let stop = Arc::new(AtomicBool::new(false));
    let client = reqwest::Client::new();
    let senders: Vec<_> = (0..12)
        .map(|sender| {
            let (client, base, stop) = (client.clone(), bases[sender % 3].clone(), Arc::clone(&stop));
            tokio::spawn(async move {
                let (mut acknowledged, mut refused) = (Vec::new(), 0);
                let mut index = 0;
                while !stop.load(Ordering::Relaxed) {
                    let event = json!({"source": "api", "title": format!("sender {sender} event {index}")});
                    index += 1;
                    match post_event(&client, &base, &event).await {
                        Some(answer) => {
                            acknowledged.push(answer["incident_id"].as_str().unwrap().to_owned());
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                        None => {
                            refused += 1;
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                    }
                }
                (acknowledged, refused)
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let victim = replicas.remove(0);
    let killed_at = Instant::now();
    victim.signal("-KILL");
    assert!(!victim.wait().success());
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::Relaxed);
    let (mut acknowledged, mut refused) = (Vec::new(), 0);
    for sender in senders {
        let (ids, failures) = sender.await.unwrap();
        acknowledged.extend(ids);
        refused += failures;
    }

    // Every acknowledged event is stored.
    let stored: HashSet<String> = all_incidents(&replicas[0].base)
        .await
        .iter()
        .map(|incident| incident["id"].as_str().unwrap().to_owned())
        .collect();
    let missing = acknowledged.iter().filter(|id| !stored.contains(*id)).count();
    // Every stored incident is notified, the dead replica's claimed deliveries included,
    // once their lease (3 s) runs out.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (_, by_incident) = deliveries(&receiver);
        if stored.iter().all(|id| by_incident.contains_key(id)) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {} incidents were never notified",
            stored.iter().filter(|id| !by_incident.contains_key(*id)).count(),
            stored.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (by_id, by_incident) = deliveries(&receiver);
    let twice = by_incident.values().filter(|count| **count > 1).count();
    let resent_ids = by_id.values().filter(|count| **count > 1).count();
    println!(
        "kill -9 under load: {} events acknowledged ({refused} refused or cut off by the kill), {} incidents stored, \
         {missing} acknowledged events missing; {} deliveries for {} incidents, {twice} incidents notified twice \
         ({resent_ids} webhook-ids sent again), all delivered {:.1} s after the kill",
        acknowledged.len(),
        stored.len(),
        receiver.received().len(),
        by_incident.len(),
        killed_at.elapsed().as_secs_f64()
    );
    assert!(acknowledged.len() > 100, "the load ran");
    assert_eq!(missing, 0, "an acknowledged event was lost");
    // A delivery the dead replica had in flight may be sent again (it cannot know whether
    // the receiver got it): at most its concurrency, and with the same webhook-id.
    assert!(twice <= 8, "{twice} incidents notified twice");
    assert_eq!(resent_ids, twice, "a delivery sent again keeps its webhook-id");
    for replica in replicas {
        replica.signal("-TERM");
        assert!(replica.wait().success());
    }
    database.drop_database().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replica_cut_off_from_its_database_answers_503_is_not_ready_and_recovers() {
    llm_incident_manager::tls::install_crypto_provider();
    let database = TestDatabase::postgres().await;
    // The database's own server, wherever the test command found or started it.
    let mut through_proxy = reqwest::Url::parse(&database.url()).expect("the database URL");
    let server = format!(
        "{}:{}",
        through_proxy.host_str().expect("the database URL names a host"),
        through_proxy.port().unwrap_or(5432)
    );
    let proxy = Proxy::start(&server).await;
    through_proxy.set_host(Some("127.0.0.1")).expect("a host");
    through_proxy.set_port(Some(proxy.port)).expect("a port");
    let through_proxy = through_proxy.to_string();
    let dir = tempfile::tempdir().unwrap();
    let replica = ServiceProcess::launch(
        dir.path(),
        Launch {
            config: Some(format!(
                "[database]\nurl = \"{through_proxy}\"\n[http]\nrequest_timeout = \"4s\"\nbody_timeout = \"2s\"\n"
            )),
            ..Launch::default()
        },
    )
    .await;
    let client = reqwest::Client::new();
    let ready = || async {
        client
            .get(format!("{}/health/ready", replica.base))
            .timeout(Duration::from_secs(20))
            .send()
            .await
            .expect("answered")
            .status()
            .as_u16()
    };
    let event = |title: &str| json!({"source": "api", "title": title});
    let send = |title: String| {
        let client = client.clone();
        let base = replica.base.clone();
        async move {
            let started = Instant::now();
            let status = client
                .post(format!("{base}/v1/events"))
                .json(&event(&title))
                .timeout(Duration::from_secs(20))
                .send()
                .await
                .expect("answered, not hanging")
                .status()
                .as_u16();
            (status, started.elapsed())
        }
    };
    assert_eq!(send("before".into()).await.0, 200);

    for link in [Link::Stalled, Link::Down] {
        proxy.set(link);
        let (status, took) = send(format!("while {link:?}")).await;
        println!("{link:?}: POST /v1/events answered {status} in {took:?}");
        assert_eq!(status, 503, "{link:?}");
        assert!(took < Duration::from_secs(10), "{link:?}: took {took:?}");
        let started = Instant::now();
        assert_eq!(ready().await, 503, "{link:?}: not ready");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{link:?}: the readiness check hung"
        );

        proxy.set(Link::Up);
        let deadline = Instant::now() + Duration::from_secs(30);
        while ready().await != 200 {
            assert!(Instant::now() < deadline, "{link:?}: never ready again");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (status, _) = send(format!("after {link:?}")).await;
            if status == 200 {
                break;
            }
            assert!(Instant::now() < deadline, "{link:?}: ingest never recovered ({status})");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    let titles: HashSet<String> = all_incidents(&replica.base)
        .await
        .iter()
        .map(|incident| incident["title"].as_str().unwrap().to_owned())
        .collect();
    assert!(titles.contains("before") && titles.contains("after Stalled") && titles.contains("after Down"));
    replica.signal("-TERM");
    assert!(replica.wait().success());
    drop(proxy);
    database.drop_database().await;
}
