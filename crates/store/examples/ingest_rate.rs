//! How fast the store alone takes batches of new events (no HTTP), to see where ingest
//! time goes. `cargo run --release -p lim-store --example ingest_rate -- sqlite:///tmp/x.db 300000 16`
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use chrono::Utc;
use lim_domain::{Category, Event, EventStatus, Severity, Source};

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let url = args.next().unwrap_or_else(|| "sqlite:///tmp/lim-ingest-rate.db".into());
    let total: usize = args.next().map_or(300_000, |n| n.parse().unwrap());
    let concurrency: usize = args.next().map_or(16, |n| n.parse().unwrap());
    let distinct: usize = args.next().map_or(usize::MAX, |n| n.parse().unwrap());
    let store = lim_store::connect(&url, lim_store::StoreOptions::default())
        .await
        .unwrap();
    let started = Instant::now();
    let per_task = total / concurrency / 100;
    let tasks: Vec<_> = (0..concurrency)
        .map(|task| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                for batch in 0..per_task {
                    let events = (0..100)
                        .map(|i| {
                            let n = (task * per_task * 100 + batch * 100 + i) % distinct;
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
                                status: EventStatus::Firing,
                                occurred_at: Utc::now(),
                            }
                        })
                        .collect();
                    store.ingest(events, Utc::now()).await.unwrap();
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let elapsed = started.elapsed();
    let events = per_task * concurrency * 100;
    println!(
        "{events} events in {elapsed:?}: {:.0} events/s",
        events as f64 / elapsed.as_secs_f64()
    );
}
