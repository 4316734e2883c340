//! A Slack incoming webhook: a readable `text` (severity, title, state, link) and blocks.

use async_trait::async_trait;
use serde_json::json;

use super::{Deliver, DeliveryError, Message, headline, post_json};
use crate::config::Secret;

pub struct Slack {
    http: reqwest::Client,
    /// The incoming webhook's URL holds its token: it is a secret.
    url: Secret,
}

impl Slack {
    pub fn new(http: reqwest::Client, url: Secret) -> Slack {
        Slack { http, url }
    }
}

/// The message Slack gets.
pub fn body(message: &Message) -> String {
    let text = format!("{} <{}|{}>", headline(message), message.link, message.incident.id);
    let incident = &message.incident;
    let mut facts = vec![
        format!("*Severity* {}", incident.severity),
        format!("*State* {}", incident.state),
        format!("*Source* {}", incident.source),
        format!("*Category* {}", incident.category),
    ];
    if let Some(assignee) = &incident.assignee {
        facts.push(format!("*Assignee* {assignee}"));
    }
    json!({
        "text": text,
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": text}},
            {"type": "context", "elements": facts.into_iter().map(|fact| json!({"type": "mrkdwn", "text": fact})).collect::<Vec<_>>()},
        ],
    })
    .to_string()
}

#[async_trait]
impl Deliver for Slack {
    async fn deliver(&self, message: &Message) -> Result<(), DeliveryError> {
        post_json(self.http.post(self.url.expose()), &body(message), "Slack").await
    }
}
