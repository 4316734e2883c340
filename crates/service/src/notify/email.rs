//! Email over SMTP: STARTTLS when the server offers it (`smtp://`), TLS from the start
//! (`smtps://`), plain for a local server that offers neither.

use std::time::Duration;

use async_trait::async_trait;
use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};

use super::{Deliver, DeliveryError, Message, headline};
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
    let incident = &message.incident;
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
    body.push_str(&format!("\n{}\n", message.link));
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
        for recipient in &self.to {
            builder = builder.to(recipient.clone());
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
