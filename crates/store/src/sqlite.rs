//! SQLite backend: the embedded default.
//!
//! One writer thread owns the only write connection and commits in groups: every write
//! waiting in its queue runs in one transaction (each in its own savepoint, so one
//! refused action does not undo the others), then a single durable commit
//! (`synchronous = FULL`, WAL) answers them all. Reads run on a small pool of
//! read-only connections on the blocking thread pool, concurrently with the writer.

use std::path::Path;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use chrono::{DateTime, Utc};
use lim_domain::lifecycle::{self, DedupDecision};
use rusqlite::{Connection, OpenFlags, OptionalExtension, Row, params};
use tokio::sync::{Semaphore, oneshot};

use lim_domain::TimelineKind;

use super::*;

const MIGRATIONS: &[(i64, &str)] = &[(1, include_str!("../migrations/sqlite/0001_incidents.sql"))];

/// Writes queued behind a commit in progress join the next one, up to this many.
const MAX_GROUP: usize = 512;

type Completion = Box<dyn FnOnce(Option<&StoreError>) + Send>;
/// A queued write: run against the group's transaction, or told why the group could not start.
type WriteJob = Box<dyn FnOnce(Result<&Connection, &StoreError>) -> Completion + Send>;

pub struct SqliteStore {
    writer: Option<mpsc::Sender<WriteJob>>,
    writer_thread: Option<JoinHandle<()>>,
    readers: Arc<Mutex<Vec<Connection>>>,
    reader_permits: Arc<Semaphore>,
    reader_count: u32,
    observer: Option<QueryObserver>,
}

impl SqliteStore {
    /// Opens the database file at `path` (creating it and its folder), migrates it and
    /// starts the writer thread.
    pub async fn open(path: &str, options: StoreOptions) -> Result<Self, StoreError> {
        let path = path.to_owned();
        let reader_count = options.max_connections.max(1);
        let observer = options.observer.clone();
        tokio::task::spawn_blocking(move || Self::open_blocking(&path, reader_count, observer))
            .await
            .map_err(|error| StoreError::Internal(error.to_string()))?
    }

    fn open_blocking(path: &str, reader_count: u32, observer: Option<QueryObserver>) -> Result<Self, StoreError> {
        if let Some(folder) = Path::new(path).parent().filter(|folder| !folder.as_os_str().is_empty()) {
            std::fs::create_dir_all(folder)
                .map_err(|error| StoreError::Unavailable(format!("cannot create {}: {error}", folder.display())))?;
        }
        let writer = Connection::open(path).map_err(|error| unavailable(path, error))?;
        configure_writer(&writer).map_err(|error| unavailable(path, error))?;
        {
            let _timer = QueryTimer::start(&observer, operation::MIGRATE);
            migrate(&writer).map_err(internal)?;
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
        let writer_thread = std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || run_writer(writer, receiver))
            .map_err(|error| StoreError::Internal(error.to_string()))?;
        Ok(SqliteStore {
            writer: Some(sender),
            writer_thread: Some(writer_thread),
            readers: Arc::new(Mutex::new(readers)),
            reader_permits: Arc::new(Semaphore::new(reader_count as usize)),
            reader_count,
            observer,
        })
    }

