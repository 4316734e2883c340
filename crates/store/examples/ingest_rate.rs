//! How fast the store alone takes batches of 100 events (no HTTP), to see where ingest
//! time goes:
//!
//! ```sh
//! cargo run --release -p lim-store --example ingest_rate -- sqlite:///tmp/x.db 320000 16 new
//! cargo run --release -p lim-store --example ingest_rate -- sqlite:///tmp/x.db 320000 16 recurring
//! cargo run --release -p lim-store --example ingest_rate -- sqlite:///tmp/x.db 320000 16 lifecycle
//! cargo run --release -p lim-store --example ingest_rate -- sqlite:///tmp/x.db 320000 16 new routed
//! ```
//!
//! With `routed`, one route to one channel matches every incident, so each new and each
//! resolved incident also writes a delivery job, as a configured service does.
//!
//! Workloads, the same as the HTTP benchmark's (`bench/`): `new` (every event opens an
//! incident), `recurring` (1,000 recurring problems: nearly every event is deduplicated),
//! `lifecycle` (50 new problems fire and 50 that fired 20 batches earlier resolve).
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use chrono::Utc;
use lim_domain::matcher::Matchers;
use lim_domain::routing::{Route, Routes};
use lim_domain::{Category, Event, EventStatus, Reactions, Severity, Source};

/// Without routes, or (`routed`) with one route to one channel for every incident: each
/// new incident, and each resolved one, then writes a delivery job.
fn reactions(routed: bool) -> Arc<Reactions> {
    if !routed {
        return Arc::new(Reactions::default());
    }
    Arc::new(Reactions {
        routes: Routes::new(vec![Route {
            name: "all".into(),
            matchers: Matchers::default(),
            team: None,
            assignee: None,
            escalation_policy: None,
            channels: vec!["hook".into()],
            notify_on: Route::DEFAULT_NOTIFY_ON.to_vec(),
            group_wait: None,
        }]),
        channel_attempts: Default::default(),
        default_attempts: 8,
        ..Reactions::default()
    })
}

/// CPU time of the SQLite writer thread so far (Linux; 0 elsewhere or on PostgreSQL): a
/// steadier measure than the wall clock on a shared machine.
fn writer_cpu_seconds() -> f64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0.0;
    };
    let ticks_per_second = 100.0;
    tasks
        .flatten()
        .filter(|task| {
            std::fs::read_to_string(task.path().join("comm")).is_ok_and(|name| name.trim() == "sqlite-writer")
        })
        .filter_map(|task| std::fs::read_to_string(task.path().join("stat")).ok())
        .map(|stat| {
            // Fields after the command name (which ends with `)`): utime and stime are the
            // 12th and 13th of them.
            let fields: Vec<&str> = stat
                .rsplit_once(')')
                .map_or("", |(_, rest)| rest)
                .split_whitespace()
                .collect();
            let ticks = |index: usize| {
                fields
                    .get(index)
                    .and_then(|value| value.parse::<f64>().ok())
                    .unwrap_or(0.0)
            };
            (ticks(11) + ticks(12)) / ticks_per_second
        })
        .sum()
}

#[derive(Clone, Copy)]
enum Workload {
    New,
    Recurring,
    Lifecycle,
}

impl Workload {
    /// The problem number and status of event `i` of batch `batch` of one task.
    fn event(self, task: usize, batch: usize, i: usize) -> (usize, EventStatus) {
        let first_of_task = task * 1_000_000_000;
        match self {
            Workload::New => (first_of_task + batch * 100 + i, EventStatus::Firing),
            Workload::Recurring => ((batch * 100 + i) % 1_000, EventStatus::Firing),
            Workload::Lifecycle if i.is_multiple_of(2) => (first_of_task + batch * 50 + i / 2, EventStatus::Firing),
            // Problems of 20 batches earlier: 1,000 per task stay open.
            Workload::Lifecycle => match (batch * 50 + i / 2).checked_sub(1_000) {
                Some(earlier) => (first_of_task + earlier, EventStatus::Resolved),
                None => (usize::MAX - first_of_task - i, EventStatus::Resolved),
            },
        }
    }
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let url = args.next().unwrap_or_else(|| "sqlite:///tmp/lim-ingest-rate.db".into());
    let total: usize = args.next().map_or(320_000, |n| n.parse().expect("total events"));
    let concurrency: usize = args.next().map_or(16, |n| n.parse().expect("concurrency"));
    let workload = match args.next().as_deref() {
        None | Some("new") => Workload::New,
        Some("recurring") => Workload::Recurring,
        Some("lifecycle") => Workload::Lifecycle,
        Some(other) => panic!("unknown workload `{other}`: new, recurring or lifecycle"),
    };
    let reactions = reactions(args.next().as_deref() == Some("routed"));
    let store = lim_store::connect(&url, lim_store::StoreOptions::default())
        .await
        .expect("store");
    let started = Instant::now();
    let per_task = total / concurrency / 100;
    let tasks: Vec<_> = (0..concurrency)
        .map(|task| {
            let store = Arc::clone(&store);
            let reactions = Arc::clone(&reactions);
            tokio::spawn(async move {
                for batch in 0..per_task {
                    let events = (0..100)
                        .map(|i| {
                            let (n, status) = workload.event(task, batch, i);
                            Event {
                                source: Source::Sentinel,
                                title: format!("drift {n}"),
                                description: String::new(),
                                severity: Severity::P2,
                                category: Category::ModelDrift,
                                labels: BTreeMap::from([("model".to_owned(), format!("m{}", n % 50))]),
                                fingerprint: format!(
                                    "{:032x}",
                                    (n as u128).wrapping_mul(0x9E3779B97F4A7C15F39CC0605CEDC835)
                                ),
                                status,
                                occurred_at: Utc::now(),
                                occurred_at_given: false,
                                classification: None,
                            }
                        })
                        .collect();
                    store
                        .ingest(events, Utc::now(), Arc::clone(&reactions))
                        .await
                        .expect("ingest");
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("task");
    }
    let elapsed = started.elapsed();
    let events = per_task * concurrency * 100;
    println!(
        "{events} events in {elapsed:?}: {:.0} events/s; the writer thread's CPU: {:.2} µs/event",
        events as f64 / elapsed.as_secs_f64(),
        writer_cpu_seconds() * 1e6 / events as f64
    );
    let started = Instant::now();
    let open: i64 = store
        .count_open()
        .await
        .expect("count")
        .iter()
        .map(|count| count.count)
        .sum();
    println!(
        "counting {open} open incidents by label set took {:?}",
        started.elapsed()
    );
}
