//! SQLite backend: the embedded default.
//!
//! One writer thread owns the only write connection and commits in groups: every write
//! waiting in its queue runs in one transaction and one commit. A refused action
//! (illegal transition, unknown id) is decided before it writes anything, so it leaves
//! the group alone; a database failure rolls the whole group back and every write in it
//! gets the error, so no answered write is ever half stored.
//!
//! Durability is pipelined: the commit writes the group's WAL frames, then the group
//! goes to the syncer thread, which fsyncs the WAL and only then answers the group's
//! writes, while the writer already runs the next group. Every answer still waits for
//! an fsync that followed its commit, as `synchronous = FULL` would make it wait; the
//! fsync just no longer stalls the writer. Reads run on a small pool of read-only
//! connections on the blocking thread pool, concurrently with the writer.
//!
//! Being the only writer, the writer thread decides things a shared database would
//! leave to statements: it looks an open incident up before it inserts or counts (the
//! unique index on open fingerprints still refuses a second one), and it numbers
//! timeline entries itself. A timeline is a chain: each entry points to its incident's
//! previous entry and the incident to its last one, so an append writes no index.

use std::path::Path;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use chrono::{DateTime, Utc};
use lim_domain::auth::ApiKey;
use lim_domain::fingerprint::fingerprint_key;
use lim_domain::triage::Classification;
use lim_domain::{EventStatus, TimelineKind, lifecycle};
use rusqlite::types::Value;
use rusqlite::{CachedStatement, Connection, OpenFlags, OptionalExtension, Row, Statement, params};
use tokio::sync::{Semaphore, oneshot};

use super::*;

/// The columns `row_to_incident` reads, in its order (a macro, so that `concat!` can use it).
macro_rules! incident_columns {
    () => {
        "id, title, description, severity, category, source, state, fingerprint, labels, occurrence_count, \
         first_seen, last_seen, assignee, team, created_at, updated_at, acknowledged_at, resolved_at, \
         resolution_note, route, escalation_policy, escalation_level, escalation_due_at, classification, insights"
    };
}
const INCIDENT_COLUMNS: &str = incident_columns!();

mod allocator;
mod groups;
mod jobs;
mod keys;
mod silences;
mod writer;
mod writes;

use crate::chains::JobChains;
use writer::{Checkpointer, Completion, Ran, WriteJob, run_syncer, run_writer};
use writes::{
    Chain, INSERT_INCIDENT, IngestStatements, MARK_EVERY, NewIncident, PreparedEvent, UPDATE_INCIDENT, append_entry,
    insert_incident, select_for_update, update_incident,
};

const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("../migrations/sqlite/0001_incidents.sql")),
    (2, include_str!("../migrations/sqlite/0002_open_index.sql")),
    (3, include_str!("../migrations/sqlite/0003_timeline_chain.sql")),
    (4, include_str!("../migrations/sqlite/0004_timeline_pages.sql")),
    (5, include_str!("../migrations/sqlite/0005_jobs.sql")),
    (6, include_str!("../migrations/sqlite/0006_job_chains.sql")),
    (
        7,
        include_str!("../migrations/sqlite/0007_escalations_silences_groups.sql"),
    ),
    (8, include_str!("../migrations/sqlite/0008_triage.sql")),
    (9, include_str!("../migrations/sqlite/0009_api_keys.sql")),
    (10, include_str!("../migrations/sqlite/0010_open_index_times.sql")),
];

/// Every open incident's label set, and its creation time while nobody has acknowledged
/// it; from the index of open incidents alone (migration 10).
const COUNT_OPEN: &str = "SELECT severity, source, category, \
     CASE WHEN state IN ('NEW', 'ASSIGNED') AND acknowledged_at IS NULL THEN created_at END \
     FROM incidents WHERE state <> 'RESOLVED'";

pub struct SqliteStore {
    writer: Option<mpsc::Sender<WriteJob>>,
    writer_thread: Option<JoinHandle<()>>,
    syncer_thread: Option<JoinHandle<()>>,
    checkpointer: Option<Checkpointer>,
    readers: Arc<Mutex<Vec<Connection>>>,
    reader_permits: Arc<Semaphore>,
    reader_count: u32,
    /// One permit per event (or other write) waiting for the writer or its fsync.
    queue_permits: Arc<Semaphore>,
    max_queued_events: u32,
    job_signals: Arc<JobSignals>,
    changes: Arc<ChangeFeed>,
    observer: Option<QueryObserver>,
}

impl SqliteStore {
    /// Opens the database file at `path` (creating it and its folder), migrates it and
    /// starts the writer thread.
    pub async fn open(path: &str, options: StoreOptions) -> Result<Self, StoreError> {
        let path = path.to_owned();
        tokio::task::spawn_blocking(move || Self::open_blocking(&path, options))
            .await
            .map_err(|error| StoreError::Internal(error.to_string()))?
    }