    /// Queues `work` for the writer and waits for the commit that makes it durable.
    async fn write<T: Send + 'static>(
        &self,
        operation: &'static str,
        work: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let _timer = QueryTimer::start(&self.observer, operation);
        let (reply, answer) = oneshot::channel();
        let job: WriteJob = Box::new(move |connection| {
            let result = match connection {
                Ok(connection) => in_savepoint(connection, work),
                Err(error) => Err(StoreError::Unavailable(format!("cannot begin a transaction: {error}"))),
            };
            Box::new(move |commit_error| {
                let result = match commit_error {
                    None => result,
                    Some(error) => Err(StoreError::Unavailable(format!("commit failed: {error}"))),
                };
                let _ = reply.send(result);
            })
        });
        let writer = self.writer.as_ref().ok_or_else(closed)?;
        writer.send(job).map_err(|_| closed())?;
        answer.await.map_err(|_| closed())?
    }

    /// Runs `work` on a read connection, off the async threads.
    async fn read<T: Send + 'static>(
        &self,
        operation: &'static str,
        work: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let _timer = QueryTimer::start(&self.observer, operation);
        let _permit = self.reader_permits.acquire().await.map_err(|_| closed())?;
        let readers = Arc::clone(&self.readers);
        tokio::task::spawn_blocking(move || {
            let connection = readers.lock().expect("reader pool poisoned").pop().ok_or_else(closed)?;
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
        if let Some(thread) = self.writer_thread.take() {
            let _ = thread.join();
        }
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn ingest(&self, events: Vec<Event>, now: DateTime<Utc>) -> Result<Vec<IngestOutcome>, StoreError> {
        self.write(operation::INGEST, move |connection| {
            events.iter().map(|event| ingest_one(connection, event, now)).collect()
        })
        .await
    }

    async fn create_incident(&self, incident: Incident) -> Result<(), StoreError> {
        self.write(operation::CREATE_INCIDENT, move |connection| {
            insert_incident(connection, &incident)?;
            insert_entry(connection, &lifecycle::created_entry(&incident))
        })
        .await
    }

    async fn transition(
        &self,
        id: IncidentId,
        action: Action,
        actor: String,
        now: DateTime<Utc>,
    ) -> Result<Transition, StoreError> {
        self.write(operation::TRANSITION, move |connection| {
            let incident = select_incident(connection, id)?.ok_or(StoreError::NotFound(id))?;
            let transition = lifecycle::apply(&incident, &action, &actor, now)?;
            update_incident(connection, &transition.after)?;
            insert_entry(connection, &transition.entry)?;
            Ok(transition)
        })
        .await
    }

    async fn add_comment(&self, entry: TimelineEntry) -> Result<(), StoreError> {
        self.write(operation::ADD_COMMENT, move |connection| {
            if !incident_exists(connection, entry.incident_id)? {
                return Err(StoreError::NotFound(entry.incident_id));
            }
            insert_entry(connection, &entry)
        })
        .await
    }

    async fn get_incident(&self, id: IncidentId) -> Result<Option<Incident>, StoreError> {
        self.read(operation::GET_INCIDENT, move |connection| {
            select_incident(connection, id)
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

    async fn timeline(&self, id: IncidentId) -> Result<Vec<TimelineEntry>, StoreError> {
        self.read(operation::TIMELINE, move |connection| {
            if !incident_exists(connection, id)? {
                return Err(StoreError::NotFound(id));
            }
            let mut statement = connection
                .prepare_cached("SELECT at, kind, actor, message FROM timeline WHERE incident_id = ?1 ORDER BY seq")
                .map_err(internal)?;
            let rows = statement
                .query_map([id.to_string()], |row| {
                    let kind: String = row.get(1)?;
                    Ok(TimelineEntry {
                        incident_id: id,
                        at: time_from(row.get(0)?)?,
                        kind: TimelineKind::parse(&kind).ok_or_else(|| corrupt(1, "timeline kind", &kind))?,
                        actor: row.get(2)?,
                        message: row.get(3)?,
                    })
                })
                .map_err(internal)?;
            rows.collect::<rusqlite::Result<Vec<_>>>().map_err(internal)
        })
        .await
    }

    async fn count_open(&self) -> Result<Vec<OpenCount>, StoreError> {
        self.read(operation::COUNT_OPEN, |connection| {
            let mut statement = connection
                .prepare_cached(
                    "SELECT severity, source, category, count(*) FROM incidents \
                     WHERE state <> 'RESOLVED' GROUP BY severity, source, category",
                )
                .map_err(internal)?;
            let rows = statement
                .query_map([], |row| {
                    Ok(OpenCount {
                        severity: parse_column(row, 0, "severity")?,
                        source: parse_column(row, 1, "source")?,
                        category: parse_column(row, 2, "category")?,
                        count: row.get(3)?,
                    })
                })
                .map_err(internal)?;
            rows.collect::<rusqlite::Result<Vec<_>>>().map_err(internal)
        })
        .await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.read(operation::PING, |connection| {
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
}

fn configure_writer(connection: &Connection) -> rusqlite::Result<()> {
    // WAL lets readers run beside the writer; FULL fsyncs the WAL at every commit, so an
    // answered write survives a power cut, not only a crash of the process.
    connection.pragma_update(None, "journal_mode", "WAL")?;
    connection.pragma_update(None, "synchronous", "FULL")?;
    connection.pragma_update(None, "foreign_keys", "ON")?;
    connection.pragma_update(None, "cache_size", -16_384)?;
    connection.busy_timeout(std::time::Duration::from_secs(5))?;
    connection.set_prepared_statement_cache_capacity(64);
    Ok(())
}

fn migrate(connection: &Connection) -> rusqlite::Result<()> {
    let current: i64 = connection.pragma_query_value(None, "user_version", |row| row.get(0))?;
    for (version, sql) in MIGRATIONS.iter().filter(|(version, _)| *version > current) {
        connection.execute_batch(&format!(
            "BEGIN IMMEDIATE; {sql}; PRAGMA user_version = {version}; COMMIT;"
        ))?;
    }
    Ok(())
}

fn run_writer(mut connection: Connection, jobs: mpsc::Receiver<WriteJob>) {
    while let Ok(first) = jobs.recv() {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match jobs.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        commit_group(&mut connection, group);
    }
}

fn commit_group(connection: &mut Connection, group: Vec<WriteJob>) {
    let transaction = match connection.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate) {
        Ok(transaction) => transaction,
        Err(error) => {
            let error = internal(error);
            for job in group {
                job(Err(&error))(None);
            }
            return;
        }
    };
    let completions: Vec<Completion> = group.into_iter().map(|job| job(Ok(&transaction))).collect();
    let commit_error = transaction.commit().err().map(internal);
    for completion in completions {
        completion(commit_error.as_ref());
    }
}

fn in_savepoint<T>(
    connection: &Connection,
    work: impl FnOnce(&Connection) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    connection.execute_batch("SAVEPOINT job").map_err(internal)?;
    let result = work(connection);
    let close = if result.is_ok() {
        "RELEASE job"
    } else {
        "ROLLBACK TO job; RELEASE job"
    };
    connection.execute_batch(close).map_err(internal)?;
    result
}

fn ingest_one(connection: &Connection, event: &Event, now: DateTime<Utc>) -> Result<IngestOutcome, StoreError> {
    let open = select_open_by_fingerprint(connection, &event.fingerprint)?;
    match lifecycle::decide(event, open.as_ref()) {
        DedupDecision::Create => {
            let incident = Incident::open(IncidentId::generate(), event, now);
            insert_incident(connection, &incident)?;
            insert_entry(connection, &lifecycle::created_entry(&incident))?;
            Ok(IngestOutcome::Created(incident))
        }
        DedupDecision::Attach => {
            let mut incident = open.expect("attach needs an open incident");
            let entry = lifecycle::attach(&mut incident, event, now);
            connection
                .prepare_cached(
                    "UPDATE incidents SET occurrence_count = ?2, last_seen = ?3, updated_at = ?4 WHERE id = ?1",
                )
                .and_then(|mut statement| {
                    statement.execute(params![
                        incident.id.to_string(),
                        incident.occurrence_count,
                        incident.last_seen.timestamp_micros(),
                        incident.updated_at.timestamp_micros(),
                    ])
                })
                .map_err(internal)?;
            insert_entry(connection, &entry)?;
            Ok(IngestOutcome::Deduplicated {
                incident_id: incident.id,
                occurrence_count: incident.occurrence_count,
                source: event.source,
            })
        }
        DedupDecision::Resolve => {
            let incident = open.expect("resolve needs an open incident");
            let transition = lifecycle::resolve_by_event(&incident, event, now)?;
            update_incident(connection, &transition.after)?;
            insert_entry(connection, &transition.entry)?;
            Ok(IngestOutcome::Resolved(transition))
        }
        DedupDecision::Ignore => Ok(IngestOutcome::Ignored),
    }
}

const INCIDENT_COLUMNS: &str = "id, title, description, severity, category, source, state, fingerprint, labels, \
     occurrence_count, first_seen, last_seen, assignee, team, created_at, updated_at, acknowledged_at, \
     resolved_at, resolution_note";

fn insert_incident(connection: &Connection, incident: &Incident) -> Result<(), StoreError> {
    let labels = serde_json::to_string(&incident.labels).map_err(|error| StoreError::Internal(error.to_string()))?;
    let mut statement = connection
        .prepare_cached(&format!(
            "INSERT INTO incidents ({INCIDENT_COLUMNS}) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19)"
        ))
        .map_err(internal)?;
    statement
        .execute(params![
            incident.id.to_string(),
            incident.title,
            incident.description,
            incident.severity.as_str(),
            incident.category.as_str(),
            incident.source.as_str(),
            incident.state.as_str(),
            incident.fingerprint,
            labels,
            incident.occurrence_count,
            incident.first_seen.timestamp_micros(),
            incident.last_seen.timestamp_micros(),
            incident.assignee,
            incident.team,
            incident.created_at.timestamp_micros(),
            incident.updated_at.timestamp_micros(),
            incident.acknowledged_at.map(|at| at.timestamp_micros()),
            incident.resolved_at.map(|at| at.timestamp_micros()),
            incident.resolution_note,
        ])
        .map_err(internal)?;
    Ok(())
}

/// Writes the fields an action can change.
fn update_incident(connection: &Connection, incident: &Incident) -> Result<(), StoreError> {
    let mut statement = connection
        .prepare_cached(
            "UPDATE incidents SET state = ?2, assignee = ?3, team = ?4, updated_at = ?5, acknowledged_at = ?6, \
             resolved_at = ?7, resolution_note = ?8, severity = ?9, category = ?10 WHERE id = ?1",
        )
        .map_err(internal)?;
    statement
        .execute(params![
            incident.id.to_string(),
            incident.state.as_str(),
            incident.assignee,
            incident.team,
            incident.updated_at.timestamp_micros(),
            incident.acknowledged_at.map(|at| at.timestamp_micros()),
            incident.resolved_at.map(|at| at.timestamp_micros()),
            incident.resolution_note,
            incident.severity.as_str(),
            incident.category.as_str(),
        ])
        .map_err(internal)?;
    Ok(())
}

fn insert_entry(connection: &Connection, entry: &TimelineEntry) -> Result<(), StoreError> {
    let mut statement = connection
        .prepare_cached("INSERT INTO timeline (incident_id, at, kind, actor, message) VALUES (?1, ?2, ?3, ?4, ?5)")
        .map_err(internal)?;
    statement
        .execute(params![
            entry.incident_id.to_string(),
            entry.at.timestamp_micros(),
            entry.kind.as_str(),
            entry.actor,
            entry.message,
        ])
        .map_err(internal)?;
    Ok(())
}

fn incident_exists(connection: &Connection, id: IncidentId) -> Result<bool, StoreError> {
    let mut statement = connection
        .prepare_cached("SELECT 1 FROM incidents WHERE id = ?1")
        .map_err(internal)?;
    statement.exists([id.to_string()]).map_err(internal)
}

fn select_incident(connection: &Connection, id: IncidentId) -> Result<Option<Incident>, StoreError> {
    let mut statement = connection
        .prepare_cached(&format!("SELECT {INCIDENT_COLUMNS} FROM incidents WHERE id = ?1"))
        .map_err(internal)?;
    statement
        .query_row([id.to_string()], row_to_incident)
        .optional()
        .map_err(internal)
}

fn select_open_by_fingerprint(connection: &Connection, fingerprint: &str) -> Result<Option<Incident>, StoreError> {
    let mut statement = connection
        .prepare_cached(&format!(
            "SELECT {INCIDENT_COLUMNS} FROM incidents WHERE fingerprint = ?1 AND state <> 'RESOLVED'"
        ))
        .map_err(internal)?;
    statement
        .query_row([fingerprint], row_to_incident)
        .optional()
        .map_err(internal)
}

fn list(connection: &Connection, filter: &IncidentFilter, page: PageRequest) -> Result<Vec<Incident>, StoreError> {
    let mut conditions = Vec::new();
    let mut values: Vec<String> = Vec::new();
    let mut any_of = |column: &str, options: Vec<&'static str>| {
        if options.is_empty() {
            return;
        }
        let placeholders = vec!["?"; options.len()].join(", ");
        conditions.push(format!("{column} IN ({placeholders})"));
        values.extend(options.into_iter().map(str::to_owned));
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
    if let Some(before) = page.before {
        conditions.push("id < ?".to_owned());
        values.push(before.to_string());
    }
    let where_clause = if conditions.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", conditions.join(" AND "))
    };
    let sql = format!(
        "SELECT {INCIDENT_COLUMNS} FROM incidents {where_clause} ORDER BY id DESC LIMIT {}",
        page.limit
    );
    let mut statement = connection.prepare_cached(&sql).map_err(internal)?;
    let rows = statement
        .query_map(rusqlite::params_from_iter(values), row_to_incident)
        .map_err(internal)?;
    rows.collect::<rusqlite::Result<Vec<_>>>().map_err(internal)
}

fn row_to_incident(row: &Row<'_>) -> rusqlite::Result<Incident> {
    let id: String = row.get(0)?;
    let labels: String = row.get(8)?;
    Ok(Incident {
        id: id.parse().map_err(|_| corrupt(0, "incident id", &id))?,
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
    })
}

fn parse_column<T: std::str::FromStr>(row: &Row<'_>, index: usize, what: &str) -> rusqlite::Result<T> {
    let text: String = row.get(index)?;
    text.parse().map_err(|_| corrupt(index, what, &text))
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

fn internal(error: rusqlite::Error) -> StoreError {
    StoreError::Internal(error.to_string())
}

fn unavailable(path: &str, error: rusqlite::Error) -> StoreError {
    StoreError::Unavailable(format!("cannot open SQLite database {path}: {error}"))
}

fn closed() -> StoreError {
    StoreError::Unavailable("the store is shut down".into())
}
