//! The job queue on SQLite. Every statement here runs on the writer thread (claims and
//! completions are writes), so nothing comes between a look-up and the update after it.

use lim_domain::{Job, JobId, JobKind, JobPayload, JobResult, JobState, NewJob};

use super::*;

const INSERT_JOB: &str = "INSERT INTO jobs (kind, incident_id, payload, state, due_at, attempts, max_attempts, \
     serial_key, created_at, updated_at) VALUES (?1, ?2, ?3, 'queued', ?4, 0, ?5, ?6, ?7, ?7)";

macro_rules! job_columns {
    () => {
        "id, kind, incident_id, payload, state, due_at, attempts, max_attempts, last_error, created_at, updated_at"
    };
}

/// Writes `jobs`, queued, in the caller's transaction.
pub(super) fn insert_jobs(connection: &Connection, jobs: &[NewJob], now: DateTime<Utc>) -> Result<(), StoreError> {
    if jobs.is_empty() {
        return Ok(());
    }
    let mut statement = prepare(connection, INSERT_JOB)?;
    for job in jobs {
        let payload = serde_json::to_string(&job.payload).map_err(|error| StoreError::Internal(error.to_string()))?;
        statement
            .execute(params![
                job.payload.kind().as_str(),
                job.incident_id.map(id_bytes),
                payload,
                job.due_at.timestamp_micros(),
                job.max_attempts,
                job.serial_key,
                now.timestamp_micros(),
            ])
            .map_err(internal)?;
    }
    Ok(())
}

/// Writes `job` unless an unfinished job has its serial key; true when written.
pub(super) fn ensure_job(connection: &Connection, job: &NewJob, now: DateTime<Utc>) -> Result<bool, StoreError> {
    let Some(key) = &job.serial_key else {
        insert_jobs(connection, std::slice::from_ref(job), now)?;
        return Ok(true);
    };
    let pending = prepare(
        connection,
        "SELECT 1 FROM jobs WHERE serial_key = ?1 AND state IN ('queued', 'running')",
    )?
    .exists([key])
    .map_err(internal)?;
    if pending {
        return Ok(false);
    }
    insert_jobs(connection, std::slice::from_ref(job), now)?;
    Ok(true)
}

/// Claims up to `limit` due jobs of `kind`: queued ones due by `now` whose serial key has
/// no earlier unfinished job, and running ones whose lease expired.
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
             AND (serial_key IS NULL OR NOT EXISTS (SELECT 1 FROM jobs AS earlier \
                  WHERE earlier.serial_key = jobs.serial_key AND earlier.id < jobs.id \
                  AND earlier.state IN ('queued', 'running'))) \
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
/// entry and follow-up jobs.
pub(super) fn finish(connection: &Connection, finish: &JobFinish) -> Result<bool, StoreError> {
    let (state, due_at, error) = match &finish.result {
        JobResult::Done => (JobState::Done, None, None),
        JobResult::Retry { due_at, error } => (JobState::Queued, Some(due_at.timestamp_micros()), Some(error)),
        JobResult::Dead { error } => (JobState::Dead, None, Some(error)),
    };
    let changed = prepare(
        connection,
        "UPDATE jobs SET state = ?3, due_at = coalesce(?4, due_at), last_error = coalesce(?5, last_error), \
         worker = NULL, lease_until = NULL, updated_at = ?6 WHERE id = ?1 AND worker = ?2 AND state = 'running'",
    )?
    .execute(params![
        finish.id.0,
        finish.worker,
        state.as_str(),
        due_at,
        error,
        finish.now.timestamp_micros()
    ])
    .map_err(internal)?;
    if changed == 0 {
        return Ok(false);
    }
    if let Some(entry) = &finish.entry {
        append_to_incident(connection, entry)?;
    }
    insert_jobs(connection, &finish.follow_ups, finish.now)?;
    Ok(true)
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
    let mut any_of = |column: &str, options: Vec<&'static str>| {
        if options.is_empty() {
            return;
        }
        conditions.push(format!("{column} IN ({})", vec!["?"; options.len()].join(", ")));
        values.extend(options.into_iter().map(|option| Value::Text(option.to_owned())));
    };
    any_of("state", filter.states.iter().map(|state| state.as_str()).collect());
    any_of("kind", filter.kinds.iter().map(|kind| kind.as_str()).collect());
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

pub(super) fn prune(connection: &Connection, before: DateTime<Utc>) -> Result<u64, StoreError> {
    let deleted = prepare(connection, "DELETE FROM jobs WHERE state = 'done' AND updated_at < ?1")?
        .execute([before.timestamp_micros()])
        .map_err(internal)?;
    Ok(deleted as u64)
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
