//! A small client of the gRPC API: sends an event, streams a few more, reads the incident
//! back with its timeline, acknowledges it, and prints the changes a watch sees meanwhile.
//!
//! ```text
//! cargo run -p llm-incident-manager --example grpc_client -- http://127.0.0.1:8081
//! ```

use std::collections::HashMap;
use std::time::Duration;

use futures_util::StreamExt;
use lim_proto::v1::event_service_client::EventServiceClient;
use lim_proto::v1::incident_service_client::IncidentServiceClient;
use lim_proto::v1::{
    AcknowledgeIncidentRequest, Category, Event, GetIncidentRequest, GetTimelineRequest, Severity, Source,
    SubmitEventRequest, WatchIncidentsRequest,
};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let server = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "http://127.0.0.1:8081".into());
    let channel = tonic::transport::Channel::from_shared(server)?.connect().await?;
    let mut events = EventServiceClient::new(channel.clone());
    let mut incidents = IncidentServiceClient::new(channel);

    // Every change from now on, printed as it comes.
    let mut changes = incidents
        .watch_incidents(WatchIncidentsRequest::default())
        .await?
        .into_inner();
    let watcher = tokio::spawn(async move {
        while let Some(Ok(change)) = changes.next().await {
            let kind = change.kind();
            let incident = change.incident.unwrap_or_default();
            println!("watch: {kind:?} {} {}", incident.id, incident.title);
        }
    });

    let event = |title: &str| Event {
        source: Source::Sentinel as i32,
        title: title.into(),
        description: "p95 latency 2.4 s against a 1.5 s objective".into(),
        severity: Severity::P1 as i32,
        category: Category::Performance as i32,
        labels: HashMap::from([("model".into(), "gpt-4o".into())]),
        ..Event::default()
    };
    let result = events
        .submit_event(SubmitEventRequest {
            event: Some(event("p95 latency over SLO")),
        })
        .await?
        .into_inner()
        .result
        .unwrap_or_default();
    println!("submitted: {:?} {}", result.outcome(), result.incident_id);

    // A client stream: one answer at the end, one result per event.
    let stream = futures_util::stream::iter(["a", "b", "a"].map(|name| SubmitEventRequest {
        event: Some(event(&format!("queue depth high on worker {name}"))),
    }));
    let streamed = events.stream_events(stream).await?.into_inner();
    for result in streamed.results {
        println!("streamed: {:?} {}", result.outcome(), result.incident_id);
    }

    let id = result.incident_id;
    let incident = incidents
        .get_incident(GetIncidentRequest { id: id.clone() })
        .await?
        .into_inner();
    println!(
        "incident: {} {:?} {:?}",
        incident.title,
        incident.severity(),
        incident.state()
    );
    let acknowledged = incidents
        .acknowledge_incident(AcknowledgeIncidentRequest {
            id: id.clone(),
            actor: "example".into(),
        })
        .await?
        .into_inner();
    println!("acknowledged: {:?}", acknowledged.state());
    let timeline = incidents
        .get_timeline(GetTimelineRequest {
            id,
            ..GetTimelineRequest::default()
        })
        .await?
        .into_inner();
    for entry in timeline.entries {
        println!("timeline: {} {} {}", entry.kind, entry.actor, entry.message);
    }

    tokio::time::sleep(Duration::from_millis(500)).await;
    watcher.abort();
    Ok(())
}
