//! Email over SMTP: STARTTLS when the server offers it (`smtp://`), TLS from the start
//! (`smtps://`), plain for a local server that offers neither.

use std::time::Duration;

use async_trait::async_trait;
use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};

use super::{About, Deliver, DeliveryError, Message, group_line, headline};
use crate::config::SmtpServer;

pub struct Email {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    to: Vec<Mailbox>,
}

impl Email {
    pub fn new(smtp: &SmtpServer, from: &str, to: &[String], timeout: Duration) -> anyhow::Result<Email> {
        let parameters = TlsParameters::new(smtp.host.clone())?;
        let tls = if smtp.implicit_tls {
            Tls::Wrapper(parameters)
        } else {
            Tls::Opportunistic(parameters)
        };
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&smtp.host)
            .port(smtp.port)
            .tls(tls)
            .timeout(Some(timeout));
        if let Some((user, password)) = &smtp.credentials {
            builder = builder.credentials(Credentials::new(user.clone(), password.expose().to_owned()));
        }
        Ok(Email {
            transport: builder.build(),
            from: from.parse()?,
            to: to.iter().map(|address| address.parse()).collect::<Result<_, _>>()?,
        })
    }
}

/// The subject and plain-text body of the mail.
pub fn mail(message: &Message) -> (String, String) {
    let incident = match &message.about {
        About::Incident(incident) => incident,
        About::Group(group) => {
            let mut body = format!("{}\n\n", headline(message));
            for incident in &group.incidents {
                body.push_str(&format!("{}\n  {}\n", group_line(incident), message.link_to(incident)));
            }
            let more = group.total.saturating_sub(group.incidents.len() as u64);
            if more > 0 {
                body.push_str(&format!("… and {more} more\n"));
            }
            return (headline(message), body);
        }
    };
    let mut body = format!(
        "{}\n\nIncident {}\nState: {}\nSeverity: {}\nCategory: {}\nSource: {}\nOccurrences: {}\nFirst seen: {}\n",
        headline(message),
        incident.id,
        incident.state,
        incident.severity,
        incident.category,
        incident.source,
        incident.occurrence_count,
        incident.first_seen.to_rfc3339(),
    );
    if let Some(assignee) = &incident.assignee {
        body.push_str(&format!("Assignee: {assignee}\n"));
    }
    if !incident.description.is_empty() {
        body.push_str(&format!("\n{}\n", incident.description));
    }
    body.push_str(&format!("\n{}\n", message.link_to(incident)));
    (headline(message), body)
}

#[async_trait]
impl Deliver for Email {
    async fn deliver(&self, message: &Message) -> Result<(), DeliveryError> {
        let (subject, body) = mail(message);
        let mut builder = lettre::Message::builder()
            .from(self.from.clone())
            .subject(subject)
            .message_id(Some(format!("<{}@llm-incident-manager>", message.delivery_id)));
        // A person reached through the channel gets the mail instead of its recipients.
        let person = match message.recipient.as_ref().and_then(|person| person.email.as_deref()) {
            Some(address) => Some(address.parse::<Mailbox>().map_err(|_| DeliveryError {
                message: "the person's email address is not valid".into(),
                permanent: true,
                retry_after: None,
            })?),
            None => None,
        };
        match person {
            Some(person) => builder = builder.to(person),
            None => {
                for recipient in &self.to {
                    builder = builder.to(recipient.clone());
                }
            }
        }
        let mail = builder.body(body).map_err(|error| DeliveryError {
            message: format!("the mail could not be built: {error}"),
            permanent: true,
            retry_after: None,
        })?;
        self.transport
            .send(mail)
            .await
            .map(drop)
            .map_err(|error| DeliveryError {
                message: format!("the SMTP server refused or could not be reached: {error}"),
                // A permanent SMTP answer (5xx): the same mail will be refused again.
                permanent: error.is_permanent(),
                retry_after: None,
            })
    }
}
