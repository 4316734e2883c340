//! `POST /v1/events`: one event or a batch, stored before the answer.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use lim_domain::RawEvent;
use lim_store::IngestOutcome;
use serde::Serialize;

use super::error::{ApiError, json_bytes, parse_json};
use crate::incidents::IncidentManager;

/// What one event did.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct EventResult {
    /// The incident the event opened, joined or resolved; absent when it was ignored.
    pub incident_id: Option<lim_domain::IncidentId>,
    /// `created`, `deduplicated`, `resolved` or `ignored`.
    pub outcome: &'static str,
    /// True when the event joined an incident that was already open.
    pub deduplicated: bool,
    /// The incident's occurrence count after this event, when it was counted.
    pub occurrence_count: Option<i64>,
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
        let (outcome_name, occurrence_count) = match outcome {
            IngestOutcome::Created(incident) => ("created", Some(incident.occurrence_count)),
            IngestOutcome::Deduplicated { occurrence_count, .. } => ("deduplicated", Some(*occurrence_count)),
            IngestOutcome::Resolved(transition) => ("resolved", Some(transition.after.occurrence_count)),
            IngestOutcome::Ignored => ("ignored", None),
        };
        EventResult {
            incident_id: outcome.incident_id(),
            outcome: outcome_name,
            deduplicated: matches!(outcome, IngestOutcome::Deduplicated { .. }),
            occurrence_count,
        }
    }
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
    responses(
        (status = 200, description = "Stored; one result (object) or `results` (array)", body = BatchResult),
        (status = 400, description = "Malformed JSON or an invalid field", body = super::error::ErrorBody),
        (status = 413, description = "Body over the limit", body = super::error::ErrorBody),
        (status = 415, description = "Not JSON", body = super::error::ErrorBody),
    )
)]
pub async fn submit_events(
    State(manager): State<Arc<IncidentManager>>,
    request: Request,
) -> Result<Response, ApiError> {
    let bytes = json_bytes(request, &()).await?;
    let is_batch = bytes.iter().find(|byte| !byte.is_ascii_whitespace()) == Some(&b'[');
    if is_batch {
        let events: Vec<RawEvent> = parse_json(&bytes)?;
        let outcomes = manager.ingest(events).await?;
        let results = outcomes.iter().map(EventResult::from).collect();
        return Ok(Json(BatchResult { results }).into_response());
    }
    let event: RawEvent = parse_json(&bytes)?;
    let outcomes = manager.ingest(vec![event]).await?;
    Ok(Json(EventResult::from(&outcomes[0])).into_response())
}
