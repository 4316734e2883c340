//! Between the protobuf messages and the domain: vocabularies by position (the proto's
//! enums list them in the domain's order, from 1; a test holds it), text through the
//! same validation as HTTP, times as `google.protobuf.Timestamp`.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use lim_domain::event::MAX_LABELS;
use lim_domain::triage::{Classification, ClassificationStatus, Insights};
use lim_domain::{
    Category, EventStatus, FieldError, Incident, IncidentFilter, IncidentId, IngestOutcome, PendingEscalation,
    RawEvent, Severity, Source, State, TimelineEntry,
};
use lim_proto::prost_types::Timestamp;
use lim_proto::v1;

/// A vocabulary of the domain that a proto enum mirrors, value `n` being `ALL[n - 1]`.
pub trait Mirrored: Copy + PartialEq + 'static {
    const ALL: &'static [Self];
    fn as_str(self) -> &'static str;
}

macro_rules! mirrored {
    ($($name:ty),+) => {
        $(impl Mirrored for $name {
            const ALL: &'static [Self] = <$name>::ALL;
            fn as_str(self) -> &'static str {
                <$name>::as_str(self)
            }
        })+
    };
}

mirrored!(Severity, State, Source, Category, EventStatus);

/// The proto value of `value`.
pub fn to_proto<T: Mirrored>(value: T) -> i32 {
    let position = T::ALL
        .iter()
        .position(|each| *each == value)
        .expect("ALL lists every value");
    position as i32 + 1
}

/// The value `number` names; `None` for 0 (unspecified); an error naming `field` for a
/// number the proto does not define.
pub fn from_proto<T: Mirrored>(number: i32, field: &str) -> Result<Option<T>, FieldError> {
    if number == 0 {
        return Ok(None);
    }
    usize::try_from(number - 1)
        .ok()
        .and_then(|index| T::ALL.get(index))
        .copied()
        .map(Some)
        .ok_or_else(|| {
            let known: Vec<&str> = T::ALL.iter().map(|value| value.as_str()).collect();
            FieldError::new(
                field,
                format!(
                    "{number} is not a value of the enum (1 to {}: {})",
                    T::ALL.len(),
                    known.join(", ")
                ),
            )
        })
}

/// A required value: unspecified is refused.
fn required_enum<T: Mirrored>(number: i32, field: &str) -> Result<T, FieldError> {
    from_proto(number, field)?.ok_or_else(|| FieldError::new(field, "is required"))
}

/// Filter values: each must be a value of the enum, and unspecified is refused.
pub fn filter_values<T: Mirrored>(numbers: &[i32], field: &str) -> Result<Vec<T>, FieldError> {
    numbers
        .iter()
        .enumerate()
        .map(|(index, number)| required_enum(*number, &format!("{field}[{index}]")))
        .collect()
}

pub fn timestamp(at: DateTime<Utc>) -> Timestamp {
    Timestamp {
        seconds: at.timestamp(),
        nanos: at.timestamp_subsec_nanos() as i32,
    }
}

fn optional_timestamp(at: Option<DateTime<Utc>>) -> Option<Timestamp> {
    at.map(timestamp)
}

fn time_of(at: &Timestamp, field: &str) -> Result<DateTime<Utc>, FieldError> {
    u32::try_from(at.nanos)
        .ok()
        .filter(|nanos| *nanos < 1_000_000_000)
        .and_then(|nanos| DateTime::from_timestamp(at.seconds, nanos))
        .ok_or_else(|| FieldError::new(field, "is not a valid timestamp"))
}

/// Empty text is "not given", as proto3 sends an unset string.
fn given(text: String) -> Option<String> {
    (!text.is_empty()).then_some(text)
}

/// An event as a sender wrote it, for the same validation as HTTP's.
pub fn raw_event(event: v1::Event) -> Result<RawEvent, FieldError> {
    if event.labels.len() > MAX_LABELS {
        return Err(FieldError::new(
            "labels",
            format!("has more than {MAX_LABELS} entries; the limit is {MAX_LABELS}"),
        ));
    }
    let name = |value: Option<&'static str>| value.map(str::to_owned);
    Ok(RawEvent {
        source: name(from_proto::<Source>(event.source, "source")?.map(Source::as_str)),
        title: given(event.title),
        description: given(event.description),
        severity: name(from_proto::<Severity>(event.severity, "severity")?.map(Severity::as_str)),
        category: name(from_proto::<Category>(event.category, "category")?.map(Category::as_str)),
        labels: event.labels.into_iter().collect::<BTreeMap<_, _>>(),
        fingerprint: given(event.fingerprint),
        status: name(from_proto::<EventStatus>(event.status, "status")?.map(EventStatus::as_str)),
        occurred_at: event.occurred_at.map(|at| time_of(&at, "occurred_at")).transpose()?,
    })
}

