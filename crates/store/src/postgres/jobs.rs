//! The job queue on PostgreSQL: several replicas claim from it at once, so a claim locks
//! the rows it takes and skips the ones another replica holds (`FOR UPDATE SKIP
//! LOCKED`), and a claim is a lease: a worker that dies leaves its jobs to be claimed
//! again when the lease runs out.

use chrono::{DateTime, Utc};
use lim_domain::{IncidentId, Job, JobId, JobKind, JobPayload, JobResult, JobState, NewJob, TimelineEntry, Transition};
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, PgPool, Postgres, QueryBuilder, Row};

use super::{insert_entry, parse_column};
use crate::chains::JobChains;
use crate::{Finished, JobCount, JobFilter, JobFinish, JobPageRequest, StoreError};

/// The columns `row_to_job` reads (a macro, so that `concat!` can use it).
macro_rules! job_columns {
    () => {
        "jobs.id, jobs.kind, jobs.incident_id, jobs.payload::text AS payload, jobs.state, jobs.due_at, jobs.attempts, \
         jobs.max_attempts, jobs.last_error, jobs.created_at, jobs.updated_at"
    };
}

/// Numbers, links and writes `jobs`, of the incident `incident` whose job chains are
/// `job_chains` as stored (the caller holds the incident's row lock, or the incident is
/// its own new row), or of none; stores the incident's chains after them.
pub(super) async fn write_jobs(
    tx: &mut PgConnection,
    incident: Option<IncidentId>,
    jobs: &[NewJob],
    job_chains: Option<&str>,
    now: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    if jobs.is_empty() {
        return Ok(());
    }
    let ids = job_ids(tx, jobs.len()).await?;
    let mut chains = JobChains::parse(job_chains).map_err(|error| sqlx::Error::Decode(error.to_string().into()))?;
    let planned = plan(jobs, &ids, &mut chains);
    insert_planned(tx, &planned, now).await?;
    if let Some(incident) = incident {
        sqlx::query("UPDATE incidents SET job_chains = $2 WHERE id = $1")
            .bind(incident.0)
            .bind(chains.to_text())
            .execute(&mut *tx)
            .await?;
        if let Some((level, due_at)) = escalation_level(jobs) {
            sqlx::query("UPDATE incidents SET escalation_level = $2, escalation_due_at = $3 WHERE id = $1")
                .bind(incident.0)
                .bind(level)
                .bind(due_at)
                .execute(&mut *tx)
                .await?;
        }
    }
    Ok(())
}

/// `count` new job ids, in one round trip.
pub(super) async fn job_ids(tx: &mut PgConnection, count: usize) -> Result<Vec<i64>, sqlx::Error> {
    if count == 0 {
        return Ok(Vec::new());
    }
    sqlx::query_scalar("SELECT nextval('jobs_id_seq') FROM generate_series(1, $1)")
        .bind(count as i64)
        .fetch_all(&mut *tx)
        .await
}

/// A job with its id and the job of its chain it waits for.
pub(super) struct Planned<'a> {
    job: &'a NewJob,
    id: i64,
    waits_for: Option<i64>,
}

/// Links `jobs` (numbered `ids`) into the incident's `chains`.
pub(super) fn plan<'a>(jobs: &'a [NewJob], ids: &[i64], chains: &mut JobChains) -> Vec<Planned<'a>> {
    jobs.iter()
        .zip(ids)
        .map(|(job, id)| Planned {
            job,
            id: *id,
            waits_for: job.chain.as_deref().and_then(|chain| chains.follow(chain, *id)),
        })
        .collect()
}

/// The escalation level an incident waits for next after `jobs`: the last level among them.
pub(super) fn escalation_level(jobs: &[NewJob]) -> Option<(i32, DateTime<Utc>)> {
    jobs.iter().rev().find_map(|job| match &job.payload {
        JobPayload::Escalate(escalation) => Some((escalation.level as i32, job.due_at)),
        _ => None,
    })
}

