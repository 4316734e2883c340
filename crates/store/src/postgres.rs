//! PostgreSQL backend: several replicas share one database, so the database decides every
//! race — the unique index on open fingerprints settles dedup, `FOR UPDATE` serialises
//! transitions of one incident, and an advisory lock makes replicas migrate once.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use lim_domain::lifecycle;
use lim_domain::{
    Action, Event, EventStatus, Incident, IncidentFilter, IncidentId, PageRequest, TimelineEntry, TimelineKind,
    Transition, UnknownValue,
};
use sqlx::postgres::{PgArguments, PgConnectOptions, PgPoolOptions, PgRow};
use sqlx::query::Query;
use sqlx::{PgConnection, PgPool, Postgres, QueryBuilder, Row};

use crate::{
    IngestOutcome, OpenCount, PoolStats, QueryObserver, QueryTimer, Store, StoreError, StoreOptions, operation,
};

/// Migrations in order; a version is applied once and recorded in `schema_migrations`.
const MIGRATIONS: &[(i32, &str)] = &[(1, include_str!("../migrations/postgres/0001_incidents.sql"))];

/// The advisory lock every replica takes before migrating ("LIM_MIGR" in ASCII).
const MIGRATION_LOCK_KEY: i64 = 0x4c49_4d5f_4d49_4752;

/// Waiting longer for a connection only delays the 503 a caller gets from a dead database.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// A batch that collides with concurrent batches (deadlock, a racing insert) is retried
/// this many times in total before the error is reported.
const MAX_INGEST_ATTEMPTS: u32 = 5;

/// The incident columns in `Incident` order; labels come back as text because JSONB
/// decoding would need sqlx's `json` feature.
macro_rules! incident_columns {
    () => {
        "id, title, description, severity, category, source, state, fingerprint, labels::text AS labels, \
         occurrence_count, first_seen, last_seen, assignee, team, created_at, updated_at, \
         acknowledged_at, resolved_at, resolution_note"
    };
}

macro_rules! insert_incident {
    () => {
        "INSERT INTO incidents (id, title, description, severity, category, source, state, fingerprint, labels, \
         occurrence_count, first_seen, last_seen, assignee, team, created_at, updated_at, \
         acknowledged_at, resolved_at, resolution_note) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::jsonb, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19)"
    };
}

pub struct PostgresStore {
    pool: PgPool,
    max_connections: u32,
    observer: Option<QueryObserver>,
}

impl PostgresStore {
    /// Connects to `url` and applies the migrations this database has not seen yet.
    pub async fn connect(url: &str, options: StoreOptions) -> Result<Self, StoreError> {
        // The parse error never repeats the URL, so no password reaches a log.
        let connect_options = PgConnectOptions::from_str(url)
            .map_err(|error| StoreError::Unavailable(format!("invalid PostgreSQL URL: {error}")))?;
        let endpoint = format!("{}:{}", connect_options.get_host(), connect_options.get_port());
        let pool = PgPoolOptions::new()
            .max_connections(options.max_connections)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(connect_options)
            .await
            .map_err(|error| StoreError::Unavailable(format!("cannot connect to PostgreSQL at {endpoint}: {error}")))?;
        let store = PostgresStore {
            pool,
            max_connections: options.max_connections,
            observer: options.observer,
        };
        store.migrate().await?;
        Ok(store)
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        let _timer = QueryTimer::start(&self.observer, operation::MIGRATE);
        let mut tx = self.pool.begin().await.map_err(store_error)?;
        // Held until commit: a replica that starts meanwhile waits, then finds nothing to do.
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(MIGRATION_LOCK_KEY)
            .execute(&mut *tx)
            .await
            .map_err(store_error)?;
        sqlx::raw_sql(
            "CREATE TABLE IF NOT EXISTS schema_migrations (
                version    INTEGER PRIMARY KEY,
                applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
            )",
        )
        .execute(&mut *tx)
        .await
        .map_err(store_error)?;
        let applied: Vec<i32> = sqlx::query_scalar("SELECT version FROM schema_migrations")
            .fetch_all(&mut *tx)
            .await
            .map_err(store_error)?;
        for &(version, sql) in MIGRATIONS {
            if applied.contains(&version) {
                continue;
            }
            sqlx::raw_sql(sql)
                .execute(&mut *tx)
                .await
                .map_err(|error| StoreError::Internal(format!("migration {version} failed: {error}")))?;
            sqlx::query("INSERT INTO schema_migrations (version) VALUES ($1)")
                .bind(version)
                .execute(&mut *tx)
                .await
                .map_err(store_error)?;
        }
        tx.commit().await.map_err(store_error)
    }

    async fn ingest_once(&self, events: &[Event], now: DateTime<Utc>) -> Result<Vec<IngestOutcome>, sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        let mut outcomes = Vec::with_capacity(events.len());
        for event in events {
            let outcome = match event.status {
                EventStatus::Firing => open_or_attach(&mut *tx, event, now).await?,
                EventStatus::Resolved => resolve_open(&mut *tx, event, now).await?,
            };
            outcomes.push(outcome);
        }
        tx.commit().await?;
        Ok(outcomes)
    }
}