pub fn event_result(outcome: &IngestOutcome) -> v1::EventResult {
    let result = crate::http::events::EventResult::from(outcome);
    let outcome = match outcome {
        IngestOutcome::Created(_) => v1::Outcome::Created,
        IngestOutcome::Deduplicated { .. } => v1::Outcome::Deduplicated,
        IngestOutcome::Redelivered { .. } => v1::Outcome::Redelivered,
        IngestOutcome::Resolved(_) => v1::Outcome::Resolved,
        IngestOutcome::Ignored => v1::Outcome::Ignored,
    };
    v1::EventResult {
        incident_id: result.incident_id.map(|id| id.to_string()).unwrap_or_default(),
        outcome: outcome as i32,
        deduplicated: result.deduplicated,
        occurrence_count: result.occurrence_count.unwrap_or_default(),
        severity: result.severity.map_or(0, to_proto),
        category: result.category.map_or(0, to_proto),
    }
}

pub fn incident(incident: &Incident) -> v1::Incident {
    v1::Incident {
        id: incident.id.to_string(),
        title: incident.title.clone(),
        description: incident.description.clone(),
        severity: to_proto(incident.severity),
        category: to_proto(incident.category),
        source: to_proto(incident.source),
        state: to_proto(incident.state),
        fingerprint: incident.fingerprint.clone(),
        labels: incident
            .labels
            .iter()
            .map(|(key, value)| (key.clone(), value.clone()))
            .collect(),
        occurrence_count: incident.occurrence_count,
        first_seen: Some(timestamp(incident.first_seen)),
        last_seen: Some(timestamp(incident.last_seen)),
        assignee: incident.assignee.clone().unwrap_or_default(),
        team: incident.team.clone().unwrap_or_default(),
        created_at: Some(timestamp(incident.created_at)),
        updated_at: Some(timestamp(incident.updated_at)),
        acknowledged_at: optional_timestamp(incident.acknowledged_at),
        resolved_at: optional_timestamp(incident.resolved_at),
        resolution_note: incident.resolution_note.clone().unwrap_or_default(),
        route: incident.route.clone().unwrap_or_default(),
        escalation_policy: incident.escalation_policy.clone().unwrap_or_default(),
        next_escalation: incident.next_escalation.map(pending_escalation),
        classification: incident.classification.as_ref().map(classification),
        insights: incident.insights.as_ref().map(insights),
    }
}

fn pending_escalation(next: PendingEscalation) -> v1::PendingEscalation {
    v1::PendingEscalation {
        level: next.level,
        due_at: Some(timestamp(next.due_at)),
    }
}

fn classification(classification: &Classification) -> v1::Classification {
    let status = match classification.status {
        ClassificationStatus::Pending => v1::ClassificationStatus::Pending,
        ClassificationStatus::Done => v1::ClassificationStatus::Done,
        ClassificationStatus::Failed => v1::ClassificationStatus::Failed,
    };
    v1::Classification {
        status: status as i32,
        severity: classification.severity.map_or(0, to_proto),
        category: classification.category.map_or(0, to_proto),
        confidence: classification.confidence,
        reasoning: classification.reasoning.clone(),
        provider: classification.provider.clone(),
        model: classification.model.clone(),
    }
}

fn insights(insights: &Insights) -> v1::Insights {
    v1::Insights {
        summary: insights.summary.clone(),
        probable_cause: insights.probable_cause.clone(),
        remediation: insights.remediation.clone(),
        provider: insights.provider.clone(),
        model: insights.model.clone(),
    }
}

