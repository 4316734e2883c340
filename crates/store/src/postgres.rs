//! PostgreSQL backend: several replicas share one database, so the database decides every
//! race — the unique index on open fingerprints settles dedup, `FOR UPDATE` serialises
//! transitions of one incident, and an advisory lock makes replicas migrate once.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use lim_domain::auth::ApiKey;
use lim_domain::lifecycle;
use lim_domain::silence::{Silence, SilenceId};
use lim_domain::triage::Classification;
use lim_domain::{
    Action, Category, EntryPage, EntryPageRequest, Event, Incident, IncidentFilter, IncidentId, Job, JobId, JobKind,
    NewJob, Opening, PageRequest, PendingEscalation, Reactions, Severity, Source, State, TimelineEntry, TimelineKind,
    Transition, UnknownValue,
};
use sqlx::postgres::{PgArguments, PgConnectOptions, PgPoolOptions, PgRow};
use sqlx::query::Query;
use sqlx::{PgConnection, PgPool, Postgres, QueryBuilder, Row};
use std::sync::Arc;
use uuid::Uuid;

use crate::{
    ChangeFeed, ChangeKind, ChangeNotice, Finished, GroupMembers, IngestOutcome, JobCount, JobFilter, JobFinish,
    JobPageRequest, JobSignals, MAX_INCIDENTS_READ, OpenCount, PoolStats, QueryObserver, QueryTimer, SilenceFilter,
    SilencePageRequest, Store, StoreError, StoreOptions, operation, page_of,
};

/// Migrations in order; a version is applied once and recorded in `schema_migrations`.
const MIGRATIONS: &[(i32, &str)] = &[
    (1, include_str!("../migrations/postgres/0001_incidents.sql")),
    (2, include_str!("../migrations/postgres/0002_comments.sql")),
    (3, include_str!("../migrations/postgres/0003_jobs.sql")),
    (4, include_str!("../migrations/postgres/0004_job_chains.sql")),
    (
        5,
        include_str!("../migrations/postgres/0005_escalations_silences_groups.sql"),
    ),
    (6, include_str!("../migrations/postgres/0006_triage.sql")),
    (7, include_str!("../migrations/postgres/0007_timeline_unchecked.sql")),
    (8, include_str!("../migrations/postgres/0008_change_watchers.sql")),
    (9, include_str!("../migrations/postgres/0009_api_keys.sql")),
    (10, include_str!("../migrations/postgres/0010_open_index_times.sql")),
    (11, include_str!("../migrations/postgres/0011_ingest_storage.sql")),
];

/// The advisory lock every replica takes before migrating ("LIM_MIGR" in ASCII).
const MIGRATION_LOCK_KEY: i64 = 0x4c49_4d5f_4d49_4752;

/// Waiting longer for a connection only delays the 503 a caller gets from a dead database.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// The incident columns in `Incident` order; labels come back as text because JSONB
/// decoding would need sqlx's `json` feature.
macro_rules! incident_columns {
    () => {
        "id, title, description, severity, category, source, state, fingerprint, labels::text AS labels, \
         occurrence_count, first_seen, last_seen, assignee, team, created_at, updated_at, \
         acknowledged_at, resolved_at, resolution_note, route, escalation_policy, escalation_level, escalation_due_at, \
         classification, insights"
    };
}

macro_rules! select_incidents {
    ($condition:literal) => {
        concat!("SELECT ", incident_columns!(), " FROM incidents ", $condition)
    };
}

macro_rules! insert_incident {
    () => {
        "INSERT INTO incidents (id, title, description, severity, category, source, state, fingerprint, labels, \
         occurrence_count, first_seen, last_seen, assignee, team, created_at, updated_at, \
         acknowledged_at, resolved_at, resolution_note, route, escalation_policy, escalation_level, escalation_due_at, \
         classification, insights) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::jsonb, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, \
         $21, $22, $23, $24, $25)"
    };
}

// After the macros above, which they use.
mod feed;
mod groups;
mod ingest;
mod jobs;
mod keys;
mod silences;

