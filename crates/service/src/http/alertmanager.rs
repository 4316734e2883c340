//! `POST /v1/integrations/alertmanager`: the Prometheus Alertmanager webhook (version 4).
//! Firing alerts open or update incidents; resolved alerts resolve them.
//!
//! Alertmanager treats a 4xx as final and drops the whole group, so a well-formed payload
//! is never refused over its alerts: each is made to fit the limits (and marked so, see
//! `lim_domain::fit`), and a group of any size is taken in batches of 1,000, each stored
//! before the next. Alertmanager re-sends every alert of a group at each `group_interval`;
//! an unchanged alert (same fingerprint and `startsAt`) is recognised and not counted again.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Request, State};
use chrono::{DateTime, Utc};
use lim_domain::event::MAX_BATCH_EVENTS;
use lim_domain::{Category, ErrorKind, EventStatus, FieldError, RawEvent, Severity, Source};
use serde::Deserialize;
use serde_json::value::RawValue;

use super::error::ApiError;
use super::events::{BatchResult, EventResult};
use super::extract::{json_bytes, parse_json};
use crate::incidents::{CoreError, IncidentManager};

/// The webhook body Alertmanager sends (fields this service does not use are ignored).
/// Alerts are kept as raw JSON until their batch is stored, so a group of many costs
/// memory for one batch at a time.
#[derive(Debug, Deserialize)]
pub struct WebhookPayload<'a> {
    pub version: String,
    #[serde(default, borrow)]
    pub alerts: Vec<&'a RawValue>,
}

#[derive(Debug, Deserialize)]
pub struct Alert {
    pub status: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    /// Kept as sent: a time that cannot be read is taken as unset, not a reason to lose
    /// the alert.
    #[serde(rename = "startsAt")]
    pub starts_at: Option<String>,
    #[serde(rename = "endsAt")]
    pub ends_at: Option<String>,
    pub fingerprint: Option<String>,
}

impl Alert {
    /// The event this alert stands for. Alertmanager labels are free-form: a `severity` or
    /// `category` outside our vocabulary (in any letter case) falls back to P2 / `other`
    /// rather than losing the alert.
    fn into_event(self) -> RawEvent {
        let severity = self
            .labels
            .get("severity")
            .and_then(|value| Severity::parse_lenient(value).ok())
            .unwrap_or_default();
        let category = self
            .labels
            .get("category")
            .and_then(|value| Category::parse_lenient(value).ok())
            .unwrap_or_default();
        let title = self
            .annotations
            .get("summary")
            .or_else(|| self.labels.get("alertname"))
            .filter(|title| !title.trim().is_empty())
            .cloned()
            .unwrap_or_else(|| "Alertmanager alert".to_owned());
        let resolved = matches!(EventStatus::parse_lenient(&self.status), Ok(EventStatus::Resolved));
        // Firing alerts are known by when they started, so a re-sent group repeats it.
        let starts_at = self.starts_at.as_deref().and_then(time);
        let occurred_at = if resolved {
            self.ends_at.as_deref().and_then(time).or(starts_at)
        } else {
            starts_at
        };
        RawEvent {
            source: Some(Source::Alertmanager.as_str().to_owned()),
            title: Some(title),
            description: self.annotations.get("description").cloned(),
            severity: Some(severity.as_str().to_owned()),
            category: Some(category.as_str().to_owned()),
            labels: self.labels,
            fingerprint: self.fingerprint.filter(|fingerprint| !fingerprint.trim().is_empty()),
            status: Some(
                if resolved {
                    EventStatus::Resolved
                } else {
                    EventStatus::Firing
                }
                .as_str()
                .to_owned(),
            ),
            occurred_at,
        }
    }
}

/// Receive an Alertmanager webhook (version 4). Every alert is stored before the answer.
#[utoipa::path(
    post,
    path = "/v1/integrations/alertmanager",
    tag = "integrations",
    request_body(content = serde_json::Value, description = "Alertmanager webhook payload, version 4", content_type = "application/json"),
    responses((status = 200, description = "Every alert stored, a result per alert", body = BatchResult))
)]
pub async fn receive_webhook(
    State(manager): State<Arc<IncidentManager>>,
    request: Request,
) -> Result<Json<BatchResult>, ApiError> {
    let bytes = json_bytes(request).await?;
    let payload = read_payload(&bytes)?;
    let mut results = Vec::with_capacity(payload.alerts.len());
    for (chunk_index, chunk) in payload.alerts.chunks(MAX_BATCH_EVENTS).enumerate() {
        let first = chunk_index * MAX_BATCH_EVENTS;
        let events = chunk_events(chunk, first)?;
        let outcomes = manager.ingest_tolerant(events).await.map_err(|error| match error {
            CoreError::Invalid(field_error) => in_payload(field_error, first),
            other => ApiError::from(other),
        })?;
        results.extend(outcomes.iter().map(EventResult::from));
    }
    Ok(Json(BatchResult { results }))
}

/// The payload of a webhook body, of the one version this service reads.
pub fn read_payload(bytes: &[u8]) -> Result<WebhookPayload<'_>, ApiError> {
    let payload: WebhookPayload<'_> = parse_json(bytes)?;
    if payload.version != "4" {
        return Err(ApiError::new(
            ErrorKind::InvalidField,
            format!(
                "version: `{}` is not supported; expected \"4\"",
                lim_domain::text::excerpt(&payload.version)
            ),
        ));
    }
    Ok(payload)
}

/// The events of a chunk of alerts that starts at alert `first` of the payload; an alert
/// that cannot be read is named the way the payload does (`alerts[1003].labels: …`).
pub fn chunk_events(chunk: &[&RawValue], first: usize) -> Result<Vec<RawEvent>, ApiError> {
    chunk
        .iter()
        .enumerate()
        .map(|(offset, alert)| {
            parse_json::<Alert>(alert.get().as_bytes())
                .map(Alert::into_event)
                .map_err(|error| {
                    let index = first + offset;
                    let message = match error.message.strip_prefix("body: ") {
                        Some(problem) => format!("alerts[{index}]: {problem}"),
                        None => format!("alerts[{index}].{}", error.message),
                    };
                    ApiError::new(error.kind, message)
                })
        })
        .collect()
}

/// A refused event of the chunk that starts at alert `first`, named the way the payload
/// names its alert: `alerts[3].labels`.
pub fn in_payload(error: FieldError, first: usize) -> ApiError {
    ApiError::from(FieldError {
        field: format!("alerts{}", shift_index(&error.field, first)),
        ..error
    })
}

/// An RFC 3339 time, or none for anything else (Alertmanager writes `0001-01-01T00:00:00Z`
/// for "unset"; a sender may write worse).
fn time(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|time| time.with_timezone(&Utc))
        .filter(|time| time.timestamp() > 0)
}

/// `[3].title` of a batch that starts at alert `first` as `[first + 3].title`.
fn shift_index(field: &str, first: usize) -> String {
    let parsed = field
        .strip_prefix('[')
        .and_then(|rest| rest.split_once(']'))
        .and_then(|(index, rest)| Some((index.parse::<usize>().ok()?, rest)));
    match parsed {
        Some((index, rest)) => format!("[{}]{rest}", first + index),
        None => format!(".{field}"),
    }
}
