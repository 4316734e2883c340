//! The change feed: every committed change to an incident, told to whoever watches (the
//! gRPC `WatchIncidents` stream), whichever front door or job made it.
//!
//! A store publishes notices after its commit; watchers read the incident itself when
//! they need it. Nothing here ever waits for a watcher: the feed is a broadcast channel
//! that drops what a slow subscriber did not read, and the subscriber learns how much it
//! missed. On PostgreSQL the notices also go to the other replicas (`postgres/feed.rs`).

use std::sync::Arc;

use chrono::{DateTime, Utc};
use lim_domain::{IncidentId, IngestOutcome, TimelineKind, Transition};
use tokio::sync::broadcast;

/// What happened to an incident.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChangeKind {
    Created,
    /// An event was counted on it.
    Deduplicated,
    /// Assigned, acknowledged, started or resolved.
    StateChanged,
    /// Reclassified by a person or a model (or a model's classification failed).
    Classified,
    Commented,
    /// A model's insights (or why there are none).
    Explained,
}

impl ChangeKind {
    /// The short code a notice travels with between replicas.
    pub const fn code(self) -> char {
        match self {
            ChangeKind::Created => 'c',
            ChangeKind::Deduplicated => 'd',
            ChangeKind::StateChanged => 's',
            ChangeKind::Classified => 'k',
            ChangeKind::Commented => 'm',
            ChangeKind::Explained => 'x',
        }
    }

    pub fn from_code(code: char) -> Option<ChangeKind> {
        Some(match code {
            'c' => ChangeKind::Created,
            'd' => ChangeKind::Deduplicated,
            's' => ChangeKind::StateChanged,
            'k' => ChangeKind::Classified,
            'm' => ChangeKind::Commented,
            'x' => ChangeKind::Explained,
            _ => return None,
        })
    }

    /// The change a transition's timeline entry records, if watchers are told of it.
    pub fn of_entry(kind: TimelineKind) -> Option<ChangeKind> {
        match kind {
            TimelineKind::Assigned | TimelineKind::Acknowledged | TimelineKind::Started | TimelineKind::Resolved => {
                Some(ChangeKind::StateChanged)
            }
            TimelineKind::Classified => Some(ChangeKind::Classified),
            TimelineKind::Insights => Some(ChangeKind::Explained),
            TimelineKind::Comment => Some(ChangeKind::Commented),
            TimelineKind::Created => Some(ChangeKind::Created),
            TimelineKind::EventAttached
            | TimelineKind::Routed
            | TimelineKind::Notified
            | TimelineKind::Escalated
            | TimelineKind::Silenced => None,
        }
    }
}

/// One committed change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChangeNotice {
    pub kind: ChangeKind,
    pub incident_id: IncidentId,
    pub at: DateTime<Utc>,
}

impl ChangeNotice {
    /// The changes an ingest made, in event order (a redelivery or an ignored resolution
    /// changed nothing).
    pub fn of_ingest(outcomes: &[IngestOutcome], now: DateTime<Utc>) -> Vec<ChangeNotice> {
        outcomes
            .iter()
            .filter_map(|outcome| {
                let (kind, incident_id) = match outcome {
                    IngestOutcome::Created(incident) => (ChangeKind::Created, incident.id),
                    IngestOutcome::Deduplicated { incident_id, .. } => (ChangeKind::Deduplicated, *incident_id),
                    IngestOutcome::Resolved(transition) => (ChangeKind::StateChanged, transition.after.id),
                    IngestOutcome::Redelivered { .. } | IngestOutcome::Ignored => return None,
                };
                Some(ChangeNotice {
                    kind,
                    incident_id,
                    at: now,
                })
            })
            .collect()
    }

    pub fn of_transition(transition: &Transition) -> Option<ChangeNotice> {
        ChangeKind::of_entry(transition.entry.kind).map(|kind| ChangeNotice {
            kind,
            incident_id: transition.after.id,
            at: transition.entry.at,
        })
    }
}

/// How many batches of notices a subscriber may fall behind before it misses some.
pub const FEED_CAPACITY: usize = 1024;

/// The changes committed through this store (and, on PostgreSQL, through the other
/// replicas), in batches, one per commit.
#[derive(Debug)]
pub struct ChangeFeed {
    sender: broadcast::Sender<Arc<[ChangeNotice]>>,
}

impl Default for ChangeFeed {
    fn default() -> Self {
        ChangeFeed {
            sender: broadcast::channel(FEED_CAPACITY).0,
        }
    }
}

impl ChangeFeed {
    /// The changes committed from now on. A subscriber that falls more than
    /// [`FEED_CAPACITY`] batches behind is told how many it missed
    /// (`RecvError::Lagged`), and reads on from the oldest kept.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<[ChangeNotice]>> {
        self.sender.subscribe()
    }

    /// Whether anyone in this process reads the feed.
    pub(crate) fn watched(&self) -> bool {
        self.sender.receiver_count() > 0
    }

    /// Tells the subscribers of this process; costs nothing when there are none.
    pub(crate) fn publish(&self, notices: Vec<ChangeNotice>) {
        if !notices.is_empty() && self.sender.receiver_count() > 0 {
            let _ = self.sender.send(notices.into());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_read_back() {
        for kind in [
            ChangeKind::Created,
            ChangeKind::Deduplicated,
            ChangeKind::StateChanged,
            ChangeKind::Classified,
            ChangeKind::Commented,
            ChangeKind::Explained,
        ] {
            assert_eq!(ChangeKind::from_code(kind.code()), Some(kind));
        }
        assert_eq!(ChangeKind::from_code('?'), None);
    }

    #[test]
    fn a_feed_nobody_reads_keeps_nothing_and_a_subscriber_reads_in_order() {
        let feed = ChangeFeed::default();
        let notice = |kind| ChangeNotice {
            kind,
            incident_id: IncidentId::generate(),
            at: Utc::now(),
        };
        feed.publish(vec![notice(ChangeKind::Created)]);
        let mut receiver = feed.subscribe();
        let (first, second) = (notice(ChangeKind::Created), notice(ChangeKind::Commented));
        feed.publish(vec![first]);
        feed.publish(Vec::new());
        feed.publish(vec![second]);
        assert_eq!(&*receiver.try_recv().unwrap(), &[first]);
        assert_eq!(&*receiver.try_recv().unwrap(), &[second]);
        assert!(receiver.try_recv().is_err());
    }
}