pub fn entry(entry: &TimelineEntry) -> v1::TimelineEntry {
    v1::TimelineEntry {
        incident_id: entry.incident_id.to_string(),
        at: Some(timestamp(entry.at)),
        kind: entry.kind.as_str().to_owned(),
        actor: entry.actor.clone(),
        message: entry.message.clone(),
    }
}

/// The time of a message, which a server always sets.
fn time_from(at: Option<Timestamp>, field: &str) -> Result<DateTime<Utc>, FieldError> {
    at.map_or_else(|| Err(FieldError::new(field, "is missing")), |at| time_of(&at, field))
}

fn some_text(text: String) -> Option<String> {
    given(text)
}

/// An incident as the server sent it, back in the domain's terms (the CLI prints it as
/// the HTTP API does).
pub fn incident_from(message: v1::Incident) -> Result<Incident, FieldError> {
    fn required<T: Mirrored>(number: i32, field: &str) -> Result<T, FieldError> {
        from_proto(number, field)?.ok_or_else(|| FieldError::new(field, "is unspecified"))
    }
    Ok(Incident {
        id: incident_id(&message.id, "id")?,
        title: message.title,
        description: message.description,
        severity: required(message.severity, "severity")?,
        category: required(message.category, "category")?,
        source: required(message.source, "source")?,
        state: required(message.state, "state")?,
        fingerprint: message.fingerprint,
        labels: message.labels.into_iter().collect(),
        occurrence_count: message.occurrence_count,
        first_seen: time_from(message.first_seen, "first_seen")?,
        last_seen: time_from(message.last_seen, "last_seen")?,
        assignee: some_text(message.assignee),
        team: some_text(message.team),
        created_at: time_from(message.created_at, "created_at")?,
        updated_at: time_from(message.updated_at, "updated_at")?,
        acknowledged_at: message
            .acknowledged_at
            .map(|at| time_of(&at, "acknowledged_at"))
            .transpose()?,
        resolved_at: message.resolved_at.map(|at| time_of(&at, "resolved_at")).transpose()?,
        resolution_note: some_text(message.resolution_note),
        route: some_text(message.route),
        escalation_policy: some_text(message.escalation_policy),
        next_escalation: message
            .next_escalation
            .map(|next| {
                Ok::<_, FieldError>(PendingEscalation {
                    level: next.level,
                    due_at: time_from(next.due_at, "next_escalation.due_at")?,
                })
            })
            .transpose()?,
        classification: message
            .classification
            .map(|classification| {
                let status = match classification.status() {
                    v1::ClassificationStatus::Done => ClassificationStatus::Done,
                    v1::ClassificationStatus::Failed => ClassificationStatus::Failed,
                    v1::ClassificationStatus::Pending | v1::ClassificationStatus::Unspecified => {
                        ClassificationStatus::Pending
                    }
                };
                Ok::<_, FieldError>(Classification {
                    status,
                    severity: from_proto(classification.severity, "classification.severity")?,
                    category: from_proto(classification.category, "classification.category")?,
                    confidence: classification.confidence,
                    reasoning: classification.reasoning,
                    provider: classification.provider,
                    model: classification.model,
                })
            })
            .transpose()?,
        insights: message.insights.map(|insights| Insights {
            summary: insights.summary,
            probable_cause: insights.probable_cause,
            remediation: insights.remediation,
            provider: insights.provider,
            model: insights.model,
        }),
    })
}

/// A timeline entry as the server sent it, back in the domain's terms.
pub fn entry_from(message: v1::TimelineEntry) -> Result<TimelineEntry, FieldError> {
    Ok(TimelineEntry {
        incident_id: incident_id(&message.incident_id, "incident_id")?,
        at: time_from(message.at, "at")?,
        kind: lim_domain::TimelineKind::parse(&message.kind)
            .ok_or_else(|| FieldError::new("kind", format!("`{}` is not a timeline kind", message.kind)))?,
        actor: message.actor,
        message: message.message,
    })
}

/// An incident id as a request names it (`field`).
pub fn incident_id(text: &str, field: &str) -> Result<IncidentId, FieldError> {
    if text.is_empty() {
        return Err(FieldError::new(field, "is required"));
    }
    text.parse().map_err(|_| {
        FieldError::new(
            field,
            format!("`{}` is not an incident id (a UUID)", lim_domain::text::excerpt(text)),
        )
    })
}

