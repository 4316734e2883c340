//! API keys on PostgreSQL: a small table every replica's key cache reads whole.

use chrono::{DateTime, Utc};
use lim_domain::auth::{self, ApiKey};
use sqlx::postgres::PgRow;
use sqlx::{PgPool, Row};

use super::column_error;
use crate::StoreError;

macro_rules! key_columns {
    () => {
        "name, hash, scopes, created_at, last_used_at, revoked_at"
    };
}

pub(super) async fn insert(pool: &PgPool, key: &ApiKey) -> Result<(), StoreError> {
    let inserted = sqlx::query(
        "INSERT INTO api_keys (name, hash, scopes, created_at) VALUES ($1, $2, $3, $4) ON CONFLICT (name) DO NOTHING",
    )
    .bind(&key.name)
    .bind(&key.hash)
    .bind(auth::scopes_text(&key.scopes))
    .bind(key.created_at)
    .execute(pool)
    .await?;
    if inserted.rows_affected() == 0 {
        return Err(StoreError::KeyExists(key.name.clone()));
    }
    Ok(())
}

pub(super) async fn list(pool: &PgPool) -> Result<Vec<ApiKey>, StoreError> {
    let rows = sqlx::query(concat!("SELECT ", key_columns!(), " FROM api_keys ORDER BY name"))
        .fetch_all(pool)
        .await?;
    Ok(rows.iter().map(row_to_key).collect::<Result<_, _>>()?)
}

pub(super) async fn revoke(pool: &PgPool, name: &str, now: DateTime<Utc>) -> Result<ApiKey, StoreError> {
    let row = sqlx::query(concat!(
        "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, $2) WHERE name = $1 RETURNING ",
        key_columns!()
    ))
    .bind(name)
    .bind(now)
    .fetch_optional(pool)
    .await?;
    let row = row.ok_or_else(|| StoreError::KeyNotFound(name.to_owned()))?;
    Ok(row_to_key(&row)?)
}

pub(super) async fn touch(pool: &PgPool, names: &[String], at: DateTime<Utc>) -> Result<(), StoreError> {
    sqlx::query("UPDATE api_keys SET last_used_at = $2 WHERE name = ANY($1)")
        .bind(names)
        .bind(at)
        .execute(pool)
        .await?;
    Ok(())
}

fn row_to_key(row: &PgRow) -> Result<ApiKey, sqlx::Error> {
    let scopes: &str = row.try_get("scopes")?;
    Ok(ApiKey {
        name: row.try_get("name")?,
        hash: row.try_get("hash")?,
        scopes: auth::scopes(scopes).map_err(|error| column_error("scopes", error))?,
        created_at: row.try_get("created_at")?,
        last_used_at: row.try_get("last_used_at")?,
        revoked_at: row.try_get("revoked_at")?,
    })
}
