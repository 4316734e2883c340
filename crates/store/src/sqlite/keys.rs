//! API keys on SQLite: a small table, read whole by every replica's key cache.

use lim_domain::auth::{self, ApiKey};

use super::*;

pub(super) fn insert(connection: &Connection, key: &ApiKey) -> Result<(), StoreError> {
    let inserted = prepare(
        connection,
        "INSERT INTO api_keys (name, hash, scopes, created_at) VALUES (?1, ?2, ?3, ?4) ON CONFLICT (name) DO NOTHING",
    )?
    .execute(params![
        key.name,
        key.hash,
        auth::scopes_text(&key.scopes),
        key.created_at.timestamp_micros()
    ])
    .map_err(internal)?;
    if inserted == 0 {
        return Err(StoreError::KeyExists(key.name.clone()));
    }
    Ok(())
}

pub(super) fn list(connection: &Connection) -> Result<Vec<ApiKey>, StoreError> {
    let mut statement = prepare(
        connection,
        "SELECT name, hash, scopes, created_at, last_used_at, revoked_at FROM api_keys ORDER BY name",
    )?;
    let rows = statement.query_map([], row_to_key).map_err(internal)?;
    rows.collect::<rusqlite::Result<Vec<_>>>().map_err(internal)
}

pub(super) fn revoke(connection: &Connection, name: &str, now: DateTime<Utc>) -> Result<ApiKey, StoreError> {
    prepare(
        connection,
        "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, ?2) WHERE name = ?1",
    )?
    .execute(params![name, now.timestamp_micros()])
    .map_err(internal)?;
    prepare(
        connection,
        "SELECT name, hash, scopes, created_at, last_used_at, revoked_at FROM api_keys WHERE name = ?1",
    )?
    .query_row([name], row_to_key)
    .optional()
    .map_err(internal)?
    .ok_or_else(|| StoreError::KeyNotFound(name.to_owned()))
}

pub(super) fn touch(connection: &Connection, names: &[String], at: DateTime<Utc>) -> Result<(), StoreError> {
    let mut statement = prepare(connection, "UPDATE api_keys SET last_used_at = ?2 WHERE name = ?1")?;
    for name in names {
        statement
            .execute(params![name, at.timestamp_micros()])
            .map_err(internal)?;
    }
    Ok(())
}

fn row_to_key(row: &Row<'_>) -> rusqlite::Result<ApiKey> {
    let scopes: String = row.get(2)?;
    Ok(ApiKey {
        name: row.get(0)?,
        hash: row.get(1)?,
        scopes: auth::scopes(&scopes).map_err(|_| corrupt(2, "scopes", &scopes))?,
        created_at: time_from(row.get(3)?)?,
        last_used_at: row.get::<_, Option<i64>>(4)?.map(time_from).transpose()?,
        revoked_at: row.get::<_, Option<i64>>(5)?.map(time_from).transpose()?,
    })
}
