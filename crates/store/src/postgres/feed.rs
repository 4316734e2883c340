//! The change feed between replicas: LISTEN/NOTIFY on the channel [`CHANNEL`].
//!
//! After a commit, a replica tells its own watchers at once and hands the notices to its
//! relay, which sends them on with `pg_notify` off the request path, several commits in
//! one statement when they come fast. Each replica listens on its own connection (not
//! one of the pool's) and passes on what the others sent; its own notifications, marked
//! with its origin, it skips. A notice is about 55 bytes, so a payload (PostgreSQL takes
//! 8000 bytes at most) holds over a hundred.
//!
//! Notices are sent only while another replica has watchers: each replica with some keeps
//! a row of `change_watchers` fresh (every [`INTEREST_INTERVAL`]), and reads whether any
//! other's is, so that ingest pays nothing for a feed no one reads. A watch therefore sees
//! the other replicas' changes from a second or two after it starts.
//!
//! What a watcher sees is "from now on", at most once: a replica that dies between its
//! commit and its relay's `pg_notify` takes those notices with it, as it takes its own
//! watchers' streams.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use lim_domain::IncidentId;
use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::changes::{ChangeFeed, ChangeKind, ChangeNotice};

/// The channel every replica of one database listens on.
pub(super) const CHANNEL: &str = "lim_incident_changes";
/// The largest payload sent: PostgreSQL refuses 8000 bytes and more.
const MAX_PAYLOAD_BYTES: usize = 7800;
/// Commits whose notices may wait for the relay; past it they are not sent to the other
/// replicas (a warning says so) rather than held in memory without bound.
const RELAY_QUEUE: usize = 4096;
/// How often a replica marks its interest and reads the others'.
const INTEREST_INTERVAL: Duration = Duration::from_secs(1);
/// How long a mark of interest holds without being renewed.
const INTEREST_TTL_SECONDS: f64 = 10.0;

/// How long the listener waits before it connects again after losing its connection.
const RECONNECT_DELAY: Duration = Duration::from_secs(1);

/// A replica's side of the feed: its relay and its listener, stopped when dropped.
pub(super) struct Replicas {
    relay: mpsc::Sender<Vec<ChangeNotice>>,
    /// Whether another replica has watchers (so this one's changes are worth sending).
    wanted: Arc<AtomicBool>,
    tasks: [JoinHandle<()>; 3],
}

impl Drop for Replicas {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl Replicas {
    /// Starts the relay (sending on `pool`) and the listener (on a connection of its own).
    pub(super) fn start(pool: PgPool, connect_options: PgConnectOptions, feed: Arc<ChangeFeed>) -> Replicas {
        let origin = format!("{:08x}", rand_origin());
        let (relay, queue) = mpsc::channel(RELAY_QUEUE);
        let wanted = Arc::new(AtomicBool::new(false));
        let relay_task = tokio::spawn(run_relay(pool.clone(), origin.clone(), queue));
        let interest_task = tokio::spawn(run_interest(
            pool,
            origin.clone(),
            Arc::clone(&feed),
            Arc::clone(&wanted),
        ));
        let listener_task = tokio::spawn(run_listener(connect_options, origin, feed));
        Replicas {
            relay,
            wanted,
            tasks: [relay_task, interest_task, listener_task],
        }
    }

