//! Events as senders write them, and their validation into [`Event`].

use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};

use crate::duration::format_duration;
use crate::fingerprint::derive_fingerprint;
use crate::text::excerpt;
use crate::triage::{Classification, ClassificationStatus, OFFLINE_PROVIDER};
use crate::vocabulary::{Category, EventStatus, Severity, Source, UnknownValue};

pub const MAX_TITLE_CHARS: usize = 512;
pub const MAX_DESCRIPTION_CHARS: usize = 16 * 1024;
pub const MAX_FINGERPRINT_CHARS: usize = 256;
pub const MAX_LABELS: usize = 64;
pub const MAX_LABEL_KEY_CHARS: usize = 128;
pub const MAX_LABEL_VALUE_CHARS: usize = 1024;
pub const MAX_BATCH_EVENTS: usize = 1000;

/// Fingerprints that start with this belong to incidents opened by hand; no event may
/// carry one, so no event can attach to such an incident.
pub const MANUAL_FINGERPRINT_PREFIX: &str = "manual:";

/// An event exactly as a sender wrote it; nothing is trusted yet. Unknown fields are
/// refused (a misspelt `severty` must not silently mean "no severity").
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEvent {
    pub source: Option<String>,
    pub title: Option<String>,
    pub description: Option<String>,
    pub severity: Option<String>,
    pub category: Option<String>,
    #[serde(default, deserialize_with = "bounded_labels")]
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
    /// True when the sender said when it occurred. Such an event, sent again with the same
    /// fingerprint and time (a retry, an Alertmanager group re-sent), is recognised as the
    /// same occurrence and not counted twice.
    pub occurred_at_given: bool,
    /// What the offline classifier decided, for a firing event that named no severity or
    /// no category (the severity and category above already carry it).
    pub classification: Option<Classification>,
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

    /// The same error for the event at `index` of a batch (`[3].title`, as serde names
    /// a field of the wrong type there).
    pub fn in_batch(self, index: usize) -> Self {
        FieldError {
            field: format!("[{index}].{}", self.field),
            problem: self.problem,
        }
    }
}

/// What validation checks beyond each field's own rules.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EventRules {
    /// How far in the future `occurred_at` may be (clocks of senders drift).
    pub max_clock_skew: Duration,
}

impl Default for EventRules {
    fn default() -> Self {
        EventRules {
            max_clock_skew: Duration::from_secs(600),
        }
    }
}

impl RawEvent {
    /// Checks every field and fills the defaults: severity P2, category `other`,
    /// status `firing`, `occurred_at` now, fingerprint from source + title + labels.
    pub fn validate(self, now: DateTime<Utc>, rules: &EventRules) -> Result<Event, FieldError> {
        let source: Source = parse_required(self.source, "source")?;
        let title = required_text(self.title, "title", MAX_TITLE_CHARS)?;
        let description = optional_text(self.description, "description", MAX_DESCRIPTION_CHARS)?;
        let severity: Option<Severity> = parse_optional(self.severity, "severity")?;
        let category: Option<Category> = parse_optional(self.category, "category")?;
        let status = parse_optional(self.status, "status")?.unwrap_or(EventStatus::Firing);
        validate_labels(&self.labels)?;
        // Triage decides what the sender left out; a resolving event opens nothing.
        let classification = (status == EventStatus::Firing && (severity.is_none() || category.is_none()))
            .then(|| offline_classification(&title, &description, &self.labels, severity, category));
        let severity = severity
            .or_else(|| classification.as_ref().and_then(|decided| decided.severity))
            .unwrap_or_default();
        let category = category
            .or_else(|| classification.as_ref().and_then(|decided| decided.category))
            .unwrap_or_default();
        let fingerprint = match self.fingerprint {
            Some(given) => {
                let fingerprint = required_text(Some(given), "fingerprint", MAX_FINGERPRINT_CHARS)?;
                if fingerprint.starts_with(MANUAL_FINGERPRINT_PREFIX) {
                    return Err(FieldError::new(
                        "fingerprint",
                        format!("the prefix `{MANUAL_FINGERPRINT_PREFIX}` is reserved for incidents opened by hand"),
                    ));
                }
                fingerprint
            }
            None => derive_fingerprint(source, &title, &self.labels),
        };
        if let Some(occurred_at) = self.occurred_at {
            check_not_in_future(occurred_at, now, rules)?;
        }
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
            occurred_at_given: self.occurred_at.is_some(),
            classification,
        })
    }
}

