//! How fast the store alone takes batches of 100 events (no HTTP), to see where ingest
//! time goes:
//!
//! ```sh
//! cargo run --release -p lim-store --example ingest_rate -- sqlite:///tmp/x.db 320000 16 new
//! cargo run --release -p lim-store --example ingest_rate -- sqlite:///tmp/x.db 320000 16 recurring
//! cargo run --release -p lim-store --example ingest_rate -- sqlite:///tmp/x.db 320000 16 lifecycle
//! ```
//!
//! Workloads, the same as the HTTP benchmark's (`bench/`): `new` (every event opens an
//! incident), `recurring` (1,000 recurring problems: nearly every event is deduplicated),
//! `lifecycle` (50 new problems fire and 50 that fired 20 batches earlier resolve).
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use chrono::Utc;
use lim_domain::{Category, Event, EventStatus, Reactions, Severity, Source};

/// The benchmark stores events without routes.
fn no_reactions() -> Arc<Reactions> {
    Arc::new(Reactions::default())
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
    let store = lim_store::connect(&url, lim_store::StoreOptions::default())
        .await
        .expect("store");
    let started = Instant::now();
    let per_task = total / concurrency / 100;
    let tasks: Vec<_> = (0..concurrency)
        .map(|task| {
            let store = Arc::clone(&store);
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
                            }
                        })
                        .collect();
                    store.ingest(events, Utc::now(), no_reactions()).await.expect("ingest");
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
        "{events} events in {elapsed:?}: {:.0} events/s",
        events as f64 / elapsed.as_secs_f64()
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
