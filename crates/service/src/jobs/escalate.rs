//! The `escalate` jobs: one level of one incident's escalation. A level notifies its
//! targets (each delivery a `notify` job), writes the level after it (the next of the run,
//! or level 1 of a repeat), and says so on the timeline, all in the transaction that
//! finishes it, and only while the incident still escalates: an acknowledgement that came
//! first stops it (`JobFinish::escalating`). A silence that holds the incident puts the
//! escalation off until the silence ends, when it starts again from level 1.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use lim_domain::escalation::{Step, Target};
use lim_domain::jobs::Escalation;
use lim_domain::silence;
use lim_domain::{Job, JobPayload, NewJob, NotifyEvent, TimelineEntry, TimelineKind};
use lim_store::Store;

use super::notify::{SilenceCache, held_by};
use super::{Attempt, Failure, Handler};
use crate::live::{Live, LiveConfig};

/// The actor of escalation entries on the timeline.
const ACTOR: &str = "escalation";

pub struct Escalator {
    store: Arc<dyn Store>,
    live: Arc<LiveConfig>,
    silences: Arc<SilenceCache>,
}

impl Escalator {
    pub fn new(store: Arc<dyn Store>, live: Arc<LiveConfig>, silences: Arc<SilenceCache>) -> Escalator {
        Escalator { store, live, silences }
    }
}

#[async_trait]
impl Handler for Escalator {
    async fn run(&self, job: &Job, now: DateTime<Utc>) -> Attempt {
        let JobPayload::Escalate(escalation) = &job.payload else {
            return Attempt::failed(Failure::permanent(format!("job {} is no escalation level", job.id)));
        };
        let Some(incident_id) = job.incident_id else {
            return Attempt::failed(Failure::permanent("an escalation level names no incident"));
        };
        let incident = match self.store.get_incident(incident_id).await {
            Ok(Some(incident)) => incident,
            Ok(None) => return Attempt::done(),
            Err(error) => return Attempt::failed(Failure::transient(format!("cannot read the incident: {error}"))),
        };
        let stopped = Attempt {
            escalating: Some(incident_id),
            ..Attempt::done()
        };
        if !incident.escalates() {
            return stopped;
        }
        let entry = |kind, message| TimelineEntry::new(incident_id, now, kind, ACTOR, message);
        let live = self.live.current();
        let Some(policy) = live.reactions.policies.get(&escalation.policy) else {
            let message = format!(
                "escalation stopped at level {}: policy `{}` is no longer configured",
                escalation.level, escalation.policy
            );
            return Attempt {
                entries: vec![entry(TimelineKind::Escalated, message)],
                ..stopped
            };
        };
        let silences = match self.silences.active(self.store.as_ref(), now).await {
            Ok(silences) => silences,
            Err(error) => return Attempt::failed(Failure::transient(format!("cannot read the silences: {error}"))),
        };
        if let Some(silence) = silence::holding(&silences, &incident, now) {
            // The escalation starts again from level 1 when the silence ends (sooner,
            // if the silence is deleted: the store then makes this level due).
            let held = Escalation {
                policy: policy.name.clone(),
                level: 1,
                run: 0,
                started_at: silence.ends_at,
                held_by: Some(silence.id),
            };
            let first = policy.first_step(silence.ends_at);
            let message = format!(
                "escalation held at level {}: {}; it starts again from level 1 then",
                escalation.level,
                held_by(silence)
            );
            return Attempt {
                entries: vec![entry(TimelineKind::Silenced, message)],
                follow_ups: vec![NewJob::escalate(incident_id, held, first.due_at, job.max_attempts)],
                ..stopped
            };
        }
        let Some(level) = policy.level(escalation.level) else {
            return stopped;
        };
        let mut follow_ups = Vec::new();
        let mut notified = Vec::new();
        for target in &level.notify {
            notified.push(notify(
                &live,
                target,
                incident_id,
                escalation.level,
                now,
                &mut follow_ups,
            ));
        }
        let step = Step {
            level: escalation.level,
            run: escalation.run,
            due_at: job.due_at,
        };
        if let Some(next) = policy.next_step(escalation.started_at, step) {
            let next_level = Escalation {
                level: next.level,
                run: next.run,
                held_by: None,
                ..escalation.clone()
            };
            follow_ups.push(NewJob::escalate(incident_id, next_level, next.due_at, job.max_attempts));
        }
        let repeat = if escalation.run > 0 {
            format!(" (repeat {} of {})", escalation.run, policy.repeat)
        } else {
            String::new()
        };
        let message = format!(
            "escalated to level {}{repeat}: notified {}",
            escalation.level,
            notified.join(", ")
        );
        Attempt {
            entries: vec![entry(TimelineKind::Escalated, message)],
            follow_ups,
            // Each level reached counts once per incident: a repeat is not a new level.
            escalated: (escalation.run == 0).then(|| (policy.name.clone(), escalation.level)),
            ..stopped
        }
    }
}

/// Writes the deliveries that reach `target` and says whom they reach (`bo through
/// oncall-mail`, `ops-webhook`, `bo (on call on primary) through oncall-mail`).
fn notify(
    live: &Live,
    target: &Target,
    incident: lim_domain::IncidentId,
    level: u32,
    now: DateTime<Utc>,
    jobs: &mut Vec<NewJob>,
) -> String {
    let reactions = &live.reactions;
    let person = |name: &str, note: &str, jobs: &mut Vec<NewJob>| {
        let channels = live.contact_channels.get(name).cloned().unwrap_or_default();
        if channels.is_empty() {
            return format!("nobody: {name}{note} has no contact configured");
        }
        for channel in &channels {
            jobs.push(NewJob::notify_person(
                incident,
                channel,
                name,
                NotifyEvent::Escalated,
                Some(level),
                reactions.attempts(channel),
                now,
            ));
        }
        format!("{name}{note} through {}", channels.join(" and "))
    };
    match target {
        Target::Channel(channel) => {
            jobs.push(NewJob::notify(
                incident,
                channel,
                NotifyEvent::Escalated,
                Some(level),
                reactions.attempts(channel),
                now,
            ));
            channel.clone()
        }
        Target::Person(name) => person(name, "", jobs),
        Target::OnCall(schedule) => match reactions.schedules.get(schedule).and_then(|found| found.oncall(now)) {
            Some(shift) => person(&shift.person, &format!(" (on call on {schedule})"), jobs),
            None => format!("nobody: no one is on call on {schedule}"),
        },
    }
}
