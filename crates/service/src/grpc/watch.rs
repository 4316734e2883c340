//! `WatchIncidents`: the store's change feed, with each changed incident read once for
//! every watcher of this process, then filtered per watcher.
//!
//! Nothing here can slow a write: the store's feed and the hub's are broadcast channels
//! that keep a bounded number of items and never wait. A watcher that falls more than
//! [`HUB_CAPACITY`] changes behind (its client reads too slowly) is ended with `RESOURCE_EXHAUSTED`; if
//! the hub itself falls behind the store, every watcher is. At shutdown every watch
//! ends with `UNAVAILABLE`, so that no stream holds the drain.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use futures_util::Stream;
use lim_domain::{Incident, IncidentFilter};
use lim_proto::v1;
use lim_store::{ChangeKind, ChangeNotice, Store};
use tokio::sync::{broadcast, watch};
use tonic::Status;

use super::convert;
use crate::auth::Keys;

/// Changes a watcher may be behind before it is dropped (the hub keeps this many,
/// shared by every watcher).
pub const HUB_CAPACITY: usize = 4096;
/// Most change notices the hub reads together (several commits' worth).
const COALESCE_NOTICES: usize = 4096;

/// One change as watchers get it: the incident as read after it.
#[derive(Debug)]
pub struct Change {
    pub kind: ChangeKind,
    pub incident: Incident,
    pub message: v1::IncidentChange,
}

#[derive(Debug, Clone)]
enum Feed {
    Change(Arc<Change>),
    /// The hub fell behind the store: changes were missed.
    Missed(u64),
}

pub struct WatchHub {
    store: Arc<dyn Store>,
    sender: broadcast::Sender<Feed>,
    started: Mutex<bool>,
    closing: watch::Sender<bool>,
}

impl WatchHub {
    pub fn new(store: Arc<dyn Store>) -> Arc<WatchHub> {
        Arc::new(WatchHub {
            store,
            sender: broadcast::channel(HUB_CAPACITY).0,
            started: Mutex::new(false),
            closing: watch::channel(false).0,
        })
    }

    /// Ends every watch (with `UNAVAILABLE`) and refuses new ones: the server stops.
    pub fn close(&self) {
        let _ = self.closing.send(true);
    }

