//! The `llm_classify` and `llm_insights` jobs: ask the configured provider about a stored
//! incident, after ingest has answered, and apply the answer as a change of the incident
//! (on its timeline; a classification moves its metrics as a reclassification does). The
//! answer is cached by provider, model, fingerprint and text, so a recurring incident is
//! answered from the store. A provider that fails never blocks or loses an incident: the
//! job is retried with backoff (a provider's `Retry-After` honoured) and, when its
//! attempts are spent, the incident says so and keeps the offline classifier's values.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use lim_domain::lifecycle::TriageFailure;
use lim_domain::triage::{
    Classification, ClassificationStatus, Insights, LlmErrorType, LlmOperation, ModelClassification, ModelInsights,
    parse_classification, parse_insights,
};
use lim_domain::{Action, Incident, Job, JobPayload};
use lim_store::{Store, StoreError};

use super::{Attempt, Failure, Handler};
use crate::live::LiveConfig;
use crate::llm::{LlmClient, LlmError, prompts};
use crate::telemetry::Metrics;

pub struct Triage {
    store: Arc<dyn Store>,
    live: Arc<LiveConfig>,
    metrics: Arc<Metrics>,
}

impl Triage {
    pub fn new(store: Arc<dyn Store>, live: Arc<LiveConfig>, metrics: Arc<Metrics>) -> Triage {
        Triage { store, live, metrics }
    }

    /// Applies `action` to the incident as `actor`; an incident that no longer takes it
    /// (resolved before a classification came) is left alone.
    async fn apply(&self, incident: &Incident, action: Action, actor: String, now: DateTime<Utc>) -> Attempt {
        let reactions = Arc::clone(&self.live.current().reactions);
        match self.store.transition(incident.id, action, actor, now, reactions).await {
            Ok(transition) => {
                self.metrics.transitioned(&transition);
                Attempt::done()
            }
            Err(StoreError::IllegalTransition(_) | StoreError::NotFound(_)) => Attempt::done(),
            Err(error) => Attempt::failed(Failure::transient(format!("cannot store the answer: {error}"))),
        }
    }
}

#[async_trait]
impl Handler for Triage {
    async fn run(&self, job: &Job, now: DateTime<Utc>) -> Attempt {
        let operation = match job.payload {
            JobPayload::LlmClassify => LlmOperation::Classify,
            JobPayload::LlmInsights => LlmOperation::Insights,
            _ => return Attempt::failed(Failure::permanent(format!("job {} is no LLM question", job.id))),
        };
        let Some(incident_id) = job.incident_id else {
            return Attempt::failed(Failure::permanent("an LLM question names no incident"));
        };
        let incident = match self.store.get_incident(incident_id).await {
            Ok(Some(incident)) => incident,
            Ok(None) => return Attempt::done(),
            Err(error) => return Attempt::failed(Failure::transient(format!("cannot read the incident: {error}"))),
        };
        // With the offline classifier alone again (a reload), nobody is asked.
        let Some(client) = self.live.current().llm.clone() else {
            return Attempt::done();
        };
        if operation == LlmOperation::Classify && !classifiable(&incident) {
            return Attempt::done();
        }
        let actor = format!("{}/{}", client.provider(), client.model());
        let answer = match operation {
            LlmOperation::Classify => self
                .answer(&client, operation, &incident, now, parse_classification)
                .await
                .map(|model| Action::Classify(Ok(classification(&client, &incident, model)))),
            LlmOperation::Insights => self
                .answer(&client, operation, &incident, now, parse_insights)
                .await
                .map(|model| Action::Explain(Ok(insights(&client, model)))),
        };
        match answer {
            Ok(action) => self.apply(&incident, action, actor, now).await,
            Err(error) => {
                // An open circuit refused before any request: the job waits for the
                // circuit's cool-down without spending an attempt, so that an outage longer
                // than the retries does not leave its incidents unclassified for good.
                let failure = Failure {
                    message: error.to_string(),
                    permanent: error.permanent(),
                    retry_after: error.retry_after,
                    deferred: error.kind == LlmErrorType::CircuitOpen,
                };
                if failure.deferred {
                    return Attempt::failed(failure);
                }
                // The last attempt says so on the incident; the offline values stay.
                if failure.permanent || job.attempts >= job.max_attempts {
                    let failed = TriageFailure {
                        provider: client.provider().to_string(),
                        model: client.model().to_owned(),
                        reason: error.to_string(),
                    };
                    let action = match operation {
                        LlmOperation::Classify => Action::Classify(Err(failed)),
                        LlmOperation::Insights => Action::Explain(Err(failed)),
                    };
                    let _ = self.apply(&incident, action, actor, now).await;
                }
                Attempt::failed(failure)
            }
        }
    }
}

impl Triage {
    /// The provider's answer from the cache, or from the provider (then cached).
    async fn answer<T>(
        &self,
        client: &LlmClient,
        operation: LlmOperation,
        incident: &Incident,
        now: DateTime<Utc>,
        read: fn(&str) -> Result<T, String>,
    ) -> Result<T, LlmError> {
        let key = prompts::cache_key(client.provider().as_str(), client.model(), operation, incident);
        if let Ok(Some(text)) = self.store.llm_cache_get(&key).await
            && let Ok(answer) = read(&text)
        {
            self.metrics.cache_looked_up("llm", true);
            return Ok(answer);
        }
        self.metrics.cache_looked_up("llm", false);
        let (answer, text) = client.ask(&prompts::prompt(operation, incident), read).await?;
        // A cache that cannot be written costs a second question later, nothing more.
        if let Err(error) = self.store.llm_cache_put(&key, &text, now).await {
            tracing::warn!(%error, "cannot keep the LLM answer in the cache");
        }
        Ok(answer)
    }
}

/// Open, and with something triage decided that a person has not since.
fn classifiable(incident: &Incident) -> bool {
    incident.state.is_open()
        && incident
            .classification
            .as_ref()
            .is_some_and(|classification| !classification.is_manual())
}

/// The model's classification of what triage decides for this incident (what the sender
/// left to it).
fn classification(client: &LlmClient, incident: &Incident, model: ModelClassification) -> Classification {
    let decided = incident.classification.as_ref();
    Classification {
        status: ClassificationStatus::Done,
        severity: decided.and_then(|decided| decided.severity).map(|_| model.severity),
        category: decided.and_then(|decided| decided.category).map(|_| model.category),
        confidence: model.confidence,
        reasoning: model.reasoning,
        provider: client.provider().to_string(),
        model: client.model().to_owned(),
    }
}

fn insights(client: &LlmClient, model: ModelInsights) -> Insights {
    Insights {
        summary: model.summary,
        probable_cause: model.probable_cause,
        remediation: model.remediation,
        provider: client.provider().to_string(),
        model: client.model().to_owned(),
    }
}
