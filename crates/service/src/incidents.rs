//! The incident manager: the core every front door (HTTP, gRPC, jobs) calls.
//! It knows nothing of HTTP: it validates, asks the store, and emits telemetry.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use lim_domain::oncall::{Schedule, Shift};
use lim_domain::silence::{NewSilence, Silence, SilenceId, SilenceState};
use lim_store::{SilenceFilter, SilencePageRequest};

use lim_domain::event::{self, MAX_DESCRIPTION_CHARS, MAX_LABEL_KEY_CHARS, validate_batch};
use lim_domain::fit::fit_to_limits;
use lim_domain::{
    Action, Category, EntryPage, EntryPageRequest, ErrorKind, EventRules, FieldError, Incident, IncidentFilter,
    IncidentId, IngestOutcome, PageRequest, RawEvent, Reactions, Severity, Source, TimelineEntry, TimelineKind,
};
use lim_domain::{Job, JobId};
use lim_store::{JobFilter, JobPageRequest, Store, StoreError};

use crate::clock::Clock;
use crate::jobs::SilenceCache;
use crate::live::{LiveConfig, Reloader};
use crate::telemetry::Metrics;

/// How long a readiness check waits for the database.
pub const READY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// The most shifts one answer lists.
pub const MAX_SHIFTS: usize = 1000;

/// Why the core refused or failed a request.
#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    #[error(transparent)]
    Invalid(#[from] FieldError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("schedule `{0}` is not configured")]
    UnknownSchedule(String),
}

impl CoreError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            CoreError::Invalid(_) => ErrorKind::InvalidField,
            CoreError::Store(error) => error.kind(),
            CoreError::UnknownSchedule(_) => ErrorKind::NotFound,
        }
    }
}

/// A manually opened incident, as a person describes it.
#[derive(Debug, Clone, Default)]
pub struct NewIncident {
    pub title: Option<String>,
    pub description: Option<String>,
    pub severity: Option<String>,
    pub category: Option<String>,
    pub source: Option<String>,
    pub labels: BTreeMap<String, String>,
}

pub struct IncidentManager {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    metrics: Arc<Metrics>,
    /// Event rules and what changes cause (routes, channels, schedules, policies);
    /// replaced whole when the configuration is reloaded.
    live: Arc<LiveConfig>,
    silences: Arc<SilenceCache>,
    reloader: Option<Arc<Reloader>>,
}

