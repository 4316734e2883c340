//! Delivering notifications: one module per channel type behind one small trait. A
//! delivery is one HTTP request or one mail; retries, backoff and the dead state belong
//! to the job executor, which runs each delivery as a job.

mod email;
mod pagerduty;
mod slack;
mod webhook;

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use lim_domain::{ChannelKind, Incident, NotifyEvent};
use uuid::Uuid;

use crate::config::{ChannelSettings, ChannelSpec, Person};

/// What one delivery tells.
#[derive(Debug, Clone)]
pub struct Message {
    /// The same for every attempt of the delivery.
    pub delivery_id: Uuid,
    pub event: NotifyEvent,
    pub about: About,
    pub level: Option<u32>,
    pub sent_at: DateTime<Utc>,
    /// This service's base URL: links to incidents start with it.
    pub public_url: String,
    /// The person the delivery reaches instead of the channel's own recipients (an
    /// escalation to a person, or to whoever is on call).
    pub recipient: Option<Person>,
}

/// What a message is about: one incident, or the incidents one route opened within its
/// `group_wait`.
#[derive(Debug, Clone)]
pub enum About {
    /// As it is when the delivery is attempted.
    Incident(Box<Incident>),
    Group(Group),
}

#[derive(Debug, Clone)]
pub struct Group {
    pub route: String,
    /// The first incidents of the group (at most [`Group::LISTED`]: each is a whole
    /// incident, description included, and a receiver takes the body in one request).
    pub incidents: Vec<Incident>,
    /// How many the group holds in all.
    pub total: u64,
}

impl Group {
    /// The most incidents one grouped notification lists; it counts the rest.
    pub const LISTED: u32 = 200;
}

impl Message {
    /// A link to an incident on this service.
    pub fn link_to(&self, incident: &Incident) -> String {
        format!("{}/v1/incidents/{}", self.public_url, incident.id)
    }
}

/// Why a delivery failed, and whether trying again can help.
#[derive(Debug, Clone, PartialEq)]
pub struct DeliveryError {
    /// What happened, safe to show (no secret, no URL with a token).
    pub message: String,
    /// The receiver refused the request itself (a 4xx but 408 and 429): retrying the same
    /// request cannot succeed.
    pub permanent: bool,
    /// How long the receiver asked to wait (`Retry-After`).
    pub retry_after: Option<Duration>,
}

impl DeliveryError {
    pub fn transient(message: impl Into<String>) -> Self {
        DeliveryError {
            message: message.into(),
            permanent: false,
            retry_after: None,
        }
    }
}

#[async_trait]
pub trait Deliver: Send + Sync {
    async fn deliver(&self, message: &Message) -> Result<(), DeliveryError>;
}

/// A configured channel.
pub struct Channel {
    pub name: String,
    pub kind: ChannelKind,
    deliver: Box<dyn Deliver>,
}

impl Channel {
    pub async fn deliver(&self, message: &Message) -> Result<(), DeliveryError> {
        self.deliver.deliver(message).await
    }
}

/// Every configured channel, by name.
pub struct Channels(BTreeMap<String, Channel>);

impl Channels {
    pub fn new(settings: &BTreeMap<String, ChannelSettings>) -> anyhow::Result<Channels> {
        let mut channels = BTreeMap::new();
        for (name, channel) in settings {
            let http = || http_client(channel.timeout);
            let deliver: Box<dyn Deliver> = match &channel.spec {
                ChannelSpec::Webhook { url, secret } => Box::new(webhook::Webhook::new(http()?, url, secret.clone())?),
                ChannelSpec::Slack { url } => Box::new(slack::Slack::new(http()?, url.clone())),
                ChannelSpec::Email { smtp, from, to } => Box::new(email::Email::new(smtp, from, to, channel.timeout)?),
                ChannelSpec::Pagerduty { routing_key, url } => {
                    Box::new(pagerduty::PagerDuty::new(http()?, url, routing_key.clone()))
                }
            };
            channels.insert(
                name.clone(),
                Channel {
                    name: name.clone(),
                    kind: channel.kind(),
                    deliver,
                },
            );
        }
        Ok(Channels(channels))
    }

