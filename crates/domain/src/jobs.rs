//! Background jobs as data: what a job is, the work it carries, and when a failed one is
//! tried again. The store keeps them (a job caused by an incident change is written in
//! the change's transaction); the executor runs them.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::Digest;
use uuid::Uuid;

use crate::incident::IncidentId;

closed_vocabulary! {
    /// What a job does (the `job_type` metric label).
    JobKind, "job kind" {
        Notify => "notify",
        Escalate => "escalate",
        LlmClassify => "llm_classify",
        LlmInsights => "llm_insights",
        Housekeeping => "housekeeping",
    }
}

closed_vocabulary! {
    /// Where a job is: waiting (now or later), claimed by a worker, finished, given up
    /// after its attempts (kept with its last error, and retried only by hand), or
    /// cancelled before it ran (an escalation level that an acknowledgement stopped).
    JobState, "job state" {
        Queued => "queued",
        Running => "running",
        Done => "done",
        Dead => "dead",
        Cancelled => "cancelled",
    }
}

closed_vocabulary! {
    /// The lifecycle change a notification tells of (the webhook body's `type` is
    /// `incident.` and this), and the words of a route's `notify_on`.
    NotifyEvent, "notification event" {
        Created => "created",
        Escalated => "escalated",
        Acknowledged => "acknowledged",
        Resolved => "resolved",
    }
}

/// A job's number in the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[serde(transparent)]
pub struct JobId(pub i64);

impl std::fmt::Display for JobId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// The work a job carries, stored as JSON with its `type`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum JobPayload {
    Notify(Notification),
    Escalate(Escalation),
    /// Ask the configured LLM provider for the incident's classification.
    LlmClassify,
    /// Ask the configured LLM provider for the incident's insights.
    LlmInsights,
    Housekeeping,
}

impl JobPayload {
    pub fn kind(&self) -> JobKind {
        match self {
            JobPayload::Notify(_) => JobKind::Notify,
            JobPayload::Escalate(_) => JobKind::Escalate,
            JobPayload::LlmClassify => JobKind::LlmClassify,
            JobPayload::LlmInsights => JobKind::LlmInsights,
            JobPayload::Housekeeping => JobKind::Housekeeping,
        }
    }

    /// The payload as the store keeps it: JSON with its `type`. A plain delivery's, written
    /// for every change that notifies (on the SQLite writer, among others), is put together
    /// by hand when its channel's name needs no escaping: the same text `serde_json`
    /// writes, for a third of the instructions. Every other payload is serialized.
    pub fn to_json(&self) -> String {
        if let JobPayload::Notify(Notification {
            channel,
            event,
            level: None,
            person: None,
            group: None,
        }) = self
            && !channel.bytes().any(|byte| byte == b'"' || byte == b'\\' || byte < 0x20)
        {
            let event = event.as_str();
            let mut text = String::with_capacity(40 + channel.len() + event.len());
            text.push_str(r#"{"type":"notify","channel":""#);
            text.push_str(channel);
            text.push_str(r#"","event":""#);
            text.push_str(event);
            text.push_str(r#""}"#);
            return text;
        }
        serde_json::to_string(self).expect("a job payload always serializes")
    }
}

/// One delivery to one channel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notification {
    pub channel: String,
    pub event: NotifyEvent,
    /// The escalation level, counted from 1; none for other notifications.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub level: Option<u32>,
    /// The person reached through the channel (an escalation to a person or to whoever
    /// is on call): the channel's recipients are replaced by that person's contact.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub person: Option<String>,
    /// A grouped notification (a route's `group_wait`): the incidents that the route
    /// opened within the window, instead of one incident.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<GroupWindow>,
}

/// The incidents one route opened within one `group_wait`, told in one notification.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupWindow {
    pub id: Uuid,
    pub route: String,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
}

/// One level of an incident's escalation, due when the policy says.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Escalation {
    pub policy: String,
    /// Counted from 1.
    pub level: u32,
    /// 0 for the first run of the levels, then one more for each repeat.
    #[serde(default)]
    pub run: u32,
    /// When the escalation started (the incident's creation, or the end of the silence
    /// that held it): every level's delay counts from here.
    pub started_at: DateTime<Utc>,
    /// The silence that held the escalation back, when this level waits for its end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held_by: Option<crate::silence::SilenceId>,
}

