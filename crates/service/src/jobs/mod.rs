//! The job executor: workers claim due jobs from the store (each claim a lease), run them
//! with the handler of their kind, and record how each attempt ended, with its retry
//! (exponential backoff with jitter, a receiver's `Retry-After` honoured) or the dead
//! state once its attempts are spent. Several replicas share one PostgreSQL queue and run
//! each job once; a replica that dies leaves its jobs to the others when their leases run
//! out. On shutdown, running jobs get the drain period to finish, then are handed back.

mod housekeeping;
mod notify;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::Utc;
use lim_domain::{ChannelKind, IncidentId, Job, JobKind, JobResult, NewJob, TimelineEntry, TimelineKind};
use lim_store::{JobFinish, Store};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

pub use housekeeping::Housekeeping;
pub use notify::Notifier;

use crate::config::JobSettings;
use crate::telemetry::Metrics;
use crate::telemetry::metrics::Delivery;

/// How often an idle worker looks for due jobs (new ones wake it at once; this finds the
/// ones that become due, and those another replica wrote).
const POLL_INTERVAL: Duration = Duration::from_millis(250);

/// Why an attempt failed.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    pub message: String,
    /// Another attempt cannot succeed: the job goes dead at once.
    pub permanent: bool,
    pub retry_after: Option<Duration>,
}

impl Failure {
    pub fn permanent(message: impl Into<String>) -> Failure {
        Failure {
            message: message.into(),
            permanent: true,
            retry_after: None,
        }
    }
}

/// What running a job did.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub result: Result<(), Failure>,
    /// The incident whose timeline records the attempt, and what was tried
    /// (`ops-webhook (webhook)`).
    pub recorded_as: Option<(IncidentId, String)>,
    /// The channel type of a delivery, for the notification metrics.
    pub delivery: Option<ChannelKind>,
    /// Jobs that follow this one when it succeeds.
    pub follow_ups: Vec<NewJob>,
}

impl Attempt {
    pub fn done() -> Attempt {
        Attempt {
            result: Ok(()),
            recorded_as: None,
            delivery: None,
            follow_ups: Vec::new(),
        }
    }
}

/// Runs the jobs of one kind.
#[async_trait]
pub trait Handler: Send + Sync {
    async fn run(&self, job: &Job) -> Attempt;
}

pub struct Executor {
    store: Arc<dyn Store>,
    metrics: Arc<Metrics>,
    settings: JobSettings,
    handlers: BTreeMap<JobKind, Arc<dyn Handler>>,
    /// This process among the replicas: whose claims are whose.
    worker: String,
    drain: Duration,
}

impl Executor {
    pub fn new(
        store: Arc<dyn Store>,
        metrics: Arc<Metrics>,
        settings: JobSettings,
        handlers: BTreeMap<JobKind, Arc<dyn Handler>>,
        drain: Duration,
    ) -> Executor {
        Executor {
            store,
            metrics,
            settings,
            handlers,
            worker: worker_name(),
            drain,
        }
    }

    pub fn worker(&self) -> &str {
        &self.worker
    }

    /// Runs until `stop` turns true, then drains (see the module documentation).
    pub async fn run(self: Arc<Self>, stop: watch::Receiver<bool>) {
        if let Err(error) = self.store.ensure_job(Housekeeping::first(Utc::now())).await {
            tracing::warn!(%error, "cannot schedule housekeeping; it is tried again at the next start");
        }
        let mut kinds = JoinSet::new();
        for (kind, handler) in &self.handlers {
            let concurrency = self.settings.concurrency.get(kind).copied().unwrap_or(1);
            kinds.spawn(Arc::clone(&self).run_kind(*kind, Arc::clone(handler), concurrency, stop.clone()));
        }
        while kinds.join_next().await.is_some() {}
        match self.store.release_jobs(&self.worker, Utc::now()).await {
            Ok(0) => {}
            Ok(released) => tracing::warn!(released, "jobs still running at shutdown were handed back"),
            Err(error) => tracing::error!(%error, "cannot hand back running jobs; their leases will expire"),
        }
    }