const INSERT_INCIDENT: &str = insert_incident!();
const SELECT_INCIDENTS: &str = select_incidents!("WHERE TRUE");
const SELECT_BY_ID: &str = select_incidents!("WHERE id = $1");
/// The incident an action changes, with its job chains (see `jobs::write_jobs`).
const LOCK_BY_ID: &str = concat!(
    "SELECT ",
    incident_columns!(),
    ", job_chains FROM incidents WHERE id = $1 FOR UPDATE"
);
/// The open incidents of a round's resolving events, locked in the order of their
/// fingerprints (see `ingest`).
const LOCK_OPEN_BY_FINGERPRINTS: &str = concat!(
    "SELECT ",
    incident_columns!(),
    ", job_chains FROM incidents WHERE fingerprint = ANY($1) AND state <> 'RESOLVED' ORDER BY fingerprint FOR UPDATE"
);
const SELECT_TIMELINE: &str = "SELECT seq, incident_id, at, kind, actor, message FROM timeline \
     WHERE incident_id = $1 AND seq > $2 ORDER BY seq LIMIT $3";
const SELECT_COMMENTS: &str = "SELECT seq, incident_id, at, kind, actor, message FROM timeline \
     WHERE incident_id = $1 AND kind = 'comment' AND seq > $2 ORDER BY seq LIMIT $3";
const COUNT_OPEN: &str = "SELECT severity, source, category, COUNT(*) AS count, \
                          MIN(created_at) FILTER (WHERE state IN ('NEW', 'ASSIGNED') AND acknowledged_at IS NULL) \
                          AS oldest_unacknowledged \
                          FROM incidents WHERE state <> 'RESOLVED' GROUP BY severity, source, category";

pub struct PostgresStore {
    pool: PgPool,
    max_connections: u32,
    job_signals: Arc<JobSignals>,
    changes: Arc<ChangeFeed>,
    /// Sends this replica's changes to the others and passes theirs on.
    replicas: feed::Replicas,
    /// The writer tasks that store events, several requests to a transaction.
    ingester: ingest::Ingester,
    observer: Option<QueryObserver>,
}

impl PostgresStore {
    /// Connects to `url` and applies the migrations this database has not seen yet.
    pub async fn connect(url: &str, options: StoreOptions) -> Result<Self, StoreError> {
        // The parse error never repeats the URL, so no password reaches a log.
        let connect_options = PgConnectOptions::from_str(url)
            .map_err(|error| StoreError::Unavailable(format!("invalid PostgreSQL URL: {error}")))?
            .statement_cache_capacity(options.statement_cache as usize);
        let endpoint = format!("{}:{}", connect_options.get_host(), connect_options.get_port());
        let pool = PgPoolOptions::new()
            .max_connections(options.max_connections)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(connect_options.clone())
            .await
            .map_err(|error| StoreError::Unavailable(format!("cannot connect to PostgreSQL at {endpoint}: {error}")))?;
        let timer = QueryTimer::start(&options.observer, operation::MIGRATE);
        migrate(&pool).await?;
        drop(timer);
        let ingester =
            ingest::Ingester::start(pool.clone(), options.ingest_writers as usize, options.max_queued_events);
        let changes = Arc::new(ChangeFeed::default());
        let replicas = feed::Replicas::start(pool.clone(), connect_options, Arc::clone(&changes));
        Ok(PostgresStore {
            pool,
            max_connections: options.max_connections,
            job_signals: Arc::default(),
            changes,
            replicas,
            ingester,
            observer: options.observer,
        })
    }

    /// Entries of `select` (timeline or comments) after the cursor, one past the limit.
    async fn entries_page(
        &self,
        select: &'static str,
        id: IncidentId,
        page: EntryPageRequest,
    ) -> Result<EntryPage, StoreError> {
        let rows = sqlx::query(select)
            .bind(id.0)
            .bind(page.after.map_or(0, |cursor| cursor.0))
            .bind(i64::from(page.limit) + 1)
            .fetch_all(&self.pool)
            .await?;
        // Every stored incident has its `created` entry, so only an empty answer needs the check.
        if rows.is_empty() && !self.incident_exists(id).await? {
            return Err(StoreError::NotFound(id));
        }
        let entries = rows
            .iter()
            .map(|row| Ok((row.try_get("seq")?, row_to_entry(row)?)))
            .collect::<Result<Vec<_>, sqlx::Error>>()?;
        Ok(page_of(entries, page.limit))
    }