    fn open_blocking(path: &str, options: StoreOptions) -> Result<Self, StoreError> {
        let reader_count = options.max_connections.max(1);
        let max_queued_events = options.max_queued_events.max(1);
        let observer = options.observer;
        configure_sqlite();
        if let Some(folder) = Path::new(path).parent().filter(|folder| !folder.as_os_str().is_empty()) {
            std::fs::create_dir_all(folder)
                .map_err(|error| StoreError::Unavailable(format!("cannot create {}: {error}", folder.display())))?;
        }
        let writer = Connection::open(path).map_err(|error| unavailable(path, error))?;
        configure_writer(&writer).map_err(|error| unavailable(path, error))?;
        {
            let _timer = QueryTimer::start(&observer, operation::MIGRATE);
            migrate(&writer).map_err(internal)?;
            // One process runs every job of an embedded store: a job still running belonged
            // to a process that stopped without handing it back.
            let released = jobs::release_all(&writer, Utc::now())?;
            if released > 0 {
                tracing::warn!(released, "jobs left running by a stopped process are queued again");
            }
        }
        let readers = (0..reader_count)
            .map(|_| {
                let reader = Connection::open_with_flags(
                    path,
                    OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI,
                )?;
                reader.busy_timeout(std::time::Duration::from_secs(5))?;
                reader.set_prepared_statement_cache_capacity(64);
                Ok(reader)
            })
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(|error| unavailable(path, error))?;
        let (sender, receiver) = mpsc::channel();
        let (to_syncer, syncer_queue) = mpsc::channel();
        let wal_path = format!("{path}-wal");
        let syncer_thread = std::thread::Builder::new()
            .name("sqlite-syncer".into())
            .spawn(move || run_syncer(wal_path, syncer_queue))
            .map_err(|error| StoreError::Internal(error.to_string()))?;
        let writer_thread = std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || run_writer(writer, receiver, to_syncer))
            .map_err(|error| StoreError::Internal(error.to_string()))?;
        Ok(SqliteStore {
            writer: Some(sender),
            writer_thread: Some(writer_thread),
            syncer_thread: Some(syncer_thread),
            checkpointer: Some(Checkpointer::start(path)?),
            readers: Arc::new(Mutex::new(readers)),
            reader_permits: Arc::new(Semaphore::new(reader_count as usize)),
            reader_count,
            queue_permits: Arc::new(Semaphore::new(max_queued_events as usize)),
            max_queued_events,
            job_signals: Arc::default(),
            changes: Arc::default(),
            observer,
        })
    }

    /// Queues `work` for the writer and waits for the commit that makes it durable.
    /// `weight` is what the write holds in the queue (its number of events); a full queue
    /// refuses the write at once rather than letting it grow without bound.
    async fn write<T: Send + 'static>(
        &self,
        operation: &'static str,
        weight: usize,
        work: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let _timer = QueryTimer::start(&self.observer, operation);
        // A write larger than the whole queue (an Alertmanager group of many alerts) takes
        // all of it: it fits into an empty queue rather than never.
        let weight = u32::try_from(weight)
            .unwrap_or(u32::MAX)
            .clamp(1, self.max_queued_events);
        let permit = Arc::clone(&self.queue_permits)
            .try_acquire_many_owned(weight)
            .map_err(|error| match error {
                tokio::sync::TryAcquireError::Closed => closed(),
                tokio::sync::TryAcquireError::NoPermits => StoreError::Overloaded(format!(
                    "the store's write queue is full ({} events waiting); retry shortly",
                    self.max_queued_events
                )),
            })?;
        let (reply, answer) = oneshot::channel();
        let job: WriteJob = Box::new(move |connection| {
            let result = match connection {
                Ok(connection) => work(connection),
                Err(error) => Err(StoreError::Unavailable(format!("cannot begin a transaction: {error}"))),
            };
            let poisoned = matches!(result, Err(StoreError::Internal(_)));
            let completion: Completion = Box::new(move |group_error| {
                let result = match group_error {
                    None => result,
                    // The write that failed the group is told its own error.
                    Some(_) if poisoned => result,
                    Some(error) => Err(StoreError::Unavailable(format!(
                        "write not confirmed as stored: {error}"
                    ))),
                };
                // The queue has room again once the write is answered, stored or not.
                drop(permit);
                let _ = reply.send(result);
            });
            Ran { poisoned, completion }
        });
        let writer = self.writer.as_ref().ok_or_else(closed)?;
        writer.send(job).map_err(|_| closed())?;
        answer.await.map_err(|_| {
            StoreError::Unavailable("the SQLite writer stopped before answering; the write may not be stored".into())
        })?
    }

    /// Runs `work` on a read connection, off the async threads. The permit travels with
    /// the blocking task: a caller that gives up (a client gone, a timeout) leaves the
    /// connection in use until the task ends, so no later read finds the pool empty.
    async fn read<T: Send + 'static>(
        &self,
        operation: &'static str,
        work: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let _timer = QueryTimer::start(&self.observer, operation);
        let permit = Arc::clone(&self.reader_permits)
            .acquire_owned()
            .await
            .map_err(|_| closed())?;
        let readers = Arc::clone(&self.readers);
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let connection =
                readers.lock().expect("reader pool poisoned").pop().ok_or_else(|| {
                    StoreError::Internal("a read permit was granted with no read connection free".into())
                })?;
            let result = work(&connection);
            readers.lock().expect("reader pool poisoned").push(connection);
            result
        })
        .await
        .map_err(|error| StoreError::Internal(error.to_string()))?
    }
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        // Closing the queue lets the writer commit what it holds and stop.
        drop(self.writer.take());
        // The writer ends when its queue is closed, which closes the syncer's queue.
        for thread in [self.writer_thread.take(), self.syncer_thread.take()]
            .into_iter()
            .flatten()
        {
            let _ = thread.join();
        }
        if let Some(checkpointer) = self.checkpointer.take() {
            checkpointer.stop();
        }
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn ingest(
        &self,
        events: Vec<Event>,
        now: DateTime<Utc>,
        reactions: Arc<Reactions>,
    ) -> Result<Vec<IngestOutcome>, StoreError> {
        // Everything that needs no database (routing a new incident included) is done
        // here, on the async threads, so the one writer thread only runs statements.
        let events = events
            .into_iter()
            .map(|event| PreparedEvent::new(event, now, &reactions))
            .collect::<Result<Vec<_>, _>>()?;
        let weight = events.len();
        let outcomes = self
            .write(operation::INGEST, weight, move |connection| {
                let mut statements = IngestStatements::new(connection, events.len());
                let outcomes = events
                    .into_iter()
                    .map(|event| statements.ingest(event, now, &reactions))
                    .collect::<Result<Vec<_>, _>>()?;
                let kinds = statements.finish(now)?;
                Ok((outcomes, kinds))
            })
            .await?;
        self.job_signals.wrote(outcomes.1);
        self.changes.publish(ChangeNotice::of_ingest(&outcomes.0, now));
        Ok(outcomes.0)
    }

    async fn create_incident(&self, opening: Opening) -> Result<(), StoreError> {
        let created = ChangeNotice {
            kind: ChangeKind::Created,
            incident_id: opening.incident.id,
            at: opening.incident.created_at,
        };
        let new = NewIncident::new(opening)?;
        let now = new.entries[0].at;
        let kinds = self
            .write(operation::CREATE_INCIDENT, 1, move |connection| {
                let mut chain = Chain {
                    last_entry: None,
                    entry_count: 0,
                };
                for entry in &new.entries {
                    chain = append_entry(connection, entry, chain)?;
                }
                let mut new = new;
                let mut chains = JobChains::default();
                let mut next_job = None;
                jobs::link(connection, &mut new.jobs, &mut chains, &mut next_job)?;
                insert_incident(
                    &mut *prepare(connection, INSERT_INCIDENT)?,
                    &new,
                    chain,
                    chains.to_text().as_deref(),
                )?;
                if let Some((window, group_jobs)) = new.group.take()
                    && let Some(mut group_jobs) = groups::join(connection, &window, group_jobs, new.incident.id, now)?
                {
                    jobs::link(connection, &mut group_jobs, &mut JobChains::default(), &mut next_job)?;
                    new.jobs.append(&mut group_jobs);
                }
                jobs::insert_prepared(connection, &new.jobs, now)?;
                Ok(new.jobs.iter().map(|job| job.kind).collect::<Vec<_>>())
            })
            .await?;
        self.job_signals.wrote(kinds);
        self.changes.publish(vec![created]);
        Ok(())
    }

    async fn transition(
        &self,
        id: IncidentId,
        action: Action,
        actor: String,
        now: DateTime<Utc>,
        reactions: Arc<Reactions>,
    ) -> Result<Transition, StoreError> {
        let (transition, jobs) = self
            .write(operation::TRANSITION, 1, move |connection| {
                let tracked = select_for_update(connection, id)?.ok_or(StoreError::NotFound(id))?;
                let transition = lifecycle::apply(&tracked.incident, &action, &actor, now)?;
                let chain = append_entry(connection, &transition.entry, tracked.chain)?;
                let jobs = reactions.after(&transition, now);
                let mut prepared = jobs::PreparedJob::all(&jobs);
                let mut job_chains = tracked.job_chains()?;
                jobs::stop_escalation(connection, &transition, &job_chains, now)?;
                jobs::link(connection, &mut prepared, &mut job_chains, &mut None)?;
                update_incident(
                    &mut *prepare(connection, UPDATE_INCIDENT)?,
                    &transition.after,
                    chain,
                    job_chains.to_text().as_deref(),
                )?;
                writes::update_triage(connection, &transition)?;
                jobs::insert_prepared(connection, &prepared, now)?;
                Ok((transition, jobs))
            })
            .await?;
        self.job_signals.wrote(jobs.iter().map(|job| job.payload.kind()));
        self.changes
            .publish(ChangeNotice::of_transition(&transition).into_iter().collect());
        Ok(transition)
    }

    async fn add_comment(&self, entry: TimelineEntry) -> Result<(), StoreError> {
        let commented = ChangeNotice {
            kind: ChangeKind::Commented,
            incident_id: entry.incident_id,
            at: entry.at,
        };
        self.write(operation::ADD_COMMENT, 1, move |connection| {
            let id = id_bytes(entry.incident_id);
            let chain = prepare(
                connection,
                "SELECT last_entry, entry_count FROM incidents WHERE id = ?1",
            )?
            .query_row([id], |row| {
                Ok(Chain {
                    last_entry: row.get(0)?,
                    entry_count: row.get(1)?,
                })
            })
            .optional()
            .map_err(internal)?
            .ok_or(StoreError::NotFound(entry.incident_id))?;
            let chain = append_entry(connection, &entry, chain)?;
            prepare(
                connection,
                "UPDATE incidents SET last_entry = ?2, entry_count = ?3 WHERE id = ?1",
            )?
            .execute(params![id, chain.last_entry, chain.entry_count])
            .map_err(internal)?;
            Ok(())
        })
        .await?;
        self.changes.publish(vec![commented]);
        Ok(())
    }

    async fn get_incident(&self, id: IncidentId) -> Result<Option<Incident>, StoreError> {
        self.read(operation::GET_INCIDENT, move |connection| {
            select_incident(connection, id)
        })
        .await
    }

    async fn get_incidents(&self, ids: &[IncidentId]) -> Result<Vec<Incident>, StoreError> {
        let ids: Vec<IncidentId> = ids.iter().take(MAX_INCIDENTS_READ).copied().collect();
        self.read(operation::GET_INCIDENTS, move |connection| {
            select_incidents(connection, &ids)
        })
        .await
    }

    async fn list_incidents(&self, filter: &IncidentFilter, page: PageRequest) -> Result<Vec<Incident>, StoreError> {
        let filter = filter.clone();
        self.read(operation::LIST_INCIDENTS, move |connection| {
            list(connection, &filter, page)
        })
        .await
    }

    async fn timeline(&self, id: IncidentId, page: EntryPageRequest) -> Result<EntryPage, StoreError> {
        self.read(operation::TIMELINE, move |connection| {
            timeline_page(connection, id, page)
        })
        .await
    }

    async fn comments(&self, id: IncidentId, page: EntryPageRequest) -> Result<EntryPage, StoreError> {
        self.read(operation::COMMENTS, move |connection| {
            let mut statement = connection
                .prepare_cached(
                    "SELECT seq, at, kind, actor, message FROM timeline \
                     WHERE incident_id = ?1 AND kind = 'comment' AND seq > ?2 ORDER BY seq LIMIT ?3",
                )
                .map_err(internal)?;
            let after = page.after.map_or(0, |cursor| cursor.0);
            let rows = statement
                .query_map(params![id_bytes(id), after, i64::from(page.limit) + 1], |row| {
                    Ok((row.get(0)?, row_to_entry(id, row, 1)?))
                })
                .map_err(internal)?;
            let entries = rows.collect::<rusqlite::Result<Vec<_>>>().map_err(internal)?;
            if entries.is_empty() && !incident_exists(connection, id)? {
                return Err(StoreError::NotFound(id));
            }
            Ok(page_of(entries, page.limit))
        })
        .await
    }

    async fn count_open(&self) -> Result<Vec<OpenCount>, StoreError> {
        self.read(operation::COUNT_OPEN, |connection| {
            // Counted here rather than by GROUP BY: the index of open incidents is ordered
            // by state and id, so SQLite would sort every open incident first (0.5 s at a
            // million), where one pass over the index counts them (a few label sets).
            let mut statement = connection.prepare_cached(COUNT_OPEN).map_err(internal)?;
            let mut rows = statement.query([]).map_err(internal)?;
            let mut counts: Vec<(String, String, String, i64, Option<i64>)> = Vec::new();
            while let Some(row) = rows.next().map_err(internal)? {
                let text = |index| row.get_ref(index).and_then(|value| Ok(value.as_str()?));
                let (severity, source, category) = (
                    text(0).map_err(internal)?,
                    text(1).map_err(internal)?,
                    text(2).map_err(internal)?,
                );
                let unacknowledged: Option<i64> = row.get(3).map_err(internal)?;
                let older = |oldest: Option<i64>| match (oldest, unacknowledged) {
                    (Some(oldest), Some(created)) => Some(oldest.min(created)),
                    (oldest, created) => oldest.or(created),
                };
                match counts
                    .iter_mut()
                    .find(|(s, o, c, _, _)| s == severity && o == source && c == category)
                {
                    Some((_, _, _, count, oldest)) => {
                        *count += 1;
                        *oldest = older(*oldest);
                    }
                    None => counts.push((
                        severity.to_owned(),
                        source.to_owned(),
                        category.to_owned(),
                        1,
                        older(None),
                    )),
                }
            }
            counts
                .into_iter()
                .map(|(severity, source, category, count, oldest)| {
                    let parse = |what: &str, text: &str| corrupt_text(what, text);
                    Ok(OpenCount {
                        severity: severity.parse().map_err(|_| parse("severity", &severity))?,
                        source: source.parse().map_err(|_| parse("source", &source))?,
                        category: category.parse().map_err(|_| parse("category", &category))?,
                        count,
                        oldest_unacknowledged: oldest.map(time_from).transpose().map_err(internal)?,
                    })
                })
                .collect()
        })
        .await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        // Through the writer, its transaction and the syncer's fsync: ready means a write
        // would be stored, not only that a reader answers.
        self.write(operation::PING, 1, |connection| {
            connection.query_row("SELECT 1", [], |_| Ok(())).map_err(internal)
        })
        .await
    }

    fn pool_stats(&self) -> PoolStats {
        // The writer connection is always held; readers are in use while checked out.
        let idle = self.readers.lock().map(|readers| readers.len() as u32).unwrap_or(0);
        let max = self.reader_count + 1;
        PoolStats {
            in_use: max - idle,
            idle,
            max,
        }
    }

    fn backend(&self) -> &'static str {
        "sqlite"
    }

    async fn enqueue_jobs(&self, new: Vec<NewJob>) -> Result<(), StoreError> {
        let now = Utc::now();
        let kinds: Vec<JobKind> = new.iter().map(|job| job.payload.kind()).collect();
        self.write(operation::ENQUEUE_JOBS, new.len(), move |connection| {
            jobs::insert_jobs(connection, &new, now)
        })
        .await?;
        self.job_signals.wrote(kinds);
        Ok(())
    }

    async fn ensure_job(&self, job: NewJob) -> Result<bool, StoreError> {
        let now = Utc::now();
        let kind = job.payload.kind();
        let written = self
            .write(operation::ENQUEUE_JOBS, 1, move |connection| {
                jobs::ensure_job(connection, &job, now)
            })
            .await?;
        if written {
            self.job_signals.wrote([kind]);
        }
        Ok(written)
    }

    async fn claim_jobs(
        &self,
        kind: JobKind,
        limit: u32,
        worker: &str,
        lease_until: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Vec<Job>, StoreError> {
        let worker = worker.to_owned();
        self.write(operation::CLAIM_JOBS, 1, move |connection| {
            jobs::claim(connection, kind, limit, &worker, lease_until, now)
        })
        .await
    }

    async fn finish_job(&self, finish: JobFinish) -> Result<Finished, StoreError> {
        let follow_ups: Vec<JobKind> = finish.follow_ups.iter().map(|job| job.payload.kind()).collect();
        let finished = self
            .write(operation::FINISH_JOB, 1, move |connection| {
                jobs::finish(connection, &finish)
            })
            .await?;
        if finished == Finished::Recorded {
            self.job_signals.wrote(follow_ups);
        }
        Ok(finished)
    }

    async fn release_jobs(&self, worker: &str, now: DateTime<Utc>) -> Result<u64, StoreError> {
        let worker = worker.to_owned();
        self.write(operation::RELEASE_JOBS, 1, move |connection| {
            jobs::release(connection, &worker, now)
        })
        .await
    }

    async fn get_job(&self, id: JobId) -> Result<Option<Job>, StoreError> {
        self.read(operation::LIST_JOBS, move |connection| jobs::select_job(connection, id))
            .await
    }

    async fn list_jobs(&self, filter: &JobFilter, page: JobPageRequest) -> Result<Vec<Job>, StoreError> {
        let filter = filter.clone();
        self.read(operation::LIST_JOBS, move |connection| {
            jobs::list(connection, &filter, page)
        })
        .await
    }

    async fn retry_job(&self, id: JobId, now: DateTime<Utc>) -> Result<Job, StoreError> {
        let job = self
            .write(operation::RETRY_JOB, 1, move |connection| {
                jobs::retry(connection, id, now)
            })
            .await?;
        self.job_signals.wrote([job.kind]);
        Ok(job)
    }

    async fn count_jobs(&self) -> Result<Vec<JobCount>, StoreError> {
        self.read(operation::COUNT_JOBS, jobs::count).await
    }

    async fn prune_jobs(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        self.write(operation::PRUNE_JOBS, 1, move |connection| {
            jobs::prune(connection, before)
        })
        .await
    }

    async fn create_silence(&self, silence: Silence) -> Result<(), StoreError> {
        self.write(operation::CREATE_SILENCE, 1, move |connection| {
            silences::insert(connection, &silence)
        })
        .await
    }

    async fn get_silence(&self, id: SilenceId) -> Result<Option<Silence>, StoreError> {
        self.read(operation::LIST_SILENCES, move |connection| {
            silences::select(connection, id)
        })
        .await
    }

    async fn list_silences(
        &self,
        filter: &SilenceFilter,
        page: SilencePageRequest,
    ) -> Result<Vec<Silence>, StoreError> {
        let filter = filter.clone();
        self.read(operation::LIST_SILENCES, move |connection| {
            silences::list(connection, &filter, page)
        })
        .await
    }

    async fn delete_silence(&self, id: SilenceId, now: DateTime<Utc>) -> Result<Silence, StoreError> {
        let (silence, resumed) = self
            .write(operation::DELETE_SILENCE, 1, move |connection| {
                silences::delete(connection, id, now)
            })
            .await?;
        if resumed > 0 {
            self.job_signals.wrote([JobKind::Escalate]);
        }
        Ok(silence)
    }

    async fn active_silences(&self, now: DateTime<Utc>) -> Result<Vec<Silence>, StoreError> {
        self.read(operation::LIST_SILENCES, move |connection| {
            silences::active(connection, now)
        })
        .await
    }

    async fn llm_cache_get(&self, key: &str) -> Result<Option<String>, StoreError> {
        let key = key.to_owned();
        self.read(operation::LLM_CACHE_GET, move |connection| {
            prepare(connection, "SELECT value FROM llm_cache WHERE key = ?1")?
                .query_row([key], |row| row.get(0))
                .optional()
                .map_err(internal)
        })
        .await
    }

    async fn llm_cache_put(&self, key: &str, value: &str, now: DateTime<Utc>) -> Result<(), StoreError> {
        let (key, value) = (key.to_owned(), value.to_owned());
        self.write(operation::LLM_CACHE_PUT, 1, move |connection| {
            prepare(
                connection,
                "INSERT OR REPLACE INTO llm_cache (key, value, created_at) VALUES (?1, ?2, ?3)",
            )?
            .execute(params![key, value, now.timestamp_micros()])
            .map_err(internal)?;
            Ok(())
        })
        .await
    }

    async fn prune_llm_cache(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        self.write(operation::PRUNE_LLM_CACHE, 1, move |connection| {
            let deleted = prepare(connection, "DELETE FROM llm_cache WHERE created_at < ?1")?
                .execute([before.timestamp_micros()])
                .map_err(internal)?;
            Ok(deleted as u64)
        })
        .await
    }

    async fn group_members(&self, group: Uuid, limit: u32) -> Result<GroupMembers, StoreError> {
        self.read(operation::GROUP_MEMBERS, move |connection| {
            groups::members(connection, group, limit)
        })
        .await
    }

    async fn create_api_key(&self, key: ApiKey) -> Result<(), StoreError> {
        self.write(operation::CREATE_API_KEY, 1, move |connection| {
            keys::insert(connection, &key)
        })
        .await
    }

    async fn api_keys(&self) -> Result<Vec<ApiKey>, StoreError> {
        self.read(operation::LIST_API_KEYS, keys::list).await
    }

    async fn revoke_api_key(&self, name: &str, now: DateTime<Utc>) -> Result<ApiKey, StoreError> {
        let name = name.to_owned();
        self.write(operation::REVOKE_API_KEY, 1, move |connection| {
            keys::revoke(connection, &name, now)
        })
        .await
    }

    async fn touch_api_keys(&self, names: Vec<String>, at: DateTime<Utc>) -> Result<(), StoreError> {
        self.write(operation::TOUCH_API_KEYS, 1, move |connection| {
            keys::touch(connection, &names, at)
        })
        .await
    }

    fn changes(&self) -> Arc<ChangeFeed> {
        Arc::clone(&self.changes)
    }

    fn job_signals(&self) -> Arc<JobSignals> {
        Arc::clone(&self.job_signals)
    }
}