    /// Changes from now on that match `filter`, as a stream of messages.
    pub fn watch(
        self: &Arc<Self>,
        filter: IncidentFilter,
        key: Option<KeyHold>,
    ) -> Result<impl Stream<Item = Result<v1::IncidentChange, Status>> + Send + 'static, Status> {
        if *self.closing.borrow() {
            return Err(shutting_down());
        }
        let state = Watcher {
            feed: self.subscribe(),
            closing: self.closing.subscribe(),
            filter,
            key,
            done: false,
        };
        Ok(futures_util::stream::unfold(state, Watcher::next))
    }

    /// A new watcher's receiver; the hub starts reading the store's feed when none did.
    /// Both under one lock, which `run` also takes before it stops, so that a watcher
    /// never subscribes to a hub about to stop.
    fn subscribe(self: &Arc<Self>) -> broadcast::Receiver<Feed> {
        let mut started = self.started.lock().unwrap_or_else(PoisonError::into_inner);
        let receiver = self.sender.subscribe();
        if !std::mem::replace(&mut *started, true) {
            let hub = Arc::clone(self);
            let changes = self.store.changes().subscribe();
            tokio::spawn(hub.run(changes));
        }
        receiver
    }

    /// Stops reading the store's feed when the last watcher has gone, so that the store
    /// (and, on PostgreSQL, the other replicas) stop publishing for nobody. True when it
    /// stopped.
    fn stop_if_unwatched(&self) -> bool {
        let mut started = self.started.lock().unwrap_or_else(PoisonError::into_inner);
        let unwatched = self.sender.receiver_count() == 0;
        if unwatched {
            *started = false;
        }
        unwatched
    }

    async fn run(self: Arc<Self>, mut changes: broadcast::Receiver<Arc<[ChangeNotice]>>) {
        let mut closing = self.closing.subscribe();
        loop {
            let notices = tokio::select! {
                received = changes.recv() => received,
                () = closed(&mut closing) => return,
            };
            match notices {
                Ok(first) => {
                    if self.stop_if_unwatched() {
                        return;
                    }
                    // The commits that came while the last read ran are read together:
                    // under heavy ingest the hub reads once per round, not once per commit,
                    // and so keeps up.
                    let mut notices = first.to_vec();
                    while notices.len() < COALESCE_NOTICES {
                        match changes.try_recv() {
                            Ok(more) => notices.extend_from_slice(&more),
                            Err(broadcast::error::TryRecvError::Lagged(missed)) => {
                                tracing::warn!(missed, "the watch hub fell behind the store's changes");
                                let _ = self.sender.send(Feed::Missed(missed));
                            }
                            Err(_) => break,
                        }
                    }
                    match self.read(&notices).await {
                        Ok(changes) => {
                            for change in changes {
                                let _ = self.sender.send(Feed::Change(Arc::new(change)));
                            }
                        }
                        Err(error) => {
                            tracing::warn!(%error, "cannot read changed incidents for their watchers");
                            let _ = self.sender.send(Feed::Missed(notices.len() as u64));
                        }
                    }
                }
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    tracing::warn!(missed, "the watch hub fell behind the store's changes");
                    let _ = self.sender.send(Feed::Missed(missed));
                }
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    }

    /// The changed incidents, read once (an incident changed several times in a batch is
    /// read once and sent as it is now, once per change).
    async fn read(&self, notices: &[ChangeNotice]) -> Result<Vec<Change>, lim_store::StoreError> {
        let mut ids: Vec<_> = notices.iter().map(|notice| notice.incident_id).collect();
        ids.sort_unstable();
        ids.dedup();
        let mut incidents = HashMap::with_capacity(ids.len());
        // The store reads at most MAX_INCIDENTS_READ at once; a large commit takes several.
        for chunk in ids.chunks(lim_store::MAX_INCIDENTS_READ) {
            for incident in self.store.get_incidents(chunk).await? {
                incidents.insert(incident.id, incident);
            }
        }
        Ok(notices
            .iter()
            .filter_map(|notice| {
                let incident = incidents.get(&notice.incident_id)?;
                Some(Change {
                    kind: notice.kind,
                    message: v1::IncidentChange {
                        kind: change_kind(notice.kind) as i32,
                        incident: Some(convert::incident(incident)),
                        at: Some(convert::timestamp(notice.at)),
                    },
                    incident: incident.clone(),
                })
            })
            .collect())
    }
}

fn change_kind(kind: ChangeKind) -> v1::ChangeKind {
    match kind {
        ChangeKind::Created => v1::ChangeKind::Created,
        ChangeKind::Deduplicated => v1::ChangeKind::Deduplicated,
        ChangeKind::StateChanged => v1::ChangeKind::StateChanged,
        ChangeKind::Classified => v1::ChangeKind::Classified,
        ChangeKind::Commented => v1::ChangeKind::Commented,
        ChangeKind::Explained => v1::ChangeKind::Explained,
    }
}

/// Completes once the hub is closed.
pub async fn closed(closing: &mut watch::Receiver<bool>) {
    let _ = closing.wait_for(|closing| *closing).await;
}

fn shutting_down() -> Status {
    Status::unavailable("the server is shutting down; watch again on another replica or after the restart")
}

/// The API key a watch was made with: the watch ends when it is revoked.
pub struct KeyHold {
    keys: Arc<Keys>,
    name: String,
    revocations: watch::Receiver<u64>,
}

impl KeyHold {
    pub fn new(keys: Arc<Keys>, name: String) -> KeyHold {
        let revocations = keys.revocations();
        KeyHold {
            keys,
            name,
            revocations,
        }
    }

    /// Completes when the key no longer holds.
    async fn revoked(&mut self) {
        loop {
            if !self.keys.holds(&self.name) {
                return;
            }
            if self.revocations.changed().await.is_err() {
                // The keys are gone with the server; its closing ends the watch.
                std::future::pending::<()>().await;
            }
        }
    }
}

