//! Events as senders write them, and their validation into [`Event`].

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Deserialize;

use crate::fingerprint::derive_fingerprint;
use crate::vocabulary::{Category, EventStatus, Severity, Source, UnknownValue};

pub const MAX_TITLE_CHARS: usize = 512;
pub const MAX_DESCRIPTION_CHARS: usize = 16 * 1024;
pub const MAX_FINGERPRINT_CHARS: usize = 256;
pub const MAX_LABELS: usize = 64;
pub const MAX_LABEL_KEY_CHARS: usize = 128;
pub const MAX_LABEL_VALUE_CHARS: usize = 1024;
pub const MAX_BATCH_EVENTS: usize = 1000;

/// An event exactly as a sender wrote it; nothing is trusted yet.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RawEvent {
    pub source: Option<String>,
    pub title: Option<String>,
    pub description: Option<String>,
    pub severity: Option<String>,
    pub category: Option<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    pub fingerprint: Option<String>,
    pub status: Option<String>,
    pub occurred_at: Option<DateTime<Utc>>,
}

/// A validated event, ready for the dedup decision.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub source: Source,
    pub title: String,
    pub description: String,
    pub severity: Severity,
    pub category: Category,
    pub labels: BTreeMap<String, String>,
    pub fingerprint: String,
    pub status: EventStatus,
    pub occurred_at: DateTime<Utc>,
}

/// Why an event (or one of its fields) was refused. `field` is the JSON path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct FieldError {
    pub field: String,
    pub problem: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, problem: impl Into<String>) -> Self {
        FieldError {
            field: field.into(),
            problem: problem.into(),
        }
    }

    /// The same error for the event at `index` of a batch.
    pub fn in_batch(self, index: usize) -> Self {
        FieldError {
            field: format!("[{index}].{}", self.field),
            problem: self.problem,
        }
    }
}

impl RawEvent {
    /// Checks every field and fills the defaults: severity P2, category `other`,
    /// status `firing`, `occurred_at` now, fingerprint from source + title + labels.
    pub fn validate(self, now: DateTime<Utc>) -> Result<Event, FieldError> {
        let source: Source = parse_required(self.source, "source")?;
        let title = required_text(self.title, "title", MAX_TITLE_CHARS)?;
        let description = optional_text(self.description, "description", MAX_DESCRIPTION_CHARS)?;
        let severity = parse_optional(self.severity, "severity")?.unwrap_or_default();
        let category = parse_optional(self.category, "category")?.unwrap_or_default();
        let status = parse_optional(self.status, "status")?.unwrap_or(EventStatus::Firing);
        validate_labels(&self.labels)?;
        let fingerprint = match self.fingerprint {
            Some(given) => required_text(Some(given), "fingerprint", MAX_FINGERPRINT_CHARS)?,
            None => derive_fingerprint(source, &title, &self.labels),
        };
        Ok(Event {
            source,
            title,
            description,
            severity,
            category,
            labels: self.labels,
            fingerprint,
            status,
            occurred_at: self.occurred_at.unwrap_or(now),
        })
    }
}

/// Validates a whole batch; the first bad event refuses the batch, naming its index.
pub fn validate_batch(raw: Vec<RawEvent>, now: DateTime<Utc>) -> Result<Vec<Event>, FieldError> {
    if raw.is_empty() {
        return Err(FieldError::new("events", "the batch is empty"));
    }
    if raw.len() > MAX_BATCH_EVENTS {
        return Err(FieldError::new(
            "events",
            format!("a batch holds at most {MAX_BATCH_EVENTS} events, got {}", raw.len()),
        ));
    }
    raw.into_iter()
        .enumerate()
        .map(|(index, event)| event.validate(now).map_err(|error| error.in_batch(index)))
        .collect()
}

pub fn required_text(value: Option<String>, field: &str, max_chars: usize) -> Result<String, FieldError> {
    let text = optional_text(value, field, max_chars)?;
    if text.is_empty() {
        return Err(FieldError::new(field, "is required and must not be empty"));
    }
    Ok(text)
}

pub fn optional_text(value: Option<String>, field: &str, max_chars: usize) -> Result<String, FieldError> {
    let text = value.map(|text| text.trim().to_owned()).unwrap_or_default();
    refuse_nul(&text, field)?;
    let chars = text.chars().count();
    if chars > max_chars {
        return Err(FieldError::new(
            field,
            format!("is {chars} characters long; the limit is {max_chars}"),
        ));
    }
    Ok(text)
}

