//! The job executor: workers claim due jobs from the store (each claim a lease), run them
//! with the handler of their kind, and record how each attempt ended, with its retry
//! (exponential backoff with jitter, a receiver's `Retry-After` honoured) or the dead
//! state once its attempts are spent. Several replicas share one PostgreSQL queue and run
//! each job once; a replica that dies leaves its jobs to the others when their leases run
//! out. On shutdown, running jobs get the drain period to finish, then are handed back.

mod escalate;
mod housekeeping;
mod llm;
mod notify;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use lim_domain::{ChannelKind, IncidentId, Job, JobKind, JobResult, NewJob, TimelineEntry, TimelineKind};
use lim_store::{Finished, JobFinish, Store};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

pub use escalate::Escalator;
pub use housekeeping::Housekeeping;
pub use llm::Triage;
pub use notify::{Notifier, SilenceCache};

use crate::clock::Clock;
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
    /// Nothing was tried (an open circuit refused): the job waits `retry_after` (or the
    /// first backoff) and the attempt does not count towards its maximum.
    pub deferred: bool,
}

impl Failure {
    /// A failure another attempt may get past (the store unreachable, say).
    pub fn transient(message: impl Into<String>) -> Failure {
        Failure {
            message: message.into(),
            permanent: false,
            retry_after: None,
            deferred: false,
        }
    }

    pub fn permanent(message: impl Into<String>) -> Failure {
        Failure {
            message: message.into(),
            permanent: true,
            retry_after: None,
            deferred: false,
        }
    }
}

/// What running a job did.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub result: Result<(), Failure>,
    /// A delivery attempted: its outcome goes on the timelines and into the
    /// notification metrics.
    pub delivery: Option<DeliveryAttempt>,
    /// Timeline entries the attempt writes, whatever its outcome.
    pub entries: Vec<TimelineEntry>,
    /// Jobs that follow this one when it succeeds.
    pub follow_ups: Vec<NewJob>,
    /// Set by a level of this incident's escalation (see `JobFinish::escalating`).
    pub escalating: Option<IncidentId>,
    /// The policy and level reached, counted once the level is recorded.
    pub escalated: Option<(String, u32)>,
}

/// One delivery through one channel.
#[derive(Debug, Clone)]
pub struct DeliveryAttempt {
    pub channel: ChannelKind,
    /// What was tried, as the timeline says it (`ops-webhook (webhook)`, `oncall-mail
    /// (email) to bo`).
    pub what: String,
    /// The incidents whose timelines record the attempt (several for a grouped one).
    pub incidents: Vec<IncidentId>,
}

impl Attempt {
    pub fn done() -> Attempt {
        Attempt {
            result: Ok(()),
            delivery: None,
            entries: Vec::new(),
            follow_ups: Vec::new(),
            escalating: None,
            escalated: None,
        }
    }

    pub fn failed(failure: Failure) -> Attempt {
        Attempt {
            result: Err(failure),
            ..Attempt::done()
        }
    }
}

/// Runs the jobs of one kind; `now` is the executor's clock when the job was claimed.
#[async_trait]
pub trait Handler: Send + Sync {
    async fn run(&self, job: &Job, now: DateTime<Utc>) -> Attempt;
}