/// The chain of an incident's escalation levels (each waits for the one before), whose
/// last job is the pending level that an acknowledgement cancels.
pub const ESCALATION_CHAIN: &str = "escalate";

/// A job to write.
#[derive(Debug, Clone, PartialEq)]
pub struct NewJob {
    pub payload: JobPayload,
    pub incident_id: Option<IncidentId>,
    pub due_at: DateTime<Utc>,
    pub max_attempts: u32,
    /// The jobs of one incident with one chain run one at a time, in the order they were
    /// written (a delivery chains by its channel: an incident's created notification
    /// reaches a channel before its resolution does). None for a job that waits for none.
    pub chain: Option<String>,
}

impl NewJob {
    /// A delivery of `event` on `incident` to `channel`, due at once.
    pub fn notify(
        incident: IncidentId,
        channel: &str,
        event: NotifyEvent,
        level: Option<u32>,
        max_attempts: u32,
        now: DateTime<Utc>,
    ) -> NewJob {
        NewJob {
            payload: JobPayload::Notify(Notification {
                channel: channel.to_owned(),
                event,
                level,
                person: None,
                group: None,
            }),
            incident_id: Some(incident),
            due_at: now,
            max_attempts,
            chain: Some(channel.to_owned()),
        }
    }

    /// A delivery to `person` through `channel` (one of their contacts), due at once; it
    /// chains with the person's other deliveries through that channel.
    pub fn notify_person(
        incident: IncidentId,
        channel: &str,
        person: &str,
        event: NotifyEvent,
        level: Option<u32>,
        max_attempts: u32,
        now: DateTime<Utc>,
    ) -> NewJob {
        let mut job = NewJob::notify(incident, channel, event, level, max_attempts, now);
        if let JobPayload::Notify(notification) = &mut job.payload {
            notification.person = Some(person.to_owned());
        }
        job.chain = Some(format!("{channel}:{person}"));
        job
    }

    /// A grouped delivery of the incidents in `window` to `channel`, due when the window
    /// closes. It belongs to no one incident.
    pub fn notify_group(channel: &str, window: GroupWindow, max_attempts: u32) -> NewJob {
        NewJob {
            due_at: window.to,
            payload: JobPayload::Notify(Notification {
                channel: channel.to_owned(),
                event: NotifyEvent::Created,
                level: None,
                person: None,
                group: Some(window),
            }),
            incident_id: None,
            max_attempts,
            chain: None,
        }
    }

    /// A question to the LLM provider about `incident` (`LlmClassify` or `LlmInsights`),
    /// due at once.
    pub fn llm(incident: IncidentId, payload: JobPayload, max_attempts: u32, now: DateTime<Utc>) -> NewJob {
        NewJob {
            payload,
            incident_id: Some(incident),
            due_at: now,
            max_attempts,
            chain: None,
        }
    }

    /// The escalation level `escalation`, due at `due_at`; it belongs to the incident's
    /// escalation chain.
    pub fn escalate(incident: IncidentId, escalation: Escalation, due_at: DateTime<Utc>, max_attempts: u32) -> NewJob {
        NewJob {
            payload: JobPayload::Escalate(escalation),
            incident_id: Some(incident),
            due_at,
            max_attempts,
            chain: Some(ESCALATION_CHAIN.to_owned()),
        }
    }
}