/// Process-wide SQLite settings, which only work before SQLite initialises (the first
/// connection of the process), so they are tried once:
/// - its memory comes from the Rust allocator (see `allocator`);
/// - no memory statistics: SQLite keeps them behind a global mutex that every allocation
///   takes, nothing here reads them, and they showed in the writer's profile.
fn configure_sqlite() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let allocator = allocator::install();
        // SAFETY: sqlite3_config is documented as callable before sqlite3_initialize and
        // when no connection is open; otherwise it returns SQLITE_MISUSE and changes nothing.
        let statistics =
            unsafe { rusqlite::ffi::sqlite3_config(rusqlite::ffi::SQLITE_CONFIG_MEMSTATUS, 0 as std::ffi::c_int) };
        if !allocator || statistics != rusqlite::ffi::SQLITE_OK {
            tracing::warn!(
                "SQLite started before the store could configure it: it keeps the C allocator and its memory \
                 statistics (slower writes)"
            );
        }
    });
}

fn configure_writer(connection: &Connection) -> rusqlite::Result<()> {
    // WAL lets readers run beside the writer, and the syncer's fsync of the WAL file is
    // what makes an answer durable: a database that cannot use WAL is refused.
    let mode: String = connection.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CANTOPEN),
            Some(format!("the database cannot use WAL mode (journal mode `{mode}`)")),
        ));
    }
    // NORMAL: a commit does not fsync by itself; the syncer thread fsyncs the WAL before
    // anything is answered (see the module documentation). Checkpoints still fsync.
    connection.pragma_update(None, "synchronous", "NORMAL")?;
    // No foreign-key checks on the writer: it appends timeline entries only for an
    // incident it has just read or written in the same transaction, and incidents are
    // never deleted. The check would cost a look-up in the incidents table per entry.
    connection.pragma_update(None, "foreign_keys", "OFF")?;
    // Savepoints keep their sub-journals in memory rather than in temp files.
    connection.pragma_update(None, "temp_store", "MEMORY")?;
    // 8 MiB of page cache. More is slower: every commit that split a B-tree page walks
    // the whole cache (SQLite renumbers pages through a temporary number past 1 GiB,
    // which makes its end-of-transaction truncate scan every slot), and pages missing
    // from it are still in the operating system's cache.
    connection.pragma_update(None, "cache_size", -8_192)?;
    // The checkpointer thread copies most of the WAL back into the database beside the
    // writer; the writer's own checkpoint (every ~128 MiB of WAL) then finds little left to
    // copy, and lets the WAL start over from its beginning so it does not grow for ever.
    connection.pragma_update(None, "wal_autocheckpoint", 32_000)?;
    connection.pragma_update(None, "journal_size_limit", 256 * 1024 * 1024)?;
    connection.busy_timeout(std::time::Duration::from_secs(5))?;
    connection.set_prepared_statement_cache_capacity(64);
    Ok(())
}

