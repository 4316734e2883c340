//! The binary against clients that mean harm, and the proof that an answer waits for
//! the fsync of what it reports stored.

#[path = "support/service_process.rs"]
#[allow(dead_code)] // shared with the other process tests
mod service_process;

use std::collections::HashMap;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use service_process::{Launch, ServiceProcess, signal_process};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

const MAX_BODY: usize = 5 * 1024 * 1024;
const DRAIN: Duration = Duration::from_secs(3);

/// The largest resident size the process has had, in bytes (`VmHWM`).
fn peak_resident_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("procfs");
    let kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|value| value.split_whitespace().next()?.parse().ok())
        .expect("VmHWM in /proc/PID/status");
    kib * 1024
}

/// A body of the largest size allowed made of empty objects: 1.7 million events, were
/// they all read.
fn empty_objects_body() -> String {
    let count = (MAX_BODY - 2) / 3;
    let mut body = String::with_capacity(MAX_BODY);
    body.push('[');
    for index in 0..count {
        if index > 0 {
            body.push(',');
        }
        body.push_str("{}");
    }
    body.push(']');
    assert!(body.len() <= MAX_BODY);
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hostile_clients_neither_exhaust_memory_nor_stop_service_nor_delay_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    // Timeouts far longer than the test, so that only the drain can end the stalled
    // connections when the service is told to stop.
    let config = format!(
        "[http]\nheader_timeout = \"60s\"\nbody_timeout = \"60s\"\nrequest_timeout = \"120s\"\ndrain_timeout = \"{}s\"\n",
        DRAIN.as_secs()
    );
    let server = ServiceProcess::launch(
        dir.path(),
        Launch {
            config: Some(config),
            ..Launch::default()
        },
    )
    .await;
    let pid = server.child_id();
    let body = Arc::new(empty_objects_body());
    let client = reqwest::Client::new();

    // 16 bodies of 5 MiB at once.
    let floods: Vec<_> = (0..16)
        .map(|_| {
            let (client, body, url) = (client.clone(), Arc::clone(&body), format!("{}/v1/events", server.base));
            tokio::spawn(async move {
                let response = client
                    .post(url)
                    .header("content-type", "application/json")
                    .body(body.as_bytes().to_vec())
                    .send()
                    .await
                    .expect("the flood is answered");
                response.status().as_u16()
            })
        })
        .collect();
    // 100 connections that never finish their headers.
    let mut stalled = Vec::new();
    for _ in 0..100 {
        let mut stream = TcpStream::connect(&server.http_addr).await.unwrap();
        stream
            .write_all(b"POST /v1/events HTTP/1.1\r\nhost: x\r\n")
            .await
            .unwrap();
        stalled.push(stream);
    }
    // 100 bodies that trickle in a byte at a time.
    let trickles: Vec<_> = (0..100)
        .map(|_| {
            let address = server.http_addr.clone();
            tokio::spawn(async move {
                let mut stream = TcpStream::connect(address).await.unwrap();
                stream
                    .write_all(b"POST /v1/events HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 10000\r\n\r\n[")
                    .await
                    .unwrap();
                while stream.write_all(b" ").await.is_ok() {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            })
        })
        .collect();

    // Ordinary requests keep being served meanwhile.
    for index in 0..20 {
        let answer = client
            .post(format!("{}/v1/events", server.base))
            .json(&json!({"source": "api", "title": format!("ordinary {index}")}))
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .expect("an ordinary request is answered during the attack");
        assert_eq!(answer.status(), 200);
    }
    for flood in floods {
        assert_eq!(flood.await.unwrap(), 400, "a batch past 1,000 events is refused");
    }
    let peak = peak_resident_bytes(pid);
    eprintln!("peak resident memory under attack: {} MiB", peak / 1024 / 1024);
    assert!(
        peak < 300 * 1024 * 1024,
        "peak resident memory {} MiB",
        peak / 1024 / 1024
    );
    let answer = client
        .get(format!("{}/v1/incidents?limit=500", server.base))
        .send()
        .await
        .unwrap();
    let listed: serde_json::Value = answer.json().await.unwrap();
    assert_eq!(listed["incidents"].as_array().unwrap().len(), 20);

    // The stalled connections and the trickling bodies are all still open: the drain
    // period alone bounds the shutdown.
    let asked = Instant::now();
    server.signal("-TERM");
    let status = server.wait();
    let took = asked.elapsed();
    eprintln!("stopped {took:?} after SIGTERM, drain period {DRAIN:?}");
    assert!(status.success(), "{status}");
    assert!(
        took < DRAIN + Duration::from_secs(2),
        "the service took {took:?} to stop"
    );
    drop(stalled);
    for trickle in trickles {
        trickle.abort();
    }
}

#[tokio::test]
async fn hostile_grpc_clients_neither_hold_the_service_nor_delay_shutdown() {
    use lim_proto::v1::event_service_client::EventServiceClient;
    use lim_proto::v1::incident_service_client::IncidentServiceClient;
    use lim_proto::v1::{Event, Source, SubmitEventRequest, WatchIncidentsRequest};

    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "[http]\nbody_timeout = \"1s\"\nrequest_timeout = \"5s\"\ndrain_timeout = \"{}s\"\n",
        DRAIN.as_secs()
    );
    let server = ServiceProcess::launch(
        dir.path(),
        Launch {
            config: Some(config),
            ..Launch::default()
        },
    )
    .await;
    let grpc_addr = server.grpc.trim_start_matches("http://").to_owned();
    let event = |title: &str| SubmitEventRequest {
        event: Some(Event {
            source: Source::Api as i32,
            title: title.into(),
            ..Event::default()
        }),
    };

    // 100 connections that send the HTTP/2 preface and then nothing, and 20 that send half
    // a message of a stream and stop.
    let mut stalled = Vec::new();
    for _ in 0..100 {
        let mut stream = TcpStream::connect(&grpc_addr).await.unwrap();
        stream.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").await.unwrap();
        stalled.push(stream);
    }
    let mut half_sent = Vec::new();
    for index in 0..20 {
        let mut client = EventServiceClient::connect(server.grpc.clone()).await.unwrap();
        let (sender, receiver) = tokio::sync::mpsc::channel(1);
        sender
            .send(event(&format!("first of a stalled stream {index}")))
            .await
            .unwrap();
        let call = tokio::spawn(async move {
            client
                .stream_events(tokio_stream_of(receiver))
                .await
                .map(|answer| answer.into_inner().results.len())
        });
        half_sent.push((sender, call));
    }
    // A watch that never reads.
    let mut watcher = IncidentServiceClient::connect(server.grpc.clone()).await.unwrap();
    let unread = watcher
        .watch_incidents(WatchIncidentsRequest::default())
        .await
        .unwrap()
        .into_inner();

    // Ordinary calls are served meanwhile.
    let mut client = EventServiceClient::connect(server.grpc.clone()).await.unwrap();
    for index in 0..20 {
        let answer = tokio::time::timeout(
            Duration::from_secs(10),
            client.submit_event(event(&format!("ordinary {index}"))),
        )
        .await
        .expect("an ordinary call is answered during the attack");
        assert!(answer.is_ok(), "{answer:?}");
    }
    // A stream idle past http.body_timeout is ended; the event it sent is stored.
    for (sender, call) in half_sent {
        let status = tokio::time::timeout(Duration::from_secs(10), call)
            .await
            .expect("an idle stream is ended")
            .unwrap()
            .expect_err("refused");
        assert_eq!(status.code(), tonic::Code::DeadlineExceeded, "{status:?}");
        assert!(
            status.message().contains("the events before [1] are stored"),
            "{}",
            status.message()
        );
        drop(sender);
    }
    let listed: serde_json::Value = reqwest::get(format!("{}/v1/incidents?limit=500", server.base))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed["incidents"].as_array().unwrap().len(), 40);

    // Every stalled connection and the unread watch are still open: the drain bounds the stop.
    let asked = Instant::now();
    server.signal("-TERM");
    let status = server.wait();
    let took = asked.elapsed();
    eprintln!("stopped {took:?} after SIGTERM, drain period {DRAIN:?}");
    assert!(status.success(), "{status}");
    assert!(
        took < DRAIN + Duration::from_secs(2),
        "the service took {took:?} to stop"
    );
    drop((stalled, unread));
}

