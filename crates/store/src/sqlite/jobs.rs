//! The job queue on SQLite. Every statement here runs on the writer thread (claims and
//! completions are writes), so nothing comes between a look-up and the update after it.

use lim_domain::{IncidentId, Job, JobId, JobKind, JobPayload, JobResult, JobState, NewJob, Transition};

use super::*;
use crate::chains::JobChains;

/// The statement that writes `rows` queued jobs: `?1` is the time, then six values a
/// row.
///
/// SQLite numbers the rows: the largest number so far plus one, which is the number the
/// writer gave each job (`next_job_id`: no other connection writes), and
/// `insert_prepared` checks that they agree. Numbering them itself, SQLite appends each
/// row without first looking its number up (750 instructions an event of the routed
/// steady state).
///
/// `OR FAIL`: a refused row (none is expected) ends the statement without undoing the
/// rows before it, so SQLite keeps no statement journal for a statement of many rows
/// (700 instructions an event). Nothing partial is kept: any error poisons the writer's
/// group, and the whole transaction rolls back.
fn insert_sql(rows: usize) -> String {
    let values: Vec<String> = (0..rows)
        .map(|row| {
            let first = 2 + COLUMNS_A_ROW * row;
            let at = |offset: usize| format!("?{}", first + offset);
            format!(
                "({}, {}, {}, 'queued', {}, 0, {}, {}, ?1, ?1)",
                at(0),
                at(1),
                at(2),
                at(3),
                at(4),
                at(5)
            )
        })
        .collect();
    format!(
        "INSERT OR FAIL INTO jobs (kind, incident_id, payload, state, due_at, attempts, max_attempts, waits_for, \
         created_at, updated_at) VALUES {}",
        values.join(", ")
    )
}

const COLUMNS_A_ROW: usize = 6;

/// Jobs go in with one statement per this many rows (then per fewer), not one per job:
/// most of what a one-row insert costs is running a statement, not writing its row.
const INSERT_CHUNKS: [usize; 3] = [32, 4, 1];

static INSERT_SQL: std::sync::LazyLock<[String; 3]> = std::sync::LazyLock::new(|| INSERT_CHUNKS.map(insert_sql));

macro_rules! job_columns {
    () => {
        "id, kind, incident_id, payload, state, due_at, attempts, max_attempts, last_error, created_at, updated_at"
    };
}

/// A job as its row has it, made ready off the writer where it can be (a new incident's),
/// then numbered and linked to its chain by the writer (`link`).
pub(super) struct PreparedJob {
    pub(super) kind: JobKind,
    incident_id: Option<IncidentId>,
    payload: String,
    due_at: i64,
    max_attempts: u32,
    chain: Option<String>,
    id: i64,
    waits_for: Option<i64>,
}

impl PreparedJob {
    pub(super) fn new(job: &NewJob) -> Self {
        PreparedJob {
            kind: job.payload.kind(),
            incident_id: job.incident_id,
            payload: job.payload.to_json(),
            due_at: job.due_at.timestamp_micros(),
            max_attempts: job.max_attempts,
            chain: job.chain.clone(),
            id: 0,
            waits_for: None,
        }
    }

    pub(super) fn all(jobs: &[NewJob]) -> Vec<Self> {
        jobs.iter().map(PreparedJob::new).collect()
    }

    /// The level and due time (microseconds) of an escalation level's job.
    fn escalation_level(&self) -> Option<(u32, i64)> {
        if self.kind != JobKind::Escalate {
            return None;
        }
        let payload: JobPayload = serde_json::from_str(&self.payload).ok()?;
        match payload {
            JobPayload::Escalate(escalation) => Some((escalation.level, self.due_at)),
            _ => None,
        }
    }
}

/// Cancels the incident's pending escalation level (the last job of its escalation
/// chain, while it is queued) when `transition` stopped the escalation (acknowledged or
/// resolved it). A level already running finds the incident stopped when it finishes.
pub(super) fn stop_escalation(
    connection: &Connection,
    transition: &Transition,
    chains: &JobChains,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let Some(pending) = chains.stopped_escalation(transition) else {
        return Ok(());
    };
    prepare(
        connection,
        "UPDATE jobs SET state = 'cancelled', updated_at = ?2 WHERE id = ?1 AND state = 'queued'",
    )?
    .execute(params![pending, now.timestamp_micros()])
    .map_err(internal)?;
    Ok(())
}