fn parse_required<T>(value: Option<String>, field: &str) -> Result<T, FieldError>
where
    T: std::str::FromStr<Err = UnknownValue>,
{
    parse_optional(value, field)?.ok_or_else(|| FieldError::new(field, "is required"))
}

pub fn parse_optional<T>(value: Option<String>, field: &str) -> Result<Option<T>, FieldError>
where
    T: std::str::FromStr<Err = UnknownValue>,
{
    value
        .map(|text| {
            text.parse()
                .map_err(|error: UnknownValue| FieldError::new(field, error.to_string()))
        })
        .transpose()
}

/// NUL is valid JSON (`\u0000`) but no text column of PostgreSQL can hold it.
fn refuse_nul(text: &str, field: &str) -> Result<(), FieldError> {
    if text.contains('\0') {
        return Err(FieldError::new(field, "must not contain the NUL character"));
    }
    Ok(())
}

pub fn validate_labels(labels: &BTreeMap<String, String>) -> Result<(), FieldError> {
    if labels.len() > MAX_LABELS {
        return Err(FieldError::new(
            "labels",
            format!("has {} entries; the limit is {MAX_LABELS}", labels.len()),
        ));
    }
    for (key, value) in labels {
        let key_chars = key.chars().count();
        if key_chars == 0 || key_chars > MAX_LABEL_KEY_CHARS {
            return Err(FieldError::new(
                "labels",
                format!("keys must be 1 to {MAX_LABEL_KEY_CHARS} characters long"),
            ));
        }
        refuse_nul(key, "labels")?;
        refuse_nul(value, &format!("labels.{key}"))?;
        if value.chars().count() > MAX_LABEL_VALUE_CHARS {
            return Err(FieldError::new(
                format!("labels.{key}"),
                format!("is longer than {MAX_LABEL_VALUE_CHARS} characters"),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000, 0).unwrap()
    }

    fn raw(source: &str, title: &str) -> RawEvent {
        RawEvent {
            source: Some(source.into()),
            title: Some(title.into()),
            ..RawEvent::default()
        }
    }

    #[test]
    fn a_minimal_event_gets_the_defaults() {
        let event = raw("sentinel", "  Latency high ").validate(now()).unwrap();
        assert_eq!(event.title, "Latency high");
        assert_eq!(event.severity, Severity::P2);
        assert_eq!(event.category, Category::Other);
        assert_eq!(event.status, EventStatus::Firing);
        assert_eq!(event.occurred_at, now());
        assert_eq!(event.fingerprint.len(), 32);
    }

    #[test]
    fn missing_and_empty_required_fields_are_named() {
        let error = RawEvent {
            title: Some("x".into()),
            ..RawEvent::default()
        }
        .validate(now())
        .unwrap_err();
        assert_eq!(error.field, "source");
        let error = raw("shield", "   ").validate(now()).unwrap_err();
        assert_eq!(error.field, "title");
    }

    #[test]
    fn unknown_enum_values_are_refused() {
        let event = RawEvent {
            severity: Some("urgent".into()),
            ..raw("shield", "t")
        };
        let error = event.validate(now()).unwrap_err();
        assert_eq!(error.field, "severity");
        assert!(error.problem.contains("P0, P1"), "{}", error.problem);
        assert!(raw("nagios", "t").validate(now()).is_err());
    }

    #[test]
    fn oversize_fields_are_refused() {
        let long_title = "x".repeat(MAX_TITLE_CHARS + 1);
        assert_eq!(raw("api", &long_title).validate(now()).unwrap_err().field, "title");
        let mut event = raw("api", "t");
        event.labels.insert("k".into(), "v".repeat(MAX_LABEL_VALUE_CHARS + 1));
        assert_eq!(event.validate(now()).unwrap_err().field, "labels.k");
    }

    #[test]
    fn nul_characters_are_refused_everywhere() {
        assert_eq!(raw("api", "a\0b").validate(now()).unwrap_err().field, "title");
        let mut event = raw("api", "t");
        event.labels.insert("k".into(), "v\0".into());
        assert_eq!(event.validate(now()).unwrap_err().field, "labels.k");
    }

    #[test]
    fn a_batch_names_the_index_of_its_bad_event() {
        let batch = vec![raw("api", "ok"), raw("api", "")];
        assert_eq!(validate_batch(batch, now()).unwrap_err().field, "[1].title");
        assert!(validate_batch(Vec::new(), now()).is_err());
        let too_many = vec![raw("api", "t"); MAX_BATCH_EVENTS + 1];
        assert!(validate_batch(too_many, now()).is_err());
    }
}