/// Completes when the watch's key (if it was made with one) is revoked.
async fn key_revoked(key: &mut Option<KeyHold>) {
    match key {
        Some(key) => key.revoked().await,
        None => std::future::pending().await,
    }
}

struct Watcher {
    feed: broadcast::Receiver<Feed>,
    closing: watch::Receiver<bool>,
    filter: IncidentFilter,
    key: Option<KeyHold>,
    done: bool,
}

impl Watcher {
    async fn next(mut self) -> Option<(Result<v1::IncidentChange, Status>, Watcher)> {
        if self.done {
            return None;
        }
        loop {
            let received = tokio::select! {
                received = self.feed.recv() => Some(received),
                () = closed(&mut self.closing) => None,
                () = key_revoked(&mut self.key) => {
                    return self.end(Status::unauthenticated("the API key of this watch was revoked"));
                }
            };
            let Some(received) = received else {
                return self.end(shutting_down());
            };
            match received {
                Ok(Feed::Change(change)) => {
                    if matches(&self.filter, &change.incident) {
                        return Some((Ok(change.message.clone()), self));
                    }
                }
                Ok(Feed::Missed(missed)) => {
                    return self.end(Status::resource_exhausted(format!(
                        "the server fell behind the changes ({missed} missed); watch again"
                    )));
                }
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    return self.end(Status::resource_exhausted(format!(
                        "this watch fell {missed} changes behind (its client reads too slowly; at most \
                         {HUB_CAPACITY} are kept); watch again"
                    )));
                }
                Err(broadcast::error::RecvError::Closed) => return self.end(shutting_down()),
            }
        }
    }

    /// The last item: the status the stream ends with.
    fn end(mut self, status: Status) -> Option<(Result<v1::IncidentChange, Status>, Watcher)> {
        self.done = true;
        Some((Err(status), self))
    }
}

/// Whether the incident as it is now passes the filter (an empty list matches any).
pub fn matches(filter: &IncidentFilter, incident: &Incident) -> bool {
    (filter.states.is_empty() || filter.states.contains(&incident.state))
        && (filter.severities.is_empty() || filter.severities.contains(&incident.severity))
        && (filter.sources.is_empty() || filter.sources.contains(&incident.source))
        && (filter.categories.is_empty() || filter.categories.contains(&incident.category))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use lim_domain::{Category, Event, EventStatus, IngestOutcome, Reactions, Severity, Source};

    use super::*;

    /// The store reads at most `MAX_INCIDENTS_READ` incidents at once; the hub reads the
    /// notices of several commits together, so it reads them in chunks.
    #[tokio::test]
    async fn the_hub_reads_more_changed_incidents_than_one_store_read_takes() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/hub.db", dir.path().display());
        let store = lim_store::connect(&url, lim_store::StoreOptions::default())
            .await
            .unwrap();
        let now = chrono::Utc::now();
        let count = lim_store::MAX_INCIDENTS_READ + 500;
        let events = (0..count)
            .map(|n| Event {
                source: Source::Sentinel,
                title: format!("latency {n}"),
                description: String::new(),
                severity: Severity::P2,
                category: Category::Performance,
                labels: BTreeMap::new(),
                fingerprint: format!("fp-{n}"),
                status: EventStatus::Firing,
                occurred_at: now,
                occurred_at_given: false,
                classification: None,
            })
            .collect();
        let outcomes = store.ingest(events, now, Arc::new(Reactions::default())).await.unwrap();
        let notices: Vec<ChangeNotice> = outcomes
            .iter()
            .map(|outcome| match outcome {
                IngestOutcome::Created(incident) => ChangeNotice {
                    kind: ChangeKind::Created,
                    incident_id: incident.id,
                    at: now,
                },
                other => panic!("expected a new incident, got {other:?}"),
            })
            .collect();

        let hub = WatchHub::new(store);
        assert_eq!(hub.read(&notices).await.unwrap().len(), count);
    }
}
