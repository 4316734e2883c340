//! `POST /v1/integrations/alertmanager`: the Prometheus Alertmanager webhook (version 4).
//! Firing alerts open or update incidents; resolved alerts resolve them.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use chrono::{DateTime, Utc};
use lim_domain::event::{MAX_DESCRIPTION_CHARS, MAX_TITLE_CHARS};
use lim_domain::{Category, ErrorKind, EventStatus, FieldError, RawEvent, Severity, Source};
use serde::Deserialize;

use super::error::{ApiError, JsonBody};
use super::events::{BatchResult, EventResult};
use crate::incidents::{CoreError, IncidentManager};

/// The webhook body Alertmanager sends (fields this service does not use are ignored).
#[derive(Debug, Deserialize)]
pub struct WebhookPayload {
    pub version: String,
    #[serde(default)]
    pub alerts: Vec<Alert>,
}

#[derive(Debug, Deserialize)]
pub struct Alert {
    pub status: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    #[serde(rename = "startsAt")]
    pub starts_at: Option<DateTime<Utc>>,
    #[serde(rename = "endsAt")]
    pub ends_at: Option<DateTime<Utc>>,
    pub fingerprint: Option<String>,
}

impl Alert {
    /// The event this alert stands for. Alertmanager labels are free-form, so a
    /// `severity` or `category` outside our vocabulary falls back to P2 / `other`
    /// rather than losing the alert.
    fn into_event(self) -> RawEvent {
        let severity = self
            .labels
            .get("severity")
            .and_then(|value| value.parse::<Severity>().ok())
            .unwrap_or_default();
        let category = self
            .labels
            .get("category")
            .and_then(|value| value.parse::<Category>().ok())
            .unwrap_or_default();
        let title = self
            .annotations
            .get("summary")
            .or_else(|| self.labels.get("alertname"))
            .map(|summary| truncated(summary, MAX_TITLE_CHARS))
            .unwrap_or_else(|| "Alertmanager alert".to_owned());
        // The same words as an event's `status` (`resolved`, `resolve`, `ok`).
        let resolved = matches!(self.status.parse(), Ok(EventStatus::Resolved));
        let occurred_at = if resolved {
            self.ends_at.or(self.starts_at)
        } else {
            self.starts_at
        };
        RawEvent {
            source: Some(Source::Alertmanager.as_str().to_owned()),
            title: Some(title),
            description: self
                .annotations
                .get("description")
                .map(|description| truncated(description, MAX_DESCRIPTION_CHARS)),
            severity: Some(severity.as_str().to_owned()),
            category: Some(category.as_str().to_owned()),
            labels: self.labels,
            fingerprint: self.fingerprint.filter(|fingerprint| !fingerprint.is_empty()),
            status: Some(self.status),
            // Alertmanager writes the zero time for "unset".
            occurred_at: occurred_at.filter(|at| at.timestamp() > 0),
        }
    }
}

/// Receive an Alertmanager webhook (version 4). Every alert is stored before the answer.
#[utoipa::path(
    post,
    path = "/v1/integrations/alertmanager",
    tag = "integrations",
    request_body(content = serde_json::Value, description = "Alertmanager webhook payload, version 4", content_type = "application/json"),
    responses(
        (status = 200, description = "Every alert stored", body = BatchResult),
        (status = 400, description = "Not a version 4 payload, or an invalid alert", body = super::error::ErrorBody),
    )
)]
pub async fn receive_webhook(
    State(manager): State<Arc<IncidentManager>>,
    JsonBody(payload): JsonBody<WebhookPayload>,
) -> Result<Json<BatchResult>, ApiError> {
    if payload.version != "4" {
        return Err(ApiError::new(
            ErrorKind::InvalidField,
            format!("version: `{}` is not supported; expected \"4\"", payload.version),
        ));
    }
    if payload.alerts.is_empty() {
        return Ok(Json(BatchResult { results: Vec::new() }));
    }
    let events = payload.alerts.into_iter().map(Alert::into_event).collect();
    let outcomes = manager.ingest(events).await.map_err(|error| match error {
        // Name the alert the way the payload does: `alerts[3].labels`, or `alerts` for
        // the whole list.
        CoreError::Invalid(field_error) => ApiError::from(FieldError {
            field: match field_error.field.strip_prefix("events") {
                Some(rest) => format!("alerts{rest}"),
                None => format!("alerts{}", field_error.field),
            },
            ..field_error
        }),
        other => ApiError::from(other),
    })?;
    Ok(Json(BatchResult {
        results: outcomes.iter().map(EventResult::from).collect(),
    }))
}

/// `text` cut to `limit` characters, the last one an ellipsis. Alertmanager sends what its
/// templates render: an over-long summary or description is shortened rather than lose
/// the whole group to a 400.
fn truncated(text: &str, limit: usize) -> String {
    if text.chars().count() <= limit {
        return text.to_owned();
    }
    let mut cut: String = text.chars().take(limit - 1).collect();
    cut.push('…');
    cut
}