    /// Hands the notices of one commit to the relay; never waits.
    pub(super) fn send(&self, notices: &[ChangeNotice]) {
        if notices.is_empty() || !self.wanted.load(Ordering::Relaxed) {
            return;
        }
        if let Err(mpsc::error::TrySendError::Full(_)) = self.relay.try_send(notices.to_vec()) {
            tracing::warn!(
                notices = notices.len(),
                "the change relay is behind; these changes are not sent to the other replicas' watchers"
            );
        }
    }
}

/// A replica's mark on what it sends, so it can skip its own notifications.
fn rand_origin() -> u32 {
    // The last bytes of a new id are random.
    let bytes = IncidentId::generate().0.into_bytes();
    u32::from_le_bytes([bytes[12], bytes[13], bytes[14], bytes[15]])
}

/// Keeps this replica's mark of interest fresh while it has watchers, and `wanted` true
/// while another replica's is.
async fn run_interest(pool: PgPool, origin: String, feed: Arc<ChangeFeed>, wanted: Arc<AtomicBool>) {
    let mut ticks = tokio::time::interval(INTEREST_INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut pruned = false;
    loop {
        ticks.tick().await;
        if feed.watched() {
            let marked = sqlx::query(
                "INSERT INTO change_watchers (replica, until) VALUES ($1, now() + make_interval(secs => $2)) \
                 ON CONFLICT (replica) DO UPDATE SET until = EXCLUDED.until",
            )
            .bind(&origin)
            .bind(INTEREST_TTL_SECONDS)
            .execute(&pool)
            .await;
            if let Err(error) = marked {
                tracing::warn!(%error, "cannot tell the other replicas that this one has watchers");
            }
            // Each process marks under a name of its own: the first time it marks, it
            // removes the marks of processes long gone (restarts, rescheduled pods), which
            // would otherwise be kept for ever.
            if !pruned {
                let deleted =
                    sqlx::query("DELETE FROM change_watchers WHERE until < now() - make_interval(secs => $1)")
                        .bind(INTEREST_TTL_SECONDS * 10.0)
                        .execute(&pool)
                        .await;
                match deleted {
                    Ok(_) => pruned = true,
                    Err(error) => tracing::debug!(%error, "cannot remove the marks of replicas gone"),
                }
            }
        }
        let others = sqlx::query_scalar::<_, bool>(
            "SELECT EXISTS (SELECT 1 FROM change_watchers WHERE replica <> $1 AND until > now())",
        )
        .bind(&origin)
        .fetch_one(&pool)
        .await;
        match others {
            Ok(others) => wanted.store(others, Ordering::Relaxed),
            // Unknown: sending is the safe side.
            Err(_) => wanted.store(true, Ordering::Relaxed),
        }
    }
}

async fn run_relay(pool: PgPool, origin: String, mut queue: mpsc::Receiver<Vec<ChangeNotice>>) {
    let mut batch = Vec::new();
    while let Some(first) = queue.recv().await {
        batch.clear();
        batch.extend(first);
        // Whatever else came meanwhile goes in the same statement.
        while batch.len() < 10_000
            && let Ok(more) = queue.try_recv()
        {
            batch.extend(more);
        }
        let payloads = encode(&origin, &batch);
        let sent = sqlx::query("SELECT pg_notify($1, payload) FROM UNNEST($2::text[]) AS payload")
            .bind(CHANNEL)
            .bind(&payloads)
            .execute(&pool)
            .await;
        if let Err(error) = sent {
            tracing::warn!(%error, notices = batch.len(), "cannot send changes to the other replicas");
        }
    }
}

async fn run_listener(connect_options: PgConnectOptions, origin: String, feed: Arc<ChangeFeed>) {
    // A pool of one connection, apart from the store's: LISTEN holds its connection.
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .connect_lazy_with(connect_options);
    loop {
        let mut listener = match PgListener::connect_with(&pool).await {
            Ok(listener) => listener,
            Err(error) => {
                tracing::warn!(%error, "cannot listen for the other replicas' changes; trying again");
                tokio::time::sleep(RECONNECT_DELAY).await;
                continue;
            }
        };
        if let Err(error) = listener.listen(CHANNEL).await {
            tracing::warn!(%error, "cannot listen for the other replicas' changes; trying again");
            tokio::time::sleep(RECONNECT_DELAY).await;
            continue;
        }
        loop {
            match listener.try_recv().await {
                Ok(Some(notification)) => {
                    let payload = notification.payload();
                    if payload.starts_with(origin.as_str()) {
                        continue;
                    }
                    match decode(payload) {
                        Some(notices) => feed.publish(notices),
                        None => tracing::warn!("a change notification that does not read was skipped"),
                    }
                }
                // The connection was lost: changes sent meanwhile are missed.
                Ok(None) => {
                    tracing::warn!("the connection listening for changes was lost; listening again");
                    break;
                }
                Err(error) => {
                    tracing::warn!(%error, "the connection listening for changes failed; listening again");
                    tokio::time::sleep(RECONNECT_DELAY).await;
                    break;
                }
            }
        }
    }
}

/// Payloads of at most [`MAX_PAYLOAD_BYTES`]: the origin, then per notice its kind's
/// code, the incident id (32 hex digits), the time in microseconds since 1970, and `;`.
fn encode(origin: &str, notices: &[ChangeNotice]) -> Vec<String> {
    let mut payloads = Vec::new();
    let mut payload = String::with_capacity(MAX_PAYLOAD_BYTES);
    for notice in notices {
        if payload.len() + 64 > MAX_PAYLOAD_BYTES {
            payloads.push(std::mem::replace(
                &mut payload,
                String::with_capacity(MAX_PAYLOAD_BYTES),
            ));
        }
        if payload.is_empty() {
            payload.push_str(origin);
        }
        let _ = write!(
            payload,
            "{}{}{};",
            notice.kind.code(),
            notice.incident_id.0.simple(),
            notice.at.timestamp_micros()
        );
    }
    if !payload.is_empty() {
        payloads.push(payload);
    }
    payloads
}

fn decode(payload: &str) -> Option<Vec<ChangeNotice>> {
    let body = payload.get(8..)?;
    body.split_terminator(';')
        .map(|notice| {
            let kind = ChangeKind::from_code(notice.chars().next()?)?;
            let id = Uuid::try_parse(notice.get(1..33)?).ok()?;
            let at = DateTime::<Utc>::from_timestamp_micros(notice.get(33..)?.parse().ok()?)?;
            Some(ChangeNotice {
                kind,
                incident_id: IncidentId(id),
                at,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notices_travel_in_payloads_postgres_takes() {
        let at = DateTime::<Utc>::from_timestamp_micros(1_780_000_000_123_456).unwrap();
        let notices: Vec<ChangeNotice> = (0..1000)
            .map(|index| ChangeNotice {
                kind: if index % 2 == 0 {
                    ChangeKind::Created
                } else {
                    ChangeKind::Explained
                },
                incident_id: IncidentId::generate(),
                at,
            })
            .collect();
        let payloads = encode("0badf00d", &notices);
        assert!(payloads.len() > 1);
        let mut read = Vec::new();
        for payload in &payloads {
            assert!(payload.len() < 8000, "{} bytes", payload.len());
            assert!(payload.starts_with("0badf00d"));
            read.extend(decode(payload).unwrap());
        }
        assert_eq!(read, notices);
        assert_eq!(decode("0badf00dz123;"), None);
        assert_eq!(decode("short"), None);
    }
}
