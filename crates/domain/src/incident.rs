//! Incidents, their timeline, and the filters used to list them.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::event::Event;
use crate::triage::{Classification, Insights};
use crate::vocabulary::{Category, Severity, Source, State};

/// An incident id: a UUIDv7, so ids sort by creation time (the list cursor relies on it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema), schema(value_type = String, format = Uuid))]
#[serde(transparent)]
pub struct IncidentId(pub Uuid);

impl IncidentId {
    pub fn generate() -> Self {
        IncidentId(Uuid::now_v7())
    }
}

impl fmt::Display for IncidentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Text that is not an incident id in the form ids are written (a hyphenated UUID).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not an incident id (a hyphenated UUID)")]
pub struct InvalidId;

impl FromStr for IncidentId {
    type Err = InvalidId;

    /// Only the hyphenated form (`0190c2e4-…`, 36 characters), the one ids are written in:
    /// the OpenAPI document can then say exactly what an id is.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text.len() != 36 {
            return Err(InvalidId);
        }
        Uuid::parse_str(text).map(IncidentId).map_err(|_| InvalidId)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
pub struct Incident {
    pub id: IncidentId,
    pub title: String,
    pub description: String,
    pub severity: Severity,
    pub category: Category,
    pub source: Source,
    pub state: State,
    pub fingerprint: String,
    pub labels: BTreeMap<String, String>,
    pub occurrence_count: i64,
    pub first_seen: DateTime<Utc>,
    pub last_seen: DateTime<Utc>,
    pub assignee: Option<String>,
    pub team: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub acknowledged_at: Option<DateTime<Utc>>,
    pub resolved_at: Option<DateTime<Utc>>,
    pub resolution_note: Option<String>,
    /// The route that matched when the incident was opened (its later notifications go
    /// to that route's channels).
    pub route: Option<String>,
    /// The escalation policy the route gave the incident.
    pub escalation_policy: Option<String>,
    /// The escalation level due next, while the incident escalates (open, unacknowledged,
    /// and its policy has a level left).
    pub next_escalation: Option<PendingEscalation>,
    /// What triage decided, when the sender left the severity or the category to it (or a
    /// person reclassified the incident).
    pub classification: Option<Classification>,
    /// A model's summary, probable cause and remediation steps, once generated.
    pub insights: Option<Insights>,
}

/// The next level of an incident's escalation, and when it is due.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
pub struct PendingEscalation {
    /// Counted from 1.
    pub level: u32,
    pub due_at: DateTime<Utc>,
}

impl Incident {
    /// A NEW incident opened by its first event.
    pub fn open(id: IncidentId, event: &Event, now: DateTime<Utc>) -> Self {
        Incident {
            id,
            title: event.title.clone(),
            description: event.description.clone(),
            severity: event.severity,
            category: event.category,
            source: event.source,
            state: State::New,
            fingerprint: event.fingerprint.clone(),
            labels: event.labels.clone(),
            occurrence_count: 1,
            first_seen: event.occurred_at,
            last_seen: event.occurred_at,
            assignee: None,
            team: None,
            created_at: now,
            updated_at: now,
            acknowledged_at: None,
            resolved_at: None,
            resolution_note: None,
            route: None,
            escalation_policy: None,
            next_escalation: None,
            classification: event.classification.clone(),
            insights: None,
        }
    }

    /// True while an escalation may notify someone: open, and nobody has acknowledged.
    pub fn escalates(&self) -> bool {
        matches!(
            self.state,
            crate::vocabulary::State::New | crate::vocabulary::State::Assigned
        ) && self.acknowledged_at.is_none()
    }
}

/// What kind of change a timeline entry records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum TimelineKind {
    Created,
    EventAttached,
    Classified,
    /// The route that matched, as a store of the first jobs schema wrote it; the route is
    /// now named in the `created` entry, and no entry of this kind is written any more.
    Routed,
    Assigned,
    Acknowledged,
    Started,
    Notified,
    /// A model's summary, probable cause and remediation steps (or why there are none).
    Insights,
    /// A level of the incident's escalation ran (or was held back by a silence).
    Escalated,
    /// A silence held a notification or an escalation back.
    Silenced,
    Comment,
    Resolved,
}