#[async_trait]
impl Store for PostgresStore {
    async fn ingest(&self, events: Vec<Event>, now: DateTime<Utc>) -> Result<Vec<IngestOutcome>, StoreError> {
        let _timer = QueryTimer::start(&self.observer, operation::INGEST);
        let mut attempt = 1;
        loop {
            match self.ingest_once(&events, now).await {
                Err(error) if is_concurrent_conflict(&error) && attempt < MAX_INGEST_ATTEMPTS => attempt += 1,
                result => return result.map_err(store_error),
            }
        }
    }

    async fn create_incident(&self, incident: Incident) -> Result<(), StoreError> {
        let _timer = QueryTimer::start(&self.observer, operation::CREATE_INCIDENT);
        let mut tx = self.pool.begin().await.map_err(store_error)?;
        bind_incident(sqlx::query(insert_incident!()), &incident)
            .execute(&mut *tx)
            .await
            .map_err(store_error)?;
        insert_entry(&mut *tx, &lifecycle::created_entry(&incident))
            .await
            .map_err(store_error)?;
        tx.commit().await.map_err(store_error)
    }

    async fn transition(
        &self,
        id: IncidentId,
        action: Action,
        actor: String,
        now: DateTime<Utc>,
    ) -> Result<Transition, StoreError> {
        let _timer = QueryTimer::start(&self.observer, operation::TRANSITION);
        let mut tx = self.pool.begin().await.map_err(store_error)?;
        let row = sqlx::query(concat!(
            "SELECT ",
            incident_columns!(),
            " FROM incidents WHERE id = $1 FOR UPDATE"
        ))
        .bind(id.0)
        .fetch_optional(&mut *tx)
        .await
        .map_err(store_error)?
        .ok_or(StoreError::NotFound(id))?;
        let incident = row_to_incident(&row).map_err(store_error)?;
        // An illegal action returns here; dropping the transaction rolls it back untouched.
        let transition = lifecycle::apply(&incident, &action, &actor, now)?;
        update_lifecycle(&mut *tx, &transition.after)
            .await
            .map_err(store_error)?;
        insert_entry(&mut *tx, &transition.entry).await.map_err(store_error)?;
        tx.commit().await.map_err(store_error)?;
        Ok(transition)
    }

    async fn add_comment(&self, entry: TimelineEntry) -> Result<(), StoreError> {
        let _timer = QueryTimer::start(&self.observer, operation::ADD_COMMENT);
        match insert_entry(&mut *self.pool.acquire().await.map_err(store_error)?, &entry).await {
            Err(sqlx::Error::Database(error)) if error.is_foreign_key_violation() => {
                Err(StoreError::NotFound(entry.incident_id))
            }
            result => result.map_err(store_error),
        }
    }

