//! The `notify` jobs: one delivery of one incident change to one channel.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::Utc;
use lim_domain::{Job, JobPayload};
use lim_store::Store;

use super::{Attempt, Failure, Handler};
use crate::notify::{Channels, Message};

pub struct Notifier {
    store: Arc<dyn Store>,
    channels: Arc<Channels>,
    /// The base of links to incidents.
    public_url: String,
}

impl Notifier {
    pub fn new(store: Arc<dyn Store>, channels: Arc<Channels>, public_url: String) -> Notifier {
        Notifier {
            store,
            channels,
            public_url,
        }
    }
}

#[async_trait]
impl Handler for Notifier {
    async fn run(&self, job: &Job) -> Attempt {
        let JobPayload::Notify(notification) = &job.payload else {
            return failed(Failure::permanent(format!("job {} is no notification", job.id)));
        };
        let Some(channel) = self.channels.get(&notification.channel) else {
            return failed(Failure::permanent(format!(
                "channel `{}` is no longer configured",
                notification.channel
            )));
        };
        let what = format!("{} ({})", channel.name, channel.kind);
        let recorded = |result: Result<(), Failure>| Attempt {
            result,
            recorded_as: job.incident_id.map(|incident| (incident, what.clone())),
            delivery: Some(channel.kind),
            follow_ups: Vec::new(),
        };
        let Some(incident_id) = job.incident_id else {
            return recorded(Err(Failure::permanent("a notification names no incident")));
        };
        let incident = match self.store.get_incident(incident_id).await {
            Ok(Some(incident)) => incident,
            Ok(None) => {
                return recorded(Err(Failure::permanent(format!(
                    "incident {incident_id} no longer exists"
                ))));
            }
            Err(error) => {
                return recorded(Err(Failure {
                    message: format!("cannot read the incident: {error}"),
                    permanent: false,
                    retry_after: None,
                }));
            }
        };
        let message = Message {
            delivery_id: job.delivery_id(),
            event: notification.event,
            link: format!("{}/v1/incidents/{}", self.public_url, incident.id),
            incident,
            level: notification.level,
            sent_at: Utc::now(),
        };
        let result = channel.deliver(&message).await.map_err(|error| Failure {
            message: error.message,
            permanent: error.permanent,
            retry_after: error.retry_after,
        });
        recorded(result)
    }
}

fn failed(failure: Failure) -> Attempt {
    Attempt {
        result: Err(failure),
        ..Attempt::done()
    }
}
