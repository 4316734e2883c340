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
use lim_domain::auth::ApiKey;
use lim_domain::silence::{Silence, SilenceId, SilenceState};
use lim_domain::{
    Action, Category, EntryPage, EntryPageRequest, ErrorKind, Event, IllegalTransition, Incident, IncidentFilter,
    IncidentId, Job, JobId, JobKind, JobPayload, JobResult, JobState, NewJob, Opening, PageRequest, PendingEscalation,
    Reactions, Severity, Source, TimelineEntry, Transition,
};
use tokio::sync::Notify;
use uuid::Uuid;

mod chains;
mod changes;
mod postgres;
mod sqlite;
#[cfg(feature = "testing")]
pub mod testing;

pub use changes::{ChangeFeed, ChangeKind, ChangeNotice, FEED_CAPACITY};
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
    pub const GET_INCIDENTS: &str = "select_incidents";
    pub const LIST_INCIDENTS: &str = "list_incidents";
    pub const TIMELINE: &str = "select_timeline";
    pub const COMMENTS: &str = "select_comments";
    pub const COUNT_OPEN: &str = "count_open_incidents";
    pub const PING: &str = "ping";
    pub const MIGRATE: &str = "migrate";
    pub const ENQUEUE_JOBS: &str = "insert_jobs";
    pub const CLAIM_JOBS: &str = "claim_jobs";
    pub const FINISH_JOB: &str = "finish_job";
    pub const RELEASE_JOBS: &str = "release_jobs";
    pub const LIST_JOBS: &str = "list_jobs";
    pub const RETRY_JOB: &str = "retry_job";
    pub const COUNT_JOBS: &str = "count_jobs";
    pub const PRUNE_JOBS: &str = "prune_jobs";
    pub const CREATE_SILENCE: &str = "insert_silence";
    pub const LIST_SILENCES: &str = "list_silences";
    pub const DELETE_SILENCE: &str = "delete_silence";
    pub const GROUP_MEMBERS: &str = "select_group";
    pub const LLM_CACHE_GET: &str = "select_llm_cache";
    pub const LLM_CACHE_PUT: &str = "insert_llm_cache";
    pub const PRUNE_LLM_CACHE: &str = "prune_llm_cache";
    pub const CREATE_API_KEY: &str = "insert_api_key";
    pub const LIST_API_KEYS: &str = "list_api_keys";
    pub const REVOKE_API_KEY: &str = "revoke_api_key";
    pub const TOUCH_API_KEYS: &str = "touch_api_keys";
}

/// The most incidents one `get_incidents` reads.
pub const MAX_INCIDENTS_READ: usize = 1000;

/// Told the duration of every store operation (the metrics layer records it).
pub type QueryObserver = Arc<dyn Fn(&'static str, Duration) + Send + Sync>;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("incident {0} not found")]
    NotFound(IncidentId),
    #[error("job {0} not found")]
    JobNotFound(JobId),
    #[error("silence {0} not found")]
    SilenceNotFound(SilenceId),
    #[error("no API key is named `{0}`")]
    KeyNotFound(String),
    #[error("an API key named `{0}` exists already")]
    KeyExists(String),
    #[error(transparent)]
    IllegalTransition(#[from] IllegalTransition),
    #[error("job {id} is {state}; only a dead job can be retried")]
    NotDead { id: JobId, state: JobState },
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
            StoreError::NotFound(_)
            | StoreError::JobNotFound(_)
            | StoreError::SilenceNotFound(_)
            | StoreError::KeyNotFound(_) => ErrorKind::NotFound,
            StoreError::KeyExists(_) => ErrorKind::InvalidField,
            StoreError::IllegalTransition(_) | StoreError::NotDead { .. } => ErrorKind::IllegalTransition,
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
    /// When the oldest of them that nobody has acknowledged yet was created (NEW or
    /// ASSIGNED and never acknowledged: one handed over after an acknowledgement is not,
    /// as `Incident::escalates` has it); `None` when every one is acknowledged.
    pub oldest_unacknowledged: Option<DateTime<Utc>>,
}

/// Connections of the store's pool, for the connection gauges.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PoolStats {
    pub in_use: u32,
    pub idle: u32,
    pub max: u32,
}

/// How one attempt of a job ended, and what to write with it, in one transaction.
#[derive(Debug, Clone)]
pub struct JobFinish {
    pub id: JobId,
    pub worker: String,
    pub result: JobResult,
    /// The attempt on its incidents' timelines (a notification's outcome, on each incident
    /// of a grouped one; an escalation level).
    pub entries: Vec<TimelineEntry>,
    /// Jobs this one leads to (the next housekeeping, an escalation level's deliveries and
    /// the level after it).
    pub follow_ups: Vec<NewJob>,
    /// Set when the job is a level of this incident's escalation: the incident's pending
    /// level is cleared, and the entries and follow-ups are written only while the incident
    /// still escalates (open, unacknowledged), checked in the same transaction, so that an
    /// acknowledgement that came first stops the level.
    pub escalating: Option<IncidentId>,
    pub now: DateTime<Utc>,
}