    pub fn get(&self, name: &str) -> Option<&Channel> {
        self.0.get(name)
    }
}

fn http_client(timeout: Duration) -> anyhow::Result<reqwest::Client> {
    crate::tls::install_crypto_provider();
    Ok(reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(5)))
        .user_agent(concat!("llm-incident-manager/", env!("CARGO_PKG_VERSION")))
        .build()?)
}

/// Sends a JSON body and reads the answer's status: 2xx delivered; 408, 429, 5xx and
/// network failures are transient (with the receiver's `Retry-After`); any other status
/// is permanent. `what` names the receiver in errors (never its URL, which may hold a
/// token).
async fn post_json(request: reqwest::RequestBuilder, body: &str, what: &str) -> Result<(), DeliveryError> {
    let response = request
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body.to_owned())
        .send()
        .await
        .map_err(|error| DeliveryError::transient(format!("{what} could not be reached: {}", describe(&error))))?;
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    let retry_after = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|value| value.to_str().ok())
        .and_then(parse_retry_after);
    let permanent = status.is_client_error()
        && status != reqwest::StatusCode::REQUEST_TIMEOUT
        && status != reqwest::StatusCode::TOO_MANY_REQUESTS;
    Err(DeliveryError {
        message: format!("{what} answered {status}"),
        permanent,
        retry_after,
    })
}

/// `Retry-After` as seconds or as an HTTP date.
pub(crate) fn parse_retry_after(value: &str) -> Option<Duration> {
    if let Ok(seconds) = value.trim().parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = DateTime::parse_from_rfc2822(value.trim()).ok()?;
    (at.with_timezone(&Utc) - Utc::now()).to_std().ok()
}

/// A request error without its URL.
fn describe(error: &reqwest::Error) -> String {
    if error.is_timeout() {
        "timed out".to_owned()
    } else if error.is_connect() {
        "connection refused or unreachable".to_owned()
    } else {
        error.without_url_string()
    }
}

trait WithoutUrl {
    fn without_url_string(&self) -> String;
}

impl WithoutUrl for reqwest::Error {
    fn without_url_string(&self) -> String {
        let mut text = String::new();
        let mut source: Option<&dyn std::error::Error> = Some(self);
        let mut first = true;
        while let Some(error) = source {
            if !first {
                text.push_str(": ");
            }
            first = false;
            let display = error.to_string();
            // reqwest's own message names the URL; its sources do not.
            text.push_str(display.split(" for url (").next().unwrap_or(&display));
            source = error.source();
        }
        text
    }
}

/// One line on what a message is about, for texts and subjects.
fn headline(message: &Message) -> String {
    let incident = match &message.about {
        About::Incident(incident) => incident,
        About::Group(group) => {
            return format!(
                "{} incident{} opened by route {}",
                group.total,
                if group.total == 1 { "" } else { "s" },
                group.route
            );
        }
    };
    let what = match (message.event, message.level) {
        (NotifyEvent::Escalated, Some(level)) => format!("escalated to level {level}"),
        (event, _) => event.as_str().to_owned(),
    };
    format!(
        "[{}] {} {}: {}",
        incident.severity, what, incident.state, incident.title
    )
}

/// `[P1] p95 latency over SLO (ASSIGNED)`: one incident of a group, on one line.
fn group_line(incident: &Incident) -> String {
    format!("[{}] {} ({})", incident.severity, incident.title, incident.state)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        assert_eq!(parse_retry_after("30"), Some(Duration::from_secs(30)));
        let soon = (Utc::now() + chrono::TimeDelta::seconds(120)).to_rfc2822();
        let wait = parse_retry_after(&soon).unwrap();
        assert!(
            wait > Duration::from_secs(100) && wait <= Duration::from_secs(120),
            "{wait:?}"
        );
        assert_eq!(parse_retry_after("soon"), None);
    }
}
