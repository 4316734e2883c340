//! `POST /v1/events`: one event or a batch, stored before the answer.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use lim_domain::event::ObjectOnly;
use lim_domain::{Category, IngestOutcome, RawBatch, RawEvent, Severity};
use serde::Serialize;

use super::error::ApiError;
use super::extract::{json_bytes, parse_json};
use crate::incidents::IncidentManager;

/// What one event did.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct EventResult {
    /// The incident the event opened, joined or resolved; absent when it was ignored.
    pub incident_id: Option<lim_domain::IncidentId>,
    /// `created`, `deduplicated`, `redelivered` (the same occurrence again: same
    /// fingerprint and `occurred_at` as the last one counted, so not counted twice),
    /// `resolved` or `ignored` (a `resolved` event with nothing open).
    #[schema(value_type = String)]
    pub outcome: &'static str,
    /// True when the event joined an incident that was already open.
    pub deduplicated: bool,
    /// The incident's occurrence count after this event, when it names an incident.
    pub occurrence_count: Option<i64>,
    /// The incident's severity as stored after this event.
    pub severity: Option<Severity>,
    /// The incident's category as stored after this event.
    pub category: Option<Category>,
}

/// An event as senders write it (the schema of `RawEvent`, which validation turns into an `Event`).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // describes the wire format only
pub struct EventBody {
    /// Required. sentinel, shield, edge-agent, governance, alertmanager, prometheus, grafana, pagerduty, api, manual, other.
    source: lim_domain::Source,
    /// Required, at most 512 characters.
    title: String,
    /// At most 16 KiB.
    description: Option<String>,
    /// P0..P4, or critical/high/medium/low/info (PagerDuty: critical/error/warning/info). Default P2.
    severity: Option<lim_domain::Severity>,
    /// Default `other`.
    category: Option<lim_domain::Category>,
    /// At most 64 string pairs.
    labels: Option<std::collections::BTreeMap<String, String>>,
    /// The dedup key; default: a hash of source, title and sorted labels.
    fingerprint: Option<String>,
    /// `firing` (default) or `resolved`.
    status: Option<lim_domain::EventStatus>,
    /// RFC 3339; default: when it was received.
    occurred_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// Results of a batch, in the order of its events.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct BatchResult {
    pub results: Vec<EventResult>,
}

impl From<&IngestOutcome> for EventResult {
    fn from(outcome: &IngestOutcome) -> Self {
        let (occurrence_count, severity, category) = match outcome {
            IngestOutcome::Created(incident) => (
                Some(incident.occurrence_count),
                Some(incident.severity),
                Some(incident.category),
            ),
            IngestOutcome::Deduplicated {
                occurrence_count,
                severity,
                category,
                ..
            }
            | IngestOutcome::Redelivered {
                occurrence_count,
                severity,
                category,
                ..
            } => (Some(*occurrence_count), Some(*severity), Some(*category)),
            IngestOutcome::Resolved(transition) => (
                Some(transition.after.occurrence_count),
                Some(transition.after.severity),
                Some(transition.after.category),
            ),
            IngestOutcome::Ignored => (None, None, None),
        };
        EventResult {
            incident_id: outcome.incident_id(),
            outcome: outcome.name(),
            deduplicated: matches!(
                outcome,
                IngestOutcome::Deduplicated { .. } | IngestOutcome::Redelivered { .. }
            ),
            occurrence_count,
            severity,
            category,
        }
    }
}

/// True when a body is a batch (an array): its first character other than white space
/// is `[`. Anything else is read as one event (and refused unless it is an object).
pub fn is_batch(bytes: &[u8]) -> bool {
    bytes.iter().find(|byte| !byte.is_ascii_whitespace()) == Some(&b'[')
}

/// Submit one event (an object) or a batch of up to 1,000 (an array).
///
/// A 200 answer means every event is durably stored. A batch is all or nothing: one
/// invalid event refuses the whole batch, naming its index.
#[utoipa::path(
    post,
    path = "/v1/events",
    tag = "events",
    request_body(content = Vec<EventBody>, description = "An event object, or an array of up to 1,000 of them", content_type = "application/json"),
    responses((status = 200, description = "Stored; one result for an object, `results` for an array", body = BatchResult))
)]
pub async fn submit_events(
    State(manager): State<Arc<IncidentManager>>,
    request: Request,
) -> Result<Response, ApiError> {
    let bytes = json_bytes(request).await?;
    if is_batch(&bytes) {
        let RawBatch(events) = parse_json(&bytes)?;
        let outcomes = manager.ingest(events).await?;
        let results = outcomes.iter().map(EventResult::from).collect();
        return Ok(Json(BatchResult { results }).into_response());
    }
    let ObjectOnly(event): ObjectOnly<RawEvent> = parse_json(&bytes)?;
    let outcome = manager.ingest_one(event).await?;
    Ok(Json(EventResult::from(&outcome)).into_response())
}
