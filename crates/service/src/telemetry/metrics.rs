//! The one place where metric names, help texts, types, labels and buckets are spelled.
//!
//! Business code does not touch families directly: it calls the named events at the
//! bottom of this file (`incident_created`, `transitioned`, …), each of which records
//! everything the seed says happens at that moment.

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use lim_domain::triage::LlmErrorType;
use lim_domain::{
    Category, ChannelKind, Incident, IncidentId, JobKind, Severity, Source, State, TimelineKind, Transition,
};
use lim_store::{JobCount, OpenCount, PoolStats};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Metric, Registry};

use super::process::ProcessCollector;

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// HTTP: 1 ms to 10 s.
const HTTP_BUCKETS: [f64; 12] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];
/// Database: 100 µs to 5 s.
const DB_BUCKETS: [f64; 12] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 5.0,
];
/// Jobs and deliveries: 1 ms to a minute.
const JOB_BUCKETS: [f64; 12] = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 60.0];
/// LLM requests: 100 ms to a minute.
const LLM_BUCKETS: [f64; 10] = [0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0, 60.0];
/// Time to acknowledge or resolve: 1 minute to 1 day.
const LIFECYCLE_BUCKETS: [f64; 10] = [
    60.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0, 14_400.0, 28_800.0, 43_200.0, 86_400.0,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    pub method: &'static str,
    pub path: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpFlightLabels {
    pub method: &'static str,
    pub path: String,
}

/// `service` is the full name (`incident_manager.v1.IncidentService`), `method` the bare
/// one (`GetIncident`), `code` the canonical upper-case name (`OK`, `NOT_FOUND`, …).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GrpcLabels {
    service: &'static str,
    method: &'static str,
    code: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GrpcMethodLabels {
    service: &'static str,
    method: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationLabels {
    operation: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct IncidentLabels {
    severity: &'static str,
    source: &'static str,
    category: &'static str,
}

impl IncidentLabels {
    fn new(severity: Severity, source: Source, category: Category) -> Self {
        IncidentLabels {
            severity: severity.as_str(),
            source: source.as_str(),
            category: category.as_str(),
        }
    }

    fn of(incident: &Incident) -> Self {
        Self::new(incident.severity, incident.source, incident.category)
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceLabels {
    source: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SeverityLabels {
    severity: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SeveritySourceLabels {
    severity: &'static str,
    source: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TransitionLabels {
    from_state: &'static str,
    to_state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct JobTypeLabels {
    job_type: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct JobStatusLabels {
    job_type: &'static str,
    status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ChannelLabels {
    channel: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ChannelStatusLabels {
    channel: &'static str,
    status: &'static str,
}

/// One LLM request: the provider, the configured model (a bounded set: the operator's),
/// the operation, and how it ended (`success`, `error`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LlmRequestLabels {
    pub provider: &'static str,
    pub model: String,
    pub operation: &'static str,
    pub status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LlmOperationLabels {
    provider: &'static str,
    model: String,
    operation: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LlmTokenLabels {
    provider: &'static str,
    model: String,
    token_type: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LlmModelLabels {
    provider: &'static str,
    model: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LlmErrorLabels {
    provider: &'static str,
    model: String,
    error_type: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CacheLabels {
    cache: &'static str,
}

/// What one successful LLM request used.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LlmUsage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    /// USD.
    pub cost: f64,
}

/// A configured escalation policy's name (a bounded set) and a level number.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EscalationLabels {
    policy: String,
    level: String,
}

/// How an attempt of a delivery ended (the `status` of `notifications_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    Sent,
    /// Failed; another attempt follows.
    Failed,
    /// Failed, and no attempt follows.
    Dead,
}

impl Delivery {
    const fn label(self) -> &'static str {
        match self {
            Delivery::Sent => "sent",
            Delivery::Failed => "failed",
            Delivery::Dead => "dead",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
    backend: &'static str,
}

pub struct Metrics {
    registry: Registry,
    pub http_requests: Family<HttpLabels, Counter>,
    pub http_duration: HistogramFamily<HttpLabels>,
    pub http_in_flight: Family<HttpFlightLabels, Gauge>,
    grpc_requests: Family<GrpcLabels, Counter>,
    grpc_duration: HistogramFamily<GrpcMethodLabels>,
    auth_failures: Family<ReasonLabels, Counter>,
    db_query_duration: HistogramFamily<OperationLabels>,
    db_connections_in_use: Gauge,
    db_connections_idle: Gauge,
    db_connections_max: Gauge,
    incidents_created: Family<IncidentLabels, Counter>,
    incidents_active: Family<IncidentLabels, Gauge>,
    oldest_unacknowledged: Family<SeverityLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    incidents_deduplicated: Family<SourceLabels, Counter>,
    acknowledgment_duration: HistogramFamily<SeverityLabels>,
    incidents_resolved: Family<IncidentLabels, Counter>,
    resolution_duration: HistogramFamily<SeveritySourceLabels>,
    state_transitions: Family<TransitionLabels, Counter>,
    active_label_sets: Mutex<HashSet<IncidentLabels>>,
    job_executions: Family<JobStatusLabels, Counter>,
    job_duration: HistogramFamily<JobTypeLabels>,
    jobs_dead: Family<JobTypeLabels, Counter>,
    job_queue_depth: Family<JobTypeLabels, Gauge>,
    jobs_in_progress: Family<JobTypeLabels, Gauge>,
    notifications: Family<ChannelStatusLabels, Counter>,
    notification_duration: HistogramFamily<ChannelLabels>,
    escalations: Family<EscalationLabels, Counter>,
    escalation_last_levels: Family<EscalationLabels, Gauge>,
    llm_requests: Family<LlmRequestLabels, Counter>,
    llm_duration: HistogramFamily<LlmOperationLabels>,
    llm_tokens: Family<LlmTokenLabels, Counter>,
    llm_cost: Family<LlmModelLabels, Counter<f64, std::sync::atomic::AtomicU64>>,
    llm_errors: Family<LlmErrorLabels, Counter>,
    cache_hits: Family<CacheLabels, Counter>,
    cache_misses: Family<CacheLabels, Counter>,
    config_reload_successful: Gauge,
    config_reload_success_time: Gauge<f64, std::sync::atomic::AtomicU64>,
}

impl Metrics {
    pub fn new(backend: &'static str) -> Self {
        let mut registry = Registry::default();
        let build_info = Family::<BuildLabels, Gauge>::default();
        build_info
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION"),
                backend,
            })
            .set(1);
        registry.register("build_info", "Version of the running binary (always 1)", build_info);
        registry.register_collector(Box::new(ProcessCollector::new()));
        let metrics = Metrics {
            // Counters are registered without `_total`: the encoder appends it.
            http_requests: registered(
                &mut registry,
                "http_requests",
                "HTTP requests answered, by route template and status",
                Family::default(),
            ),
            http_duration: registered(
                &mut registry,
                "http_request_duration_seconds",
                "HTTP request latency in seconds",
                histograms(http_histogram),
            ),
            http_in_flight: registered(
                &mut registry,
                "http_requests_in_flight",
                "HTTP requests being served",
                Family::default(),
            ),
            grpc_requests: registered(
                &mut registry,
                "grpc_requests",
                "gRPC calls answered, by service, method and status code",
                Family::default(),
            ),
            grpc_duration: registered(
                &mut registry,
                "grpc_request_duration_seconds",
                "gRPC call latency in seconds (a stream's: until it ends)",
                histograms(http_histogram),
            ),
            auth_failures: registered(
                &mut registry,
                "auth_failures",
                "Requests refused for their API key, by reason",
                Family::default(),
            ),
            db_query_duration: registered(
                &mut registry,
                "database_query_duration_seconds",
                "Store operation latency in seconds, by operation",
                histograms(db_histogram),
            ),
            db_connections_in_use: registered(
                &mut registry,
                "database_connections_in_use",
                "Database connections in use",
                Gauge::default(),
            ),
            db_connections_idle: registered(
                &mut registry,
                "database_connections_idle",
                "Idle database connections",
                Gauge::default(),
            ),
            db_connections_max: registered(
                &mut registry,
                "database_connections_max",
                "Configured maximum of database connections",
                Gauge::default(),
            ),
            incidents_created: registered(&mut registry, "incidents", "Incidents opened", Family::default()),
            incidents_active: registered(
                &mut registry,
                "incidents_active",
                "Open (not resolved) incidents, as the store counts them",
                Family::default(),
            ),
            oldest_unacknowledged: registered(
                &mut registry,
                "incidents_unacknowledged_oldest_timestamp_seconds",
                "Unix seconds of the creation of the oldest open incident nobody has acknowledged, by severity",
                Family::default(),
            ),
            incidents_deduplicated: registered(
                &mut registry,
                "incidents_deduplicated",
                "Events attached to an already open incident",
                Family::default(),
            ),
            acknowledgment_duration: registered(
                &mut registry,
                "incident_acknowledgment_duration_seconds",
                "Time from creation to first acknowledgement",
                histograms(lifecycle_histogram),
            ),
            incidents_resolved: registered(
                &mut registry,
                "incidents_resolved",
                "Incidents resolved",
                Family::default(),
            ),
            resolution_duration: registered(
                &mut registry,
                "incident_resolution_duration_seconds",
                "Time from creation to resolution",
                histograms(lifecycle_histogram),
            ),
            state_transitions: registered(
                &mut registry,
                "incident_state_transitions",
                "Incident state changes",
                Family::default(),
            ),
            active_label_sets: Mutex::default(),
            job_executions: registered(
                &mut registry,
                "job_executions",
                "Job attempts, by job type and outcome",
                Family::default(),
            ),
            job_duration: registered(
                &mut registry,
                "job_duration_seconds",
                "Time a job attempt took, in seconds",
                histograms(job_histogram),
            ),
            jobs_dead: registered(
                &mut registry,
                "jobs_dead",
                "Jobs whose attempts ran out, parked in the dead state",
                Family::default(),
            ),
            job_queue_depth: registered(
                &mut registry,
                "job_queue_depth",
                "Jobs waiting (due now or later), as the store counts them",
                Family::default(),
            ),
            jobs_in_progress: registered(
                &mut registry,
                "jobs_in_progress",
                "Jobs this process is running",
                Family::default(),
            ),
            notifications: registered(
                &mut registry,
                "notifications",
                "Notification delivery attempts, by channel type and outcome",
                Family::default(),
            ),
            notification_duration: registered(
                &mut registry,
                "notification_duration_seconds",
                "Time a delivery attempt took, in seconds",
                histograms(job_histogram),
            ),
            escalations: registered(
                &mut registry,
                "escalations",
                "Escalation levels reached, once per incident, by policy and level",
                Family::default(),
            ),
            escalation_last_levels: registered(
                &mut registry,
                "escalation_policy_last_level",
                "1 for the last level of each configured escalation policy (join with escalations_total)",
                Family::default(),
            ),
            llm_requests: registered(
                &mut registry,
                "llm_requests",
                "HTTP requests to LLM providers, by outcome (a retry is another request)",
                Family::default(),
            ),
            llm_duration: registered(
                &mut registry,
                "llm_request_duration_seconds",
                "Time an LLM provider request took, in seconds",
                histograms(llm_histogram),
            ),
            llm_tokens: registered(
                &mut registry,
                "llm_tokens",
                "Tokens LLM providers counted, by type (prompt, completion)",
                Family::default(),
            ),
            llm_cost: registered(
                &mut registry,
                "llm_cost_dollars",
                "What LLM requests cost, in USD, from the price table",
                Family::default(),
            ),
            llm_errors: registered(
                &mut registry,
                "llm_errors",
                "Failed LLM operations' attempts, by error type",
                Family::default(),
            ),
            cache_hits: registered(
                &mut registry,
                "cache_hits",
                "Answers served from a cache",
                Family::default(),
            ),
            cache_misses: registered(
                &mut registry,
                "cache_misses",
                "Answers a cache did not have",
                Family::default(),
            ),
            config_reload_successful: registered(
                &mut registry,
                "config_last_reload_successful",
                "Whether the last configuration load or reload succeeded (1) or was refused (0)",
                Gauge::default(),
            ),
            config_reload_success_time: registered(
                &mut registry,
                "config_last_reload_success_timestamp_seconds",
                "When the configuration was last loaded or reloaded successfully, in Unix seconds",
                Gauge::default(),
            ),
            registry,
        };
        // The LLM answers' cache is exported from the start too.
        let llm_cache = CacheLabels { cache: "llm" };
        let _ = metrics.cache_hits.get_or_create(&llm_cache);
        let _ = metrics.cache_misses.get_or_create(&llm_cache);
        // Every job type is exported from the start, at zero while idle.
        for kind in JobKind::ALL {
            let labels = JobTypeLabels {
                job_type: kind.as_str(),
            };
            let _ = metrics.job_queue_depth.get_or_create(&labels);
            let _ = metrics.jobs_in_progress.get_or_create(&labels);
        }
        metrics
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    // ----- named events: each records everything its moment changes -----

    /// A gRPC call ended with `code`, `elapsed` after it began.
    pub fn grpc_finished(&self, service: &'static str, method: &'static str, code: &'static str, elapsed: Duration) {
        self.grpc_requests
            .get_or_create(&GrpcLabels { service, method, code })
            .inc();
        self.grpc_duration
            .get_or_create(&GrpcMethodLabels { service, method })
            .observe(elapsed.as_secs_f64());
    }

    /// A request was refused for its key: `missing`, `invalid`, `revoked`, `forbidden`
    /// or `rate_limited`.
    pub fn auth_failed(&self, reason: &'static str) {
        self.auth_failures.get_or_create(&ReasonLabels { reason }).inc();
    }

    pub fn query_finished(&self, operation: &'static str, elapsed: Duration) {
        self.db_query_duration
            .get_or_create(&OperationLabels { operation })
            .observe(elapsed.as_secs_f64());
    }

    /// A new incident; one a route assigned at once also counts its NEW → ASSIGNED.
    pub fn incident_created(&self, incident: &Incident) {
        tracing::debug!(id = %incident.id, severity = %incident.severity, source = %incident.source, title = %incident.title, route = incident.route.as_deref().unwrap_or("none"), "incident opened");
        self.incidents_created
            .get_or_create(&IncidentLabels::of(incident))
            .inc();
        if incident.state != State::New {
            self.state_transitions
                .get_or_create(&TransitionLabels {
                    from_state: State::New.as_str(),
                    to_state: incident.state.as_str(),
                })
                .inc();
        }
    }

    pub fn incident_deduplicated(&self, source: Source) {
        tracing::trace!(%source, "event deduplicated");
        self.incidents_deduplicated
            .get_or_create(&SourceLabels {
                source: source.as_str(),
            })
            .inc();
    }

    /// A repeat event raised an open incident's severity. Nothing is counted here:
    /// `incidents_active` follows the store, and moves at the next scrape.
    pub fn severity_raised(&self, id: IncidentId, from: Severity, to: Severity) {
        tracing::info!(%id, %from, %to, "severity raised by a repeat event");
    }

    pub fn transitioned(&self, transition: &Transition) {
        let (before, after) = (&transition.before, &transition.after);
        let entry = &transition.entry;
        tracing::info!(id = %after.id, from = %before.state, to = %after.state, actor = %entry.actor, "{}", entry.message);
        // A reclassification or an LLM's insights is no state change; `incidents_active`
        // follows a reclassification at the next scrape, as it follows everything else
        // (see `set_active`).
        if matches!(transition.entry.kind, TimelineKind::Classified | TimelineKind::Insights) {
            return;
        }
        self.state_transitions
            .get_or_create(&TransitionLabels {
                from_state: before.state.as_str(),
                to_state: after.state.as_str(),
            })
            .inc();
        if transition.first_acknowledgement() {
            let waited = seconds_between(after.created_at, after.acknowledged_at.unwrap_or(after.updated_at));
            self.acknowledgment_duration
                .get_or_create(&SeverityLabels {
                    severity: after.severity.as_str(),
                })
                .observe(waited);
        }
        if after.state == State::Resolved && before.state.is_open() {
            let labels = IncidentLabels::of(after);
            self.incidents_resolved.get_or_create(&labels).inc();
            let took = seconds_between(after.created_at, after.resolved_at.unwrap_or(after.updated_at));
            self.resolution_duration
                .get_or_create(&SeveritySourceLabels {
                    severity: after.severity.as_str(),
                    source: after.source.as_str(),
                })
                .observe(took);
        }
    }

    /// Sets `incidents_active` to the store's counts, the only way it changes (at start-up
    /// and before every scrape), so it cannot drift from the store; label sets no longer
    /// open drop to 0.
    pub fn set_active(&self, open: &[OpenCount]) {
        let counts: HashMap<IncidentLabels, i64> = open
            .iter()
            .map(|count| {
                (
                    IncidentLabels::new(count.severity, count.source, count.category),
                    count.count,
                )
            })
            .collect();
        // Families cannot be iterated, so the sets ever seen are remembered: one that
        // drops to 0 is written as 0 rather than left at its last value.
        let mut known = self.active_label_sets.lock().unwrap_or_else(PoisonError::into_inner);
        known.extend(counts.keys().cloned());
        for labels in known.iter() {
            let value = counts.get(labels).copied().unwrap_or(0);
            self.incidents_active.get_or_create(labels).set(value);
        }
        drop(known);
        self.set_oldest_unacknowledged(open);
    }

    /// One series per severity with an unacknowledged open incident, none for the others
    /// (an alert on its age then has nothing to fire on).
    fn set_oldest_unacknowledged(&self, open: &[OpenCount]) {
        let mut oldest: HashMap<Severity, chrono::DateTime<chrono::Utc>> = HashMap::new();
        for (severity, created) in open
            .iter()
            .filter_map(|count| Some((count.severity, count.oldest_unacknowledged?)))
        {
            oldest
                .entry(severity)
                .and_modify(|at| *at = (*at).min(created))
                .or_insert(created);
        }
        // Series set or removed one by one, never cleared: a scrape running meanwhile (two
        // Prometheus servers) must not see a severity vanish and come back.
        for &severity in Severity::ALL {
            let labels = SeverityLabels {
                severity: severity.as_str(),
            };
            match oldest.get(&severity) {
                Some(created) => {
                    self.oldest_unacknowledged
                        .get_or_create(&labels)
                        .set(created.timestamp_micros() as f64 / 1e6);
                }
                None => {
                    self.oldest_unacknowledged.remove(&labels);
                }
            }
        }
    }

    /// An attempt of a job ended: `succeeded`, or failed (`dead` when no attempt follows).
    pub fn job_attempted(&self, kind: JobKind, succeeded: bool, dead: bool, elapsed: Duration) {
        let job_type = kind.as_str();
        let status = if succeeded { "success" } else { "failure" };
        self.job_executions
            .get_or_create(&JobStatusLabels { job_type, status })
            .inc();
        self.job_duration
            .get_or_create(&JobTypeLabels { job_type })
            .observe(elapsed.as_secs_f64());
        if dead {
            self.jobs_dead.get_or_create(&JobTypeLabels { job_type }).inc();
        }
    }

    /// A job starts (`+1`) or ends (`-1`) in this process.
    pub fn job_running(&self, kind: JobKind, change: i64) {
        self.jobs_in_progress
            .get_or_create(&JobTypeLabels {
                job_type: kind.as_str(),
            })
            .inc_by(change);
    }

    /// An attempt of a delivery ended.
    pub fn delivery_attempted(&self, channel: ChannelKind, outcome: Delivery, elapsed: Duration) {
        self.notifications
            .get_or_create(&ChannelStatusLabels {
                channel: channel.as_str(),
                status: outcome.label(),
            })
            .inc();
        self.notification_duration
            .get_or_create(&ChannelLabels {
                channel: channel.as_str(),
            })
            .observe(elapsed.as_secs_f64());
    }

    /// Sets `job_queue_depth` to the store's counts, every kind (at zero when none waits).
    pub fn set_queued(&self, counts: &[JobCount]) {
        for kind in JobKind::ALL {
            let queued = counts
                .iter()
                .find(|count| count.kind == *kind)
                .map_or(0, |count| count.queued);
            self.job_queue_depth
                .get_or_create(&JobTypeLabels {
                    job_type: kind.as_str(),
                })
                .set(queued);
        }
    }

    /// An incident reached `level` of escalation policy `policy` (the first time).
    pub fn escalated(&self, policy: &str, level: u32) {
        self.escalations
            .get_or_create(&EscalationLabels {
                policy: policy.to_owned(),
                level: level.to_string(),
            })
            .inc();
    }

    /// A request to an LLM provider ended: with the tokens it used and what they cost, or
    /// with an error.
    pub fn llm_requested(
        &self,
        request: &LlmRequestLabels,
        elapsed: Duration,
        outcome: Result<LlmUsage, LlmErrorType>,
    ) {
        let status = if outcome.is_ok() { "success" } else { "error" };
        self.llm_requests
            .get_or_create(&LlmRequestLabels {
                status,
                ..request.clone()
            })
            .inc();
        self.llm_duration
            .get_or_create(&LlmOperationLabels {
                provider: request.provider,
                model: request.model.clone(),
                operation: request.operation,
            })
            .observe(elapsed.as_secs_f64());
        match outcome {
            Ok(usage) => self.llm_billed(request, usage),
            Err(error_type) => self.llm_failed(request, error_type),
        }
    }

    /// What a provider's answer cost, whether or not it could be used (an answer that
    /// does not parse is billed too).
    pub fn llm_billed(&self, request: &LlmRequestLabels, usage: LlmUsage) {
        for (token_type, count) in [("prompt", usage.prompt_tokens), ("completion", usage.completion_tokens)] {
            self.llm_tokens
                .get_or_create(&LlmTokenLabels {
                    provider: request.provider,
                    model: request.model.clone(),
                    token_type,
                })
                .inc_by(count);
        }
        self.llm_cost
            .get_or_create(&LlmModelLabels {
                provider: request.provider,
                model: request.model.clone(),
            })
            .inc_by(usage.cost);
    }

    /// An LLM operation failed without a request (its provider's circuit is open), or its
    /// request's answer was refused.
    pub fn llm_failed(&self, request: &LlmRequestLabels, error_type: LlmErrorType) {
        self.llm_errors
            .get_or_create(&LlmErrorLabels {
                provider: request.provider,
                model: request.model.clone(),
                error_type: error_type.as_str(),
            })
            .inc();
    }

    /// A cache answered (`hit`) or did not.
    pub fn cache_looked_up(&self, cache: &'static str, hit: bool) {
        let family = if hit { &self.cache_hits } else { &self.cache_misses };
        family.get_or_create(&CacheLabels { cache }).inc();
    }

    /// The escalation policies of the configuration now running: one series per policy,
    /// labelled with its last level, so that an alert can tell when an incident reached
    /// the end of its policy (`escalations_total and on (policy, level) …`).
    pub fn set_escalation_policies<'a>(&self, policies: impl IntoIterator<Item = (&'a str, usize)>) {
        self.escalation_last_levels.clear();
        for (policy, levels) in policies {
            self.escalation_last_levels
                .get_or_create(&EscalationLabels {
                    policy: policy.to_owned(),
                    level: levels.to_string(),
                })
                .set(1);
        }
    }

    /// The configuration was loaded or reloaded (`succeeded`), or a reload was refused.
    pub fn config_reloaded(&self, succeeded: bool, at: chrono::DateTime<chrono::Utc>) {
        self.config_reload_successful.set(i64::from(succeeded));
        if succeeded {
            self.config_reload_success_time.set(at.timestamp_micros() as f64 / 1e6);
        }
    }

    pub fn set_pool(&self, stats: PoolStats) {
        self.db_connections_in_use.set(stats.in_use.into());
        self.db_connections_idle.set(stats.idle.into());
        self.db_connections_max.set(stats.max.into());
    }
}

/// Registers `metric` under `name` and hands it back: each family is spelled once.
fn registered<M: Metric + Clone>(registry: &mut Registry, name: &str, help: &str, metric: M) -> M {
    registry.register(name, help, metric.clone());
    metric
}

fn histograms<L: EncodeLabelSet + Clone + std::hash::Hash + Eq>(constructor: fn() -> Histogram) -> HistogramFamily<L> {
    HistogramFamily::new_with_constructor(constructor)
}

fn http_histogram() -> Histogram {
    Histogram::new(HTTP_BUCKETS)
}

fn db_histogram() -> Histogram {
    Histogram::new(DB_BUCKETS)
}

fn job_histogram() -> Histogram {
    Histogram::new(JOB_BUCKETS)
}

fn llm_histogram() -> Histogram {
    Histogram::new(LLM_BUCKETS)
}

fn lifecycle_histogram() -> Histogram {
    Histogram::new(LIFECYCLE_BUCKETS)
}

fn seconds_between(from: chrono::DateTime<chrono::Utc>, to: chrono::DateTime<chrono::Utc>) -> f64 {
    (to - from).to_std().map_or(0.0, |elapsed| elapsed.as_secs_f64())
}
