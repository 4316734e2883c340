//! The domain of llm-incident-manager: events, incidents and their lifecycle.
//!
//! No I/O and no clock of its own: every function takes `now` and returns plain data,
//! so the rules are tested without a database or a server.

// First: its `closed_vocabulary!` macro serves the modules below.
#[macro_use]
pub mod vocabulary;

pub mod auth;
pub mod classifier;
pub mod duration;
pub mod errors;
pub mod escalation;
pub mod event;
pub mod fingerprint;
pub mod fit;
pub mod incident;
pub mod jobs;
pub mod lifecycle;
pub mod matcher;
pub mod oncall;
pub mod reactions;
pub mod routing;
pub mod silence;
pub mod text;
pub mod triage;

pub use errors::ErrorKind;
pub use event::{Event, EventRules, FieldError, RawBatch, RawEvent};
pub use incident::{
    EntryCursor, EntryPage, EntryPageRequest, Incident, IncidentFilter, IncidentId, IngestOutcome, PageRequest,
    PendingEscalation, TimelineEntry, TimelineKind,
};
pub use jobs::{Job, JobId, JobKind, JobPayload, JobResult, JobState, NewJob, NotifyEvent};
pub use lifecycle::{Action, IllegalTransition, Transition};
pub use reactions::{Opening, Reactions};
pub use vocabulary::{Category, ChannelKind, EventStatus, Severity, Source, State, UnknownValue};