/// Writes planned jobs, of any incidents, in one statement (its text never changes, so
/// the server plans it once per connection whatever the number of jobs).
pub(super) async fn insert_planned(
    tx: &mut PgConnection,
    planned: &[Planned<'_>],
    now: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    if planned.is_empty() {
        return Ok(());
    }
    let jobs = || planned.iter().map(|planned| planned.job);
    sqlx::query(
        "INSERT INTO jobs (id, kind, incident_id, payload, state, due_at, attempts, max_attempts, waits_for, \
         created_at, updated_at) \
         SELECT id, kind, incident_id, payload::jsonb, 'queued', due_at, 0, max_attempts, waits_for, $8, $8 \
         FROM unnest($1::int8[], $2::text[], $3::uuid[], $4::text[], $5::timestamptz[], $6::int4[], $7::int8[]) \
         AS job (id, kind, incident_id, payload, due_at, max_attempts, waits_for)",
    )
    .bind(planned.iter().map(|planned| planned.id).collect::<Vec<_>>())
    .bind(jobs().map(|job| job.payload.kind().as_str()).collect::<Vec<_>>())
    .bind(jobs().map(|job| job.incident_id.map(|id| id.0)).collect::<Vec<_>>())
    .bind(jobs().map(|job| job.payload.to_json()).collect::<Vec<_>>())
    .bind(jobs().map(|job| job.due_at).collect::<Vec<_>>())
    .bind(jobs().map(|job| job.max_attempts as i32).collect::<Vec<_>>())
    .bind(planned.iter().map(|planned| planned.waits_for).collect::<Vec<_>>())
    .bind(now)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// Cancels the incident's pending escalation level (the last job of its escalation
/// chain, while it is queued) when `transition` stopped the escalation. The caller holds
/// the incident's row lock, which a level's completion takes too.
pub(super) async fn stop_escalation(
    tx: &mut PgConnection,
    transition: &Transition,
    job_chains: Option<&str>,
    now: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    let chains = JobChains::parse(job_chains).map_err(|error| sqlx::Error::Decode(error.to_string().into()))?;
    let Some(pending) = chains.stopped_escalation(transition) else {
        return Ok(());
    };
    sqlx::query("UPDATE jobs SET state = 'cancelled', updated_at = $2 WHERE id = $1 AND state = 'queued'")
        .bind(pending)
        .bind(now)
        .execute(&mut *tx)
        .await?;
    Ok(())
}

/// Writes `jobs` of any incidents (each incident's row locked while its jobs are linked).
pub(super) async fn insert_jobs(tx: &mut PgConnection, jobs: &[NewJob], now: DateTime<Utc>) -> Result<(), sqlx::Error> {
    let mut jobs = jobs.to_vec();
    jobs.sort_by_key(|job| job.incident_id);
    for group in jobs.chunk_by(|a, b| a.incident_id == b.incident_id) {
        let Some(incident) = group[0].incident_id else {
            write_jobs(tx, None, group, None, now).await?;
            continue;
        };
        let chains: Option<Option<String>> =
            sqlx::query_scalar("SELECT job_chains FROM incidents WHERE id = $1 FOR UPDATE")
                .bind(incident.0)
                .fetch_optional(&mut *tx)
                .await?;
        let owner = chains.is_some().then_some(incident);
        write_jobs(tx, owner, group, chains.flatten().as_deref(), now).await?;
    }
    Ok(())
}

/// Writes `job` unless an unfinished job of its kind exists. Replicas that try at once
/// take turns on an advisory lock of the kind.
pub(super) async fn ensure_job(tx: &mut PgConnection, job: &NewJob, now: DateTime<Utc>) -> Result<bool, sqlx::Error> {
    let kind = job.payload.kind().as_str();
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
        .bind(format!("jobs:{kind}"))
        .execute(&mut *tx)
        .await?;
    let pending = sqlx::query("SELECT 1 FROM jobs WHERE kind = $1 AND state IN ('queued', 'running') LIMIT 1")
        .bind(kind)
        .fetch_optional(&mut *tx)
        .await?
        .is_some();
    if pending {
        return Ok(false);
    }
    insert_jobs(tx, std::slice::from_ref(job), now).await?;
    Ok(true)
}

pub(super) async fn claim(
    pool: &PgPool,
    kind: JobKind,
    limit: u32,
    worker: &str,
    lease_until: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<Vec<Job>, sqlx::Error> {
    const CLAIM: &str = concat!(
        "WITH due AS ( \
             SELECT id FROM jobs \
             WHERE kind = $1 AND ( \
                 (state = 'queued' AND due_at <= $2 AND (waits_for IS NULL OR NOT EXISTS ( \
                     SELECT 1 FROM jobs AS earlier WHERE earlier.id = jobs.waits_for \
                     AND earlier.state IN ('queued', 'running')))) \
                 OR (state = 'running' AND lease_until < $2)) \
             ORDER BY due_at, id LIMIT $3 FOR UPDATE SKIP LOCKED) \
         UPDATE jobs SET state = 'running', attempts = jobs.attempts + 1, worker = $4, lease_until = $5, \
             updated_at = $2 \
         FROM due WHERE jobs.id = due.id RETURNING ",
        job_columns!()
    );
    let rows = sqlx::query(CLAIM)
        .bind(kind.as_str())
        .bind(now)
        .bind(i64::from(limit))
        .bind(worker)
        .bind(lease_until)
        .fetch_all(pool)
        .await?;
    let mut jobs = rows.iter().map(row_to_job).collect::<Result<Vec<_>, _>>()?;
    jobs.sort_by_key(|job| (job.due_at, job.id));
    Ok(jobs)
}

pub(super) async fn finish(tx: &mut PgConnection, finish: &JobFinish) -> Result<Finished, sqlx::Error> {
    let (state, due_at, error) = match &finish.result {
        JobResult::Done => (JobState::Done, None, None),
        JobResult::Retry { due_at, error } => (JobState::Queued, Some(*due_at), Some(error.as_str())),
        JobResult::Dead { error } => (JobState::Dead, None, Some(error.as_str())),
        JobResult::Deferred { due_at, reason } => (JobState::Queued, Some(*due_at), Some(reason.as_str())),
    };
    let given_back = i32::from(matches!(finish.result, JobResult::Deferred { .. }));
    let changed = sqlx::query(
        "UPDATE jobs SET state = $3, due_at = coalesce($4, due_at), last_error = coalesce($5, last_error), \
         worker = NULL, lease_until = NULL, updated_at = $6, attempts = attempts - $7 \
         WHERE id = $1 AND worker = $2 AND state = 'running'",
    )
    .bind(finish.id.0)
    .bind(&finish.worker)
    .bind(state.as_str())
    .bind(due_at)
    .bind(error)
    .bind(finish.now)
    .bind(given_back)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if changed == 0 {
        return Ok(Finished::Lost);
    }
    if let Some(incident) = finish.escalating {
        // The row lock orders this after an acknowledgement that came first, and makes
        // one that comes later wait for it (and then cancel the level this writes).
        let escalates: Option<bool> = sqlx::query_scalar(
            "SELECT state IN ('NEW', 'ASSIGNED') AND acknowledged_at IS NULL FROM incidents WHERE id = $1 FOR UPDATE",
        )
        .bind(incident.0)
        .fetch_optional(&mut *tx)
        .await?;
        sqlx::query("UPDATE incidents SET escalation_level = NULL, escalation_due_at = NULL WHERE id = $1")
            .bind(incident.0)
            .execute(&mut *tx)
            .await?;
        if escalates != Some(true) {
            return Ok(Finished::Stopped);
        }
    }
    for entry in &finish.entries {
        append_if_incident_exists(tx, entry).await?;
    }
    insert_jobs(tx, &finish.follow_ups, finish.now).await?;
    Ok(Finished::Recorded)
}

async fn append_if_incident_exists(tx: &mut PgConnection, entry: &TimelineEntry) -> Result<(), sqlx::Error> {
    let exists = sqlx::query("SELECT 1 FROM incidents WHERE id = $1")
        .bind(entry.incident_id.0)
        .fetch_optional(&mut *tx)
        .await?
        .is_some();
    if exists {
        insert_entry(tx, entry).await?;
    }
    Ok(())
}

pub(super) async fn release(pool: &PgPool, worker: &str, now: DateTime<Utc>) -> Result<u64, sqlx::Error> {
    let released = sqlx::query(
        "UPDATE jobs SET state = 'queued', worker = NULL, lease_until = NULL, attempts = GREATEST(attempts - 1, 0), \
         updated_at = $2 WHERE state = 'running' AND worker = $1",
    )
    .bind(worker)
    .bind(now)
    .execute(pool)
    .await?;
    Ok(released.rows_affected())
}

pub(super) async fn select(pool: &PgPool, id: JobId) -> Result<Option<Job>, sqlx::Error> {
    let row = sqlx::query(concat!("SELECT ", job_columns!(), " FROM jobs WHERE id = $1"))
        .bind(id.0)
        .fetch_optional(pool)
        .await?;
    row.as_ref().map(row_to_job).transpose()
}

pub(super) async fn list(pool: &PgPool, filter: &JobFilter, page: JobPageRequest) -> Result<Vec<Job>, sqlx::Error> {
    let mut query = QueryBuilder::<Postgres>::new(concat!("SELECT ", job_columns!(), " FROM jobs WHERE TRUE"));
    if !filter.states.is_empty() {
        let states: Vec<&str> = filter.states.iter().map(|state| state.as_str()).collect();
        query.push(" AND state = ANY(").push_bind(states).push(")");
    }
    if !filter.kinds.is_empty() {
        let kinds: Vec<&str> = filter.kinds.iter().map(|kind| kind.as_str()).collect();
        query.push(" AND kind = ANY(").push_bind(kinds).push(")");
    }
    if let Some(before) = page.before {
        query.push(" AND id < ").push_bind(before.0);
    }
    query.push(" ORDER BY id DESC LIMIT ").push_bind(i64::from(page.limit));
    let rows = query.build().fetch_all(pool).await?;
    rows.iter().map(row_to_job).collect()
}

pub(super) async fn retry(pool: &PgPool, id: JobId, now: DateTime<Utc>) -> Result<Job, StoreError> {
    let row = sqlx::query(concat!(
        "UPDATE jobs SET state = 'queued', due_at = $2, attempts = 0, updated_at = $2 \
         WHERE id = $1 AND state = 'dead' RETURNING ",
        job_columns!()
    ))
    .bind(id.0)
    .bind(now)
    .fetch_optional(pool)
    .await?;
    match row {
        Some(row) => Ok(row_to_job(&row)?),
        None => match select(pool, id).await? {
            Some(job) => Err(StoreError::NotDead { id, state: job.state }),
            None => Err(StoreError::JobNotFound(id)),
        },
    }
}

pub(super) async fn count(pool: &PgPool) -> Result<Vec<JobCount>, sqlx::Error> {
    let rows = sqlx::query("SELECT kind, count(*) AS queued FROM jobs WHERE state = 'queued' GROUP BY kind")
        .fetch_all(pool)
        .await?;
    rows.iter()
        .map(|row| {
            Ok(JobCount {
                kind: parse_column(row, "kind")?,
                queued: row.try_get("queued")?,
            })
        })
        .collect()
}

pub(super) async fn prune(pool: &PgPool, before: DateTime<Utc>) -> Result<u64, sqlx::Error> {
    let deleted = sqlx::query("DELETE FROM jobs WHERE state IN ('done', 'cancelled') AND updated_at < $1")
        .bind(before)
        .execute(pool)
        .await?;
    Ok(deleted.rows_affected())
}

fn row_to_job(row: &PgRow) -> Result<Job, sqlx::Error> {
    let payload: &str = row.try_get("payload")?;
    let payload: JobPayload = serde_json::from_str(payload).map_err(|error| sqlx::Error::ColumnDecode {
        index: "payload".into(),
        source: error.into(),
    })?;
    let attempts: i32 = row.try_get("attempts")?;
    let max_attempts: i32 = row.try_get("max_attempts")?;
    Ok(Job {
        id: JobId(row.try_get("id")?),
        kind: parse_column(row, "kind")?,
        payload,
        incident_id: row
            .try_get::<Option<uuid::Uuid>, _>("incident_id")?
            .map(lim_domain::IncidentId),
        state: parse_column(row, "state")?,
        due_at: row.try_get("due_at")?,
        attempts: attempts.max(0) as u32,
        max_attempts: max_attempts.max(0) as u32,
        last_error: row.try_get("last_error")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}