    async fn run_kind(
        self: Arc<Self>,
        kind: JobKind,
        handler: Arc<dyn Handler>,
        concurrency: u32,
        mut stop: watch::Receiver<bool>,
    ) {
        let slots = Arc::new(Semaphore::new(concurrency as usize));
        let signals = self.store.job_signals();
        let mut running = JoinSet::new();
        while !*stop.borrow() {
            while running.try_join_next().is_some() {}
            let free = slots.available_permits() as u32;
            if free == 0 {
                tokio::select! {
                    _ = running.join_next() => {}
                    _ = stop.changed() => {}
                }
                continue;
            }
            // Interest is registered before the claim, so a job written meanwhile wakes us.
            let woken = signals.of(kind).notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            let now = Utc::now();
            let lease_until = now + chrono::TimeDelta::from_std(self.settings.lease).unwrap_or(chrono::TimeDelta::MAX);
            match self.store.claim_jobs(kind, free, &self.worker, lease_until, now).await {
                Ok(jobs) if !jobs.is_empty() => {
                    for job in jobs {
                        let permit = Arc::clone(&slots)
                            .acquire_owned()
                            .await
                            .expect("the semaphore is never closed");
                        let executor = Arc::clone(&self);
                        let handler = Arc::clone(&handler);
                        running.spawn(async move {
                            executor.attempt(handler.as_ref(), job).await;
                            drop(permit);
                        });
                    }
                }
                Ok(_) => {
                    tokio::select! {
                        () = &mut woken => {}
                        () = tokio::time::sleep(POLL_INTERVAL) => {}
                        _ = stop.changed() => {}
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, job_type = %kind, "cannot claim jobs; trying again shortly");
                    tokio::select! {
                        () = tokio::time::sleep(Duration::from_secs(1)) => {}
                        _ = stop.changed() => {}
                    }
                }
            }
        }
        // Stopping: what runs may finish within the drain period; the rest is handed back.
        let drained = tokio::time::timeout(self.drain, async { while running.join_next().await.is_some() {} }).await;
        if drained.is_err() {
            running.abort_all();
            while running.join_next().await.is_some() {}
        }
    }

    /// Runs one attempt and records how it ended.
    async fn attempt(&self, handler: &dyn Handler, job: Job) {
        self.metrics.job_running(job.kind, 1);
        let started = Instant::now();
        let attempt = handler.run(&job).await;
        let elapsed = started.elapsed();
        self.metrics.job_running(job.kind, -1);
        let now = Utc::now();
        let result = match &attempt.result {
            Ok(()) => JobResult::Done,
            Err(failure) => self.settings.backoff.after_failure(
                job.attempts,
                job.max_attempts,
                failure.permanent,
                failure.message.clone(),
                failure.retry_after,
                rand::random::<f64>(),
                now,
            ),
        };
        let dead = matches!(result, JobResult::Dead { .. });
        self.metrics
            .job_attempted(job.kind, attempt.result.is_ok(), dead, elapsed);
        if let Some(channel) = attempt.delivery {
            let delivery = match &result {
                JobResult::Done => Delivery::Sent,
                JobResult::Retry { .. } => Delivery::Failed,
                JobResult::Dead { .. } => Delivery::Dead,
            };
            self.metrics.delivery_attempted(channel, delivery, elapsed);
        }
        match &result {
            JobResult::Done => tracing::debug!(job = %job.id, job_type = %job.kind, attempt = job.attempts, "job done"),
            JobResult::Retry { due_at, error } => {
                tracing::info!(job = %job.id, job_type = %job.kind, attempt = job.attempts, %error, %due_at, "job failed; retrying")
            }
            JobResult::Dead { error } => {
                tracing::warn!(job = %job.id, job_type = %job.kind, attempts = job.attempts, %error, "job failed for the last time; it is dead")
            }
        }
        let entry = attempt
            .recorded_as
            .as_ref()
            .map(|(incident, what)| timeline_entry(*incident, what, &job, &result, now));
        let follow_ups = if matches!(result, JobResult::Done) {
            attempt.follow_ups
        } else {
            Vec::new()
        };
        let finish = JobFinish {
            id: job.id,
            worker: self.worker.clone(),
            result,
            entry,
            follow_ups,
            now,
        };
        match self.store.finish_job(finish).await {
            Ok(true) => {}
            Ok(false) => {
                tracing::warn!(job = %job.id, "the job's lease ran out before it finished; another worker has it")
            }
            Err(error) => {
                tracing::error!(job = %job.id, %error, "cannot record the job's attempt; it runs again when its lease runs out")
            }
        }
    }
}

/// An attempt as its incident's timeline tells it.
fn timeline_entry(
    incident: IncidentId,
    what: &str,
    job: &Job,
    result: &JobResult,
    now: chrono::DateTime<Utc>,
) -> TimelineEntry {
    let attempt = job.attempts;
    let message = match result {
        JobResult::Done => format!("notified {what}: delivered (attempt {attempt})"),
        JobResult::Retry { due_at, error } => format!(
            "notifying {what} failed (attempt {attempt} of {}): {error}; next attempt at {}",
            job.max_attempts,
            due_at.format("%Y-%m-%dT%H:%M:%SZ")
        ),
        JobResult::Dead { error } => format!("notifying {what} failed (attempt {attempt}), given up: {error}"),
    };
    TimelineEntry::new(incident, now, TimelineKind::Notified, "notifier", message)
}

/// `host-pid-random`: unique among the replicas, readable in the jobs table.
fn worker_name() -> String {
    let mut buffer = [0u8; 256];
    // SAFETY: gethostname writes at most `len` bytes into the buffer it is given.
    let host = if unsafe { libc::gethostname(buffer.as_mut_ptr().cast(), buffer.len()) } == 0 {
        let end = buffer.iter().position(|&byte| byte == 0).unwrap_or(buffer.len());
        String::from_utf8_lossy(&buffer[..end]).into_owned()
    } else {
        "host".to_owned()
    };
    format!("{host}-{}-{:08x}", std::process::id(), rand::random::<u32>())
}