/// The filters of `ListIncidents` and `WatchIncidents`.
pub fn filter(
    states: &[i32],
    severities: &[i32],
    sources: &[i32],
    categories: &[i32],
) -> Result<IncidentFilter, FieldError> {
    Ok(IncidentFilter {
        states: filter_values(states, "states")?,
        severities: filter_values(severities, "severities")?,
        sources: filter_values(sources, "sources")?,
        categories: filter_values(categories, "categories")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The proto's enums list each vocabulary in the domain's order, from 1.
    #[test]
    fn proto_enums_mirror_the_vocabularies_by_name() {
        fn check<T: Mirrored>(prefix: &str, name_of: impl Fn(i32) -> Option<&'static str>) {
            assert_eq!(name_of(0).unwrap(), format!("{prefix}_UNSPECIFIED"));
            for value in T::ALL {
                let expected = format!("{prefix}_{}", value.as_str().to_uppercase().replace('-', "_"));
                assert_eq!(name_of(to_proto(*value)), Some(expected.as_str()));
            }
            assert_eq!(
                name_of(T::ALL.len() as i32 + 1),
                None,
                "{prefix} has a value the domain lacks"
            );
        }
        check::<Severity>("SEVERITY", |n| v1::Severity::try_from(n).ok().map(|v| v.as_str_name()));
        check::<State>("STATE", |n| v1::State::try_from(n).ok().map(|v| v.as_str_name()));
        check::<Source>("SOURCE", |n| v1::Source::try_from(n).ok().map(|v| v.as_str_name()));
        check::<Category>("CATEGORY", |n| v1::Category::try_from(n).ok().map(|v| v.as_str_name()));
        check::<EventStatus>("EVENT_STATUS", |n| {
            v1::EventStatus::try_from(n).ok().map(|v| v.as_str_name())
        });
    }

    #[test]
    fn an_unknown_enum_number_is_named_with_its_field() {
        let error = from_proto::<Severity>(42, "severity").unwrap_err();
        assert_eq!(
            error.to_string(),
            "severity: 42 is not a value of the enum (1 to 5: P0, P1, P2, P3, P4)"
        );
        assert_eq!(from_proto::<Severity>(0, "severity").unwrap(), None);
        assert_eq!(from_proto::<Severity>(-1, "severity").unwrap_err().field, "severity");
        assert_eq!(
            filter_values::<State>(&[1, 0], "states").unwrap_err().to_string(),
            "states[1]: is required"
        );
    }

    #[test]
    fn an_incident_reads_back_from_its_message() {
        let now = DateTime::from_timestamp(1_780_000_000, 5_000).unwrap();
        let event = lim_domain::Event {
            source: Source::Shield,
            title: "jailbreak attempts".into(),
            description: "140 prompts".into(),
            severity: Severity::P1,
            category: Category::Security,
            labels: BTreeMap::from([("model".into(), "m".into())]),
            fingerprint: "fp".into(),
            status: EventStatus::Firing,
            occurred_at: now,
            occurred_at_given: false,
            classification: None,
        };
        let mut incident = Incident::open(IncidentId::generate(), &event, now);
        incident.assignee = Some("ana".into());
        incident.next_escalation = Some(PendingEscalation { level: 2, due_at: now });
        incident.classification = Some(Classification::manual(Severity::P0, Category::Security, "ana"));
        incident.insights = Some(Insights {
            summary: "s".into(),
            probable_cause: "c".into(),
            remediation: vec!["r".into()],
            provider: "openai".into(),
            model: "gpt-4o".into(),
        });
        assert_eq!(incident_from(super::incident(&incident)).unwrap(), incident);
        let created = lim_domain::lifecycle::created_entry(&incident);
        assert_eq!(entry_from(entry(&created)).unwrap(), created);
    }

    #[test]
    fn timestamps_read_back_and_bad_ones_are_refused() {
        let at = DateTime::from_timestamp(1_780_000_000, 123_456_789).unwrap();
        assert_eq!(time_of(&timestamp(at), "at").unwrap(), at);
        let bad = Timestamp { seconds: 0, nanos: -1 };
        assert!(time_of(&bad, "occurred_at").is_err());
        let far = Timestamp {
            seconds: i64::MAX,
            nanos: 0,
        };
        assert!(time_of(&far, "occurred_at").is_err());
    }
}