pub struct Executor {
    store: Arc<dyn Store>,
    metrics: Arc<Metrics>,
    clock: Arc<dyn Clock>,
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
        clock: Arc<dyn Clock>,
        settings: JobSettings,
        handlers: BTreeMap<JobKind, Arc<dyn Handler>>,
        drain: Duration,
    ) -> Executor {
        Executor {
            store,
            metrics,
            clock,
            settings,
            handlers,
            worker: worker_name(),
            drain,
        }
    }

    pub fn worker(&self) -> &str {
        &self.worker
    }

    /// One step of the executor, for tests that drive it with a manual clock instead of
    /// letting it run: claims the jobs of `kind` due now and runs them to the end (one at
    /// a time); answers how many ran.
    pub async fn run_due(&self, kind: JobKind) -> usize {
        let Some(handler) = self.handlers.get(&kind) else {
            return 0;
        };
        let now = self.clock.now();
        let lease_until = now + chrono::TimeDelta::from_std(self.settings.lease).unwrap_or(chrono::TimeDelta::MAX);
        let jobs = self
            .store
            .claim_jobs(kind, 1000, &self.worker, lease_until, now)
            .await
            .expect("due jobs can be claimed");
        let count = jobs.len();
        for job in jobs {
            self.attempt(handler.as_ref(), job).await;
        }
        count
    }

    /// Runs until `stop` turns true, then drains (see the module documentation).
    pub async fn run(self: Arc<Self>, stop: watch::Receiver<bool>) {
        if let Err(error) = self.store.ensure_job(Housekeeping::first(self.clock.now())).await {
            tracing::warn!(%error, "cannot schedule housekeeping; it is tried again at the next start");
        }
        let mut kinds = JoinSet::new();
        for (kind, handler) in &self.handlers {
            let concurrency = self.settings.concurrency.get(kind).copied().unwrap_or(1);
            kinds.spawn(Arc::clone(&self).run_kind(*kind, Arc::clone(handler), concurrency, stop.clone()));
        }
        while kinds.join_next().await.is_some() {}
        match self.store.release_jobs(&self.worker, self.clock.now()).await {
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
            let now = self.clock.now();
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
        let attempt = handler.run(&job, self.clock.now()).await;
        let elapsed = started.elapsed();
        self.metrics.job_running(job.kind, -1);
        let now = self.clock.now();
        let result = match &attempt.result {
            Ok(()) => JobResult::Done,
            Err(failure) if failure.deferred => {
                // Never further off than the longest backoff: deferred again is cheap.
                let wait = failure
                    .retry_after
                    .unwrap_or(self.settings.backoff.base)
                    .min(self.settings.backoff.max);
                JobResult::Deferred {
                    due_at: now + chrono::TimeDelta::from_std(wait).unwrap_or(chrono::TimeDelta::zero()),
                    reason: failure.message.clone(),
                }
            }
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
        // A deferred job was not attempted: its refusal is counted where it happened.
        if !matches!(result, JobResult::Deferred { .. }) {
            self.metrics
                .job_attempted(job.kind, attempt.result.is_ok(), dead, elapsed);
        }
        if let Some(delivery) = &attempt.delivery {
            let outcome = match &result {
                JobResult::Done => Delivery::Sent,
                JobResult::Retry { .. } | JobResult::Deferred { .. } => Delivery::Failed,
                JobResult::Dead { .. } => Delivery::Dead,
            };
            self.metrics.delivery_attempted(delivery.channel, outcome, elapsed);
        }
        match &result {
            JobResult::Done => tracing::debug!(job = %job.id, job_type = %job.kind, attempt = job.attempts, "job done"),
            JobResult::Retry { due_at, error } => {
                tracing::info!(job = %job.id, job_type = %job.kind, attempt = job.attempts, %error, %due_at, "job failed; retrying")
            }
            JobResult::Deferred { due_at, reason } => {
                tracing::debug!(job = %job.id, job_type = %job.kind, %reason, %due_at, "job deferred, not attempted")
            }
            JobResult::Dead { error } => {
                tracing::warn!(job = %job.id, job_type = %job.kind, attempts = job.attempts, %error, "job failed for the last time; it is dead")
            }
        }
        let mut entries = attempt.entries;
        if let Some(delivery) = &attempt.delivery {
            let message = delivery_message(&delivery.what, &job, &result);
            entries.extend(delivery.incidents.iter().map(|incident| {
                TimelineEntry::new(*incident, now, TimelineKind::Notified, "notifier", message.clone())
            }));
        }
        let follow_ups = if matches!(result, JobResult::Done) {
            attempt.follow_ups
        } else {
            Vec::new()
        };
        let finish = JobFinish {
            id: job.id,
            worker: self.worker.clone(),
            result,
            entries,
            follow_ups,
            escalating: attempt.escalating,
            now,
        };
        match self.store.finish_job(finish).await {
            Ok(Finished::Recorded) => {
                if let Some((policy, level)) = &attempt.escalated {
                    self.metrics.escalated(policy, *level);
                }
            }
            Ok(Finished::Stopped) => {
                tracing::debug!(job = %job.id, "the incident was acknowledged or resolved while its level ran; it stops")
            }
            Ok(Finished::Lost) => {
                tracing::warn!(job = %job.id, "the job's lease ran out before it finished; another worker has it")
            }
            Err(error) => {
                tracing::error!(job = %job.id, %error, "cannot record the job's attempt; it runs again when its lease runs out")
            }
        }
    }
}

/// A delivery attempt as the timeline tells it.
fn delivery_message(what: &str, job: &Job, result: &JobResult) -> String {
    let attempt = job.attempts;
    match result {
        JobResult::Done => format!("notified {what}: delivered (attempt {attempt})"),
        JobResult::Retry { due_at, error } => format!(
            "notifying {what} failed (attempt {attempt} of {}): {error}; next attempt at {}",
            job.max_attempts,
            due_at.format("%Y-%m-%dT%H:%M:%SZ")
        ),
        JobResult::Dead { error } => format!("notifying {what} failed (attempt {attempt}), given up: {error}"),
        JobResult::Deferred { due_at, reason } => format!(
            "notifying {what} deferred, not attempted: {reason}; next try at {}",
            due_at.format("%Y-%m-%dT%H:%M:%SZ")
        ),
    }
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
