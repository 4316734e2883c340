//! PagerDuty's Events API v2: our lifecycle mirrored (trigger on creation and escalation,
//! acknowledge, resolve), one alert per incident (`dedup_key` is its fingerprint).

use async_trait::async_trait;
use lim_domain::{NotifyEvent, Severity};
use serde_json::json;

use super::{About, Deliver, DeliveryError, Message, post_json};
use crate::config::Secret;

pub struct PagerDuty {
    http: reqwest::Client,
    url: String,
    routing_key: Secret,
}

impl PagerDuty {
    pub fn new(http: reqwest::Client, url: &str, routing_key: Secret) -> PagerDuty {
        PagerDuty {
            http,
            url: url.to_owned(),
            routing_key,
        }
    }
}

/// PagerDuty's severities: P0 critical, P1 error, P2 warning, P3 and P4 info.
pub fn severity(severity: Severity) -> &'static str {
    match severity {
        Severity::P0 => "critical",
        Severity::P1 => "error",
        Severity::P2 => "warning",
        Severity::P3 | Severity::P4 => "info",
    }
}

/// The event for one incident; a grouped message (which routing never sends to
/// PagerDuty: it keeps one alert per incident) has none.
pub fn body(message: &Message, routing_key: &str) -> Option<String> {
    let About::Incident(incident) = &message.about else {
        return None;
    };
    let action = match message.event {
        NotifyEvent::Created | NotifyEvent::Escalated => "trigger",
        NotifyEvent::Acknowledged => "acknowledge",
        NotifyEvent::Resolved => "resolve",
    };
    let mut event = json!({
        "routing_key": routing_key,
        "event_action": action,
        "dedup_key": incident.fingerprint,
    });
    if action == "trigger" {
        event["payload"] = json!({
            "summary": incident.title,
            "source": incident.source,
            "severity": severity(incident.severity),
            "timestamp": incident.first_seen,
            "class": incident.category,
            "custom_details": {
                "incident_id": incident.id,
                "state": incident.state,
                "description": incident.description,
                "labels": incident.labels,
                "occurrence_count": incident.occurrence_count,
            },
        });
        event["links"] = json!([{"href": message.link_to(incident), "text": "Incident in llm-incident-manager"}]);
        event["client"] = json!("llm-incident-manager");
    }
    Some(event.to_string())
}

#[async_trait]
impl Deliver for PagerDuty {
    async fn deliver(&self, message: &Message) -> Result<(), DeliveryError> {
        let body = body(message, self.routing_key.expose()).ok_or_else(|| DeliveryError {
            message: "PagerDuty takes one incident per event, not a group".into(),
            permanent: true,
            retry_after: None,
        })?;
        post_json(self.http.post(&self.url), &body, "PagerDuty").await
    }
}
