//! The domain of llm-incident-manager: events, incidents and their lifecycle.
//!
//! No I/O and no clock of its own: every function takes `now` and returns plain data,
//! so the rules are tested without a database or a server.

pub mod duration;
pub mod errors;
pub mod event;
pub mod fingerprint;
pub mod fit;
pub mod incident;
pub mod lifecycle;
pub mod text;
pub mod vocabulary;

pub use errors::ErrorKind;
pub use event::{Event, EventRules, FieldError, RawBatch, RawEvent};
pub use incident::{
    EntryCursor, EntryPage, EntryPageRequest, Incident, IncidentFilter, IncidentId, IngestOutcome, PageRequest,
    TimelineEntry, TimelineKind,
};
pub use lifecycle::{Action, IllegalTransition, Transition};
pub use vocabulary::{Category, EventStatus, Severity, Source, State, UnknownValue};