    async fn get_incident(&self, id: IncidentId) -> Result<Option<Incident>, StoreError> {
        let _timer = QueryTimer::start(&self.observer, operation::GET_INCIDENT);
        let row = sqlx::query(concat!("SELECT ", incident_columns!(), " FROM incidents WHERE id = $1"))
            .bind(id.0)
            .fetch_optional(&self.pool)
            .await
            .map_err(store_error)?;
        row.as_ref().map(row_to_incident).transpose().map_err(store_error)
    }

    async fn list_incidents(&self, filter: &IncidentFilter, page: PageRequest) -> Result<Vec<Incident>, StoreError> {
        let _timer = QueryTimer::start(&self.observer, operation::LIST_INCIDENTS);
        let mut query =
            QueryBuilder::<Postgres>::new(concat!("SELECT ", incident_columns!(), " FROM incidents WHERE TRUE"));
        push_any_of(&mut query, "state", filter.states.iter().map(|state| state.as_str()));
        push_any_of(
            &mut query,
            "severity",
            filter.severities.iter().map(|severity| severity.as_str()),
        );
        push_any_of(
            &mut query,
            "source",
            filter.sources.iter().map(|source| source.as_str()),
        );
        push_any_of(
            &mut query,
            "category",
            filter.categories.iter().map(|category| category.as_str()),
        );
        if let Some(before) = page.before {
            query.push(" AND id < ").push_bind(before.0);
        }
        query.push(" ORDER BY id DESC LIMIT ").push_bind(i64::from(page.limit));
        let rows = query.build().fetch_all(&self.pool).await.map_err(store_error)?;
        rows.iter()
            .map(row_to_incident)
            .collect::<Result<_, _>>()
            .map_err(store_error)
    }

    async fn timeline(&self, id: IncidentId) -> Result<Vec<TimelineEntry>, StoreError> {
        let _timer = QueryTimer::start(&self.observer, operation::TIMELINE);
        let rows = sqlx::query(
            "SELECT incident_id, at, kind, actor, message FROM timeline WHERE incident_id = $1 ORDER BY seq",
        )
        .bind(id.0)
        .fetch_all(&self.pool)
        .await
        .map_err(store_error)?;
        // Every stored incident has its `created` entry, so only an empty answer needs the check.
        if rows.is_empty() && !incident_exists(&self.pool, id).await.map_err(store_error)? {
            return Err(StoreError::NotFound(id));
        }
        rows.iter()
            .map(row_to_entry)
            .collect::<Result<_, _>>()
            .map_err(store_error)
    }