fn migrate(connection: &Connection) -> rusqlite::Result<()> {
    migrate_with(connection, MIGRATIONS)
}

fn migrate_with(connection: &Connection, migrations: &[(i64, &str)]) -> rusqlite::Result<()> {
    let current: i64 = connection.pragma_query_value(None, "user_version", |row| row.get(0))?;
    for (version, sql) in migrations.iter().filter(|(version, _)| *version > current) {
        connection.execute_batch(&format!(
            "BEGIN IMMEDIATE; {sql}; PRAGMA user_version = {version}; COMMIT;"
        ))?;
    }
    Ok(())
}

fn prepare<'c>(connection: &'c Connection, sql: &str) -> Result<CachedStatement<'c>, StoreError> {
    connection.prepare_cached(sql).map_err(internal)
}

fn incident_exists(connection: &Connection, id: IncidentId) -> Result<bool, StoreError> {
    let mut statement = connection
        .prepare_cached("SELECT 1 FROM incidents WHERE id = ?1")
        .map_err(internal)?;
    statement.exists([id_bytes(id)]).map_err(internal)
}

/// A page of an incident's timeline: the entries numbered after the cursor (a number
/// within the incident), one past the limit to know whether more follow. They are read
/// backwards along the chain from the first mark at or past the page's end, or from the
/// incident's last entry: at most `MARK_EVERY - 1` entries more than the page.
fn timeline_page(connection: &Connection, id: IncidentId, page: EntryPageRequest) -> Result<EntryPage, StoreError> {
    let incident = connection
        .prepare_cached("SELECT last_entry, entry_count FROM incidents WHERE id = ?1")
        .map_err(internal)?
        .query_row([id_bytes(id)], |row| {
            Ok(Chain {
                last_entry: row.get(0)?,
                entry_count: row.get(1)?,
            })
        })
        .optional()
        .map_err(internal)?
        .ok_or(StoreError::NotFound(id))?;
    let after = page.after.map_or(0, |cursor| cursor.0);
    let end = (after + i64::from(page.limit) + 1).min(incident.entry_count);
    if end <= after {
        return Ok(page_of(Vec::new(), page.limit));
    }
    let mark: Option<(i64, i64)> = connection
        .prepare_cached("SELECT n, seq FROM timeline_marks WHERE incident_id = ?1 AND n >= ?2 ORDER BY n LIMIT 1")
        .map_err(internal)?
        .query_row(params![id_bytes(id), end], |row| Ok((row.get(0)?, row.get(1)?)))
        .optional()
        .map_err(internal)?;
    debug_assert!(mark.is_none_or(|(n, _)| n - end < MARK_EVERY));
    let mut following = match mark {
        Some((_, seq)) => Some(seq),
        None => incident.last_entry,
    };
    let mut statement = connection
        .prepare_cached("SELECT at, kind, actor, message, previous, n FROM timeline WHERE seq = ?1")
        .map_err(internal)?;
    let mut entries = Vec::with_capacity((end - after) as usize);
    while let Some(seq) = following {
        let (entry, previous, n) = statement
            .query_row([seq], |row| {
                Ok((
                    row_to_entry(id, row, 0)?,
                    row.get::<_, Option<i64>>(4)?,
                    row.get::<_, i64>(5)?,
                ))
            })
            .map_err(internal)?;
        if n <= after {
            break;
        }
        if n <= end {
            entries.push((n, entry));
        }
        following = previous;
    }
    entries.reverse();
    Ok(page_of(entries, page.limit))
}