impl IncidentManager {
    pub fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        metrics: Arc<Metrics>,
        live: Arc<LiveConfig>,
        silences: Arc<SilenceCache>,
    ) -> Self {
        IncidentManager {
            store,
            clock,
            metrics,
            live,
            silences,
            reloader: None,
        }
    }

    /// Lets `POST /-/reload` read the configuration again through `reloader`.
    pub fn with_reloader(mut self, reloader: Arc<Reloader>) -> Self {
        self.reloader = Some(reloader);
        self
    }

    /// Reads the configuration again; the error says why the file was refused.
    pub async fn reload(&self) -> Result<(), String> {
        match &self.reloader {
            Some(reloader) => reloader.reload().await,
            None => Err("this service was not started from a configuration it can read again".into()),
        }
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    pub fn metrics_handle(&self) -> Arc<Metrics> {
        Arc::clone(&self.metrics)
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The reactions every change is routed by, as configured now.
    pub fn reactions(&self) -> Arc<Reactions> {
        Arc::clone(&self.live.current().reactions)
    }

    fn rules(&self) -> EventRules {
        self.live.current().rules
    }

    /// Validates one event, then stores it.
    pub async fn ingest_one(&self, raw: RawEvent) -> Result<IngestOutcome, CoreError> {
        let now = self.clock.now();
        let event = raw.validate(now, &self.rules())?;
        let mut outcomes = self.store_events(vec![event], now).await?;
        Ok(outcomes.remove(0))
    }

    /// Validates every event of a batch, then stores them all in one transaction (or
    /// none); an invalid event is named by its index (`[3].title`).
    pub async fn ingest(&self, raw: Vec<RawEvent>) -> Result<Vec<IngestOutcome>, CoreError> {
        let now = self.clock.now();
        let events = validate_batch(raw, now, &self.rules())?;
        self.store_events(events, now).await
    }

    /// Validates one event as it arrives (an event of a gRPC stream), to be stored with
    /// others by [`IncidentManager::ingest_valid`].
    pub fn validate(&self, raw: RawEvent) -> Result<lim_domain::Event, FieldError> {
        raw.validate(self.clock.now(), &self.rules())
    }

    /// Stores events [`IncidentManager::validate`] passed, in one transaction.
    pub async fn ingest_valid(&self, events: Vec<lim_domain::Event>) -> Result<Vec<IngestOutcome>, CoreError> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        self.store_events(events, self.clock.now()).await
    }

    /// Events of a third party (Alertmanager) that must never be lost over a limit: each is
    /// made to fit first (see `lim_domain::fit`), what changed is logged, and however many
    /// there are they are stored together.
    pub async fn ingest_tolerant(&self, raw: Vec<RawEvent>) -> Result<Vec<IngestOutcome>, CoreError> {
        let now = self.clock.now();
        let rules = self.rules();
        let mut events = Vec::with_capacity(raw.len());
        for (index, raw) in raw.into_iter().enumerate() {
            let fitted = fit_to_limits(raw, now, &rules);
            if !fitted.changes.is_empty() {
                tracing::warn!(
                    index,
                    source = fitted.event.source.as_deref().unwrap_or_default(),
                    fingerprint = fitted.event.fingerprint.as_deref().unwrap_or_default(),
                    changes = %fitted.changes.join("; "),
                    "an event was changed to fit the limits"
                );
            }
            events.push(
                fitted
                    .event
                    .validate(now, &rules)
                    .map_err(|error| error.in_batch(index))?,
            );
        }
        if events.is_empty() {
            return Ok(Vec::new());
        }
        self.store_events(events, now).await
    }

    async fn store_events(
        &self,
        events: Vec<lim_domain::Event>,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Vec<IngestOutcome>, CoreError> {
        let (store, metrics, reactions) = (Arc::clone(&self.store), Arc::clone(&self.metrics), self.reactions());
        detached(async move {
            let outcomes = store.ingest(events, now, reactions).await?;
            for outcome in &outcomes {
                match outcome {
                    IngestOutcome::Created(incident) => metrics.incident_created(incident),
                    IngestOutcome::Deduplicated {
                        incident_id,
                        source,
                        severity,
                        raised_from,
                        ..
                    } => {
                        metrics.incident_deduplicated(*source);
                        if let Some(from) = raised_from {
                            metrics.severity_raised(*incident_id, *from, *severity);
                        }
                    }
                    IngestOutcome::Resolved(transition) => metrics.transitioned(transition),
                    IngestOutcome::Redelivered { .. } | IngestOutcome::Ignored => {}
                }
            }
            Ok(outcomes)
        })
        .await
    }

    /// Opens an incident by hand. It gets a fingerprint of its own, so events never attach to it.
    pub async fn open_incident(&self, request: NewIncident) -> Result<Incident, CoreError> {
        let now = self.clock.now();
        let id = IncidentId::generate();
        let raw = RawEvent {
            source: Some(request.source.unwrap_or_else(|| Source::Manual.as_str().to_owned())),
            title: request.title,
            description: request.description,
            severity: request.severity,
            category: request.category,
            labels: request.labels,
            fingerprint: None,
            status: None,
            occurred_at: None,
        };
        let mut event = raw.validate(now, &self.rules())?;
        event.fingerprint = format!("{}{id}", event::MANUAL_FINGERPRINT_PREFIX);
        let opening = self.reactions().open(Incident::open(id, &event, now), now);
        let (store, metrics) = (Arc::clone(&self.store), Arc::clone(&self.metrics));
        detached(async move {
            let incident = opening.incident.clone();
            store.create_incident(opening).await?;
            metrics.incident_created(&incident);
            Ok(incident)
        })
        .await
    }

    /// Applies a lifecycle action (assign, acknowledge, start, resolve).
    pub async fn act(&self, id: IncidentId, action: Action, actor: Option<String>) -> Result<Incident, CoreError> {
        let actor = actor_name(actor, "actor")?;
        let now = self.clock.now();
        let (store, metrics, reactions) = (Arc::clone(&self.store), Arc::clone(&self.metrics), self.reactions());
        detached(async move {
            let transition = store.transition(id, action, actor, now, reactions).await?;
            metrics.transitioned(&transition);
            Ok(transition.after)
        })
        .await
    }

    pub async fn comment(
        &self,
        id: IncidentId,
        author: Option<String>,
        body: Option<String>,
    ) -> Result<TimelineEntry, CoreError> {
        let author = actor_name(author, "author")?;
        let body = event::required_text(body, "body", MAX_DESCRIPTION_CHARS)?;
        let entry = TimelineEntry::new(id, self.clock.now(), TimelineKind::Comment, author, body);
        let store = Arc::clone(&self.store);
        detached(async move {
            store.add_comment(entry.clone()).await?;
            Ok(entry)
        })
        .await
    }

    pub async fn get(&self, id: IncidentId) -> Result<Incident, CoreError> {
        self.store
            .get_incident(id)
            .await?
            .ok_or(CoreError::Store(StoreError::NotFound(id)))
    }

    pub async fn list(&self, filter: &IncidentFilter, page: PageRequest) -> Result<Vec<Incident>, CoreError> {
        Ok(self.store.list_incidents(filter, page).await?)
    }

    pub async fn timeline(&self, id: IncidentId, page: EntryPageRequest) -> Result<EntryPage, CoreError> {
        Ok(self.store.timeline(id, page).await?)
    }

    pub async fn comments(&self, id: IncidentId, page: EntryPageRequest) -> Result<EntryPage, CoreError> {
        Ok(self.store.comments(id, page).await?)
    }

    /// Jobs, newest first.
    pub async fn jobs(&self, filter: &JobFilter, page: JobPageRequest) -> Result<Vec<Job>, CoreError> {
        Ok(self.store.list_jobs(filter, page).await?)
    }

    pub async fn job(&self, id: JobId) -> Result<Job, CoreError> {
        self.store
            .get_job(id)
            .await?
            .ok_or(CoreError::Store(StoreError::JobNotFound(id)))
    }

    /// Queues a dead job again.
    pub async fn retry_job(&self, id: JobId) -> Result<Job, CoreError> {
        let (store, now) = (Arc::clone(&self.store), self.clock.now());
        detached(async move { Ok(store.retry_job(id, now).await?) }).await
    }

    /// Stores a silence; it holds from its start (default now) until its end.
    pub async fn create_silence(&self, request: NewSilence) -> Result<Silence, CoreError> {
        let silence = request.validate(self.clock.now())?;
        let (store, silences) = (Arc::clone(&self.store), Arc::clone(&self.silences));
        detached(async move {
            store.create_silence(silence.clone()).await?;
            silences.invalidate();
            Ok(silence)
        })
        .await
    }

    /// Silences, newest first, by their state now.
    pub async fn silences(
        &self,
        states: Vec<SilenceState>,
        page: SilencePageRequest,
    ) -> Result<Vec<Silence>, CoreError> {
        let filter = SilenceFilter {
            states,
            now: self.clock.now(),
        };
        Ok(self.store.list_silences(&filter, page).await?)
    }

    pub async fn silence(&self, id: SilenceId) -> Result<Silence, CoreError> {
        self.store
            .get_silence(id)
            .await?
            .ok_or(CoreError::Store(StoreError::SilenceNotFound(id)))
    }

    /// Deletes a silence; the escalations it held start from level 1 now.
    pub async fn delete_silence(&self, id: SilenceId) -> Result<Silence, CoreError> {
        let (store, silences, now) = (Arc::clone(&self.store), Arc::clone(&self.silences), self.clock.now());
        detached(async move {
            let silence = store.delete_silence(id, now).await?;
            silences.invalidate();
            Ok(silence)
        })
        .await
    }

    /// The time now, as the core sees it.
    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// Who is on call on schedule `name` at `at` (default now).
    pub fn oncall(&self, name: &str, at: Option<DateTime<Utc>>) -> Result<(Schedule, Option<Shift>), CoreError> {
        let schedule = self.schedule(name)?;
        let shift = schedule.oncall(at.unwrap_or_else(|| self.clock.now()));
        Ok((schedule, shift))
    }

    /// The shifts of schedule `name` that overlap `from..to`, at most [`MAX_SHIFTS`], and
    /// where the rest of the window starts when it holds more.
    pub fn shifts(
        &self,
        name: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<(Vec<Shift>, Option<DateTime<Utc>>), CoreError> {
        Ok(self.schedule(name)?.shift_page(from, to, MAX_SHIFTS))
    }

    /// The configured schedules, by name.
    pub fn schedules(&self) -> Vec<Schedule> {
        self.reactions().schedules.values().cloned().collect()
    }

    fn schedule(&self, name: &str) -> Result<Schedule, CoreError> {
        self.reactions()
            .schedules
            .get(name)
            .cloned()
            .ok_or_else(|| CoreError::UnknownSchedule(lim_domain::text::excerpt(name)))
    }

    /// True when a write would be stored. A database that does not answer within
    /// [`READY_TIMEOUT`] (a link that drops packets rather than refusing them) is not ready.
    pub async fn ready(&self) -> Result<(), CoreError> {
        match tokio::time::timeout(READY_TIMEOUT, self.store.ping()).await {
            Ok(answer) => Ok(answer?),
            Err(_) => Err(CoreError::Store(StoreError::Unavailable(format!(
                "the database did not answer within {} s",
                READY_TIMEOUT.as_secs()
            )))),
        }
    }

    /// Brings the gauges that mirror the store up to date (before a scrape, and at start).
    pub async fn refresh_metrics(&self) -> Result<(), CoreError> {
        self.metrics.set_pool(self.store.pool_stats());
        let counts = self.store.count_open().await?;
        self.metrics.set_active(&counts);
        self.metrics.set_queued(&self.store.count_jobs().await?);
        Ok(())
    }
}

/// Runs a write and what follows it (its metrics) to the end on a task of its own, so a
/// caller that goes away after the commit (a client gone, a request timeout) cannot leave
/// a change stored but never counted.
async fn detached<T: Send + 'static>(
    work: impl Future<Output = Result<T, CoreError>> + Send + 'static,
) -> Result<T, CoreError> {
    tokio::spawn(work).await.unwrap_or_else(|error| {
        Err(CoreError::Store(StoreError::Internal(format!(
            "a write task failed: {error}"
        ))))
    })
}

/// Who did it (`field` names it in errors): defaults to `api` when the caller does not say.
fn actor_name(actor: Option<String>, field: &str) -> Result<String, FieldError> {
    let actor = event::optional_text(actor, field, MAX_LABEL_KEY_CHARS)?;
    Ok(if actor.is_empty() { "api".to_owned() } else { actor })
}

/// Parses a comma-separated filter value (`state=NEW,ASSIGNED`); absent means any, and an
/// empty one is refused (it would otherwise be read as "any" or as "none").
pub fn parse_list<T>(value: Option<&str>, field: &str) -> Result<Vec<T>, FieldError>
where
    T: std::str::FromStr<Err = lim_domain::UnknownValue>,
{
    let Some(value) = value else {
        return Ok(Vec::new());
    };
    if value.is_empty() {
        return Err(FieldError::new(
            field,
            "is empty; give one value or more, comma-separated, or leave the parameter out",
        ));
    }
    value
        .split(',')
        .map(|item| {
            item.parse()
                .map_err(|error: lim_domain::UnknownValue| FieldError::new(field, error.to_string()))
        })
        .collect()
}

/// The filter of `GET /v1/incidents` from its query values.
pub fn incident_filter(
    state: Option<&str>,
    severity: Option<&str>,
    source: Option<&str>,
    category: Option<&str>,
) -> Result<IncidentFilter, FieldError> {
    Ok(IncidentFilter {
        states: parse_list(state, "state")?,
        severities: parse_list::<Severity>(severity, "severity")?,
        sources: parse_list::<Source>(source, "source")?,
        categories: parse_list::<Category>(category, "category")?,
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use async_trait::async_trait;
    use chrono::{DateTime, Utc};
    use lim_domain::{Event, Transition};
    use lim_store::{OpenCount, PoolStats};
    use tokio::sync::{Notify, oneshot};

    use super::*;
    use crate::clock::ManualClock;
    use crate::live::Live;

    /// A store that, once an ingest is committed, holds its answer until told to go on.
    struct GatedStore {
        inner: Arc<dyn Store>,
        committed: Mutex<Option<oneshot::Sender<()>>>,
        go_on: Notify,
    }

    #[async_trait]
    impl Store for GatedStore {
        async fn ingest(
            &self,
            events: Vec<Event>,
            now: DateTime<Utc>,
            reactions: Arc<Reactions>,
        ) -> Result<Vec<IngestOutcome>, StoreError> {
            let outcomes = self.inner.ingest(events, now, reactions).await?;
            if let Some(committed) = self.committed.lock().unwrap().take() {
                let _ = committed.send(());
            }
            self.go_on.notified().await;
            Ok(outcomes)
        }
        async fn create_incident(&self, opening: lim_domain::Opening) -> Result<(), StoreError> {
            self.inner.create_incident(opening).await
        }
        async fn transition(
            &self,
            id: IncidentId,
            action: Action,
            actor: String,
            now: DateTime<Utc>,
            reactions: Arc<Reactions>,
        ) -> Result<Transition, StoreError> {
            self.inner.transition(id, action, actor, now, reactions).await
        }
        async fn add_comment(&self, entry: TimelineEntry) -> Result<(), StoreError> {
            self.inner.add_comment(entry).await
        }
        async fn get_incident(&self, id: IncidentId) -> Result<Option<Incident>, StoreError> {
            self.inner.get_incident(id).await
        }
        async fn get_incidents(&self, ids: &[IncidentId]) -> Result<Vec<Incident>, StoreError> {
            self.inner.get_incidents(ids).await
        }
        fn changes(&self) -> Arc<lim_store::ChangeFeed> {
            self.inner.changes()
        }
        async fn create_api_key(&self, key: lim_domain::auth::ApiKey) -> Result<(), StoreError> {
            self.inner.create_api_key(key).await
        }
        async fn api_keys(&self) -> Result<Vec<lim_domain::auth::ApiKey>, StoreError> {
            self.inner.api_keys().await
        }
        async fn revoke_api_key(&self, name: &str, now: DateTime<Utc>) -> Result<lim_domain::auth::ApiKey, StoreError> {
            self.inner.revoke_api_key(name, now).await
        }
        async fn touch_api_keys(&self, names: Vec<String>, at: DateTime<Utc>) -> Result<(), StoreError> {
            self.inner.touch_api_keys(names, at).await
        }
        async fn list_incidents(
            &self,
            filter: &IncidentFilter,
            page: PageRequest,
        ) -> Result<Vec<Incident>, StoreError> {
            self.inner.list_incidents(filter, page).await
        }
        async fn timeline(&self, id: IncidentId, page: EntryPageRequest) -> Result<EntryPage, StoreError> {
            self.inner.timeline(id, page).await
        }
        async fn comments(&self, id: IncidentId, page: EntryPageRequest) -> Result<EntryPage, StoreError> {
            self.inner.comments(id, page).await
        }
        async fn count_open(&self) -> Result<Vec<OpenCount>, StoreError> {
            self.inner.count_open().await
        }
        async fn ping(&self) -> Result<(), StoreError> {
            self.inner.ping().await
        }
        fn pool_stats(&self) -> PoolStats {
            self.inner.pool_stats()
        }
        fn backend(&self) -> &'static str {
            self.inner.backend()
        }
        async fn enqueue_jobs(&self, jobs: Vec<lim_domain::NewJob>) -> Result<(), StoreError> {
            self.inner.enqueue_jobs(jobs).await
        }
        async fn ensure_job(&self, job: lim_domain::NewJob) -> Result<bool, StoreError> {
            self.inner.ensure_job(job).await
        }
        async fn claim_jobs(
            &self,
            kind: lim_domain::JobKind,
            limit: u32,
            worker: &str,
            lease_until: DateTime<Utc>,
            now: DateTime<Utc>,
        ) -> Result<Vec<lim_domain::Job>, StoreError> {
            self.inner.claim_jobs(kind, limit, worker, lease_until, now).await
        }
        async fn finish_job(&self, finish: lim_store::JobFinish) -> Result<lim_store::Finished, StoreError> {
            self.inner.finish_job(finish).await
        }
        async fn create_silence(&self, silence: Silence) -> Result<(), StoreError> {
            self.inner.create_silence(silence).await
        }
        async fn get_silence(&self, id: SilenceId) -> Result<Option<Silence>, StoreError> {
            self.inner.get_silence(id).await
        }
        async fn list_silences(
            &self,
            filter: &SilenceFilter,
            page: SilencePageRequest,
        ) -> Result<Vec<Silence>, StoreError> {
            self.inner.list_silences(filter, page).await
        }
        async fn delete_silence(&self, id: SilenceId, now: DateTime<Utc>) -> Result<Silence, StoreError> {
            self.inner.delete_silence(id, now).await
        }
        async fn active_silences(&self, now: DateTime<Utc>) -> Result<Vec<Silence>, StoreError> {
            self.inner.active_silences(now).await
        }
        async fn group_members(&self, group: uuid::Uuid, limit: u32) -> Result<lim_store::GroupMembers, StoreError> {
            self.inner.group_members(group, limit).await
        }
        async fn llm_cache_get(&self, key: &str) -> Result<Option<String>, StoreError> {
            self.inner.llm_cache_get(key).await
        }
        async fn llm_cache_put(&self, key: &str, value: &str, now: DateTime<Utc>) -> Result<(), StoreError> {
            self.inner.llm_cache_put(key, value, now).await
        }
        async fn prune_llm_cache(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
            self.inner.prune_llm_cache(before).await
        }
        async fn release_jobs(&self, worker: &str, now: DateTime<Utc>) -> Result<u64, StoreError> {
            self.inner.release_jobs(worker, now).await
        }
        async fn get_job(&self, id: lim_domain::JobId) -> Result<Option<lim_domain::Job>, StoreError> {
            self.inner.get_job(id).await
        }
        async fn list_jobs(
            &self,
            filter: &lim_store::JobFilter,
            page: lim_store::JobPageRequest,
        ) -> Result<Vec<lim_domain::Job>, StoreError> {
            self.inner.list_jobs(filter, page).await
        }
        async fn retry_job(&self, id: lim_domain::JobId, now: DateTime<Utc>) -> Result<lim_domain::Job, StoreError> {
            self.inner.retry_job(id, now).await
        }
        async fn count_jobs(&self) -> Result<Vec<lim_store::JobCount>, StoreError> {
            self.inner.count_jobs().await
        }
        async fn prune_jobs(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
            self.inner.prune_jobs(before).await
        }
        fn job_signals(&self) -> Arc<lim_store::JobSignals> {
            self.inner.job_signals()
        }
    }

    #[tokio::test]
    async fn an_event_stored_for_a_caller_that_gave_up_is_still_counted() {
        let folder = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/test.db", folder.path().display());
        let inner = lim_store::connect(&url, lim_store::StoreOptions::default())
            .await
            .unwrap();
        let (committed, commit) = oneshot::channel();
        let store = Arc::new(GatedStore {
            inner,
            committed: Mutex::new(Some(committed)),
            go_on: Notify::new(),
        });
        let metrics = Arc::new(Metrics::new("sqlite"));
        let clock = Arc::new(ManualClock::new(Utc::now()));
        let live = Arc::new(LiveConfig::new(Live::with(Reactions::default(), EventRules::default())));
        let manager = IncidentManager::new(
            store.clone(),
            clock,
            Arc::clone(&metrics),
            live,
            Arc::new(SilenceCache::new()),
        );
        let raw = RawEvent {
            source: Some("api".into()),
            title: Some("stored, then the client left".into()),
            ..RawEvent::default()
        };

        let mut ingest = Box::pin(manager.ingest_one(raw));
        tokio::select! {
            _ = &mut ingest => panic!("the store holds the answer"),
            _ = commit => {}
        }
        // The caller gives up after the commit (a client gone, a request timeout).
        drop(ingest);
        store.go_on.notify_one();

        let series = r#"incidents_total{severity="P2",source="api",category="other"} 1"#;
        let mut text = String::new();
        for _ in 0..100 {
            text.clear();
            prometheus_client::encoding::text::encode(&mut text, metrics.registry()).unwrap();
            if text.contains(series) {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        panic!("the stored incident was never counted:\n{text}");
    }
}