    /// Tells the watchers of this replica and, through the relay, of the others.
    fn changed(&self, notices: Vec<ChangeNotice>) {
        self.replicas.send(&notices);
        self.changes.publish(notices);
    }

    async fn incident_exists(&self, id: IncidentId) -> Result<bool, sqlx::Error> {
        let known = sqlx::query("SELECT 1 FROM incidents WHERE id = $1").bind(id.0);
        Ok(known.fetch_optional(&self.pool).await?.is_some())
    }
}

#[async_trait]
impl Store for PostgresStore {
    async fn ingest(
        &self,
        events: Vec<Event>,
        now: DateTime<Utc>,
        reactions: Arc<Reactions>,
    ) -> Result<Vec<IngestOutcome>, StoreError> {
        let _timer = QueryTimer::start(&self.observer, operation::INGEST);
        let (outcomes, wrote) = self.ingester.ingest(events, now, &reactions).await?;
        self.job_signals.wrote(wrote);
        self.changed(ChangeNotice::of_ingest(&outcomes, now));
        Ok(outcomes)
    }

    async fn create_incident(&self, opening: Opening) -> Result<(), StoreError> {
        let _timer = QueryTimer::start(&self.observer, operation::CREATE_INCIDENT);
        let mut tx = self.pool.begin().await?;
        let insert = bind_incident(sqlx::query(INSERT_INCIDENT), &opening.incident);
        insert.execute(&mut *tx).await?;
        for entry in &opening.entries {
            insert_entry(&mut tx, entry).await?;
        }
        jobs::write_jobs(
            &mut tx,
            Some(opening.incident.id),
            &opening.jobs,
            None,
            opening.incident.created_at,
        )
        .await?;
        let mut wrote: Vec<JobKind> = opening.jobs.iter().map(|job| job.payload.kind()).collect();
        if let Some(group) = &opening.group {
            groups::join(
                &mut tx,
                group,
                opening.incident.id,
                opening.incident.created_at,
                &mut wrote,
            )
            .await?;
        }
        tx.commit().await?;
        self.job_signals.wrote(wrote);
        self.changed(vec![ChangeNotice {
            kind: ChangeKind::Created,
            incident_id: opening.incident.id,
            at: opening.incident.created_at,
        }]);
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
        let _timer = QueryTimer::start(&self.observer, operation::TRANSITION);
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query(LOCK_BY_ID)
            .bind(id.0)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or(StoreError::NotFound(id))?;
        let incident = row_to_incident(&row)?;
        // An illegal action returns here; dropping the transaction rolls it back untouched.
        let transition = lifecycle::apply(&incident, &action, &actor, now)?;
        write_transition(&mut tx, &transition).await?;
        let jobs = reactions.after(&transition, now);
        let job_chains: Option<&str> = row.try_get("job_chains")?;
        jobs::stop_escalation(&mut tx, &transition, job_chains, now).await?;
        jobs::write_jobs(&mut tx, Some(id), &jobs, job_chains, now).await?;
        tx.commit().await?;
        self.job_signals.wrote(jobs.iter().map(|job| job.payload.kind()));
        self.changed(ChangeNotice::of_transition(&transition).into_iter().collect());
        Ok(transition)
    }

    async fn add_comment(&self, entry: TimelineEntry) -> Result<(), StoreError> {
        let _timer = QueryTimer::start(&self.observer, operation::ADD_COMMENT);
        // The incident is checked in the statement (the timeline has no foreign key).
        let inserted = sqlx::query(
            "INSERT INTO timeline (incident_id, at, kind, actor, message) \
             SELECT id, $2, $3, $4, $5 FROM incidents WHERE id = $1",
        )
        .bind(entry.incident_id.0)
        .bind(entry.at)
        .bind(entry.kind.as_str())
        .bind(&entry.actor)
        .bind(&entry.message)
        .execute(&self.pool)
        .await;
        match inserted {
            Err(error) => Err(error.into()),
            Ok(done) if done.rows_affected() == 0 => Err(StoreError::NotFound(entry.incident_id)),
            Ok(_) => {
                self.changed(vec![ChangeNotice {
                    kind: ChangeKind::Commented,
                    incident_id: entry.incident_id,
                    at: entry.at,
                }]);
                Ok(())
            }
        }
    }

