//! Silences on SQLite: a small table read by every notification and escalation (the
//! active ones), written by people.

use lim_domain::jobs::Escalation;
use lim_domain::silence::SilenceMatchers;

use super::*;

const COLUMNS: &str = "id, matchers, starts_at, ends_at, comment, created_by, created_at, updated_at";

pub(super) fn insert(connection: &Connection, silence: &Silence) -> Result<(), StoreError> {
    let matchers = serde_json::to_string(&silence.matchers).map_err(|error| StoreError::Internal(error.to_string()))?;
    prepare(
        connection,
        "INSERT INTO silences (id, matchers, starts_at, ends_at, comment, created_by, created_at, updated_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?
    .execute(params![
        silence.id.0.as_bytes(),
        matchers,
        silence.starts_at.timestamp_micros(),
        silence.ends_at.timestamp_micros(),
        silence.comment,
        silence.created_by,
        silence.created_at.timestamp_micros(),
        silence.updated_at.timestamp_micros(),
    ])
    .map_err(internal)?;
    Ok(())
}

pub(super) fn select(connection: &Connection, id: SilenceId) -> Result<Option<Silence>, StoreError> {
    prepare(connection, &format!("SELECT {COLUMNS} FROM silences WHERE id = ?1"))?
        .query_row([id.0.as_bytes()], row_to_silence)
        .optional()
        .map_err(internal)
}

pub(super) fn list(
    connection: &Connection,
    filter: &SilenceFilter,
    page: SilencePageRequest,
) -> Result<Vec<Silence>, StoreError> {
    let now = filter.now.timestamp_micros();
    let mut conditions = Vec::new();
    if !filter.states.is_empty() {
        let states: Vec<&str> = filter
            .states
            .iter()
            .map(|state| match state {
                SilenceState::Pending => "starts_at > ?1",
                SilenceState::Active => "(starts_at <= ?1 AND ends_at > ?1)",
                SilenceState::Expired => "ends_at <= ?1",
            })
            .collect();
        conditions.push(format!("({})", states.join(" OR ")));
    }
    if page.before.is_some() {
        conditions.push("id < ?2".to_owned());
    }
    let where_clause = if conditions.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", conditions.join(" AND "))
    };
    let sql = format!("SELECT {COLUMNS} FROM silences {where_clause} ORDER BY id DESC LIMIT ?3");
    let before = page.before.map(|id| id.0.as_bytes().to_vec());
    let mut statement = connection.prepare_cached(&sql).map_err(internal)?;
    let values = [
        Value::Integer(now),
        before.map_or(Value::Null, Value::Blob),
        Value::Integer(page.limit.into()),
    ];
    for (index, value) in (1..).zip(values) {
        // Parameters the statement does not use are left unbound.
        if statement.parameter_name(index).is_some() {
            statement.raw_bind_parameter(index, value).map_err(internal)?;
        }
    }
    let mut rows = statement.raw_query();
    let mut silences = Vec::new();
    while let Some(row) = rows.next().map_err(internal)? {
        silences.push(row_to_silence(row).map_err(internal)?);
    }
    Ok(silences)
}

pub(super) fn active(connection: &Connection, now: DateTime<Utc>) -> Result<Vec<Silence>, StoreError> {
    prepare(
        connection,
        &format!("SELECT {COLUMNS} FROM silences WHERE ends_at > ?1 AND starts_at <= ?1"),
    )?
    .query_map([now.timestamp_micros()], row_to_silence)
    .map_err(internal)?
    .collect::<rusqlite::Result<Vec<_>>>()
    .map_err(internal)
}

/// Deletes the silence and, when it had not ended yet, starts the escalations it held
/// back from now (level 1 keeps its delay); answers the silence, ended at `now`, and how
/// many escalations resumed.
pub(super) fn delete(connection: &Connection, id: SilenceId, now: DateTime<Utc>) -> Result<(Silence, u64), StoreError> {
    let silence = select(connection, id)?.ok_or(StoreError::SilenceNotFound(id))?;
    prepare(connection, "DELETE FROM silences WHERE id = ?1")?
        .execute([id.0.as_bytes()])
        .map_err(internal)?;
    if silence.state(now) == SilenceState::Expired {
        return Ok((silence, 0));
    }
    let silence = silence.expire(now);
    let held: Vec<(i64, String, Option<[u8; 16]>, i64)> = prepare(
        connection,
        "SELECT id, payload, incident_id, due_at FROM jobs WHERE kind = 'escalate' AND state = 'queued'",
    )?
    .query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?)))
    .map_err(internal)?
    .collect::<rusqlite::Result<_>>()
    .map_err(internal)?;
    let mut resumed = 0;
    for (job, payload, incident, due_at) in held {
        let Ok(JobPayload::Escalate(escalation)) = serde_json::from_str::<JobPayload>(&payload) else {
            continue;
        };
        if escalation.held_by != Some(id) {
            continue;
        }
        // Level 1 keeps its delay, counted from now instead of from the planned end.
        let delay = due_at - escalation.started_at.timestamp_micros();
        let due_at = now.timestamp_micros() + delay.max(0);
        let resumed_payload = JobPayload::Escalate(Escalation {
            started_at: now,
            held_by: None,
            ..escalation
        });
        let payload =
            serde_json::to_string(&resumed_payload).map_err(|error| StoreError::Internal(error.to_string()))?;
        prepare(
            connection,
            "UPDATE jobs SET payload = ?2, due_at = ?3, updated_at = ?4 WHERE id = ?1",
        )?
        .execute(params![job, payload, due_at, now.timestamp_micros()])
        .map_err(internal)?;
        if let Some(incident) = incident {
            prepare(
                connection,
                "UPDATE incidents SET escalation_due_at = ?2 WHERE id = ?1 AND escalation_level IS NOT NULL",
            )?
            .execute(params![incident, due_at])
            .map_err(internal)?;
        }
        resumed += 1;
    }
    Ok((silence, resumed))
}

fn row_to_silence(row: &Row<'_>) -> rusqlite::Result<Silence> {
    let matchers: String = row.get(1)?;
    let matchers: SilenceMatchers =
        serde_json::from_str(&matchers).map_err(|_| corrupt(1, "silence matchers", &matchers))?;
    let id = SilenceId(uuid::Uuid::from_bytes(row.get(0)?));
    Silence::restore(
        id,
        matchers,
        time_from(row.get(2)?)?,
        time_from(row.get(3)?)?,
        row.get(4)?,
        row.get(5)?,
        time_from(row.get(6)?)?,
        time_from(row.get(7)?)?,
    )
    .map_err(|error| corrupt(1, "silence matchers", &error.to_string()))
}