/// What `finish_job` recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finished {
    /// The attempt, its entries and follow-ups.
    Recorded,
    /// The attempt only: the incident stopped escalating before the level finished.
    Stopped,
    /// Nothing: the worker no longer held the job (its lease expired and another took it).
    Lost,
}

/// Which silences to list: by their state at `now`. An empty vector means any.
#[derive(Debug, Clone, PartialEq)]
pub struct SilenceFilter {
    pub states: Vec<SilenceState>,
    pub now: DateTime<Utc>,
}

/// A page of silences: newest first, strictly older than `before` when given.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SilencePageRequest {
    pub limit: u32,
    pub before: Option<SilenceId>,
}

/// The incidents of a grouped notification (at most the limit asked for) and how many it
/// holds in all.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupMembers {
    pub incidents: Vec<Incident>,
    pub total: u64,
}

/// Which jobs to list. Empty vectors mean "any".
#[derive(Debug, Clone, Default, PartialEq)]
pub struct JobFilter {
    pub states: Vec<JobState>,
    pub kinds: Vec<JobKind>,
}

/// A page of jobs: newest first, strictly older than `before` when given.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct JobPageRequest {
    pub limit: u32,
    pub before: Option<JobId>,
}

/// A wake-up per job kind, notified after a commit that wrote jobs of the kind (and only
/// then: an ingest that wrote none wakes no worker).
#[derive(Debug, Default)]
pub struct JobSignals {
    by_kind: [Notify; JobKind::ALL.len()],
}

impl JobSignals {
    pub fn of(&self, kind: JobKind) -> &Notify {
        &self.by_kind[Self::index(kind)]
    }

    /// Wakes the workers of every kind among `kinds`, once each.
    pub fn wrote(&self, kinds: impl IntoIterator<Item = JobKind>) {
        let mut woken = [false; JobKind::ALL.len()];
        for kind in kinds {
            let index = Self::index(kind);
            if !std::mem::replace(&mut woken[index], true) {
                self.by_kind[index].notify_waiters();
            }
        }
    }

    fn index(kind: JobKind) -> usize {
        JobKind::ALL
            .iter()
            .position(|each| *each == kind)
            .expect("JobKind::ALL lists every kind")
    }
}