    async fn count_open(&self) -> Result<Vec<OpenCount>, StoreError> {
        let _timer = QueryTimer::start(&self.observer, operation::COUNT_OPEN);
        let rows = sqlx::query(
            "SELECT severity, source, category, COUNT(*) AS count FROM incidents \
             WHERE state <> 'RESOLVED' GROUP BY severity, source, category",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(store_error)?;
        let mut counts = rows
            .iter()
            .map(|row| {
                Ok(OpenCount {
                    severity: parse_column(row, "severity")?,
                    source: parse_column(row, "source")?,
                    category: parse_column(row, "category")?,
                    count: row.try_get("count")?,
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()
            .map_err(store_error)?;
        counts.sort();
        Ok(counts)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        let _timer = QueryTimer::start(&self.observer, operation::PING);
        sqlx::query("SELECT 1").execute(&self.pool).await.map_err(store_error)?;
        Ok(())
    }

    fn pool_stats(&self) -> PoolStats {
        let size = self.pool.size();
        let idle = u32::try_from(self.pool.num_idle()).unwrap_or(u32::MAX);
        PoolStats {
            in_use: size.saturating_sub(idle),
            idle,
            max: self.max_connections,
        }
    }

    fn backend(&self) -> &'static str {
        "postgres"
    }
}

/// Opens an incident for a firing event, or counts it on the open one: the unique index
/// on open fingerprints decides, so concurrent replicas can never open two.
async fn open_or_attach(
    tx: &mut PgConnection,
    event: &Event,
    now: DateTime<Utc>,
) -> Result<IngestOutcome, sqlx::Error> {
    let candidate = Incident::open(IncidentId::generate(), event, now);
    let upsert = concat!(
        insert_incident!(),
        " ON CONFLICT (fingerprint) WHERE state <> 'RESOLVED' DO UPDATE SET \
         occurrence_count = incidents.occurrence_count + 1, \
         last_seen = GREATEST(incidents.last_seen, EXCLUDED.last_seen), \
         updated_at = EXCLUDED.updated_at \
         RETURNING ",
        incident_columns!()
    );
    let row = bind_incident(sqlx::query(upsert), &candidate)
        .fetch_one(&mut *tx)
        .await?;
    let stored = row_to_incident(&row)?;
    if stored.id == candidate.id {
        insert_entry(tx, &lifecycle::created_entry(&stored)).await?;
        return Ok(IngestOutcome::Created(stored));
    }
    // The same entry `lifecycle::attach` writes.
    let entry = TimelineEntry::new(
        stored.id,
        now,
        TimelineKind::EventAttached,
        event.source.as_str(),
        format!("occurrence {} of `{}`", stored.occurrence_count, event.title),
    );
    insert_entry(tx, &entry).await?;
    Ok(IngestOutcome::Deduplicated {
        incident_id: stored.id,
        occurrence_count: stored.occurrence_count,
        source: event.source,
    })
}

/// Resolves the open incident with the event's fingerprint, if there is one.
async fn resolve_open(tx: &mut PgConnection, event: &Event, now: DateTime<Utc>) -> Result<IngestOutcome, sqlx::Error> {
    let row = sqlx::query(concat!(
        "SELECT ",
        incident_columns!(),
        " FROM incidents WHERE fingerprint = $1 AND state <> 'RESOLVED' FOR UPDATE"
    ))
    .bind(&event.fingerprint)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(row) = row else {
        return Ok(IngestOutcome::Ignored);
    };
    let incident = row_to_incident(&row)?;
    // Every open state may be resolved, so a refusal means the row itself is wrong.
    let transition = lifecycle::resolve_by_event(&incident, event, now)
        .map_err(|error| sqlx::Error::Decode(format!("incident {}: {error}", incident.id).into()))?;
    update_lifecycle(tx, &transition.after).await?;
    insert_entry(tx, &transition.entry).await?;
    Ok(IngestOutcome::Resolved(transition))
}

/// Writes the columns the state machine changes.
async fn update_lifecycle(tx: &mut PgConnection, incident: &Incident) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE incidents SET state = $2, assignee = $3, team = $4, updated_at = $5, \
         acknowledged_at = $6, resolved_at = $7, resolution_note = $8 WHERE id = $1",
    )
    .bind(incident.id.0)
    .bind(incident.state.as_str())
    .bind(&incident.assignee)
    .bind(&incident.team)
    .bind(incident.updated_at)
    .bind(incident.acknowledged_at)
    .bind(incident.resolved_at)
    .bind(&incident.resolution_note)
    .execute(tx)
    .await?;
    Ok(())
}

async fn insert_entry(tx: &mut PgConnection, entry: &TimelineEntry) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO timeline (incident_id, at, kind, actor, message) VALUES ($1, $2, $3, $4, $5)")
        .bind(entry.incident_id.0)
        .bind(entry.at)
        .bind(entry.kind.as_str())
        .bind(&entry.actor)
        .bind(&entry.message)
        .execute(tx)
        .await?;
    Ok(())
}

async fn incident_exists(pool: &PgPool, id: IncidentId) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM incidents WHERE id = $1)")
        .bind(id.0)
        .fetch_one(pool)
        .await
}

/// Binds the nineteen parameters of `insert_incident!()`.
fn bind_incident<'q>(query: Query<'q, Postgres, PgArguments>, incident: &Incident) -> Query<'q, Postgres, PgArguments> {
    query
        .bind(incident.id.0)
        .bind(&incident.title)
        .bind(&incident.description)
        .bind(incident.severity.as_str())
        .bind(incident.category.as_str())
        .bind(incident.source.as_str())
        .bind(incident.state.as_str())
        .bind(&incident.fingerprint)
        .bind(labels_json(incident))
        .bind(incident.occurrence_count)
        .bind(incident.first_seen)
        .bind(incident.last_seen)
        .bind(&incident.assignee)
        .bind(&incident.team)
        .bind(incident.created_at)
        .bind(incident.updated_at)
        .bind(incident.acknowledged_at)
        .bind(incident.resolved_at)
        .bind(&incident.resolution_note)
}