/// The number of the next job. The writer numbers jobs itself, as it numbers timeline
/// entries, so that an incident can name its chains' last jobs in the statement that
/// writes the incident. (Pruning keeps the newest job, so numbers never go back.) SQLite
/// gives each row the same number when it writes it, and `insert_prepared` checks that.
fn next_job_id(connection: &Connection) -> Result<i64, StoreError> {
    prepare(connection, "SELECT coalesce(max(id), 0) + 1 FROM jobs")?
        .query_row([], |row| row.get(0))
        .map_err(internal)
}

/// Numbers `jobs`, all of one incident whose chains are `chains` (or of none), from
/// `next_id` on (read from the table when the transaction has numbered none yet), and
/// links each to the job it waits for. Reads nothing when there is no job.
pub(super) fn link(
    connection: &Connection,
    jobs: &mut [PreparedJob],
    chains: &mut JobChains,
    next_id: &mut Option<i64>,
) -> Result<(), StoreError> {
    if jobs.is_empty() {
        return Ok(());
    }
    let mut id = match *next_id {
        Some(id) => id,
        None => next_job_id(connection)?,
    };
    for job in jobs {
        job.id = id;
        id += 1;
        job.waits_for = job.chain.as_deref().and_then(|chain| chains.follow(chain, job.id));
    }
    *next_id = Some(id);
    Ok(())
}

/// Numbers, links and writes `jobs`, queued, in the caller's transaction, and moves the
/// chains of the incidents they belong to.
pub(super) fn insert_jobs(connection: &Connection, jobs: &[NewJob], now: DateTime<Utc>) -> Result<(), StoreError> {
    if jobs.is_empty() {
        return Ok(());
    }
    let mut next_id = None;
    let mut prepared = PreparedJob::all(jobs);
    // Each incident's jobs together, in the order given.
    prepared.sort_by_key(|job| job.incident_id);
    for group in prepared.chunk_by_mut(|a, b| a.incident_id == b.incident_id) {
        let Some(incident) = group[0].incident_id else {
            link(connection, group, &mut JobChains::default(), &mut next_id)?;
            continue;
        };
        let chains: Option<Option<String>> = prepare(connection, "SELECT job_chains FROM incidents WHERE id = ?1")?
            .query_row([id_bytes(incident)], |row| row.get(0))
            .optional()
            .map_err(internal)?;
        let mut linked = JobChains::parse(chains.as_ref().and_then(Option::as_deref))?;
        link(connection, group, &mut linked, &mut next_id)?;
        if chains.is_some() {
            prepare(connection, "UPDATE incidents SET job_chains = ?2 WHERE id = ?1")?
                .execute(params![id_bytes(incident), linked.to_text()])
                .map_err(internal)?;
            // A level of the incident's escalation is the level it waits for next.
            if let Some(level) = group.iter().rev().find_map(PreparedJob::escalation_level) {
                prepare(
                    connection,
                    "UPDATE incidents SET escalation_level = ?2, escalation_due_at = ?3 WHERE id = ?1",
                )?
                .execute(params![id_bytes(incident), level.0, level.1])
                .map_err(internal)?;
            }
        }
    }
    prepared.sort_by_key(|job| job.id);
    insert_prepared(connection, &prepared, now)
}

/// Writes numbered and linked `jobs`, queued, in the caller's transaction.
pub(super) fn insert_prepared(
    connection: &Connection,
    jobs: &[PreparedJob],
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let mut rest = jobs;
    for (rows, sql) in INSERT_CHUNKS.iter().zip(INSERT_SQL.iter()) {
        while rest.len() >= *rows {
            let (chunk, after) = rest.split_at(*rows);
            let mut statement = prepare(connection, sql)?;
            statement
                .raw_bind_parameter(1, now.timestamp_micros())
                .map_err(internal)?;
            for (row, job) in chunk.iter().enumerate() {
                bind_job(&mut statement, 2 + COLUMNS_A_ROW * row, job)?;
            }
            statement.raw_execute().map_err(internal)?;
            let numbered = chunk.last().expect("a chunk has rows").id;
            if connection.last_insert_rowid() != numbered {
                return Err(StoreError::Internal(format!(
                    "the writer numbered a job {numbered}, SQLite {}",
                    connection.last_insert_rowid()
                )));
            }
            rest = after;
        }
    }
    Ok(())
}