    async fn get_incident(&self, id: IncidentId) -> Result<Option<Incident>, StoreError> {
        let _timer = QueryTimer::start(&self.observer, operation::GET_INCIDENT);
        let row = sqlx::query(SELECT_BY_ID).bind(id.0).fetch_optional(&self.pool).await?;
        Ok(row.as_ref().map(row_to_incident).transpose()?)
    }

    async fn get_incidents(&self, ids: &[IncidentId]) -> Result<Vec<Incident>, StoreError> {
        let _timer = QueryTimer::start(&self.observer, operation::GET_INCIDENTS);
        let ids: Vec<Uuid> = ids.iter().take(MAX_INCIDENTS_READ).map(|id| id.0).collect();
        let rows = sqlx::query(select_incidents!("WHERE id = ANY($1)"))
            .bind(ids)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.iter().map(row_to_incident).collect::<Result<_, _>>()?)
    }

    async fn list_incidents(&self, filter: &IncidentFilter, page: PageRequest) -> Result<Vec<Incident>, StoreError> {
        let _timer = QueryTimer::start(&self.observer, operation::LIST_INCIDENTS);
        let mut query = QueryBuilder::<Postgres>::new(SELECT_INCIDENTS);
        push_any_of(&mut query, "state", &filter.states, State::as_str);
        push_any_of(&mut query, "severity", &filter.severities, Severity::as_str);
        push_any_of(&mut query, "source", &filter.sources, Source::as_str);
        push_any_of(&mut query, "category", &filter.categories, Category::as_str);
        if let Some(before) = page.before {
            query.push(" AND id < ").push_bind(before.0);
        }
        query.push(" ORDER BY id DESC LIMIT ").push_bind(i64::from(page.limit));
        let rows = query.build().fetch_all(&self.pool).await?;
        Ok(rows.iter().map(row_to_incident).collect::<Result<_, _>>()?)
    }

    async fn timeline(&self, id: IncidentId, page: EntryPageRequest) -> Result<EntryPage, StoreError> {
        let _timer = QueryTimer::start(&self.observer, operation::TIMELINE);
        self.entries_page(SELECT_TIMELINE, id, page).await
    }

    async fn comments(&self, id: IncidentId, page: EntryPageRequest) -> Result<EntryPage, StoreError> {
        let _timer = QueryTimer::start(&self.observer, operation::COMMENTS);
        self.entries_page(SELECT_COMMENTS, id, page).await
    }

    async fn count_open(&self) -> Result<Vec<OpenCount>, StoreError> {
        let _timer = QueryTimer::start(&self.observer, operation::COUNT_OPEN);
        let rows = sqlx::query(COUNT_OPEN).fetch_all(&self.pool).await?;
        let mut counts = rows.iter().map(row_to_open_count).collect::<Result<Vec<_>, _>>()?;
        counts.sort();
        Ok(counts)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        let _timer = QueryTimer::start(&self.observer, operation::PING);
        // A standby, or a server set read-only, answers reads but would refuse every write.
        let writable: bool =
            sqlx::query_scalar("SELECT NOT pg_is_in_recovery() AND current_setting('transaction_read_only') = 'off'")
                .fetch_one(&self.pool)
                .await?;
        if !writable {
            return Err(StoreError::Unavailable(
                "the PostgreSQL server is read-only (a standby, or default_transaction_read_only)".into(),
            ));
        }
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

    async fn enqueue_jobs(&self, new: Vec<NewJob>) -> Result<(), StoreError> {
        let _timer = QueryTimer::start(&self.observer, operation::ENQUEUE_JOBS);
        let mut tx = self.pool.begin().await?;
        jobs::insert_jobs(&mut tx, &new, chrono::Utc::now()).await?;
        tx.commit().await?;
        self.job_signals.wrote(new.iter().map(|job| job.payload.kind()));
        Ok(())
    }

    async fn ensure_job(&self, job: NewJob) -> Result<bool, StoreError> {
        let _timer = QueryTimer::start(&self.observer, operation::ENQUEUE_JOBS);
        let mut tx = self.pool.begin().await?;
        let written = jobs::ensure_job(&mut tx, &job, chrono::Utc::now()).await?;
        tx.commit().await?;
        if written {
            self.job_signals.wrote([job.payload.kind()]);
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
        let _timer = QueryTimer::start(&self.observer, operation::CLAIM_JOBS);
        Ok(jobs::claim(&self.pool, kind, limit, worker, lease_until, now).await?)
    }

    async fn finish_job(&self, finish: JobFinish) -> Result<Finished, StoreError> {
        let _timer = QueryTimer::start(&self.observer, operation::FINISH_JOB);
        let mut tx = self.pool.begin().await?;
        let finished = jobs::finish(&mut tx, &finish).await?;
        tx.commit().await?;
        if finished == Finished::Recorded {
            self.job_signals
                .wrote(finish.follow_ups.iter().map(|job| job.payload.kind()));
        }
        Ok(finished)
    }

    async fn release_jobs(&self, worker: &str, now: DateTime<Utc>) -> Result<u64, StoreError> {
        let _timer = QueryTimer::start(&self.observer, operation::RELEASE_JOBS);
        Ok(jobs::release(&self.pool, worker, now).await?)
    }

    async fn get_job(&self, id: JobId) -> Result<Option<Job>, StoreError> {
        let _timer = QueryTimer::start(&self.observer, operation::LIST_JOBS);
        Ok(jobs::select(&self.pool, id).await?)
    }

    async fn list_jobs(&self, filter: &JobFilter, page: JobPageRequest) -> Result<Vec<Job>, StoreError> {
        let _timer = QueryTimer::start(&self.observer, operation::LIST_JOBS);
        Ok(jobs::list(&self.pool, filter, page).await?)
    }

    async fn retry_job(&self, id: JobId, now: DateTime<Utc>) -> Result<Job, StoreError> {
        let _timer = QueryTimer::start(&self.observer, operation::RETRY_JOB);
        let job = jobs::retry(&self.pool, id, now).await?;
        self.job_signals.wrote([job.kind]);
        Ok(job)
    }

    async fn count_jobs(&self) -> Result<Vec<JobCount>, StoreError> {
        let _timer = QueryTimer::start(&self.observer, operation::COUNT_JOBS);
        Ok(jobs::count(&self.pool).await?)
    }

    async fn prune_jobs(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        let _timer = QueryTimer::start(&self.observer, operation::PRUNE_JOBS);
        Ok(jobs::prune(&self.pool, before).await?)
    }

    async fn create_silence(&self, silence: Silence) -> Result<(), StoreError> {
        let _timer = QueryTimer::start(&self.observer, operation::CREATE_SILENCE);
        Ok(silences::insert(&self.pool, &silence).await?)
    }

    async fn get_silence(&self, id: SilenceId) -> Result<Option<Silence>, StoreError> {
        let _timer = QueryTimer::start(&self.observer, operation::LIST_SILENCES);
        Ok(silences::select(&self.pool, id).await?)
    }

    async fn list_silences(
        &self,
        filter: &SilenceFilter,
        page: SilencePageRequest,
    ) -> Result<Vec<Silence>, StoreError> {
        let _timer = QueryTimer::start(&self.observer, operation::LIST_SILENCES);
        Ok(silences::list(&self.pool, filter, page).await?)
    }

    async fn delete_silence(&self, id: SilenceId, now: DateTime<Utc>) -> Result<Silence, StoreError> {
        let _timer = QueryTimer::start(&self.observer, operation::DELETE_SILENCE);
        let mut tx = self.pool.begin().await?;
        let (silence, resumed) = silences::delete(&mut tx, id, now).await?;
        tx.commit().await?;
        if resumed > 0 {
            self.job_signals.wrote([JobKind::Escalate]);
        }
        Ok(silence)
    }

    async fn active_silences(&self, now: DateTime<Utc>) -> Result<Vec<Silence>, StoreError> {
        let _timer = QueryTimer::start(&self.observer, operation::LIST_SILENCES);
        Ok(silences::active(&self.pool, now).await?)
    }

    async fn llm_cache_get(&self, key: &str) -> Result<Option<String>, StoreError> {
        let _timer = QueryTimer::start(&self.observer, operation::LLM_CACHE_GET);
        Ok(sqlx::query_scalar("SELECT value FROM llm_cache WHERE key = $1")
            .bind(key)
            .fetch_optional(&self.pool)
            .await?)
    }

    async fn llm_cache_put(&self, key: &str, value: &str, now: DateTime<Utc>) -> Result<(), StoreError> {
        let _timer = QueryTimer::start(&self.observer, operation::LLM_CACHE_PUT);
        sqlx::query(
            "INSERT INTO llm_cache (key, value, created_at) VALUES ($1, $2, $3) \
             ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, created_at = EXCLUDED.created_at",
        )
        .bind(key)
        .bind(value)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn prune_llm_cache(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        let _timer = QueryTimer::start(&self.observer, operation::PRUNE_LLM_CACHE);
        let deleted = sqlx::query("DELETE FROM llm_cache WHERE created_at < $1")
            .bind(before)
            .execute(&self.pool)
            .await?;
        Ok(deleted.rows_affected())
    }

    async fn group_members(&self, group: Uuid, limit: u32) -> Result<GroupMembers, StoreError> {
        let _timer = QueryTimer::start(&self.observer, operation::GROUP_MEMBERS);
        Ok(groups::members(&self.pool, group, limit).await?)
    }

    async fn create_api_key(&self, key: ApiKey) -> Result<(), StoreError> {
        let _timer = QueryTimer::start(&self.observer, operation::CREATE_API_KEY);
        keys::insert(&self.pool, &key).await
    }

    async fn api_keys(&self) -> Result<Vec<ApiKey>, StoreError> {
        let _timer = QueryTimer::start(&self.observer, operation::LIST_API_KEYS);
        keys::list(&self.pool).await
    }

    async fn revoke_api_key(&self, name: &str, now: DateTime<Utc>) -> Result<ApiKey, StoreError> {
        let _timer = QueryTimer::start(&self.observer, operation::REVOKE_API_KEY);
        keys::revoke(&self.pool, name, now).await
    }

    async fn touch_api_keys(&self, names: Vec<String>, at: DateTime<Utc>) -> Result<(), StoreError> {
        let _timer = QueryTimer::start(&self.observer, operation::TOUCH_API_KEYS);
        keys::touch(&self.pool, &names, at).await
    }

    fn changes(&self) -> Arc<ChangeFeed> {
        Arc::clone(&self.changes)
    }

    fn job_signals(&self) -> Arc<JobSignals> {
        Arc::clone(&self.job_signals)
    }
}

/// Applies the migrations this database lacks, once however many replicas start together.
async fn migrate(pool: &PgPool) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    // Held until commit: a replica that starts meanwhile waits, then finds nothing to do.
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(MIGRATION_LOCK_KEY)
        .execute(&mut *tx)
        .await?;
    sqlx::raw_sql(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
            version    INTEGER PRIMARY KEY,
            applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
        )",
    )
    .execute(&mut *tx)
    .await?;
    let applied: Vec<i32> = sqlx::query_scalar("SELECT version FROM schema_migrations")
        .fetch_all(&mut *tx)
        .await?;
    for &(version, sql) in MIGRATIONS.iter().filter(|(version, _)| !applied.contains(version)) {
        sqlx::raw_sql(sql).execute(&mut *tx).await?;
        sqlx::query("INSERT INTO schema_migrations (version) VALUES ($1)")
            .bind(version)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await
}

/// Writes the columns an action changes and appends the action's entry.
async fn write_transition(tx: &mut PgConnection, transition: &Transition) -> Result<(), sqlx::Error> {
    let incident = &transition.after;
    sqlx::query(
        "UPDATE incidents SET state = $2, assignee = $3, team = $4, updated_at = $5, \
         acknowledged_at = $6, resolved_at = $7, resolution_note = $8, severity = $9, category = $10, \
         escalation_level = $11, escalation_due_at = $12, classification = $13, insights = $14 WHERE id = $1",
    )
    .bind(incident.id.0)
    .bind(incident.state.as_str())
    .bind(&incident.assignee)
    .bind(&incident.team)
    .bind(incident.updated_at)
    .bind(incident.acknowledged_at)
    .bind(incident.resolved_at)
    .bind(&incident.resolution_note)
    .bind(incident.severity.as_str())
    .bind(incident.category.as_str())
    .bind(incident.next_escalation.map(|next| next.level as i32))
    .bind(incident.next_escalation.map(|next| next.due_at))
    .bind(incident.classification.as_ref().map(Classification::to_column))
    .bind(json_text(incident.insights.as_ref()))
    .execute(&mut *tx)
    .await?;
    insert_entry(tx, &transition.entry).await
}

pub(crate) async fn insert_entry(tx: &mut PgConnection, entry: &TimelineEntry) -> Result<(), sqlx::Error> {
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

/// Binds the twenty-five parameters of `insert_incident!()`.
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
        .bind(&incident.route)
        .bind(&incident.escalation_policy)
        .bind(incident.next_escalation.map(|next| next.level as i32))
        .bind(incident.next_escalation.map(|next| next.due_at))
        .bind(incident.classification.as_ref().map(Classification::to_column))
        .bind(json_text(incident.insights.as_ref()))
}

/// A value of a JSON column (none stays NULL).
fn json_text<T: serde::Serialize>(value: Option<&T>) -> Option<String> {
    value.map(|value| serde_json::to_string(value).expect("triage's values always serialize"))
}

/// An optional JSON column.
fn json_column<T: serde::de::DeserializeOwned>(row: &PgRow, column: &str) -> Result<Option<T>, sqlx::Error> {
    let text: Option<&str> = row.try_get(column)?;
    text.map(|text| serde_json::from_str(text).map_err(|error| column_error(column, error)))
        .transpose()
}

fn labels_json(incident: &Incident) -> String {
    serde_json::to_string(&incident.labels).expect("a map of strings always serializes")
}

/// Adds `AND column = ANY($n)` unless `values` is empty (an empty filter means "any").
fn push_any_of<T: Copy>(query: &mut QueryBuilder<Postgres>, column: &str, values: &[T], as_str: fn(T) -> &'static str) {
    if values.is_empty() {
        return;
    }
    let values: Vec<&str> = values.iter().map(|value| as_str(*value)).collect();
    query
        .push(format_args!(" AND {column} = ANY("))
        .push_bind(values)
        .push(")");
}

pub(crate) fn row_to_incident(row: &PgRow) -> Result<Incident, sqlx::Error> {
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
        route: row.try_get("route")?,
        escalation_policy: row.try_get("escalation_policy")?,
        next_escalation: match (
            row.try_get::<Option<i32>, _>("escalation_level")?,
            row.try_get::<Option<DateTime<Utc>>, _>("escalation_due_at")?,
        ) {
            (Some(level), Some(due_at)) => Some(PendingEscalation {
                level: level.max(0) as u32,
                due_at,
            }),
            _ => None,
        },
        classification: None,
        insights: json_column(row, "insights")?,
    })
    .and_then(|mut incident| {
        incident.classification = classification_column(row, &incident)?;
        Ok(incident)
    })
}

