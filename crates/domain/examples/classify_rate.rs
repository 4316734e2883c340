//! What the offline classifier costs per event: classifies the labelled alerts over and
//! over and prints nanoseconds per event. Run it in release:
//! `cargo run --release -p lim-domain --example classify_rate`.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::{Duration, Instant};

use lim_domain::classifier::classify;
use serde::Deserialize;

const DATA: &str = include_str!("../tests/data/labelled_alerts.jsonl");

#[derive(Deserialize)]
struct Alert {
    title: String,
    description: String,
    labels: BTreeMap<String, String>,
}

fn main() {
    let alerts: Vec<Alert> = DATA
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| serde_json::from_str(line).expect("a labelled alert"))
        .collect();
    let bytes: usize = alerts.iter().map(|a| a.title.len() + a.description.len()).sum();
    let no_labels = BTreeMap::new();

    // Warm up: builds the automaton once and fills the caches.
    for alert in &alerts {
        black_box(classify(&alert.title, &alert.description, &alert.labels));
    }
    for (name, with_labels) in [("title + description + labels", true), ("title + description", false)] {
        let mut rounds = 0_usize;
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(2) {
            for alert in &alerts {
                let labels = if with_labels { &alert.labels } else { &no_labels };
                black_box(classify(black_box(&alert.title), black_box(&alert.description), labels));
            }
            rounds += 1;
        }
        let events = rounds * alerts.len();
        let nanos = started.elapsed().as_nanos() as f64 / events as f64;
        println!(
            "{name}: {nanos:.0} ns per event ({events} events, {} alerts of {} bytes of text on average)",
            alerts.len(),
            bytes / alerts.len()
        );
    }

    // The worst case: a description at the length the classifier stops reading at.
    let long: String = alerts
        .iter()
        .map(|a| a.description.as_str())
        .collect::<Vec<_>>()
        .join(" ");
    let end = (0..=4096.min(long.len()))
        .rev()
        .find(|&end| long.is_char_boundary(end))
        .unwrap_or(0);
    let long = &long[..end];
    let mut runs = 0_usize;
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(1) {
        black_box(classify("Checkout API latency high", black_box(long), &no_labels));
        runs += 1;
    }
    let nanos = started.elapsed().as_nanos() as f64 / runs as f64;
    println!("a 4 KiB description: {nanos:.0} ns per event");
}
