//! The `notify` jobs: one delivery of one incident change (or of a route's group of new
//! incidents) to one channel, or to one person through one of their contact channels.
//! A delivery that a silence holds is not sent, and neither is an escalation level's
//! that an acknowledgement overtook: both say so on the timeline.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use lim_domain::jobs::{GroupWindow, Notification};
use lim_domain::silence::{self, Silence};
use lim_domain::{Incident, IncidentId, Job, JobPayload, NotifyEvent, TimelineEntry, TimelineKind};
use lim_store::{Store, StoreError};

use super::{Attempt, DeliveryAttempt, Failure, Handler};
use crate::live::LiveConfig;
use crate::notify::{About, Channel, Group, Message};

pub struct Notifier {
    store: Arc<dyn Store>,
    live: Arc<LiveConfig>,
    silences: Arc<SilenceCache>,
    /// The base of links to incidents.
    public_url: String,
}

impl Notifier {
    pub fn new(
        store: Arc<dyn Store>,
        live: Arc<LiveConfig>,
        silences: Arc<SilenceCache>,
        public_url: String,
    ) -> Notifier {
        Notifier {
            store,
            live,
            silences,
            public_url,
        }
    }
}

#[async_trait]
impl Handler for Notifier {
    async fn run(&self, job: &Job, now: DateTime<Utc>) -> Attempt {
        let JobPayload::Notify(notification) = &job.payload else {
            return Attempt::failed(Failure::permanent(format!("job {} is no notification", job.id)));
        };
        let live = self.live.current();
        let Some(channel) = live.channels.get(&notification.channel) else {
            return Attempt::failed(Failure::permanent(format!(
                "channel `{}` is no longer configured",
                notification.channel
            )));
        };
        let silences = match self.silences.active(self.store.as_ref(), now).await {
            Ok(silences) => silences,
            Err(error) => return Attempt::failed(Failure::transient(format!("cannot read the silences: {error}"))),
        };
        if let Some(window) = &notification.group {
            return self.run_group(job, notification, window, channel, &silences, now).await;
        }
        let recipient = match &notification.person {
            None => None,
            Some(name) => match live.people.get(name) {
                Some(person) => Some(person.clone()),
                None => {
                    return Attempt::failed(Failure::permanent(format!("person `{name}` is no longer configured")));
                }
            },
        };
        let what = match &recipient {
            Some(person) => format!("{} ({}) to {}", channel.name, channel.kind, person.name),
            None => format!("{} ({})", channel.name, channel.kind),
        };
        let Some(incident_id) = job.incident_id else {
            return Attempt::failed(Failure::permanent("a notification names no incident"));
        };
        let incident = match self.store.get_incident(incident_id).await {
            Ok(Some(incident)) => incident,
            Ok(None) => {
                return Attempt::failed(Failure::permanent(format!("incident {incident_id} no longer exists")));
            }
            Err(error) => return Attempt::failed(Failure::transient(format!("cannot read the incident: {error}"))),
        };
        if let Some(silence) = silence::holding(&silences, &incident, now) {
            let message = format!("not sent to {what}: {}", held_by(silence));
            return skipped(TimelineEntry::new(
                incident.id,
                now,
                TimelineKind::Silenced,
                "notifier",
                message,
            ));
        }
        if notification.event == NotifyEvent::Escalated && !incident.escalates() {
            let message = format!(
                "not sent to {what}: the incident was {} before the level {} notification went out",
                if incident.state.is_open() {
                    "acknowledged"
                } else {
                    "resolved"
                },
                notification.level.unwrap_or(1)
            );
            return skipped(TimelineEntry::new(
                incident.id,
                now,
                TimelineKind::Notified,
                "notifier",
                message,
            ));
        }
        let message = Message {
            delivery_id: job.delivery_id(),
            event: notification.event,
            about: About::Incident(Box::new(incident)),
            level: notification.level,
            sent_at: now,
            public_url: self.public_url.clone(),
            recipient,
        };
        delivered(channel, &message, what, vec![incident_id]).await
    }
}