/// The messages a channel receives, as a stream of requests.
fn tokio_stream_of<T: Send + 'static>(
    receiver: tokio::sync::mpsc::Receiver<T>,
) -> impl futures_util::Stream<Item = T> + Send + 'static {
    futures_util::stream::unfold(receiver, |mut receiver| async move {
        receiver.recv().await.map(|item| (item, receiver))
    })
}

/// An fsync or fdatasync of the WAL that completed, a write of WAL frames, or an answer.
#[derive(Debug, PartialEq)]
enum Step {
    WalWrite,
    WalSynced,
    Answer,
}

/// The steps of an `strace -f -y` trace in the order they happened, leaving out syncs by
/// the threads in `excluded` (the checkpointer syncs the WAL too, on its own schedule).
fn steps(trace: &str, excluded: &[u32]) -> Vec<Step> {
    let mut pending: HashMap<u32, String> = HashMap::new();
    let mut steps = Vec::new();
    for line in trace.lines() {
        let Some((tid, call)) = line.split_once(' ') else {
            continue;
        };
        let Ok(tid) = tid.parse::<u32>() else { continue };
        let call = call.trim_start();
        let (call, completed) = if let Some(started) = call.strip_suffix(" <unfinished ...>") {
            pending.insert(tid, started.to_owned());
            (started.to_owned(), false)
        } else if call.starts_with("<... ") {
            let Some(started) = pending.remove(&tid) else { continue };
            let ok = call.ends_with("= 0") || !call.contains("= -1");
            (started, ok)
        } else {
            let ok = !call.contains("= -1");
            (call.to_owned(), ok)
        };
        let name = call.split('(').next().unwrap_or_default();
        let on_wal = call.contains("-wal>");
        let started = !completed || !line.contains("resumed>");
        match name {
            "pwrite64" | "pwritev" | "pwritev2" | "write" if on_wal && started => steps.push(Step::WalWrite),
            "fsync" | "fdatasync" if on_wal && completed && !excluded.contains(&tid) => steps.push(Step::WalSynced),
            "write" | "writev" | "sendto" | "sendmsg"
                if call.contains("<socket:") && call.contains("HTTP/1.1 200") && started =>
            {
                steps.push(Step::Answer)
            }
            _ => {}
        }
    }
    steps
}