fn bind_job(statement: &mut Statement<'_>, first: usize, job: &PreparedJob) -> Result<(), StoreError> {
    statement
        .raw_bind_parameter(first, job.kind.as_str())
        .map_err(internal)?;
    statement
        .raw_bind_parameter(first + 1, job.incident_id.map(id_bytes))
        .map_err(internal)?;
    statement
        .raw_bind_parameter(first + 2, &job.payload)
        .map_err(internal)?;
    statement.raw_bind_parameter(first + 3, job.due_at).map_err(internal)?;
    statement
        .raw_bind_parameter(first + 4, job.max_attempts)
        .map_err(internal)?;
    statement
        .raw_bind_parameter(first + 5, job.waits_for)
        .map_err(internal)?;
    Ok(())
}

/// Writes `job` unless an unfinished job of its kind exists; true when written.
pub(super) fn ensure_job(connection: &Connection, job: &NewJob, now: DateTime<Utc>) -> Result<bool, StoreError> {
    let kind = job.payload.kind().as_str();
    let pending = prepare(
        connection,
        "SELECT 1 FROM jobs WHERE kind = ?1 AND state = 'queued' \
         UNION ALL SELECT 1 FROM jobs WHERE state = 'running' AND kind = ?1",
    )?
    .exists([kind])
    .map_err(internal)?;
    if pending {
        return Ok(false);
    }
    insert_jobs(connection, std::slice::from_ref(job), now)?;
    Ok(true)
}