/// A stored job.
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    pub id: JobId,
    pub kind: JobKind,
    pub payload: JobPayload,
    pub incident_id: Option<IncidentId>,
    pub state: JobState,
    pub due_at: DateTime<Utc>,
    /// Attempts started so far (the one running included).
    pub attempts: u32,
    pub max_attempts: u32,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Job {
    /// The id every attempt of this job's delivery carries (the webhook's `webhook-id`), so
    /// that a receiver can drop a duplicate: a name-based UUID (version 8) of the incident,
    /// whose random bits make it unique beyond this database, and the job.
    pub fn delivery_id(&self) -> Uuid {
        let mut digest = sha2::Sha256::new();
        digest.update(self.incident_id.map_or(Uuid::nil(), |id| id.0).as_bytes());
        digest.update(self.id.0.to_be_bytes());
        let bytes: [u8; 16] = digest.finalize()[..16].try_into().expect("SHA-256 has 32 bytes");
        uuid::Builder::from_custom_bytes(bytes).into_uuid()
    }
}

/// How one attempt of a job ended, as the store records it.
#[derive(Debug, Clone, PartialEq)]
pub enum JobResult {
    Done,
    /// Try again at `due_at`.
    Retry {
        due_at: DateTime<Utc>,
        error: String,
    },
    /// No more attempts: parked with its last error.
    Dead {
        error: String,
    },
    /// Not attempted (what it needs refused it before trying, as an open circuit does):
    /// queued again for `due_at`, the attempt its claim counted given back.
    Deferred {
        due_at: DateTime<Utc>,
        reason: String,
    },
}

/// When to try a failed job again.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    pub base: Duration,
    pub max: Duration,
}

impl Backoff {
    /// The wait after failed attempt number `attempt` (from 1): `base`, doubled at every
    /// attempt, at most `max`, of which a random part (`jitter` in 0..1 scales the upper
    /// half) keeps failing jobs from retrying in step. A receiver's `Retry-After` is
    /// honoured, up to `max`.
    pub fn delay(&self, attempt: u32, jitter: f64, retry_after: Option<Duration>) -> Duration {
        let exponent = attempt.saturating_sub(1).min(30);
        let full = self.base.saturating_mul(1 << exponent).min(self.max);
        let jittered = full / 2 + full.mul_f64(jitter.clamp(0.0, 1.0) / 2.0);
        match retry_after {
            Some(asked) => asked.min(self.max).max(jittered),
            None => jittered,
        }
    }

