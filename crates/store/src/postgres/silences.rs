//! Silences on PostgreSQL.

use chrono::{DateTime, Utc};
use lim_domain::JobPayload;
use lim_domain::jobs::Escalation;
use lim_domain::silence::{Silence, SilenceId, SilenceMatchers, SilenceState};
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, PgPool, Postgres, QueryBuilder, Row};

use crate::{SilenceFilter, SilencePageRequest, StoreError};

/// The columns `row_to_silence` reads (a macro, so that `concat!` can use it).
macro_rules! columns {
    () => {
        "id, matchers::text AS matchers, starts_at, ends_at, comment, created_by, created_at, updated_at"
    };
}

pub(super) async fn insert(pool: &PgPool, silence: &Silence) -> Result<(), sqlx::Error> {
    let matchers = serde_json::to_string(&silence.matchers).expect("matchers always serialize");
    sqlx::query(
        "INSERT INTO silences (id, matchers, starts_at, ends_at, comment, created_by, created_at, updated_at) \
         VALUES ($1, $2::jsonb, $3, $4, $5, $6, $7, $8)",
    )
    .bind(silence.id.0)
    .bind(matchers)
    .bind(silence.starts_at)
    .bind(silence.ends_at)
    .bind(&silence.comment)
    .bind(&silence.created_by)
    .bind(silence.created_at)
    .bind(silence.updated_at)
    .execute(pool)
    .await?;
    Ok(())
}

pub(super) async fn select(pool: &PgPool, id: SilenceId) -> Result<Option<Silence>, sqlx::Error> {
    let row = sqlx::query(concat!("SELECT ", columns!(), " FROM silences WHERE id = $1"))
        .bind(id.0)
        .fetch_optional(pool)
        .await?;
    row.as_ref().map(row_to_silence).transpose()
}

pub(super) async fn list(
    pool: &PgPool,
    filter: &SilenceFilter,
    page: SilencePageRequest,
) -> Result<Vec<Silence>, sqlx::Error> {
    let mut query = QueryBuilder::<Postgres>::new(concat!("SELECT ", columns!(), " FROM silences WHERE TRUE"));
    if !filter.states.is_empty() {
        query.push(" AND (FALSE");
        for state in &filter.states {
            match state {
                SilenceState::Pending => query.push(" OR starts_at > ").push_bind(filter.now),
                SilenceState::Active => query
                    .push(" OR (starts_at <= ")
                    .push_bind(filter.now)
                    .push(" AND ends_at > ")
                    .push_bind(filter.now)
                    .push(")"),
                SilenceState::Expired => query.push(" OR ends_at <= ").push_bind(filter.now),
            };
        }
        query.push(")");
    }
    if let Some(before) = page.before {
        query.push(" AND id < ").push_bind(before.0);
    }
    query.push(" ORDER BY id DESC LIMIT ").push_bind(i64::from(page.limit));
    let rows = query.build().fetch_all(pool).await?;
    rows.iter().map(row_to_silence).collect()
}

pub(super) async fn active(pool: &PgPool, now: DateTime<Utc>) -> Result<Vec<Silence>, sqlx::Error> {
    let rows = sqlx::query(concat!(
        "SELECT ",
        columns!(),
        " FROM silences WHERE ends_at > $1 AND starts_at <= $1"
    ))
    .bind(now)
    .fetch_all(pool)
    .await?;
    rows.iter().map(row_to_silence).collect()
}

/// Deletes the silence and, when it had not ended yet, starts the escalations it held
/// back from now (level 1 keeps its delay); answers the silence, ended at `now`, and how
/// many escalations resumed.
pub(super) async fn delete(
    tx: &mut PgConnection,
    id: SilenceId,
    now: DateTime<Utc>,
) -> Result<(Silence, u64), StoreError> {
    let row = sqlx::query(concat!(
        "SELECT ",
        columns!(),
        " FROM silences WHERE id = $1 FOR UPDATE"
    ))
    .bind(id.0)
    .fetch_optional(&mut *tx)
    .await?;
    let silence = match row {
        Some(row) => row_to_silence(&row)?,
        None => return Err(StoreError::SilenceNotFound(id)),
    };
    sqlx::query("DELETE FROM silences WHERE id = $1")
        .bind(id.0)
        .execute(&mut *tx)
        .await?;
    if silence.state(now) == SilenceState::Expired {
        return Ok((silence, 0));
    }
    let silence = silence.expire(now);
    let held = sqlx::query(
        "SELECT id, payload::text AS payload, incident_id, due_at FROM jobs \
         WHERE kind = 'escalate' AND state = 'queued' AND payload->>'held_by' = $1 FOR UPDATE",
    )
    .bind(id.to_string())
    .fetch_all(&mut *tx)
    .await?;
    let mut resumed = 0;
    for row in held {
        let payload: &str = row.try_get("payload")?;
        let Ok(JobPayload::Escalate(escalation)) = serde_json::from_str::<JobPayload>(payload) else {
            continue;
        };
        // Level 1 keeps its delay, counted from now instead of from the planned end.
        let planned: DateTime<Utc> = row.try_get("due_at")?;
        let due_at = now + (planned - escalation.started_at).max(chrono::TimeDelta::zero());
        let resumed_payload = JobPayload::Escalate(Escalation {
            started_at: now,
            held_by: None,
            ..escalation
        });
        let payload = serde_json::to_string(&resumed_payload).expect("a job payload always serializes");
        sqlx::query("UPDATE jobs SET payload = $2::jsonb, due_at = $3, updated_at = $4 WHERE id = $1")
            .bind(row.try_get::<i64, _>("id")?)
            .bind(payload)
            .bind(due_at)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        if let Some(incident) = row.try_get::<Option<uuid::Uuid>, _>("incident_id")? {
            sqlx::query("UPDATE incidents SET escalation_due_at = $2 WHERE id = $1 AND escalation_level IS NOT NULL")
                .bind(incident)
                .bind(now)
                .execute(&mut *tx)
                .await?;
        }
        resumed += 1;
    }
    Ok((silence, resumed))
}

fn row_to_silence(row: &PgRow) -> Result<Silence, sqlx::Error> {
    let matchers: &str = row.try_get("matchers")?;
    let matchers: SilenceMatchers = serde_json::from_str(matchers).map_err(|error| sqlx::Error::ColumnDecode {
        index: "matchers".into(),
        source: error.into(),
    })?;
    Silence::restore(
        SilenceId(row.try_get("id")?),
        matchers,
        row.try_get("starts_at")?,
        row.try_get("ends_at")?,
        row.try_get("comment")?,
        row.try_get("created_by")?,
        row.try_get("created_at")?,
        row.try_get("updated_at")?,
    )
    .map_err(|error| sqlx::Error::ColumnDecode {
        index: "matchers".into(),
        source: error.to_string().into(),
    })
}