fn labels_json(incident: &Incident) -> String {
    let object = incident
        .labels
        .iter()
        .map(|(key, value)| (key.clone(), serde_json::Value::String(value.clone())))
        .collect();
    serde_json::Value::Object(object).to_string()
}

/// Adds `AND column = ANY($n)` unless `values` is empty (an empty filter means "any").
fn push_any_of<'a>(query: &mut QueryBuilder<Postgres>, column: &str, values: impl Iterator<Item = &'a str>) {
    let values: Vec<&str> = values.collect();
    if values.is_empty() {
        return;
    }
    query
        .push(format_args!(" AND {column} = ANY("))
        .push_bind(values)
        .push(")");
}

fn row_to_incident(row: &PgRow) -> Result<Incident, sqlx::Error> {
    let labels: &str = row.try_get("labels")?;
    let labels = serde_json::from_str(labels).map_err(|error| column_error("labels", error))?;
    Ok(Incident {
        id: IncidentId(row.try_get("id")?),
        title: row.try_get("title")?,
        description: row.try_get("description")?,
        severity: parse_column(row, "severity")?,
        category: parse_column(row, "category")?,
        source: parse_column(row, "source")?,
        state: parse_column(row, "state")?,
        fingerprint: row.try_get("fingerprint")?,
        labels,
        occurrence_count: row.try_get("occurrence_count")?,
        first_seen: row.try_get("first_seen")?,
        last_seen: row.try_get("last_seen")?,
        assignee: row.try_get("assignee")?,
        team: row.try_get("team")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        acknowledged_at: row.try_get("acknowledged_at")?,
        resolved_at: row.try_get("resolved_at")?,
        resolution_note: row.try_get("resolution_note")?,
    })
}

fn row_to_entry(row: &PgRow) -> Result<TimelineEntry, sqlx::Error> {
    let kind: &str = row.try_get("kind")?;
    let kind = TimelineKind::parse(kind).ok_or_else(|| column_error("kind", format!("unknown kind `{kind}`")))?;
    Ok(TimelineEntry {
        incident_id: IncidentId(row.try_get("incident_id")?),
        at: row.try_get("at")?,
        kind,
        actor: row.try_get("actor")?,
        message: row.try_get("message")?,
    })
}

/// Reads a vocabulary column stored in its canonical spelling.
fn parse_column<T: FromStr<Err = UnknownValue>>(row: &PgRow, column: &str) -> Result<T, sqlx::Error> {
    let text: &str = row.try_get(column)?;
    text.parse().map_err(|error: UnknownValue| column_error(column, error))
}

fn column_error(column: &str, error: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> sqlx::Error {
    sqlx::Error::ColumnDecode {
        index: column.to_owned(),
        source: error.into(),
    }
}

/// A transaction that lost a race with another one and may simply be run again.
fn is_concurrent_conflict(error: &sqlx::Error) -> bool {
    let sqlx::Error::Database(error) = error else {
        return false;
    };
    // unique_violation, serialization_failure, deadlock_detected
    matches!(error.code().as_deref(), Some("23505" | "40001" | "40P01"))
}

/// Connection trouble is `Unavailable` (the caller may retry); everything else is `Internal`,
/// a corrupt row included.
fn store_error(error: sqlx::Error) -> StoreError {
    let unavailable = match &error {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::BeginFailed => true,
        // Classes 08 (connection exception), 53 (insufficient resources), 57 (operator intervention).
        sqlx::Error::Database(database) => database
            .code()
            .is_some_and(|code| code.starts_with("08") || code.starts_with("53") || code.starts_with("57")),
        _ => false,
    };
    if unavailable {
        StoreError::Unavailable(error.to_string())
    } else {
        StoreError::Internal(error.to_string())
    }
}