/// The offline classifier's decision on what the sender left out (`given` values stand).
fn offline_classification(
    title: &str,
    description: &str,
    labels: &BTreeMap<String, String>,
    given_severity: Option<Severity>,
    given_category: Option<Category>,
) -> Classification {
    let verdict = crate::classifier::classify(title, description, labels);
    Classification {
        status: ClassificationStatus::Done,
        severity: given_severity.is_none().then_some(verdict.severity),
        category: given_category.is_none().then_some(verdict.category),
        confidence: f64::from(verdict.confidence),
        reasoning: verdict.reasoning,
        provider: OFFLINE_PROVIDER.to_owned(),
        model: crate::classifier::MODEL.to_owned(),
    }
}

/// `occurred_at` may run ahead of `now` by the allowed clock skew, no further: a time in
/// the future would pin an incident's `last_seen` there.
fn check_not_in_future(occurred_at: DateTime<Utc>, now: DateTime<Utc>, rules: &EventRules) -> Result<(), FieldError> {
    let ahead = (occurred_at - now).to_std().unwrap_or(Duration::ZERO);
    if ahead > rules.max_clock_skew {
        return Err(FieldError::new(
            "occurred_at",
            format!(
                "is {} in the future; at most {} is allowed (events.max_clock_skew)",
                format_duration(Duration::from_secs(ahead.as_secs())),
                format_duration(rules.max_clock_skew)
            ),
        ));
    }
    Ok(())
}

/// Validates a whole batch; the first bad event refuses the batch, naming its index.
pub fn validate_batch(raw: Vec<RawEvent>, now: DateTime<Utc>, rules: &EventRules) -> Result<Vec<Event>, FieldError> {
    if raw.is_empty() {
        return Err(FieldError::new("events", "the batch is empty"));
    }
    raw.into_iter()
        .enumerate()
        .map(|(index, event)| event.validate(now, rules).map_err(|error| error.in_batch(index)))
        .collect()
}

/// A batch of events as a sender wrote it. Parsing stops at the event past the limit, so
/// a body of a million empty objects costs what a thousand do, not a million.
#[derive(Debug, Clone, Default)]
pub struct RawBatch(pub Vec<RawEvent>);

impl<'de> Deserialize<'de> for RawBatch {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let events = deserializer.deserialize_seq(BoundedSeq::<ObjectOnly<RawEvent>>::new(
            MAX_BATCH_EVENTS,
            "a batch holds at most",
            "events",
        ))?;
        Ok(RawBatch(events.into_iter().map(|ObjectOnly(event)| event).collect()))
    }
}

/// A struct read from a JSON object only. serde's derived structs also take an array of
/// their fields in order (`[null, null]`), which no body of ours means.
#[derive(Debug, Clone, Default)]
pub struct ObjectOnly<T>(pub T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for ObjectOnly<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ObjectVisitor<T>(PhantomData<T>);

        impl<'de, T: Deserialize<'de>> Visitor<'de> for ObjectVisitor<T> {
            type Value = T;

            fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                formatter.write_str("a JSON object")
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
                T::deserialize(de::value::MapAccessDeserializer::new(map))
            }
        }

        deserializer.deserialize_map(ObjectVisitor(PhantomData)).map(ObjectOnly)
    }
}

/// Reads a JSON array into a vector, refusing it at element `limit + 1`.
pub struct BoundedSeq<T> {
    limit: usize,
    refusal: &'static str,
    items: &'static str,
    element: PhantomData<T>,
}

impl<T> BoundedSeq<T> {
    pub fn new(limit: usize, refusal: &'static str, items: &'static str) -> Self {
        BoundedSeq {
            limit,
            refusal,
            items,
            element: PhantomData,
        }
    }
}

impl<'de, T: Deserialize<'de>> Visitor<'de> for BoundedSeq<T> {
    type Value = Vec<T>;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "an array of at most {} {}", self.limit, self.items)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(self.limit));
        while let Some(item) = seq.next_element()? {
            if items.len() == self.limit {
                return Err(de::Error::custom(format_args!(
                    "{} {} {}",
                    self.refusal, self.limit, self.items
                )));
            }
            items.push(item);
        }
        Ok(items)
    }
}

/// Labels, refused at the entry past [`MAX_LABELS`] rather than after reading them all
/// (`#[serde(deserialize_with = "bounded_labels")]`).
pub fn bounded_labels<'de, D: Deserializer<'de>>(deserializer: D) -> Result<BTreeMap<String, String>, D::Error> {
    struct LabelsVisitor;

    impl<'de> Visitor<'de> for LabelsVisitor {
        type Value = BTreeMap<String, String>;

        fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(formatter, "an object of at most {MAX_LABELS} string values")
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut labels = BTreeMap::new();
            while let Some((key, value)) = map.next_entry::<String, String>()? {
                labels.insert(key, value);
                if labels.len() > MAX_LABELS {
                    return Err(de::Error::custom(format_args!(
                        "has more than {MAX_LABELS} entries; the limit is {MAX_LABELS}"
                    )));
                }
            }
            Ok(labels)
        }
    }

    deserializer.deserialize_map(LabelsVisitor)
}

