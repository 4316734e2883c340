//! Storage of incidents and their timelines: one trait, two backends.
//!
//! SQLite (WAL, one writer thread with group commit) is the embedded default;
//! PostgreSQL carries several replicas. Both run the same migrations in spirit
//! (one folder each) and pass the same test suite (`tests/store_suite.rs`).
//! A unique index on the fingerprint of open incidents guarantees at most one open
//! incident per fingerprint. PostgreSQL decides dedup with it (an upsert); SQLite's one
//! writer looks the open incident up first and has the index as its guard.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
pub use lim_domain::IngestOutcome;
use lim_domain::{
    Action, Category, EntryPage, EntryPageRequest, ErrorKind, Event, IllegalTransition, Incident, IncidentFilter,
    IncidentId, PageRequest, Severity, Source, TimelineEntry, Transition,
};

mod postgres;
mod sqlite;
#[cfg(feature = "testing")]
pub mod testing;

pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;

/// Names of the store operations, used as the `operation` label of
/// `database_query_duration_seconds`. A closed set, one per trait method.
pub mod operation {
    pub const INGEST: &str = "ingest_events";
    pub const CREATE_INCIDENT: &str = "insert_incident";
    pub const TRANSITION: &str = "update_incident";
    pub const ADD_COMMENT: &str = "insert_comment";
    pub const GET_INCIDENT: &str = "select_incident";
    pub const LIST_INCIDENTS: &str = "list_incidents";
    pub const TIMELINE: &str = "select_timeline";
    pub const COMMENTS: &str = "select_comments";
    pub const COUNT_OPEN: &str = "count_open_incidents";
    pub const PING: &str = "ping";
    pub const MIGRATE: &str = "migrate";
}

/// Told the duration of every store operation (the metrics layer records it).
pub type QueryObserver = Arc<dyn Fn(&'static str, Duration) + Send + Sync>;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("incident {0} not found")]
    NotFound(IncidentId),
    #[error(transparent)]
    IllegalTransition(#[from] IllegalTransition),
    #[error("{0}")]
    Overloaded(String),
    #[error("the database is unavailable: {0}")]
    Unavailable(String),
    #[error("database error: {0}")]
    Internal(String),
}

impl StoreError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            StoreError::NotFound(_) => ErrorKind::NotFound,
            StoreError::IllegalTransition(_) => ErrorKind::IllegalTransition,
            StoreError::Overloaded(_) => ErrorKind::Overloaded,
            StoreError::Unavailable(_) => ErrorKind::Unavailable,
            StoreError::Internal(_) => ErrorKind::Internal,
        }
    }
}

/// The number of open incidents with one label set (the `incidents_active` gauge).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OpenCount {
    pub severity: Severity,
    pub source: Source,
    pub category: Category,
    pub count: i64,
}

/// Connections of the store's pool, for the connection gauges.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PoolStats {
    pub in_use: u32,
    pub idle: u32,
    pub max: u32,
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Applies validated events in order, in one transaction: all are stored or none.
    async fn ingest(&self, events: Vec<Event>, now: DateTime<Utc>) -> Result<Vec<IngestOutcome>, StoreError>;

    /// Stores a new incident with its `created` timeline entry.
    async fn create_incident(&self, incident: Incident) -> Result<(), StoreError>;

    /// Applies `action` if the incident's current state allows it (checked and written
    /// atomically), appending the timeline entry.
    async fn transition(
        &self,
        id: IncidentId,
        action: Action,
        actor: String,
        now: DateTime<Utc>,
    ) -> Result<Transition, StoreError>;

    /// Appends a comment to the incident's timeline.
    async fn add_comment(&self, entry: TimelineEntry) -> Result<(), StoreError>;

    async fn get_incident(&self, id: IncidentId) -> Result<Option<Incident>, StoreError>;

    /// Newest first, at most `page.limit`, strictly older than `page.before`.
    async fn list_incidents(&self, filter: &IncidentFilter, page: PageRequest) -> Result<Vec<Incident>, StoreError>;

    /// A page of the incident's timeline, oldest first; `NotFound` for an unknown incident.
    async fn timeline(&self, id: IncidentId, page: EntryPageRequest) -> Result<EntryPage, StoreError>;

    /// A page of the incident's comments, oldest first; `NotFound` for an unknown incident.
    async fn comments(&self, id: IncidentId, page: EntryPageRequest) -> Result<EntryPage, StoreError>;

    /// Open incidents counted by severity, source and category.
    async fn count_open(&self) -> Result<Vec<OpenCount>, StoreError>;

    /// Answers when a write would succeed: the database answers and takes writes (on
    /// SQLite, the writer thread and its syncer run; on PostgreSQL, the server is no
    /// read-only standby).
    async fn ping(&self) -> Result<(), StoreError>;

    fn pool_stats(&self) -> PoolStats;

    /// `sqlite` or `postgres`.
    fn backend(&self) -> &'static str;
}

/// How to open a store.
#[derive(Clone)]
pub struct StoreOptions {
    pub max_connections: u32,
    /// Events (or other writes, one each) that may wait for the SQLite writer; past it a
    /// write is refused as `Overloaded` instead of queueing without bound.
    pub max_queued_events: u32,
    pub observer: Option<QueryObserver>,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            max_connections: 8,
            max_queued_events: 20_000,
            observer: None,
        }
    }
}

/// Opens (creating if needed) and migrates the store named by `url`:
/// `sqlite://path/to/file.db` or `postgres://…`.
pub async fn connect(url: &str, options: StoreOptions) -> Result<Arc<dyn Store>, StoreError> {
    if let Some(path) = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:")) {
        return Ok(Arc::new(SqliteStore::open(path, options).await?));
    }
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Ok(Arc::new(PostgresStore::connect(url, options).await?));
    }
    Err(StoreError::Unavailable(format!(
        "unsupported database URL `{url}`: use sqlite://PATH or postgres://…"
    )))
}

/// The entries of a page read one past its limit: the page, and where the next one
/// starts when there is one.
pub(crate) fn page_of(mut entries: Vec<(i64, TimelineEntry)>, limit: u32) -> EntryPage {
    let more = entries.len() > limit as usize;
    entries.truncate(limit as usize);
    let next = more
        .then(|| entries.last().map(|(seq, _)| lim_domain::EntryCursor(*seq)))
        .flatten();
    EntryPage {
        entries: entries.into_iter().map(|(_, entry)| entry).collect(),
        next,
    }
}

/// Times `operation` for the observer.
pub(crate) struct QueryTimer<'a> {
    observer: &'a Option<QueryObserver>,
    operation: &'static str,
    started: std::time::Instant,
}

impl<'a> QueryTimer<'a> {
    pub(crate) fn start(observer: &'a Option<QueryObserver>, operation: &'static str) -> Self {
        QueryTimer {
            observer,
            operation,
            started: std::time::Instant::now(),
        }
    }
}

impl Drop for QueryTimer<'_> {
    fn drop(&mut self) {
        if let Some(observer) = self.observer {
            observer(self.operation, self.started.elapsed());
        }
    }
}
