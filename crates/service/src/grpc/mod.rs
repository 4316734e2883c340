//! The gRPC API (DESIGN §8, `proto/incident_manager/v1`): `EventService` and
//! `IncidentService` over the same core as HTTP, the standard health service and server
//! reflection (v1 and v1alpha).
//!
//! The services are served as an axum router by the same connection loop as the HTTP
//! API (`http/server.rs`: bounded header time, drain on shutdown), behind the metrics
//! layer (`telemetry/grpc.rs`).

pub mod convert;
pub mod events;
pub mod incidents;
pub mod status;
pub mod watch;

use std::sync::Arc;
use std::time::Duration;

use lim_proto::v1::event_service_server::EventServiceServer;
use lim_proto::v1::incident_service_server::IncidentServiceServer;
use tokio::sync::watch as signal;
use tonic::service::Routes;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use crate::incidents::IncidentManager;
use crate::telemetry::Metrics;
use crate::telemetry::grpc::{METHODS, track_grpc};
pub use watch::WatchHub;

/// How often the health service asks the store whether it answers.
pub const HEALTH_INTERVAL: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy)]
pub struct GrpcOptions {
    /// Largest request message; larger ones get `RESOURCE_EXHAUSTED`.
    pub max_message_bytes: usize,
    /// How long an event stream may go without an event.
    pub idle_timeout: Duration,
}

/// Every service, behind the metrics layer, as one router; and the health reporter the
/// caller keeps up to date ([`Health`]).
pub fn router(
    manager: Arc<IncidentManager>,
    hub: Arc<WatchHub>,
    metrics: Arc<Metrics>,
    keys: Arc<crate::auth::Keys>,
    options: GrpcOptions,
) -> (axum::Router, HealthReporter) {
    let (reporter, health) = tonic_health::server::health_reporter();
    let events = EventServiceServer::new(events::Events::new(
        Arc::clone(&manager),
        options.idle_timeout,
        Arc::clone(&keys),
    ))
    .max_decoding_message_size(options.max_message_bytes);
    let incidents = IncidentServiceServer::new(incidents::Incidents::new(manager, hub, Arc::clone(&keys)))
        .max_decoding_message_size(options.max_message_bytes);
    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(lim_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .expect("the compiled descriptors are valid");
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(lim_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()
        .expect("the compiled descriptors are valid");
    let routes = Routes::new(events)
        .add_service(incidents)
        .add_service(health)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha);
    let router = routes
        .prepare()
        .into_axum_router()
        .layer(axum::middleware::from_fn_with_state(
            keys,
            crate::auth::require_grpc_key,
        ))
        // Outermost, so that refusals are counted too.
        .layer(axum::middleware::from_fn_with_state(metrics, track_grpc));
    (router, reporter)
}

/// Keeps the health service's answer true: SERVING (the server, `""`, and each of our
/// services) while the store answers, NOT_SERVING when it does not, and NOT_SERVING for
/// good once stopped.
pub struct Health {
    manager: Arc<IncidentManager>,
    reporter: HealthReporter,
    last: Option<ServingStatus>,
}

impl Health {
    pub fn new(manager: Arc<IncidentManager>, reporter: HealthReporter) -> Health {
        Health {
            manager,
            reporter,
            last: None,
        }
    }

    /// Asks the store, and sets every service's status when it changed. Awaited once
    /// before the gRPC API serves, so that no client finds one of our services unknown
    /// (`NOT_FOUND`) while the first answer is on its way.
    pub async fn report(&mut self) {
        let answered = tokio::time::timeout(HEALTH_INTERVAL * 2, self.manager.ready()).await;
        let status = match answered
            .map_err(|_| "no answer in time".to_owned())
            .and_then(|ready| ready.map_err(|error| error.to_string()))
        {
            Ok(()) => ServingStatus::Serving,
            Err(error) => {
                if self.last != Some(ServingStatus::NotServing) {
                    tracing::warn!(%error, "the store does not answer; gRPC health is NOT_SERVING");
                }
                ServingStatus::NotServing
            }
        };
        if self.last != Some(status) {
            self.set_all(status).await;
            self.last = Some(status);
        }
    }

    /// Reports every [`HEALTH_INTERVAL`] until `stopped`, then NOT_SERVING.
    pub async fn keep(mut self, mut stopped: signal::Receiver<bool>) {
        loop {
            tokio::select! {
                () = tokio::time::sleep(HEALTH_INTERVAL) => {}
                () = watch::closed(&mut stopped) => {
                    self.set_all(ServingStatus::NotServing).await;
                    return;
                }
            }
            self.report().await;
        }
    }

    async fn set_all(&self, status: ServingStatus) {
        self.reporter.set_service_status("", status).await;
        for (service, _) in METHODS
            .iter()
            .filter(|(service, _)| service.starts_with("incident_manager."))
        {
            self.reporter.set_service_status(service, status).await;
        }
    }
}