pub fn required_text(value: Option<String>, field: &str, max_chars: usize) -> Result<String, FieldError> {
    let text = optional_text(value, field, max_chars)?;
    if text.is_empty() {
        return Err(FieldError::new(field, "is required and must not be empty"));
    }
    Ok(text)
}

/// The text of an optional field, trimmed: at most `max_chars` characters as sent (the
/// limit the OpenAPI document states), no NUL.
pub fn optional_text(value: Option<String>, field: &str, max_chars: usize) -> Result<String, FieldError> {
    let Some(text) = value else {
        return Ok(String::new());
    };
    let chars = text.chars().count();
    if chars > max_chars {
        return Err(FieldError::new(
            field,
            format!("is {chars} characters long; the limit is {max_chars}"),
        ));
    }
    refuse_nul(&text, field)?;
    Ok(text.trim().to_owned())
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
                format!(
                    "key `{}` is {key_chars} characters long; keys must be 1 to {MAX_LABEL_KEY_CHARS}",
                    excerpt(key)
                ),
            ));
        }
        refuse_nul(key, "labels")?;
        let field = || format!("labels.{}", excerpt(key));
        refuse_nul(value, &field())?;
        let value_chars = value.chars().count();
        if value_chars > MAX_LABEL_VALUE_CHARS {
            return Err(FieldError::new(
                field(),
                format!("is {value_chars} characters long; the limit is {MAX_LABEL_VALUE_CHARS}"),
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
    fn a_minimal_event_gets_the_defaults_and_triage_decides_severity_and_category() {
        let event = raw("sentinel", "  Latency high ")
            .validate(now(), &EventRules::default())
            .unwrap();
        assert_eq!(event.title, "Latency high");
        assert_eq!(
            event.category,
            Category::Performance,
            "the offline classifier read the title"
        );
        let classification = event.classification.expect("triage decided");
        assert_eq!(classification.severity, Some(event.severity));
        assert_eq!(classification.category, Some(Category::Performance));
        assert_eq!(
            (classification.provider.as_str(), classification.model.as_str()),
            ("offline", "rules-v1")
        );
        assert_eq!(event.status, EventStatus::Firing);
        assert_eq!(event.occurred_at, now());
        assert_eq!(event.fingerprint.len(), 32);
    }

    #[test]
    fn a_sender_severity_and_category_stand_and_a_resolution_is_not_classified() {
        let mut given = raw("sentinel", "Total outage of the API");
        given.severity = Some("P3".into());
        let event = given.validate(now(), &EventRules::default()).unwrap();
        assert_eq!(event.severity, Severity::P3, "the sender's");
        let classification = event.classification.unwrap();
        assert_eq!(classification.severity, None, "triage did not decide the severity");
        assert!(classification.category.is_some());
        let mut both = raw("sentinel", "Total outage of the API");
        both.severity = Some("P3".into());
        both.category = Some("cost".into());
        assert_eq!(
            both.validate(now(), &EventRules::default()).unwrap().classification,
            None
        );
        let mut resolution = raw("sentinel", "Total outage of the API");
        resolution.status = Some("resolved".into());
        assert_eq!(
            resolution
                .validate(now(), &EventRules::default())
                .unwrap()
                .classification,
            None
        );
    }

    #[test]
    fn missing_and_empty_required_fields_are_named() {
        let error = RawEvent {
            title: Some("x".into()),
            ..RawEvent::default()
        }
        .validate(now(), &EventRules::default())
        .unwrap_err();
        assert_eq!(error.field, "source");
        let error = raw("shield", "   ")
            .validate(now(), &EventRules::default())
            .unwrap_err();
        assert_eq!(error.field, "title");
    }

    #[test]
    fn unknown_enum_values_are_refused() {
        let event = RawEvent {
            severity: Some("urgent".into()),
            ..raw("shield", "t")
        };
        let error = event.validate(now(), &EventRules::default()).unwrap_err();
        assert_eq!(error.field, "severity");
        assert!(
            error.problem.contains("P0 (or critical, fatal, emergency), P1"),
            "{}",
            error.problem
        );
        assert!(raw("nagios", "t").validate(now(), &EventRules::default()).is_err());
    }

    #[test]
    fn oversize_fields_are_refused() {
        let long_title = "x".repeat(MAX_TITLE_CHARS + 1);
        assert_eq!(
            raw("api", &long_title)
                .validate(now(), &EventRules::default())
                .unwrap_err()
                .field,
            "title"
        );
        let mut event = raw("api", "t");
        event.labels.insert("k".into(), "v".repeat(MAX_LABEL_VALUE_CHARS + 1));
        assert_eq!(
            event.validate(now(), &EventRules::default()).unwrap_err().field,
            "labels.k"
        );
    }

    #[test]
    fn nul_characters_are_refused_everywhere() {
        assert_eq!(
            raw("api", "a\0b")
                .validate(now(), &EventRules::default())
                .unwrap_err()
                .field,
            "title"
        );
        let mut event = raw("api", "t");
        event.labels.insert("k".into(), "v\0".into());
        assert_eq!(
            event.validate(now(), &EventRules::default()).unwrap_err().field,
            "labels.k"
        );
    }

    #[test]
    fn a_batch_names_the_index_of_its_bad_event() {
        let batch = vec![raw("api", "ok"), raw("api", "")];
        assert_eq!(
            validate_batch(batch, now(), &EventRules::default()).unwrap_err().field,
            "[1].title"
        );
        assert!(validate_batch(Vec::new(), now(), &EventRules::default()).is_err());
    }

    #[test]
    fn a_batch_past_the_limit_is_refused_while_it_is_parsed() {
        let body = format!("[{}]", vec!["{}"; MAX_BATCH_EVENTS].join(","));
        assert_eq!(
            serde_json::from_str::<RawBatch>(&body).unwrap().0.len(),
            MAX_BATCH_EVENTS
        );
        let body = format!("[{}]", vec!["{}"; 1_000_000].join(","));
        let error = serde_json::from_str::<RawBatch>(&body).unwrap_err();
        assert!(
            error.to_string().contains("a batch holds at most 1000 events"),
            "{error}"
        );
        // It stopped at the event past the limit, not at the end of the body.
        assert!(error.column() < 5 * (MAX_BATCH_EVENTS + 2), "{error}");
    }

    #[test]
    fn labels_past_the_limit_are_refused_while_they_are_parsed() {
        let labels = (0..10_000)
            .map(|i| format!("\"k{i}\": \"v\""))
            .collect::<Vec<_>>()
            .join(",");
        let body = format!("{{\"labels\": {{{labels}}}}}");
        let error = serde_json::from_str::<RawEvent>(&body).unwrap_err();
        assert!(error.to_string().contains("has more than 64 entries"), "{error}");
        assert!(error.column() < 20 * 70, "{error}");
    }

    #[test]
    fn an_event_is_an_object_not_an_array_of_its_fields() {
        assert!(serde_json::from_str::<ObjectOnly<RawEvent>>(r#"{"source": "api"}"#).is_ok());
        let error = serde_json::from_str::<ObjectOnly<RawEvent>>(r#"["api", "t"]"#).unwrap_err();
        assert!(error.to_string().contains("expected a JSON object"), "{error}");
        assert!(serde_json::from_str::<RawBatch>(r#"[["api", "t"]]"#).is_err());
    }

    #[test]
    fn unknown_fields_are_refused() {
        let error =
            serde_json::from_str::<RawEvent>(r#"{"source": "api", "title": "t", "severty": "P0"}"#).unwrap_err();
        assert!(error.to_string().contains("unknown field `severty`"), "{error}");
    }

    #[test]
    fn a_time_beyond_the_clock_skew_is_refused() {
        let rules = EventRules::default();
        let mut event = raw("api", "t");
        event.occurred_at = Some(now() + chrono::TimeDelta::minutes(9));
        assert!(event.clone().validate(now(), &rules).unwrap().occurred_at_given);
        event.occurred_at = Some(now() + chrono::TimeDelta::days(365 * 7000));
        let error = event.validate(now(), &rules).unwrap_err();
        assert_eq!(error.field, "occurred_at");
        assert!(
            error.problem.contains("in the future; at most 10m is allowed"),
            "{}",
            error.problem
        );
    }

    #[test]
    fn the_manual_fingerprint_prefix_is_reserved() {
        let mut event = raw("api", "t");
        event.fingerprint = Some("manual:0190".into());
        let error = event.validate(now(), &EventRules::default()).unwrap_err();
        assert_eq!(error.field, "fingerprint");
        assert!(error.problem.contains("reserved"), "{}", error.problem);
    }
}