/// Answers given while WAL frames written before them were not yet synced.
fn answers_before_their_fsync(steps: &[Step]) -> (usize, usize) {
    let (mut answers, mut early) = (0, 0);
    let mut unsynced = false;
    for step in steps {
        match step {
            Step::WalWrite => unsynced = true,
            Step::WalSynced => unsynced = false,
            Step::Answer => {
                answers += 1;
                if unsynced {
                    early += 1;
                }
            }
        }
    }
    (answers, early)
}

#[test]
fn the_trace_reader_catches_an_answer_before_its_fsync() {
    let synced = "7 pwrite64(11</d/incidents.db-wal>, \"\\0\"..., 4096, 56) = 4096\n\
                  6 fdatasync(27</d/incidents.db-wal> <unfinished ...>\n\
                  5 writev(3<anon_inode:[eventfd]>, ...) = 8\n\
                  6 <... fdatasync resumed>) = 0\n\
                  4 writev(26<socket:[74607]>, [{iov_base=\"HTTP/1.1 200 OK\\r\\n\"...}], 2) = 260\n";
    assert_eq!(answers_before_their_fsync(&steps(synced, &[])), (1, 0));
    let unsynced = "7 pwrite64(11</d/incidents.db-wal>, \"\\0\"..., 4096, 56) = 4096\n\
                    4 writev(26<socket:[74607]>, [{iov_base=\"HTTP/1.1 200 OK\\r\\n\"...}], 2) = 260\n\
                    6 fdatasync(27</d/incidents.db-wal>) = 0\n";
    assert_eq!(answers_before_their_fsync(&steps(unsynced, &[])), (1, 1));
    let by_the_checkpointer = "7 pwrite64(11</d/incidents.db-wal>, \"\\0\"..., 4096, 56) = 4096\n\
                               8 fsync(25</d/incidents.db-wal>) = 0\n\
                               4 writev(26<socket:[74607]>, [{iov_base=\"HTTP/1.1 200 OK\\r\\n\"...}], 2) = 260\n";
    assert_eq!(answers_before_their_fsync(&steps(by_the_checkpointer, &[8])), (1, 1));
}

/// The threads of `pid` named `name` (as `/proc` shortens it).
fn threads_named(pid: u32, name: &str) -> Vec<u32> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .expect("procfs")
        .filter_map(|task| {
            let task = task.ok()?;
            let comm = std::fs::read_to_string(task.path().join("comm")).ok()?;
            (comm.trim() == name).then(|| task.file_name().to_str()?.parse().ok())?
        })
        .collect()
}

#[tokio::test]
async fn every_answer_waits_for_the_fsync_of_its_commit() {
    assert!(
        Command::new("strace")
            .arg("-V")
            .output()
            .is_ok_and(|output| output.status.success()),
        "strace is required by this test (Debian package strace; scripts/test.sh installs it)"
    );
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("trace");
    let wrapper = [
        "strace",
        "-f",
        "-y",
        "-s",
        "32",
        "-e",
        "trace=pwrite64,pwritev,pwritev2,write,writev,sendto,sendmsg,fsync,fdatasync",
        "-o",
        trace.to_str().unwrap(),
    ];
    let server = ServiceProcess::launch(
        dir.path(),
        Launch {
            wrapper: wrapper.iter().map(|part| part.to_string()).collect(),
            ..Launch::default()
        },
    )
    .await;
    let children = std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", server.child_id())).unwrap();
    let service: u32 = children
        .split_whitespace()
        .next()
        .expect("the traced service")
        .parse()
        .unwrap();
    let checkpointer = threads_named(service, "sqlite-checkpoi");
    assert_eq!(checkpointer.len(), 1, "the checkpointer thread");

    let client = reqwest::Client::new();
    for index in 0..30 {
        let answer = client
            .post(format!("{}/v1/events", server.base))
            .json(&json!({"source": "api", "title": format!("durable {index}")}))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 200);
    }
    signal_process(service, "-TERM");
    assert!(server.wait().success());

    let trace = std::fs::read_to_string(&trace).unwrap();
    let steps = steps(&trace, &checkpointer);
    let wal_writes = steps.iter().filter(|step| **step == Step::WalWrite).count();
    let (answers, early) = answers_before_their_fsync(&steps);
    assert!(wal_writes >= 30, "{wal_writes} WAL writes traced");
    assert!(answers >= 30, "{answers} answers traced");
    assert_eq!(
        early, 0,
        "{early} of {answers} answers were written before the fsync of their commit"
    );
}