impl Notifier {
    /// The incidents that joined the route's group while it was open, less those a
    /// silence holds, in one delivery.
    async fn run_group(
        &self,
        job: &Job,
        notification: &Notification,
        window: &GroupWindow,
        channel: &Channel,
        silences: &[Silence],
        now: DateTime<Utc>,
    ) -> Attempt {
        let what = format!("{} ({}) in a group", channel.name, channel.kind);
        let members = match self.store.group_members(window.id, Group::LISTED).await {
            Ok(members) => members,
            Err(error) => return Attempt::failed(Failure::transient(format!("cannot read the group: {error}"))),
        };
        let (held, incidents): (Vec<Incident>, Vec<Incident>) = members
            .incidents
            .into_iter()
            .partition(|incident| silence::holding(silences, incident, now).is_some());
        let entries: Vec<TimelineEntry> = held
            .iter()
            .map(|incident| {
                let silence = silence::holding(silences, incident, now).expect("partitioned above");
                let message = format!("not sent to {what}: {}", held_by(silence));
                TimelineEntry::new(incident.id, now, TimelineKind::Silenced, "notifier", message)
            })
            .collect();
        if incidents.is_empty() {
            return Attempt {
                entries,
                ..Attempt::done()
            };
        }
        let ids: Vec<IncidentId> = incidents.iter().map(|incident| incident.id).collect();
        let message = Message {
            delivery_id: job.delivery_id(),
            event: notification.event,
            about: About::Group(Group {
                route: window.route.clone(),
                total: members.total.saturating_sub(held.len() as u64),
                incidents,
            }),
            level: None,
            sent_at: now,
            public_url: self.public_url.clone(),
            recipient: None,
        };
        let mut attempt = delivered(channel, &message, format!("{what} of {}", ids.len()), ids).await;
        attempt.entries = entries;
        attempt
    }
}

async fn delivered(channel: &Channel, message: &Message, what: String, incidents: Vec<IncidentId>) -> Attempt {
    let result = channel.deliver(message).await.map_err(|error| Failure {
        message: error.message,
        permanent: error.permanent,
        retry_after: error.retry_after,
        deferred: false,
    });
    Attempt {
        result,
        delivery: Some(DeliveryAttempt {
            channel: channel.kind,
            what,
            incidents,
        }),
        ..Attempt::done()
    }
}

/// A delivery not sent, and why: done, with its entry.
fn skipped(entry: TimelineEntry) -> Attempt {
    Attempt {
        entries: vec![entry],
        ..Attempt::done()
    }
}

/// `silenced by 0190… (database upgrade) until 2026-01-01T02:00:00Z`.
pub(super) fn held_by(silence: &Silence) -> String {
    format!(
        "silenced by {} ({}) until {}",
        silence.id,
        lim_domain::text::excerpt(&silence.comment),
        silence.ends_at.format("%Y-%m-%dT%H:%M:%SZ")
    )
}

/// The active silences, read from the store at most once a second by each process: every
/// delivery and escalation level checks them. A silence made or expired through this
/// process is seen at once; one made through another replica within a second.
pub struct SilenceCache {
    read: Mutex<Option<Read>>,
}

/// What the cache read: when (on the machine's clock and on the application's), and the
/// silences active then.
#[derive(Clone)]
struct Read {
    at: Instant,
    now: DateTime<Utc>,
    silences: Arc<Vec<Silence>>,
}

impl SilenceCache {
    const FRESH_FOR: Duration = Duration::from_secs(1);

    pub fn new() -> SilenceCache {
        SilenceCache { read: Mutex::new(None) }
    }

    /// The silences active at `now` (callers check each with `Silence::holds`, which
    /// drops one that ended since it was read).
    pub async fn active(&self, store: &dyn Store, now: DateTime<Utc>) -> Result<Arc<Vec<Silence>>, StoreError> {
        let cached = self.read.lock().unwrap_or_else(PoisonError::into_inner).clone();
        if let Some(read) = cached
            && read.at.elapsed() < Self::FRESH_FOR
            && (now - read.now).to_std().is_ok_and(|age| age < Self::FRESH_FOR)
        {
            return Ok(read.silences);
        }
        let silences = Arc::new(store.active_silences(now).await?);
        *self.read.lock().unwrap_or_else(PoisonError::into_inner) = Some(Read {
            at: Instant::now(),
            now,
            silences: Arc::clone(&silences),
        });
        Ok(silences)
    }

    /// Forgets what was read (a silence was made or expired).
    pub fn invalidate(&self) {
        *self.read.lock().unwrap_or_else(PoisonError::into_inner) = None;
    }
}

impl Default for SilenceCache {
    fn default() -> Self {
        SilenceCache::new()
    }
}