/// A timeline entry of incident `id` from the columns `at, kind, actor, message` that
/// start at `first`.
fn row_to_entry(id: IncidentId, row: &Row<'_>, first: usize) -> rusqlite::Result<TimelineEntry> {
    let kind: String = row.get(first + 1)?;
    Ok(TimelineEntry {
        incident_id: id,
        at: time_from(row.get(first)?)?,
        kind: TimelineKind::parse(&kind).ok_or_else(|| corrupt(first + 1, "timeline kind", &kind))?,
        actor: row.get(first + 2)?,
        message: row.get(first + 3)?,
    })
}

fn select_incident(connection: &Connection, id: IncidentId) -> Result<Option<Incident>, StoreError> {
    const SELECT: &str = concat!("SELECT ", incident_columns!(), " FROM incidents WHERE id = ?1");
    let mut statement = connection.prepare_cached(SELECT).map_err(internal)?;
    statement
        .query_row([id_bytes(id)], row_to_incident)
        .optional()
        .map_err(internal)
}

/// The incidents of `ids`, a bounded number of statements however many there are.
fn select_incidents(connection: &Connection, ids: &[IncidentId]) -> Result<Vec<Incident>, StoreError> {
    const CHUNK: usize = 100;
    let mut incidents = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(CHUNK) {
        let marks = vec!["?"; chunk.len()].join(", ");
        let sql = format!("SELECT {} FROM incidents WHERE id IN ({marks})", incident_columns!());
        let mut statement = connection.prepare_cached(&sql).map_err(internal)?;
        let rows = statement
            .query_map(
                rusqlite::params_from_iter(chunk.iter().map(|id| id_bytes(*id))),
                row_to_incident,
            )
            .map_err(internal)?;
        for row in rows {
            incidents.push(row.map_err(internal)?);
        }
    }
    Ok(incidents)
}

