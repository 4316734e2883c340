//! A Slack incoming webhook: a readable `text` (severity, title, state, link) and blocks.

use async_trait::async_trait;
use serde_json::json;

use super::{About, Deliver, DeliveryError, Message, group_line, headline, post_json};
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
    // A person reached through the channel is mentioned first: `<@U024BE7LH>`, or a
    // name written with its `@`.
    let mention = match message.recipient.as_ref().and_then(|person| person.slack.as_deref()) {
        Some(handle) if handle.starts_with('@') => format!("{handle} "),
        Some(member) => format!("<@{member}> "),
        None => String::new(),
    };
    let incident = match &message.about {
        About::Incident(incident) => incident,
        About::Group(group) => {
            let text = format!("{mention}{}", headline(message));
            let mut lines: Vec<String> = group
                .incidents
                .iter()
                .take(LISTED_IN_SLACK)
                .map(|incident| format!("• <{}|{}>", message.link_to(incident), group_line(incident)))
                .collect();
            let more = group.total.saturating_sub(lines.len() as u64);
            if more > 0 {
                lines.push(format!("… and {more} more"));
            }
            return json!({
                "text": text,
                "blocks": [
                    {"type": "section", "text": {"type": "mrkdwn", "text": text}},
                    {"type": "section", "text": {"type": "mrkdwn", "text": lines.join("\n")}},
                ],
            })
            .to_string();
        }
    };
    let text = format!(
        "{mention}{} <{}|{}>",
        headline(message),
        message.link_to(incident),
        incident.id
    );
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

/// A Slack section holds at most 3,000 characters: a group lists its first incidents.
const LISTED_IN_SLACK: usize = 20;

#[async_trait]
impl Deliver for Slack {
    async fn deliver(&self, message: &Message) -> Result<(), DeliveryError> {
        post_json(self.http.post(self.url.expose()), &body(message), "Slack").await
    }
}