impl TimelineKind {
    pub const fn as_str(self) -> &'static str {
        match self {
            TimelineKind::Created => "created",
            TimelineKind::EventAttached => "event_attached",
            TimelineKind::Classified => "classified",
            TimelineKind::Routed => "routed",
            TimelineKind::Assigned => "assigned",
            TimelineKind::Acknowledged => "acknowledged",
            TimelineKind::Started => "started",
            TimelineKind::Notified => "notified",
            TimelineKind::Insights => "insights",
            TimelineKind::Escalated => "escalated",
            TimelineKind::Silenced => "silenced",
            TimelineKind::Comment => "comment",
            TimelineKind::Resolved => "resolved",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        serde_json::from_value(serde_json::Value::String(text.to_owned())).ok()
    }
}

/// One append-only entry of an incident's history.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
pub struct TimelineEntry {
    pub incident_id: IncidentId,
    pub at: DateTime<Utc>,
    pub kind: TimelineKind,
    pub actor: String,
    pub message: String,
}

impl TimelineEntry {
    pub fn new(
        incident_id: IncidentId,
        at: DateTime<Utc>,
        kind: TimelineKind,
        actor: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        TimelineEntry {
            incident_id,
            at,
            kind,
            actor: actor.into(),
            message: message.into(),
        }
    }
}

/// Which incidents to list. Empty vectors mean "any".
#[derive(Debug, Clone, Default, PartialEq)]
pub struct IncidentFilter {
    pub states: Vec<State>,
    pub severities: Vec<Severity>,
    pub sources: Vec<Source>,
    pub categories: Vec<Category>,
}

/// A page request: newest first, strictly older than `before` when given.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PageRequest {
    pub limit: u32,
    pub before: Option<IncidentId>,
}

/// A page of an incident's timeline (or of its comments), oldest first: the `limit`
/// entries that follow the entry `after` (the `next` of the previous page), or the first
/// ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryPageRequest {
    pub limit: u32,
    pub after: Option<EntryCursor>,
}

/// Where the next page of a timeline starts: the store's number of the last entry read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EntryCursor(pub i64);

/// Entries of one page, and where the next page starts (none after the last page).
#[derive(Debug, Clone, PartialEq)]
pub struct EntryPage {
    pub entries: Vec<TimelineEntry>,
    pub next: Option<EntryCursor>,
}

/// Every list pages the same way (DESIGN §3): `limit` 1 to 500, 100 by default.
pub const DEFAULT_PAGE_SIZE: u32 = 100;
pub const MAX_PAGE_SIZE: u32 = 500;

/// What one event did, in the order the events came.
#[derive(Debug, Clone, PartialEq)]
pub enum IngestOutcome {
    /// A new incident was opened. (Boxed, as is `Resolved`'s transition: a store moves
    /// outcomes by the thousand, and most are the small `Deduplicated`.)
    Created(Box<Incident>),
    /// The event was counted on the open incident with its fingerprint.
    Deduplicated {
        incident_id: IncidentId,
        occurrence_count: i64,
        source: Source,
        /// The incident's severity and category after the event.
        severity: Severity,
        category: Category,
        /// The severity before, when the event raised it.
        raised_from: Option<Severity>,
    },
    /// The same occurrence again (same fingerprint and `occurred_at` as the last one
    /// counted: a retry, a re-sent Alertmanager group): nothing was written.
    Redelivered {
        incident_id: IncidentId,
        occurrence_count: i64,
        severity: Severity,
        category: Category,
    },
    /// A `resolved` event resolved the open incident.
    Resolved(Box<crate::lifecycle::Transition>),
    /// A `resolved` event for which no incident was open.
    Ignored,
}

impl IngestOutcome {
    pub fn incident_id(&self) -> Option<IncidentId> {
        match self {
            IngestOutcome::Created(incident) => Some(incident.id),
            IngestOutcome::Deduplicated { incident_id, .. } | IngestOutcome::Redelivered { incident_id, .. } => {
                Some(*incident_id)
            }
            IngestOutcome::Resolved(transition) => Some(transition.after.id),
            IngestOutcome::Ignored => None,
        }
    }

    /// `created`, `deduplicated`, `redelivered`, `resolved` or `ignored`.
    pub const fn name(&self) -> &'static str {
        match self {
            IngestOutcome::Created(_) => "created",
            IngestOutcome::Deduplicated { .. } => "deduplicated",
            IngestOutcome::Redelivered { .. } => "redelivered",
            IngestOutcome::Resolved(_) => "resolved",
            IngestOutcome::Ignored => "ignored",
        }
    }
}