fn list(connection: &Connection, filter: &IncidentFilter, page: PageRequest) -> Result<Vec<Incident>, StoreError> {
    let mut conditions = Vec::new();
    let mut values: Vec<Value> = Vec::new();
    let mut any_of = |column: &str, options: Vec<&'static str>| {
        if options.is_empty() {
            return;
        }
        let placeholders = vec!["?"; options.len()].join(", ");
        conditions.push(format!("{column} IN ({placeholders})"));
        values.extend(options.into_iter().map(|option| Value::Text(option.to_owned())));
    };
    any_of("state", filter.states.iter().map(|value| value.as_str()).collect());
    any_of(
        "severity",
        filter.severities.iter().map(|value| value.as_str()).collect(),
    );
    any_of("source", filter.sources.iter().map(|value| value.as_str()).collect());
    any_of(
        "category",
        filter.categories.iter().map(|value| value.as_str()).collect(),
    );
    if !filter.states.is_empty() && filter.states.iter().all(|state| state.is_open()) {
        // Lets the planner read the partial index of open incidents.
        conditions.push("state <> 'RESOLVED'".to_owned());
    }
    if let Some(before) = page.before {
        conditions.push("id < ?".to_owned());
        values.push(Value::Blob(id_bytes(before).to_vec()));
    }
    let where_clause = if conditions.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", conditions.join(" AND "))
    };
    // The limit is bound, so that page sizes share one cached statement.
    values.push(Value::Integer(page.limit.into()));
    let sql = format!("SELECT {INCIDENT_COLUMNS} FROM incidents {where_clause} ORDER BY id DESC LIMIT ?");
    let mut statement = connection.prepare_cached(&sql).map_err(internal)?;
    let rows = statement
        .query_map(rusqlite::params_from_iter(values), row_to_incident)
        .map_err(internal)?;
    rows.collect::<rusqlite::Result<Vec<_>>>().map_err(internal)
}

fn row_to_incident(row: &Row<'_>) -> rusqlite::Result<Incident> {
    let labels: String = row.get(8)?;
    Ok(Incident {
        id: id_from(row.get(0)?),
        title: row.get(1)?,
        description: row.get(2)?,
        severity: parse_column(row, 3, "severity")?,
        category: parse_column(row, 4, "category")?,
        source: parse_column(row, 5, "source")?,
        state: parse_column(row, 6, "state")?,
        fingerprint: row.get(7)?,
        labels: serde_json::from_str(&labels).map_err(|_| corrupt(8, "labels", &labels))?,
        occurrence_count: row.get(9)?,
        first_seen: time_from(row.get(10)?)?,
        last_seen: time_from(row.get(11)?)?,
        assignee: row.get(12)?,
        team: row.get(13)?,
        created_at: time_from(row.get(14)?)?,
        updated_at: time_from(row.get(15)?)?,
        acknowledged_at: row.get::<_, Option<i64>>(16)?.map(time_from).transpose()?,
        resolved_at: row.get::<_, Option<i64>>(17)?.map(time_from).transpose()?,
        resolution_note: row.get(18)?,
        route: row.get(19)?,
        escalation_policy: row.get(20)?,
        next_escalation: match (row.get::<_, Option<u32>>(21)?, row.get::<_, Option<i64>>(22)?) {
            (Some(level), Some(due_at)) => Some(PendingEscalation {
                level,
                due_at: time_from(due_at)?,
            }),
            _ => None,
        },
        classification: None,
        insights: json_column(row, 24, "insights")?,
    })
    .and_then(|mut incident| {
        incident.classification = classification_column(row, 23, &incident)?;
        Ok(incident)
    })
}

/// The classification column ([`Classification::to_column`]) of the incident read.
fn classification_column(row: &Row<'_>, index: usize, incident: &Incident) -> rusqlite::Result<Option<Classification>> {
    let Some(text) = row.get_ref(index)?.as_str_or_null().map_err(|error| {
        rusqlite::Error::FromSqlConversionFailure(index, rusqlite::types::Type::Text, Box::new(error))
    })?
    else {
        return Ok(None);
    };
    Classification::from_column(
        text,
        &incident.title,
        &incident.description,
        &incident.labels,
        incident.severity,
        incident.category,
    )
    .map(Some)
    .map_err(|_| corrupt(index, "classification", text))
}

/// An optional JSON column.
fn json_column<T: serde::de::DeserializeOwned>(row: &Row<'_>, index: usize, what: &str) -> rusqlite::Result<Option<T>> {
    let Some(text) = row.get_ref(index)?.as_str_or_null().map_err(|error| {
        rusqlite::Error::FromSqlConversionFailure(index, rusqlite::types::Type::Text, Box::new(error))
    })?
    else {
        return Ok(None);
    };
    serde_json::from_str(text)
        .map(Some)
        .map_err(|_| corrupt(index, what, text))
}

fn id_bytes(id: IncidentId) -> [u8; 16] {
    *id.0.as_bytes()
}

fn id_from(bytes: [u8; 16]) -> IncidentId {
    IncidentId(uuid::Uuid::from_bytes(bytes))
}

/// Reads a vocabulary column without copying its text.
fn parse_column<T: std::str::FromStr>(row: &Row<'_>, index: usize, what: &str) -> rusqlite::Result<T> {
    let text = row.get_ref(index)?.as_str().map_err(|error| {
        rusqlite::Error::FromSqlConversionFailure(index, rusqlite::types::Type::Text, Box::new(error))
    })?;
    text.parse().map_err(|_| corrupt(index, what, text))
}

fn time_from(micros: i64) -> rusqlite::Result<DateTime<Utc>> {
    DateTime::from_timestamp_micros(micros).ok_or_else(|| corrupt(0, "timestamp", &micros.to_string()))
}

