//! The incident manager: the core every front door (HTTP, gRPC, jobs) calls.
//! It knows nothing of HTTP: it validates, asks the store, and emits telemetry.

use std::collections::BTreeMap;
use std::sync::Arc;

use lim_domain::event::{self, MAX_DESCRIPTION_CHARS, validate_batch};
use lim_domain::{
    Action, Category, ErrorKind, FieldError, Incident, IncidentFilter, IncidentId, PageRequest, RawEvent, Severity,
    Source, TimelineEntry, TimelineKind,
};
use lim_store::{IngestOutcome, Store, StoreError};

use crate::clock::Clock;
use crate::telemetry::Metrics;

/// Why the core refused or failed a request.
#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    #[error(transparent)]
    Invalid(#[from] FieldError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl CoreError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            CoreError::Invalid(_) => ErrorKind::InvalidField,
            CoreError::Store(error) => error.kind(),
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
}

impl IncidentManager {
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>, metrics: Arc<Metrics>) -> Self {
        IncidentManager { store, clock, metrics }
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Validates every event, then stores them all in one transaction (or none).
    pub async fn ingest(&self, raw: Vec<RawEvent>) -> Result<Vec<IngestOutcome>, CoreError> {
        let now = self.clock.now();
        let events = validate_batch(raw, now)?;
        let outcomes = self.store.ingest(events, now).await?;
        for outcome in &outcomes {
            match outcome {
                IngestOutcome::Created(incident) => self.metrics.incident_created(incident),
                IngestOutcome::Deduplicated { source, .. } => self.metrics.incident_deduplicated(*source),
                IngestOutcome::Resolved(transition) => self.metrics.transitioned(transition),
                IngestOutcome::Ignored => {}
            }
        }
        Ok(outcomes)
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
            fingerprint: Some(format!("manual:{id}")),
            status: None,
            occurred_at: None,
        };
        let event = raw.validate(now)?;
        let incident = Incident::open(id, &event, now);
        self.store.create_incident(incident.clone()).await?;
        self.metrics.incident_created(&incident);
        Ok(incident)
    }

    /// Applies a lifecycle action (assign, acknowledge, start, resolve).
    pub async fn act(&self, id: IncidentId, action: Action, actor: Option<String>) -> Result<Incident, CoreError> {
        let actor = actor_name(actor)?;
        let transition = self.store.transition(id, action, actor, self.clock.now()).await?;
        self.metrics.transitioned(&transition);
        Ok(transition.after)
    }

    pub async fn comment(
        &self,
        id: IncidentId,
        author: Option<String>,
        body: Option<String>,
    ) -> Result<TimelineEntry, CoreError> {
        let author = actor_name(author)?;
        let body = event::required_text(body, "body", MAX_DESCRIPTION_CHARS)?;
        let entry = TimelineEntry::new(id, self.clock.now(), TimelineKind::Comment, author, body);
        self.store.add_comment(entry.clone()).await?;
        Ok(entry)
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

    pub async fn timeline(&self, id: IncidentId) -> Result<Vec<TimelineEntry>, CoreError> {
        Ok(self.store.timeline(id).await?)
    }

    /// True when the store answers.
    pub async fn ready(&self) -> Result<(), CoreError> {
        Ok(self.store.ping().await?)
    }

    /// Brings the gauges that mirror the store up to date (before a scrape, and at start).
    pub async fn refresh_metrics(&self) -> Result<(), CoreError> {
        self.metrics.set_pool(self.store.pool_stats());
        let counts = self.store.count_open().await?;
        self.metrics.set_active(&counts);
        Ok(())
    }
}

/// Who did it: defaults to `api` when the caller does not say.
fn actor_name(actor: Option<String>) -> Result<String, FieldError> {
    let actor = event::optional_text(actor, "actor", event::MAX_LABEL_KEY_CHARS)?;
    Ok(if actor.is_empty() { "api".to_owned() } else { actor })
}

/// Parses a comma-separated filter value (`state=NEW,ASSIGNED`).
pub fn parse_list<T>(value: Option<&str>, field: &str) -> Result<Vec<T>, FieldError>
where
    T: std::str::FromStr<Err = lim_domain::UnknownValue>,
{
    let Some(value) = value.filter(|value| !value.trim().is_empty()) else {
        return Ok(Vec::new());
    };
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