    /// What an attempt that failed with `error` leads to: another try, or the dead state
    /// once `attempts` of `max_attempts` are spent or the failure is `permanent`.
    #[allow(clippy::too_many_arguments)]
    pub fn after_failure(
        &self,
        attempts: u32,
        max_attempts: u32,
        permanent: bool,
        error: String,
        retry_after: Option<Duration>,
        jitter: f64,
        now: DateTime<Utc>,
    ) -> JobResult {
        if permanent || attempts >= max_attempts {
            return JobResult::Dead { error };
        }
        let wait = self.delay(attempts, jitter, retry_after);
        let due_at = now + chrono::TimeDelta::from_std(wait).unwrap_or(chrono::TimeDelta::MAX);
        JobResult::Retry { due_at, error }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backoff() -> Backoff {
        Backoff {
            base: Duration::from_secs(1),
            max: Duration::from_secs(600),
        }
    }

    fn job(id: i64, incident: Option<IncidentId>) -> Job {
        let now = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let new = NewJob::notify(IncidentId::generate(), "ops", NotifyEvent::Created, None, 3, now);
        Job {
            id: JobId(id),
            kind: JobKind::Notify,
            payload: new.payload,
            incident_id: incident,
            state: JobState::Queued,
            due_at: now,
            attempts: 0,
            max_attempts: 3,
            last_error: None,
            created_at: now,
            updated_at: now,
        }
    }

    #[test]
    fn a_delivery_id_belongs_to_one_job_of_one_incident() {
        let incident = Some(IncidentId::generate());
        let id = job(7, incident).delivery_id();
        assert_eq!(id, job(7, incident).delivery_id(), "the same for every attempt");
        assert_eq!(id.get_version_num(), 8);
        assert_ne!(id, job(8, incident).delivery_id());
        assert_ne!(
            id,
            job(7, Some(IncidentId::generate())).delivery_id(),
            "another database's job 7"
        );
    }

    #[test]
    fn the_wait_doubles_stays_within_its_jitter_and_its_maximum() {
        let backoff = backoff();
        assert_eq!(backoff.delay(1, 0.0, None), Duration::from_millis(500));
        assert_eq!(backoff.delay(1, 1.0, None), Duration::from_secs(1));
        assert_eq!(backoff.delay(3, 1.0, None), Duration::from_secs(4));
        assert_eq!(backoff.delay(40, 1.0, None), Duration::from_secs(600));
        assert_eq!(backoff.delay(40, 0.0, None), Duration::from_secs(300));
    }

    #[test]
    fn retry_after_is_honoured_up_to_the_maximum() {
        let backoff = backoff();
        assert_eq!(
            backoff.delay(1, 0.5, Some(Duration::from_secs(30))),
            Duration::from_secs(30)
        );
        assert_eq!(
            backoff.delay(1, 0.5, Some(Duration::from_secs(3600))),
            Duration::from_secs(600)
        );
        assert_eq!(
            backoff.delay(5, 1.0, Some(Duration::from_secs(1))),
            Duration::from_secs(16)
        );
    }

    #[test]
    fn a_job_dies_when_its_attempts_are_spent_or_the_failure_is_permanent() {
        let now = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let backoff = backoff();
        let retry = backoff.after_failure(2, 8, false, "500".into(), None, 1.0, now);
        assert_eq!(
            retry,
            JobResult::Retry {
                due_at: now + chrono::TimeDelta::seconds(2),
                error: "500".into()
            }
        );
        assert!(matches!(
            backoff.after_failure(8, 8, false, "500".into(), None, 1.0, now),
            JobResult::Dead { .. }
        ));
        assert!(matches!(
            backoff.after_failure(1, 8, true, "400".into(), None, 1.0, now),
            JobResult::Dead { .. }
        ));
    }

    #[test]
    fn a_payload_keeps_its_type_in_json() {
        let job = NewJob::notify(IncidentId::generate(), "ops", NotifyEvent::Created, None, 8, Utc::now());
        let json = serde_json::to_value(&job.payload).unwrap();
        assert_eq!(json["type"], "notify");
        assert_eq!(json["channel"], "ops");
        assert_eq!(json["event"], "created");
        assert_eq!(serde_json::from_value::<JobPayload>(json).unwrap(), job.payload);
        assert_eq!(JobPayload::Housekeeping.kind(), JobKind::Housekeeping);
    }

    #[test]
    fn a_payload_written_by_hand_is_what_serde_writes() {
        let now = Utc::now();
        let incident = IncidentId::generate();
        let window = GroupWindow {
            id: Uuid::now_v7(),
            route: "all".into(),
            from: now,
            to: now,
        };
        let mut payloads = vec![
            NewJob::notify(incident, "ops", NotifyEvent::Created, None, 8, now).payload,
            NewJob::notify(incident, "ops", NotifyEvent::Escalated, Some(2), 8, now).payload,
            NewJob::notify_group("ops", window, 8).payload,
            JobPayload::Housekeeping,
            JobPayload::LlmClassify,
        ];
        for channel in [
            "pager-1.eu_west",
            "équipe ☎",
            "a \"quoted\" name",
            "back\\slash",
            "tab\there",
            "\u{7f}\u{85}",
        ] {
            for event in NotifyEvent::ALL {
                payloads.push(NewJob::notify(incident, channel, *event, None, 8, now).payload);
            }
        }
        for payload in payloads {
            let text = payload.to_json();
            assert_eq!(text, serde_json::to_string(&payload).unwrap());
            assert_eq!(serde_json::from_str::<JobPayload>(&text).unwrap(), payload);
        }
    }
}
