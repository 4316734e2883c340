//! The recurring `housekeeping` job: deletes finished jobs (and cached LLM answers) past
//! their retention and brings the gauges that mirror the store up to date, then schedules
//! its next run. One
//! runs at a time across every replica: it is written only while no other job of its kind
//! is queued or running (`Store::ensure_job`), and each run writes the next.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use lim_domain::{Job, JobPayload, NewJob};
use lim_store::Store;

use super::{Attempt, Handler};
use crate::telemetry::Metrics;

/// Between two runs.
pub const INTERVAL: Duration = Duration::from_secs(60);

pub struct Housekeeping {
    store: Arc<dyn Store>,
    metrics: Arc<Metrics>,
    retention: Duration,
}

impl Housekeeping {
    pub fn new(store: Arc<dyn Store>, metrics: Arc<Metrics>, retention: Duration) -> Housekeeping {
        Housekeeping {
            store,
            metrics,
            retention,
        }
    }

    /// A run due at `due_at`.
    pub fn at(due_at: DateTime<Utc>) -> NewJob {
        NewJob {
            payload: JobPayload::Housekeeping,
            incident_id: None,
            due_at,
            max_attempts: 3,
            chain: None,
        }
    }

    /// The first run, scheduled when a process starts unless one is already due.
    pub fn first(now: DateTime<Utc>) -> NewJob {
        Self::at(now)
    }
}

#[async_trait]
impl Handler for Housekeeping {
    async fn run(&self, _job: &Job, now: DateTime<Utc>) -> Attempt {
        let retention = chrono::TimeDelta::from_std(self.retention).unwrap_or(chrono::TimeDelta::MAX);
        let pruned = self.store.prune_jobs(now - retention).await;
        // LLM answers are kept as long as finished jobs.
        match self.store.prune_llm_cache(now - retention).await {
            Ok(0) => {}
            Ok(forgotten) => tracing::info!(forgotten, "LLM answers past their retention forgotten"),
            Err(error) => tracing::warn!(%error, "cannot forget old LLM answers; trying at the next run"),
        }
        let counted = async {
            self.metrics.set_active(&self.store.count_open().await?);
            self.metrics.set_queued(&self.store.count_jobs().await?);
            Ok::<_, lim_store::StoreError>(())
        }
        .await;
        // Whatever fails here is tried again at the next run, which is always scheduled:
        // a failed run must not end the chain.
        match pruned {
            Ok(0) => {}
            Ok(pruned) => tracing::info!(pruned, "finished jobs past their retention deleted"),
            Err(error) => tracing::warn!(%error, "cannot delete finished jobs; trying at the next run"),
        }
        if let Err(error) = counted {
            tracing::warn!(%error, "cannot refresh the store gauges; trying at the next run");
        }
        let next = now + chrono::TimeDelta::from_std(INTERVAL).unwrap_or(chrono::TimeDelta::MAX);
        Attempt {
            follow_ups: vec![Self::at(next)],
            ..Attempt::done()
        }
    }
}