/// Claims up to `limit` due jobs of `kind`: queued ones due by `now` whose job to wait
/// for has finished, and running ones whose lease expired.
pub(super) fn claim(
    connection: &Connection,
    kind: JobKind,
    limit: u32,
    worker: &str,
    lease_until: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<Vec<Job>, StoreError> {
    let now_micros = now.timestamp_micros();
    let mut ids: Vec<i64> = prepare(
        connection,
        "SELECT id FROM jobs WHERE state = 'running' AND lease_until < ?2 AND kind = ?1 ORDER BY id LIMIT ?3",
    )?
    .query_map(params![kind.as_str(), now_micros, limit], |row| row.get(0))
    .map_err(internal)?
    .collect::<rusqlite::Result<_>>()
    .map_err(internal)?;
    let room = limit.saturating_sub(ids.len() as u32);
    if room > 0 {
        let queued = prepare(
            connection,
            "SELECT id FROM jobs WHERE kind = ?1 AND state = 'queued' AND due_at <= ?2 \
             AND (waits_for IS NULL OR NOT EXISTS (SELECT 1 FROM jobs AS earlier \
                  WHERE earlier.id = jobs.waits_for AND earlier.state IN ('queued', 'running'))) \
             ORDER BY due_at, id LIMIT ?3",
        )?
        .query_map(params![kind.as_str(), now_micros, room], |row| row.get(0))
        .map_err(internal)?
        .collect::<rusqlite::Result<Vec<i64>>>()
        .map_err(internal)?;
        ids.extend(queued);
    }
    let mut update = prepare(
        connection,
        "UPDATE jobs SET state = 'running', attempts = attempts + 1, worker = ?2, lease_until = ?3, updated_at = ?4 \
         WHERE id = ?1",
    )?;
    let mut select = prepare(
        connection,
        concat!("SELECT ", job_columns!(), " FROM jobs WHERE id = ?1"),
    )?;
    let mut jobs = Vec::with_capacity(ids.len());
    for id in ids {
        update
            .execute(params![id, worker, lease_until.timestamp_micros(), now_micros])
            .map_err(internal)?;
        jobs.push(select.query_row([id], row_to_job).map_err(internal)?);
    }
    Ok(jobs)
}

/// Records how an attempt ended, if the worker still holds the job, with its timeline
/// entries and follow-up jobs (for an escalation level, only while its incident still
/// escalates).
pub(super) fn finish(connection: &Connection, finish: &JobFinish) -> Result<Finished, StoreError> {
    let (state, due_at, error) = match &finish.result {
        JobResult::Done => (JobState::Done, None, None),
        JobResult::Retry { due_at, error } => (JobState::Queued, Some(due_at.timestamp_micros()), Some(error)),
        JobResult::Dead { error } => (JobState::Dead, None, Some(error)),
        JobResult::Deferred { due_at, reason } => (JobState::Queued, Some(due_at.timestamp_micros()), Some(reason)),
    };
    let given_back = i64::from(matches!(finish.result, JobResult::Deferred { .. }));
    let changed = prepare(
        connection,
        "UPDATE jobs SET state = ?3, due_at = coalesce(?4, due_at), last_error = coalesce(?5, last_error), \
         worker = NULL, lease_until = NULL, updated_at = ?6, attempts = attempts - ?7 \
         WHERE id = ?1 AND worker = ?2 AND state = 'running'",
    )?
    .execute(params![
        finish.id.0,
        finish.worker,
        state.as_str(),
        due_at,
        error,
        finish.now.timestamp_micros(),
        given_back
    ])
    .map_err(internal)?;
    if changed == 0 {
        return Ok(Finished::Lost);
    }
    if let Some(incident) = finish.escalating {
        let escalates = prepare(
            connection,
            "SELECT 1 FROM incidents WHERE id = ?1 AND state IN ('NEW', 'ASSIGNED') AND acknowledged_at IS NULL",
        )?
        .exists([id_bytes(incident)])
        .map_err(internal)?;
        prepare(
            connection,
            "UPDATE incidents SET escalation_level = NULL, escalation_due_at = NULL WHERE id = ?1",
        )?
        .execute([id_bytes(incident)])
        .map_err(internal)?;
        if !escalates {
            return Ok(Finished::Stopped);
        }
    }
    for entry in &finish.entries {
        append_to_incident(connection, entry)?;
    }
    insert_jobs(connection, &finish.follow_ups, finish.now)?;
    Ok(Finished::Recorded)
}

/// Appends `entry` to its incident's timeline, if the incident still exists.
fn append_to_incident(connection: &Connection, entry: &TimelineEntry) -> Result<(), StoreError> {
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
    .map_err(internal)?;
    let Some(chain) = chain else {
        return Ok(());
    };
    let chain = append_entry(connection, entry, chain)?;
    prepare(
        connection,
        "UPDATE incidents SET last_entry = ?2, entry_count = ?3 WHERE id = ?1",
    )?
    .execute(params![id, chain.last_entry, chain.entry_count])
    .map_err(internal)?;
    Ok(())
}

pub(super) fn release(connection: &Connection, worker: &str, now: DateTime<Utc>) -> Result<u64, StoreError> {
    let released = prepare(
        connection,
        "UPDATE jobs SET state = 'queued', worker = NULL, lease_until = NULL, attempts = max(attempts - 1, 0), \
         updated_at = ?2 WHERE state = 'running' AND worker = ?1",
    )?
    .execute(params![worker, now.timestamp_micros()])
    .map_err(internal)?;
    Ok(released as u64)
}

/// Every running job back to the queue: on SQLite one process runs every job, so a job
/// found running when it starts belonged to a process that died.
pub(super) fn release_all(connection: &Connection, now: DateTime<Utc>) -> Result<u64, StoreError> {
    let released = prepare(
        connection,
        "UPDATE jobs SET state = 'queued', worker = NULL, lease_until = NULL, updated_at = ?1 WHERE state = 'running'",
    )?
    .execute([now.timestamp_micros()])
    .map_err(internal)?;
    Ok(released as u64)
}

pub(super) fn retry(connection: &Connection, id: JobId, now: DateTime<Utc>) -> Result<Job, StoreError> {
    let state: Option<String> = prepare(connection, "SELECT state FROM jobs WHERE id = ?1")?
        .query_row([id.0], |row| row.get(0))
        .optional()
        .map_err(internal)?;
    let state: JobState = match state {
        None => return Err(StoreError::JobNotFound(id)),
        Some(state) => state.parse().map_err(|_| corrupt_text("job state", &state))?,
    };
    if state != JobState::Dead {
        return Err(StoreError::NotDead { id, state });
    }
    prepare(
        connection,
        "UPDATE jobs SET state = 'queued', due_at = ?2, attempts = 0, updated_at = ?2 WHERE id = ?1",
    )?
    .execute(params![id.0, now.timestamp_micros()])
    .map_err(internal)?;
    select_job(connection, id)?.ok_or(StoreError::JobNotFound(id))
}

pub(super) fn select_job(connection: &Connection, id: JobId) -> Result<Option<Job>, StoreError> {
    prepare(
        connection,
        concat!("SELECT ", job_columns!(), " FROM jobs WHERE id = ?1"),
    )?
    .query_row([id.0], row_to_job)
    .optional()
    .map_err(internal)
}

pub(super) fn list(connection: &Connection, filter: &JobFilter, page: JobPageRequest) -> Result<Vec<Job>, StoreError> {
    let mut conditions = Vec::new();
    let mut values: Vec<Value> = Vec::new();
    // States and kinds are written into the statement (closed vocabularies), not bound:
    // SQLite uses a partial index only for a condition it can see (`state = 'dead'`).
    for (column, options) in [
        (
            "state",
            filter.states.iter().map(|state| state.as_str()).collect::<Vec<_>>(),
        ),
        ("kind", filter.kinds.iter().map(|kind| kind.as_str()).collect()),
    ] {
        if !options.is_empty() {
            let each: Vec<String> = options.iter().map(|option| format!("{column} = '{option}'")).collect();
            conditions.push(format!("({})", each.join(" OR ")));
        }
    }
    if let Some(before) = page.before {
        conditions.push("id < ?".to_owned());
        values.push(Value::Integer(before.0));
    }
    let where_clause = if conditions.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", conditions.join(" AND "))
    };
    values.push(Value::Integer(page.limit.into()));
    let sql = format!(
        concat!("SELECT ", job_columns!(), " FROM jobs {} ORDER BY id DESC LIMIT ?"),
        where_clause
    );
    let mut statement = connection.prepare_cached(&sql).map_err(internal)?;
    let rows = statement
        .query_map(rusqlite::params_from_iter(values), row_to_job)
        .map_err(internal)?;
    rows.collect::<rusqlite::Result<Vec<_>>>().map_err(internal)
}