fn corrupt(index: usize, what: &str, value: &str) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(
        index,
        rusqlite::types::Type::Text,
        format!("stored {what} `{value}` is not valid").into(),
    )
}

fn corrupt_text(what: &str, value: &str) -> StoreError {
    StoreError::Internal(format!("stored {what} `{value}` is not valid"))
}

fn internal(error: rusqlite::Error) -> StoreError {
    StoreError::Internal(error.to_string())
}

fn unavailable(path: &str, error: rusqlite::Error) -> StoreError {
    StoreError::Unavailable(format!("cannot open SQLite database {path}: {error}"))
}

fn closed() -> StoreError {
    StoreError::Unavailable("the store is shut down".into())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn no_reactions() -> Arc<Reactions> {
        Arc::new(Reactions::default())
    }

    fn entries(limit: u32, after: Option<lim_domain::EntryCursor>) -> EntryPageRequest {
        EntryPageRequest { limit, after }
    }

    async fn open_store(folder: &tempfile::TempDir, options: StoreOptions) -> SqliteStore {
        let path = folder.path().join("incidents.db");
        SqliteStore::open(path.to_str().unwrap(), options).await.unwrap()
    }

    /// Occupies the writer until the returned sender is dropped or sent to.
    fn block_writer(store: &SqliteStore) -> (mpsc::Sender<()>, tokio::task::JoinHandle<()>) {
        let (release, released) = mpsc::channel::<()>();
        let (started, running) = std::sync::mpsc::channel::<()>();
        let writer = store.writer.clone().unwrap();
        let job: WriteJob = Box::new(move |_| {
            let _ = started.send(());
            let _ = released.recv();
            Ran {
                poisoned: false,
                completion: Box::new(|_| {}),
            }
        });
        writer.send(job).unwrap();
        let waited = tokio::task::spawn_blocking(move || running.recv().unwrap());
        (release, tokio::spawn(async move { waited.await.unwrap() }))
    }

    /// SQLite uses a partial index only for a condition it can prove implies the index's
    /// own; a job list or a prune that could not would read the whole jobs table.
    #[test]
    fn counting_open_incidents_reads_their_index_alone_and_finished_jobs_use_theirs() {
        let connection = Connection::open_in_memory().unwrap();
        migrate(&connection).unwrap();
        let plan = |sql: &str| -> String {
            let mut statement = connection.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
            let rows = statement.query_map([], |row| row.get::<_, String>(3)).unwrap();
            rows.map(Result::unwrap).collect::<Vec<_>>().join("; ")
        };
        let count = plan(COUNT_OPEN);
        assert!(count.contains("COVERING INDEX incidents_open"), "{count}");
        for sql in [
            "DELETE FROM jobs WHERE state = 'done' AND updated_at < 1 AND id < (SELECT max(id) FROM jobs)",
            "DELETE FROM jobs WHERE state = 'cancelled' AND updated_at < 1 AND id < (SELECT max(id) FROM jobs)",
            "SELECT id FROM jobs WHERE (state = 'dead') ORDER BY id DESC LIMIT 10",
        ] {
            let plan = plan(sql);
            assert!(plan.contains("jobs_finished"), "{sql}: {plan}");
        }
    }

    #[tokio::test]
    async fn a_full_write_queue_refuses_writes_until_it_drains() {
        let folder = tempfile::tempdir().unwrap();
        let options = StoreOptions {
            max_queued_events: 3,
            ..StoreOptions::default()
        };
        let store = Arc::new(open_store(&folder, options).await);
        let (release, running) = block_writer(&store);
        running.await.unwrap();
        let event = |fingerprint: &str| {
            lim_domain::RawEvent {
                source: Some("api".into()),
                title: Some("t".into()),
                fingerprint: Some(fingerprint.into()),
                ..Default::default()
            }
            .validate(Utc::now(), &lim_domain::EventRules::default())
            .unwrap()
        };
        let queued = {
            let store = Arc::clone(&store);
            let batch = vec![event("a"), event("b"), event("c")];
            tokio::spawn(async move { store.ingest(batch, Utc::now(), no_reactions()).await })
        };
        while store.queue_permits.available_permits() > 0 {
            tokio::task::yield_now().await;
        }

        let refused = store.ingest(vec![event("d")], Utc::now(), no_reactions()).await;

        assert!(matches!(refused, Err(StoreError::Overloaded(_))), "{refused:?}");
        assert_eq!(refused.unwrap_err().kind(), ErrorKind::Overloaded);
        release.send(()).unwrap();
        assert_eq!(queued.await.unwrap().unwrap().len(), 3);
        store
            .ingest(vec![event("d")], Utc::now(), no_reactions())
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn a_read_given_up_keeps_its_connection_until_it_ends() {
        let folder = tempfile::tempdir().unwrap();
        let options = StoreOptions {
            max_connections: 1,
            ..StoreOptions::default()
        };
        let store = Arc::new(open_store(&folder, options).await);
        let (release, released) = std::sync::mpsc::channel::<()>();
        let (started, running) = oneshot::channel::<()>();
        let slow = store.read("slow", move |_| {
            let _ = started.send(());
            let _ = released.recv();
            Ok(())
        });
        let mut slow = Box::pin(slow);
        tokio::select! {
            _ = &mut slow => panic!("the slow read cannot finish yet"),
            _ = running => {}
        }
        // The caller gives up (a client gone, a timeout); its blocking task goes on.
        drop(slow);

        let next = {
            let store = Arc::clone(&store);
            tokio::spawn(async move { store.count_open().await })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!next.is_finished(), "the next read waits for the connection");
        release.send(()).unwrap();

        assert_eq!(next.await.unwrap().unwrap(), Vec::new(), "and then gets it");
    }

    #[tokio::test]
    async fn ping_fails_once_the_writer_is_gone() {
        let folder = tempfile::tempdir().unwrap();
        let mut store = open_store(&folder, StoreOptions::default()).await;
        store.ping().await.unwrap();

        drop(store.writer.take());
        store.writer_thread.take().unwrap().join().unwrap();

        let ping = store.ping().await;
        assert!(matches!(ping, Err(StoreError::Unavailable(_))), "{ping:?}");
        assert!(
            store.count_open().await.is_ok(),
            "reads alone still work: ready is more than that"
        );
    }

    #[tokio::test]
    async fn a_write_that_panics_rolls_back_its_group_and_the_writer_goes_on() {
        let folder = tempfile::tempdir().unwrap();
        let store = open_store(&folder, StoreOptions::default()).await;

        let result = store
            .write::<()>("panics", 1, |connection| {
                connection
                    .execute("UPDATE incidents SET title = 'x'", [])
                    .map_err(internal)?;
                panic!("a bug in a write");
            })
            .await;

        assert!(result.is_err());
        store.ping().await.unwrap();
        let incident = Incident::open(
            IncidentId::generate(),
            &lim_domain::RawEvent {
                source: Some("api".into()),
                title: Some("t".into()),
                ..Default::default()
            }
            .validate(Utc::now(), &lim_domain::EventRules::default())
            .unwrap(),
            Utc::now(),
        );
        store
            .create_incident(Reactions::default().open(incident, Utc::now()))
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn jobs_and_timelines_of_the_first_jobs_schema_are_read_after_the_chains_migration() {
        let folder = tempfile::tempdir().unwrap();
        let path = folder.path().join("incidents.db");
        let path = path.to_str().unwrap();
        let incident = IncidentId::generate();
        {
            let connection = Connection::open(path).unwrap();
            migrate_with(&connection, &MIGRATIONS[..1]).unwrap();
            connection
                .execute(
                    "INSERT INTO incidents (id, title, description, severity, category, source, state, \
                     fingerprint, fingerprint_key, labels, occurrence_count, first_seen, last_seen, created_at, \
                     updated_at) VALUES (?1, 'GPU memory', '', 'P1', 'infrastructure', 'sentinel', \
                     'NEW', 'gpu', ?2, '{}', 1, 0, 0, 0, 0)",
                    params![id_bytes(incident), fingerprint_key("gpu")],
                )
                .unwrap();
            // The first jobs schema wrote the route that matched as an entry of its own.
            for (kind, message) in [("created", "P1 incident opened"), ("routed", "routed by `all`")] {
                connection
                    .execute(
                        "INSERT INTO timeline (incident_id, at, kind, actor, message) VALUES (?1, 0, ?2, 'x', ?3)",
                        params![id_bytes(incident), kind, message],
                    )
                    .unwrap();
            }
            migrate_with(&connection, &MIGRATIONS[..5]).unwrap();
            // Jobs as the schema before the chains wrote them: a serial key, and a payload
            // with a delivery id.
            for _ in 0..2 {
                connection
                    .execute(
                        "INSERT INTO jobs (kind, incident_id, payload, state, due_at, max_attempts, serial_key, \
                         created_at, updated_at) VALUES ('notify', ?1, \
                         '{\"type\":\"notify\",\"delivery_id\":\"0192f0a8-7b7e-7c3a-9b5e-3f1d2c4b5a69\",\"channel\":\"ops\",\"event\":\"created\",\"level\":null}', \
                         'queued', 0, 3, 'notify:x:ops', 0, 0)",
                        [id_bytes(incident)],
                    )
                    .unwrap();
            }
        }

        let store = SqliteStore::open(path, StoreOptions::default()).await.unwrap();

        let now = Utc::now();
        let claimed = store
            .claim_jobs(JobKind::Notify, 10, "w", now + chrono::Duration::seconds(60), now)
            .await
            .unwrap();
        assert_eq!(claimed.len(), 2, "a job of the old schema waits for none");
        assert!(claimed.iter().all(|job| job.incident_id == Some(incident)));
        let timeline = store.timeline(incident, entries(10, None)).await.unwrap();
        let kinds: Vec<TimelineKind> = timeline.entries.iter().map(|entry| entry.kind).collect();
        assert_eq!(kinds, [TimelineKind::Created, TimelineKind::Routed]);
    }

    #[tokio::test]
    async fn a_database_of_the_first_schema_is_migrated_with_its_incidents_and_timelines() {
        let folder = tempfile::tempdir().unwrap();
        let path = folder.path().join("incidents.db");
        let path = path.to_str().unwrap();
        let (id, other) = (IncidentId::generate(), IncidentId::generate());
        {
            let connection = Connection::open(path).unwrap();
            migrate_with(&connection, &MIGRATIONS[..1]).unwrap();
            for (incident, fingerprint) in [(id, "gpu"), (other, "disk")] {
                connection
                    .execute(
                        "INSERT INTO incidents (id, title, description, severity, category, source, state, \
                         fingerprint, fingerprint_key, labels, occurrence_count, first_seen, last_seen, created_at, \
                         updated_at) VALUES (?1, 'GPU memory', '', 'P1', 'infrastructure', 'sentinel', \
                         'ACKNOWLEDGED', ?2, ?3, '{}', 1, 0, 0, 0, 0)",
                        params![id_bytes(incident), fingerprint, fingerprint_key(fingerprint)],
                    )
                    .unwrap();
            }
            // Entries of the two incidents interleaved, as concurrent events leave them;
            // enough of them for one incident to get marks.
            let many = (0..140).map(|n| (id, format!("old {n}")));
            let interleaved = [
                (id, "one".to_owned()),
                (other, "elsewhere".to_owned()),
                (id, "two".to_owned()),
            ];
            for (incident, message) in interleaved.into_iter().chain(many) {
                connection
                    .execute(
                        "INSERT INTO timeline (incident_id, at, kind, actor, message) VALUES (?1, 0, 'comment', 'ana', ?2)",
                        params![id_bytes(incident), message],
                    )
                    .unwrap();
            }
        }

        let store = SqliteStore::open(path, StoreOptions::default()).await.unwrap();

        let filter = IncidentFilter {
            states: vec![lim_domain::State::Acknowledged],
            ..IncidentFilter::default()
        };
        let page = PageRequest {
            limit: 10,
            before: None,
        };
        let listed = store.list_incidents(&filter, page).await.unwrap();
        assert_eq!(listed.len(), 2);
        let open = store.count_open().await.unwrap();
        assert_eq!(open.iter().map(|count| count.count).sum::<i64>(), 2);
        let comment = TimelineEntry {
            incident_id: id,
            at: DateTime::from_timestamp_micros(1).unwrap(),
            kind: TimelineKind::Comment,
            actor: "ana".into(),
            message: "three".into(),
        };
        store.add_comment(comment).await.unwrap();
        let messages = |page: EntryPage| page.entries.into_iter().map(|entry| entry.message).collect::<Vec<_>>();
        let first = store.timeline(id, entries(2, None)).await.unwrap();
        let next = first.next;
        assert_eq!(messages(first), ["one", "two"]);
        let middle = store.timeline(id, entries(100, next)).await.unwrap();
        let old: Vec<String> = (0..100).map(|n| format!("old {n}")).collect();
        assert_eq!(messages(middle.clone()), old);
        let last = store.timeline(id, entries(100, middle.next)).await.unwrap();
        assert_eq!(last.next, None);
        let mut rest: Vec<String> = (100..140).map(|n| format!("old {n}")).collect();
        rest.push("three".into());
        assert_eq!(messages(last), rest);
        assert_eq!(
            messages(store.timeline(other, entries(10, None)).await.unwrap()),
            ["elsewhere"]
        );
        assert_eq!(
            messages(store.comments(id, entries(3, None)).await.unwrap()),
            ["one", "two", "old 0"]
        );
        drop(store);
        let connection = Connection::open(path).unwrap();
        let version: i64 = connection
            .pragma_query_value(None, "user_version", |row| row.get(0))
            .unwrap();
        assert_eq!(version, MIGRATIONS.len() as i64);
        let marks: Vec<i64> = connection
            .prepare("SELECT n FROM timeline_marks ORDER BY n")
            .unwrap()
            .query_map([], |row| row.get(0))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        assert_eq!(marks, [64, 128], "every 64th entry of an incident is marked");
    }
}
