//! A load generator for ingest over both front doors, for `bench/grpc.sh`: new events (each
//! its own fingerprint) with realistic text, from `--connections` workers, each on a
//! connection of its own, for `--seconds`; prints the events stored per second.
//!
//! ```text
//! cargo run --release -p llm-incident-manager --example ingest_load -- \
//!     --mode grpc-stream --http http://127.0.0.1:8080 --grpc http://127.0.0.1:8081
//! ```
//!
//! Modes: `http-batch` (`POST /v1/events`, arrays of `--batch` events), `http-single` (one
//! event per request), `grpc-unary` (`SubmitEvent`), `grpc-stream` (`StreamEvents`: each
//! worker streams events continuously, a new stream every `--stream-events`). Every event
//! counted was answered as stored: the same durability on every path.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use lim_proto::v1::event_service_client::EventServiceClient;
use lim_proto::v1::{Category, Event, Severity, Source, SubmitEventRequest};
use serde_json::json;

const TITLES: [&str; 8] = [
    "p95 latency over SLO on the chat model",
    "GPU memory exhausted on inference node",
    "Jailbreak attempts against the assistant",
    "Embedding drift detected on the search index",
    "Token spend 3x over the daily budget",
    "Disk 97% full on the vector database",
    "Error rate 12% on the completion endpoint",
    "Nightly evaluation finished",
];
const DESCRIPTION: &str = "The 95th percentile latency is 2.4 s, above the 1.5 s objective for 10 minutes.";

struct Options {
    mode: String,
    http: String,
    grpc: String,
    connections: usize,
    seconds: u64,
    batch: usize,
    stream_events: usize,
}

fn options() -> Options {
    let mut options = Options {
        mode: "grpc-stream".into(),
        http: "http://127.0.0.1:8080".into(),
        grpc: "http://127.0.0.1:8081".into(),
        connections: 16,
        seconds: 10,
        batch: 100,
        stream_events: 20_000,
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    for pair in args.chunks(2) {
        let value = pair.get(1).cloned().unwrap_or_default();
        match pair[0].as_str() {
            "--mode" => options.mode = value,
            "--http" => options.http = value,
            "--grpc" => options.grpc = value,
            "--connections" => options.connections = value.parse().expect("--connections: a number"),
            "--seconds" => options.seconds = value.parse().expect("--seconds: a number"),
            "--batch" => options.batch = value.parse().expect("--batch: a number"),
            "--stream-events" => options.stream_events = value.parse().expect("--stream-events: a number"),
            other => panic!("unknown option {other}"),
        }
    }
    options
}

/// The `index`th event of worker `worker`: its own fingerprint, so each opens an incident.
fn title(worker: usize, index: u64) -> String {
    format!("{} {worker}-{index}", TITLES[index as usize % TITLES.len()])
}

fn grpc_event(worker: usize, index: u64) -> SubmitEventRequest {
    SubmitEventRequest {
        event: Some(Event {
            source: Source::Sentinel as i32,
            title: title(worker, index),
            description: DESCRIPTION.into(),
            severity: Severity::P2 as i32,
            category: Category::Performance as i32,
            labels: HashMap::from([("model".into(), format!("m{}", index % 50))]),
            ..Event::default()
        }),
    }
}

fn json_event(worker: usize, index: u64) -> serde_json::Value {
    json!({
        "source": "sentinel", "severity": "medium", "category": "performance",
        "title": title(worker, index), "description": DESCRIPTION,
        "labels": {"model": format!("m{}", index % 50)},
    })
}

async fn worker(options: &Options, worker: usize, deadline: Instant) -> u64 {
    let mut stored = 0_u64;
    match options.mode.as_str() {
        "http-batch" | "http-single" => {
            let client = reqwest::Client::builder().pool_max_idle_per_host(1).build().unwrap();
            let url = format!("{}/v1/events", options.http);
            let single = options.mode == "http-single";
            while Instant::now() < deadline {
                let body = if single {
                    json_event(worker, stored)
                } else {
                    json!(
                        (0..options.batch as u64)
                            .map(|i| json_event(worker, stored + i))
                            .collect::<Vec<_>>()
                    )
                };
                let response = client.post(&url).json(&body).send().await.expect("the server answers");
                assert!(response.status().is_success(), "{}", response.status());
                response.bytes().await.expect("the answer");
                stored += if single { 1 } else { options.batch as u64 };
            }
        }
        "grpc-unary" => {
            let mut client = EventServiceClient::connect(options.grpc.clone())
                .await
                .expect("connect");
            while Instant::now() < deadline {
                client.submit_event(grpc_event(worker, stored)).await.expect("stored");
                stored += 1;
            }
        }
        "grpc-stream" => {
            let mut client = EventServiceClient::connect(options.grpc.clone())
                .await
                .expect("connect");
            while Instant::now() < deadline {
                let first = stored;
                let limit = options.stream_events as u64;
                // Events are made as the stream is read: as fast as flow control lets them go.
                let events = futures_util::stream::iter(
                    (0..limit).map_while(move |i| (Instant::now() < deadline).then(|| grpc_event(worker, first + i))),
                );
                let answer = client.stream_events(events).await.expect("stored").into_inner();
                stored += answer.results.len() as u64;
            }
        }
        other => panic!("unknown mode {other}"),
    }
    stored
}

#[tokio::main]
async fn main() {
    llm_incident_manager::tls::install_crypto_provider();
    let options = options();
    let started = Instant::now();
    let deadline = started + Duration::from_secs(options.seconds);
    let options = std::sync::Arc::new(options);
    let workers: Vec<_> = (0..options.connections)
        .map(|index| {
            let options = std::sync::Arc::clone(&options);
            tokio::spawn(async move { worker(&options, index, deadline).await })
        })
        .collect();
    let mut stored = 0;
    for handle in workers {
        stored += handle.await.expect("a worker");
    }
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "{}\t{stored} events in {elapsed:.1} s\t{:.0} events/s",
        options.mode,
        stored as f64 / elapsed
    );
}