pub(super) fn count(connection: &Connection) -> Result<Vec<JobCount>, StoreError> {
    let mut statement = prepare(
        connection,
        "SELECT kind, count(*) FROM jobs WHERE state = 'queued' GROUP BY kind",
    )?;
    let rows = statement
        .query_map([], |row| {
            Ok((parse_column::<JobKind>(row, 0, "job kind")?, row.get(1)?))
        })
        .map_err(internal)?;
    rows.map(|row| row.map(|(kind, queued)| JobCount { kind, queued }))
        .collect::<rusqlite::Result<Vec<_>>>()
        .map_err(internal)
}

/// Deletes jobs done or cancelled before `before`, one state at a time so that each
/// statement can use the index of finished jobs. The newest job is kept, so that job
/// numbers never go back.
pub(super) fn prune(connection: &Connection, before: DateTime<Utc>) -> Result<u64, StoreError> {
    let mut deleted = 0;
    for sql in [
        "DELETE FROM jobs WHERE state = 'done' AND updated_at < ?1 AND id < (SELECT max(id) FROM jobs)",
        "DELETE FROM jobs WHERE state = 'cancelled' AND updated_at < ?1 AND id < (SELECT max(id) FROM jobs)",
    ] {
        deleted += prepare(connection, sql)?
            .execute([before.timestamp_micros()])
            .map_err(internal)? as u64;
    }
    Ok(deleted)
}

fn row_to_job(row: &Row<'_>) -> rusqlite::Result<Job> {
    let payload: String = row.get(3)?;
    let payload: JobPayload = serde_json::from_str(&payload).map_err(|_| corrupt(3, "job payload", &payload))?;
    Ok(Job {
        id: JobId(row.get(0)?),
        kind: parse_column(row, 1, "job kind")?,
        incident_id: row.get::<_, Option<[u8; 16]>>(2)?.map(id_from),
        payload,
        state: parse_column(row, 4, "job state")?,
        due_at: time_from(row.get(5)?)?,
        attempts: row.get(6)?,
        max_attempts: row.get(7)?,
        last_error: row.get(8)?,
        created_at: time_from(row.get(9)?)?,
        updated_at: time_from(row.get(10)?)?,
    })
}