/// The classification column ([`Classification::to_column`]) of the incident read.
fn classification_column(row: &PgRow, incident: &Incident) -> Result<Option<Classification>, sqlx::Error> {
    let text: Option<&str> = row.try_get("classification")?;
    text.map(|text| {
        Classification::from_column(
            text,
            &incident.title,
            &incident.description,
            &incident.labels,
            incident.severity,
            incident.category,
        )
        .map_err(|error| column_error("classification", error))
    })
    .transpose()
}

fn row_to_open_count(row: &PgRow) -> Result<OpenCount, sqlx::Error> {
    Ok(OpenCount {
        severity: parse_column(row, "severity")?,
        source: parse_column(row, "source")?,
        category: parse_column(row, "category")?,
        count: row.try_get("count")?,
        oldest_unacknowledged: row.try_get("oldest_unacknowledged")?,
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
pub(crate) fn parse_column<T: FromStr<Err = UnknownValue>>(row: &PgRow, column: &str) -> Result<T, sqlx::Error> {
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

/// The link to the server, or the server's state, failed, not what was asked of it.
fn is_connection_trouble(error: &sqlx::Error) -> bool {
    match error {
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
    }
}

/// How a PostgreSQL failure reaches callers: connection trouble is `Unavailable` (they may
/// retry); everything else is `Internal`, a corrupt row included.
impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> Self {
        if is_connection_trouble(&error) {
            StoreError::Unavailable(error.to_string())
        } else {
            StoreError::Internal(error.to_string())
        }
    }
}