/// Jobs waiting (due now or later) of one kind (the `job_queue_depth` gauge).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct JobCount {
    pub kind: JobKind,
    pub queued: i64,
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Applies validated events in order, in one transaction: all are stored or none. A
    /// new incident is routed by `reactions` and each change gets the jobs it causes, in
    /// the same transaction.
    async fn ingest(
        &self,
        events: Vec<Event>,
        now: DateTime<Utc>,
        reactions: Arc<Reactions>,
    ) -> Result<Vec<IngestOutcome>, StoreError>;

    /// Stores a new incident as routing left it, with its timeline entries and jobs.
    async fn create_incident(&self, opening: Opening) -> Result<(), StoreError>;

    /// Applies `action` if the incident's current state allows it (checked and written
    /// atomically), appending the timeline entry and writing the jobs it causes.
    async fn transition(
        &self,
        id: IncidentId,
        action: Action,
        actor: String,
        now: DateTime<Utc>,
        reactions: Arc<Reactions>,
    ) -> Result<Transition, StoreError>;

    /// Appends a comment to the incident's timeline.
    async fn add_comment(&self, entry: TimelineEntry) -> Result<(), StoreError>;

    async fn get_incident(&self, id: IncidentId) -> Result<Option<Incident>, StoreError>;

    /// The incidents of `ids` that exist, in no particular order (ids past
    /// [`MAX_INCIDENTS_READ`] are not read).
    async fn get_incidents(&self, ids: &[IncidentId]) -> Result<Vec<Incident>, StoreError>;

    /// Newest first, at most `page.limit`, strictly older than `page.before`.
    async fn list_incidents(&self, filter: &IncidentFilter, page: PageRequest) -> Result<Vec<Incident>, StoreError>;

    /// A page of the incident's timeline, oldest first; `NotFound` for an unknown incident.
    async fn timeline(&self, id: IncidentId, page: EntryPageRequest) -> Result<EntryPage, StoreError>;

    /// A page of the incident's comments, oldest first; `NotFound` for an unknown incident.
    async fn comments(&self, id: IncidentId, page: EntryPageRequest) -> Result<EntryPage, StoreError>;

    /// Open incidents counted by severity, source and category.
    async fn count_open(&self) -> Result<Vec<OpenCount>, StoreError>;

    /// Writes jobs no incident change caused (a schedule, a job retried by hand).
    async fn enqueue_jobs(&self, jobs: Vec<NewJob>) -> Result<(), StoreError>;

    /// Writes `job` unless a queued or running job of its kind exists already (a recurring
    /// job, scheduled once however many replicas start); true when written.
    async fn ensure_job(&self, job: NewJob) -> Result<bool, StoreError>;

    /// Claims up to `limit` due jobs of `kind` for `worker` until `lease_until`: queued
    /// ones due by `now` (oldest first, one at a time per serial key) and running ones
    /// whose lease has expired (their worker died). Each claim is an attempt.
    async fn claim_jobs(
        &self,
        kind: JobKind,
        limit: u32,
        worker: &str,
        lease_until: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Vec<Job>, StoreError>;

    /// Records how an attempt ended (see [`Finished`]).
    async fn finish_job(&self, finish: JobFinish) -> Result<Finished, StoreError>;

    /// Hands the worker's running jobs back, queued again and the attempt not counted
    /// (a shutdown that could not wait for them).
    async fn release_jobs(&self, worker: &str, now: DateTime<Utc>) -> Result<u64, StoreError>;

    async fn get_job(&self, id: JobId) -> Result<Option<Job>, StoreError>;

    /// Newest first, at most `page.limit`, strictly older than `page.before`.
    async fn list_jobs(&self, filter: &JobFilter, page: JobPageRequest) -> Result<Vec<Job>, StoreError>;

    /// Queues a dead job again, due now, with its attempts reset.
    async fn retry_job(&self, id: JobId, now: DateTime<Utc>) -> Result<Job, StoreError>;

    /// Queued jobs counted by kind.
    async fn count_jobs(&self) -> Result<Vec<JobCount>, StoreError>;

    /// Deletes jobs done before `before`; how many.
    async fn prune_jobs(&self, before: DateTime<Utc>) -> Result<u64, StoreError>;

    async fn create_silence(&self, silence: Silence) -> Result<(), StoreError>;

    async fn get_silence(&self, id: SilenceId) -> Result<Option<Silence>, StoreError>;

    /// Newest first, at most `page.limit`, strictly older than `page.before`.
    async fn list_silences(&self, filter: &SilenceFilter, page: SilencePageRequest)
    -> Result<Vec<Silence>, StoreError>;

    /// Deletes a silence and, in the same transaction, when it still held (or was still
    /// to hold) at `now`, starts the escalations it held back from `now` (level 1 keeps its
    /// delay); answers the silence as it was, ended at `now`.
    async fn delete_silence(&self, id: SilenceId, now: DateTime<Utc>) -> Result<Silence, StoreError>;

    /// The silences active at `now`.
    async fn active_silences(&self, now: DateTime<Utc>) -> Result<Vec<Silence>, StoreError>;

    /// A provider's answer kept under `key` (see the LLM client), if any.
    async fn llm_cache_get(&self, key: &str) -> Result<Option<String>, StoreError>;

    /// Keeps a provider's answer under `key` (replacing one kept before).
    async fn llm_cache_put(&self, key: &str, value: &str, now: DateTime<Utc>) -> Result<(), StoreError>;

    /// Forgets answers kept before `before`; how many.
    async fn prune_llm_cache(&self, before: DateTime<Utc>) -> Result<u64, StoreError>;

    /// Stores a new API key; `KeyExists` when its name is taken.
    async fn create_api_key(&self, key: ApiKey) -> Result<(), StoreError>;

    /// Every API key, revoked ones included, by name.
    async fn api_keys(&self) -> Result<Vec<ApiKey>, StoreError>;

    /// Revokes the key named `name` (from `now` on; a key revoked before stays revoked
    /// then); answers it as it is now.
    async fn revoke_api_key(&self, name: &str, now: DateTime<Utc>) -> Result<ApiKey, StoreError>;

    /// Records that the keys named were accepted at `at`.
    async fn touch_api_keys(&self, names: Vec<String>, at: DateTime<Utc>) -> Result<(), StoreError>;

    /// The incidents of the grouped notification `group`, oldest first, at most `limit`.
    async fn group_members(&self, group: Uuid, limit: u32) -> Result<GroupMembers, StoreError>;

    /// Notified after a commit that wrote jobs, per kind, so that workers need not poll
    /// to find them.
    fn job_signals(&self) -> Arc<JobSignals>;

    /// Every committed change to an incident, made through this store and, on
    /// PostgreSQL, through the other replicas of its database.
    fn changes(&self) -> Arc<ChangeFeed>;

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
    /// Events (or other writes, one each) that may wait for the SQLite writer, or events
    /// that may wait for the PostgreSQL ingest writers; past it a write is refused as
    /// `Overloaded` instead of queueing without bound.
    pub max_queued_events: u32,
    /// PostgreSQL: the tasks that store events, each taking what is waiting into one
    /// transaction (fewer share more commits; more run more transactions at once).
    pub ingest_writers: u32,
    /// PostgreSQL: prepared statements kept per connection.
    pub statement_cache: u32,
    pub observer: Option<QueryObserver>,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            max_connections: 8,
            max_queued_events: 20_000,
            ingest_writers: 4,
            statement_cache: 100,
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
