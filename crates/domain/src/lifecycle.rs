//! The incident state machine of DESIGN §2 and the timeline entries of every change, as
//! pure functions.

use chrono::{DateTime, Utc};
use std::fmt::Write as _;

use crate::event::{Event, FieldError, MAX_TITLE_CHARS, optional_text, parse_optional, required_text};
use crate::incident::{Incident, IncidentId, TimelineEntry, TimelineKind};
use crate::triage::{Classification, ClassificationStatus, Insights};
use crate::vocabulary::{Category, Severity, State};

pub const MAX_NOTE_CHARS: usize = 4096;

/// A person's (or a system's) request to move an incident along.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Assign {
        assignee: String,
        team: Option<String>,
    },
    Acknowledge,
    Start,
    Resolve {
        note: Option<String>,
    },
    /// Change severity and/or category of an open incident (a person).
    Reclassify {
        severity: Option<Severity>,
        category: Option<Category>,
    },
    /// A model's answer on an open incident's classification, or why there is none.
    Classify(Result<Classification, TriageFailure>),
    /// A model's insights on an incident, or why there are none.
    Explain(Result<Insights, TriageFailure>),
}

/// Why triage through a provider gave up.
#[derive(Debug, Clone, PartialEq)]
pub struct TriageFailure {
    pub provider: String,
    pub model: String,
    pub reason: String,
}

impl Action {
    pub fn assign(assignee: Option<String>, team: Option<String>) -> Result<Self, FieldError> {
        let assignee = required_text(assignee, "assignee", MAX_TITLE_CHARS)?;
        let team = optional_text(team, "team", MAX_TITLE_CHARS)?;
        Ok(Action::Assign {
            assignee,
            team: Some(team).filter(|team| !team.is_empty()),
        })
    }

    pub fn resolve(note: Option<String>) -> Result<Self, FieldError> {
        let note = optional_text(note, "note", MAX_NOTE_CHARS)?;
        Ok(Action::Resolve {
            note: Some(note).filter(|note| !note.is_empty()),
        })
    }

    /// A reclassification; at least one of the two must be given.
    pub fn reclassify(severity: Option<String>, category: Option<String>) -> Result<Self, FieldError> {
        let severity = parse_optional(severity, "severity")?;
        let category = parse_optional(category, "category")?;
        if severity.is_none() && category.is_none() {
            return Err(FieldError::new("severity", "give a severity, a category or both"));
        }
        Ok(Action::Reclassify { severity, category })
    }

    pub const fn name(&self) -> &'static str {
        match self {
            Action::Assign { .. } => "assign",
            Action::Acknowledge => "acknowledge",
            Action::Start => "start",
            Action::Resolve { .. } => "resolve",
            Action::Reclassify { .. } => "reclassify",
            Action::Classify(_) => "classify",
            Action::Explain(_) => "explain",
        }
    }

    /// The state the action leads to from `from`.
    const fn target(&self, from: State) -> State {
        match self {
            Action::Assign { .. } => State::Assigned,
            Action::Acknowledge => State::Acknowledged,
            Action::Start => State::InProgress,
            Action::Resolve { .. } => State::Resolved,
            Action::Reclassify { .. } | Action::Classify(_) | Action::Explain(_) => from,
        }
    }
}

/// The refusal of an action the current state does not allow; nothing changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot {action} an incident that is {from}")]
pub struct IllegalTransition {
    pub action: &'static str,
    pub from: State,
}

/// Whether the state machine allows `from → to`.
pub const fn transition_allowed(from: State, to: State) -> bool {
    use State::*;
    matches!(
        (from, to),
        (New, Assigned)
            | (New, Acknowledged)
            | (Assigned, Assigned)
            | (Assigned, Acknowledged)
            | (Acknowledged, InProgress)
            | (Acknowledged, Assigned)
            | (InProgress, Assigned)
            | (New | Assigned | Acknowledged | InProgress, Resolved)
    )
}

/// The outcome of an allowed action: the incident before and after, and the entry to append.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    pub before: Incident,
    pub after: Incident,
    pub entry: TimelineEntry,
}

impl Transition {
    /// True when this action acknowledged the incident for the first time.
    pub fn first_acknowledgement(&self) -> bool {
        self.before.acknowledged_at.is_none() && self.after.acknowledged_at.is_some()
    }
}

/// Applies `action` to `incident` at `now`, or refuses it.
pub fn apply(
    incident: &Incident,
    action: &Action,
    actor: &str,
    now: DateTime<Utc>,
) -> Result<Transition, IllegalTransition> {
    let from = incident.state;
    let to = action.target(from);
    let allowed = match action {
        // Reclassifying leaves the state alone; a closed incident keeps its record.
        Action::Reclassify { .. } | Action::Classify(_) => from.is_open(),
        // Insights help after the fact too.
        Action::Explain(_) => true,
        _ => transition_allowed(from, to),
    };
    if !allowed {
        return Err(IllegalTransition {
            action: action.name(),
            from,
        });
    }
    let mut after = incident.clone();
    after.state = to;
    after.updated_at = now;
    let (kind, message) = match action {
        Action::Assign { assignee, team } => {
            after.assignee = Some(assignee.clone());
            if team.is_some() {
                after.team = team.clone();
            }
            let message = match &after.team {
                Some(team) => format!("assigned to {assignee} ({team})"),
                None => format!("assigned to {assignee}"),
            };
            (TimelineKind::Assigned, message)
        }
        Action::Acknowledge => {
            // The first acknowledgement is what time-to-acknowledge measures; a hand-over
            // and a second acknowledgement keep it.
            after.acknowledged_at.get_or_insert(now);
            (TimelineKind::Acknowledged, format!("acknowledged by {actor}"))
        }
        Action::Start => (TimelineKind::Started, format!("work started by {actor}")),
        Action::Resolve { note } => {
            after.resolved_at = Some(now);
            after.resolution_note = note.clone();
            let message = match note {
                Some(note) => format!("resolved by {actor}: {note}"),
                None => format!("resolved by {actor}"),
            };
            (TimelineKind::Resolved, message)
        }
        Action::Reclassify { severity, category } => {
            let mut changes = Vec::new();
            if let Some(severity) = *severity {
                changes.push(format!("severity {} → {severity}", incident.severity));
                after.severity = severity;
            }
            if let Some(category) = *category {
                changes.push(format!("category {} → {category}", incident.category));
                after.category = category;
            }
            after.classification = Some(Classification::manual(after.severity, after.category, actor));
            (TimelineKind::Classified, format!("{} by {actor}", changes.join(", ")))
        }
        Action::Classify(outcome) => classify(incident, &mut after, outcome),
        Action::Explain(Ok(insights)) => {
            after.insights = Some(insights.clone());
            let message = format!(
                "insights by {}/{}: {}",
                insights.provider,
                insights.model,
                crate::text::shortened(&insights.summary, 200)
            );
            (TimelineKind::Insights, message)
        }
        Action::Explain(Err(failure)) => (
            TimelineKind::Insights,
            format!(
                "insights by {}/{} failed: {}",
                failure.provider, failure.model, failure.reason
            ),
        ),
    };
    // Acknowledgement and resolution stop the escalation (the store cancels its pending
    // level in the same transaction).
    if !after.escalates() {
        after.next_escalation = None;
    }
    let entry = TimelineEntry::new(incident.id, now, kind, actor, message);
    Ok(Transition {
        before: incident.clone(),
        after,
        entry,
    })
}

/// A model's classification applied to an open incident: the severity and category it
/// decides (those the sender left to triage) change, unless a person has reclassified the
/// incident, whose judgement a model never overwrites.
fn classify(
    incident: &Incident,
    after: &mut Incident,
    outcome: &Result<Classification, TriageFailure>,
) -> (TimelineKind, String) {
    let previous = incident.classification.as_ref();
    let answer = match outcome {
        Ok(answer) => answer,
        Err(failure) => {
            if let Some(kept) = after.classification.as_mut().filter(|kept| !kept.is_manual()) {
                kept.status = ClassificationStatus::Failed;
            }
            let message = format!(
                "classification by {}/{} failed: {}; the severity and category stay",
                failure.provider, failure.model, failure.reason
            );
            return (TimelineKind::Classified, message);
        }
    };
    let who = format!("{}/{}", answer.provider, answer.model);
    if previous.is_some_and(Classification::is_manual) {
        let message = format!(
            "{who} suggested {} and {}; the classification a person made stays",
            answer.severity.map_or("-", Severity::as_str),
            answer.category.map_or("-", Category::as_str),
        );
        return (TimelineKind::Classified, message);
    }
    let mut changes = Vec::new();
    if let Some(severity) = answer.severity.filter(|severity| *severity != incident.severity) {
        changes.push(format!("severity {} → {severity}", incident.severity));
        after.severity = severity;
    }
    if let Some(category) = answer.category.filter(|category| *category != incident.category) {
        changes.push(format!("category {} → {category}", incident.category));
        after.category = category;
    }
    after.classification = Some(answer.clone());
    let what = if changes.is_empty() {
        "severity and category confirmed".to_owned()
    } else {
        changes.join(", ")
    };
    let message = format!(
        "classified by {who}: {what} (confidence {:.2}): {}",
        answer.confidence,
        crate::text::shortened(&answer.reasoning, 200)
    );
    (TimelineKind::Classified, message)
}

// Dedup itself is decided by the store, atomically: a unique index on the fingerprint of
// open incidents makes a firing event either open an incident or count on the open one,
// in one statement (so concurrent events of one problem make one incident, on every
// replica). The domain supplies what each outcome writes.

/// The timeline entry of an event counted as occurrence `occurrence_count` of an incident.
pub fn attached_entry(id: IncidentId, occurrence_count: i64, event: &Event, now: DateTime<Utc>) -> TimelineEntry {
    TimelineEntry::new(
        id,
        now,
        TimelineKind::EventAttached,
        event.source.as_str(),
        format!("occurrence {occurrence_count} of `{}`", event.title),
    )
}

/// The severity a repeat event leaves its open incident at: raised to the event's when
/// that is more severe, never lowered.
pub fn raised_severity(current: Severity, event: &Event) -> Option<Severity> {
    (event.severity < current).then_some(event.severity)
}

/// The timeline entry of a severity raised by a repeat event.
pub fn severity_raised_entry(
    id: IncidentId,
    from: Severity,
    to: Severity,
    event: &Event,
    now: DateTime<Utc>,
) -> TimelineEntry {
    TimelineEntry::new(
        id,
        now,
        TimelineKind::Classified,
        event.source.as_str(),
        format!("severity raised {from} → {to} by a repeat event"),
    )
}

/// The timeline entry of a new incident.
pub fn created_entry(incident: &Incident) -> TimelineEntry {
    let mut message = format!("{} incident opened: {}", incident.severity, incident.title);
    // What triage decided is said in the same entry, not in one more per incident.
    if let Some(classification) = &incident.classification {
        // Written straight into the message: this runs for most new incidents.
        let decided = match (classification.severity, classification.category) {
            (Some(severity), Some(category)) => format!("{severity} and {category}"),
            (Some(severity), None) => severity.to_string(),
            (None, Some(category)) => category.to_string(),
            (None, None) => String::new(),
        };
        let _ = write!(
            message,
            " [classified {decided} by {}/{}, confidence {:.2}]",
            classification.provider, classification.model, classification.confidence
        );
    }
    TimelineEntry::new(
        incident.id,
        incident.created_at,
        TimelineKind::Created,
        incident.source.as_str(),
        message,
    )
}

/// The resolution an event from the source asks for.
pub fn resolve_by_event(
    incident: &Incident,
    event: &Event,
    now: DateTime<Utc>,
) -> Result<Transition, IllegalTransition> {
    let note = format!("resolved event from {}", event.source);
    apply(
        incident,
        &Action::Resolve { note: Some(note) },
        event.source.as_str(),
        now,
    )
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::vocabulary::{EventStatus, Source};

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + seconds, 0).unwrap()
    }

    fn event(status: EventStatus) -> Event {
        Event {
            source: Source::Sentinel,
            title: "drift".into(),
            description: String::new(),
            severity: Severity::P1,
            category: Category::ModelDrift,
            labels: BTreeMap::new(),
            fingerprint: "fp".into(),
            status,
            occurred_at: at(0),
            occurred_at_given: false,
            classification: None,
        }
    }

    fn incident_in(state: State) -> Incident {
        let mut incident = Incident::open(IncidentId::generate(), &event(EventStatus::Firing), at(0));
        incident.state = state;
        incident
    }

    fn assign() -> Action {
        Action::assign(Some("ana".into()), Some("ml-oncall".into())).unwrap()
    }

    #[test]
    fn the_transition_table_is_exactly_the_design() {
        use State::*;
        let allowed = [
            (New, Assigned),
            (New, Acknowledged),
            (Assigned, Assigned),
            (Assigned, Acknowledged),
            (Acknowledged, InProgress),
            (Acknowledged, Assigned),
            (InProgress, Assigned),
            (New, Resolved),
            (Assigned, Resolved),
            (Acknowledged, Resolved),
            (InProgress, Resolved),
        ];
        for from in State::ALL {
            for to in State::ALL {
                let expected = allowed.contains(&(*from, *to));
                assert_eq!(transition_allowed(*from, *to), expected, "{from} -> {to}");
            }
        }
    }

    #[test]
    fn a_full_lifecycle_records_times_and_entries() {
        let new = incident_in(State::New);
        let assigned = apply(&new, &assign(), "lead", at(10)).unwrap();
        assert_eq!(assigned.after.assignee.as_deref(), Some("ana"));
        assert_eq!(assigned.after.team.as_deref(), Some("ml-oncall"));
        let acked = apply(&assigned.after, &Action::Acknowledge, "ana", at(70)).unwrap();
        assert!(acked.first_acknowledgement());
        assert_eq!(acked.after.acknowledged_at, Some(at(70)));
        let started = apply(&acked.after, &Action::Start, "ana", at(80)).unwrap();
        let resolved = apply(
            &started.after,
            &Action::resolve(Some("rolled back".into())).unwrap(),
            "ana",
            at(300),
        )
        .unwrap();
        assert_eq!(resolved.after.state, State::Resolved);
        assert_eq!(resolved.after.resolved_at, Some(at(300)));
        assert_eq!(resolved.after.resolution_note.as_deref(), Some("rolled back"));
        assert_eq!(resolved.entry.kind, TimelineKind::Resolved);
    }

    #[test]
    fn illegal_actions_are_refused_and_name_the_state() {
        let resolved = incident_in(State::Resolved);
        let error = apply(&resolved, &Action::Acknowledge, "ana", at(1)).unwrap_err();
        assert_eq!(error.to_string(), "cannot acknowledge an incident that is RESOLVED");
        assert!(apply(&incident_in(State::New), &Action::Start, "ana", at(1)).is_err());
        assert!(apply(&incident_in(State::Acknowledged), &Action::Acknowledge, "ana", at(1)).is_err());
    }

    #[test]
    fn a_second_acknowledgement_after_hand_over_keeps_the_first_time() {
        let acked = apply(&incident_in(State::New), &Action::Acknowledge, "ana", at(5))
            .unwrap()
            .after;
        let handed = apply(&acked, &assign(), "ana", at(6)).unwrap().after;
        let again = apply(&handed, &Action::Acknowledge, "bo", at(9)).unwrap();
        assert!(!again.first_acknowledgement());
        assert_eq!(again.after.acknowledged_at, Some(at(5)));
    }

    #[test]
    fn reclassifying_changes_severity_and_category_of_open_incidents_only() {
        let open = incident_in(State::Acknowledged);
        let action = Action::reclassify(Some("critical".into()), Some("security".into())).unwrap();
        let change = apply(&open, &action, "ana", at(5)).unwrap();
        assert_eq!(change.after.state, State::Acknowledged);
        assert_eq!(
            (change.after.severity, change.after.category),
            (Severity::P0, Category::Security)
        );
        assert_eq!(change.entry.kind, TimelineKind::Classified);
        assert_eq!(
            change.entry.message,
            "severity P1 → P0, category model_drift → security by ana"
        );
        assert!(apply(&incident_in(State::Resolved), &action, "ana", at(5)).is_err());
        assert!(Action::reclassify(None, None).is_err());
        assert!(Action::reclassify(Some("P7".into()), None).is_err());
    }

    #[test]
    fn a_repeat_event_raises_the_severity_and_never_lowers_it() {
        let mut repeat = event(EventStatus::Firing);
        repeat.severity = Severity::P0;
        assert_eq!(raised_severity(Severity::P2, &repeat), Some(Severity::P0));
        assert_eq!(raised_severity(Severity::P0, &repeat), None);
        repeat.severity = Severity::P3;
        assert_eq!(raised_severity(Severity::P2, &repeat), None);
        let entry = severity_raised_entry(IncidentId::generate(), Severity::P2, Severity::P0, &repeat, at(5));
        assert_eq!(entry.message, "severity raised P2 → P0 by a repeat event");
        assert_eq!(entry.kind, TimelineKind::Classified);
    }

    #[test]
    fn an_attached_event_names_its_occurrence() {
        let incident = incident_in(State::New);
        let entry = attached_entry(incident.id, 2, &event(EventStatus::Firing), at(43));
        assert_eq!(entry.kind, TimelineKind::EventAttached);
        assert_eq!(entry.message, "occurrence 2 of `drift`");
        assert_eq!(entry.actor, "sentinel");
    }

    fn model_answer(severity: Severity, category: Category) -> Classification {
        Classification {
            status: ClassificationStatus::Done,
            severity: Some(severity),
            category: Some(category),
            confidence: 0.9,
            reasoning: "jailbreak attempts".into(),
            provider: "openai".into(),
            model: "gpt-4o".into(),
        }
    }

    #[test]
    fn a_model_classification_changes_what_it_decides_and_says_so() {
        let incident = incident_in(State::New);
        let action = Action::Classify(Ok(model_answer(Severity::P0, Category::Security)));
        let transition = apply(&incident, &action, "openai/gpt-4o", at(5)).unwrap();
        assert_eq!(
            (transition.after.severity, transition.after.category),
            (Severity::P0, Category::Security)
        );
        assert_eq!(transition.after.state, State::New);
        assert_eq!(transition.entry.kind, TimelineKind::Classified);
        assert_eq!(
            transition.entry.message,
            "classified by openai/gpt-4o: severity P1 → P0, category model_drift → security (confidence 0.90): \
             jailbreak attempts"
        );
        let resolved = incident_in(State::Resolved);
        assert!(
            apply(&resolved, &action, "openai/gpt-4o", at(5)).is_err(),
            "a closed incident keeps its record"
        );
    }

    #[test]
    fn a_person_reclassification_is_never_overwritten_by_a_model() {
        let incident = incident_in(State::Assigned);
        let reclassify = Action::Reclassify {
            severity: Some(Severity::P3),
            category: None,
        };
        let by_ana = apply(&incident, &reclassify, "ana", at(1)).unwrap().after;
        assert!(by_ana.classification.as_ref().unwrap().is_manual());
        let action = Action::Classify(Ok(model_answer(Severity::P0, Category::Security)));
        let transition = apply(&by_ana, &action, "openai/gpt-4o", at(2)).unwrap();
        assert_eq!(transition.after.severity, Severity::P3);
        assert_eq!(transition.after.classification, by_ana.classification);
        assert!(
            transition
                .entry
                .message
                .ends_with("the classification a person made stays")
        );
    }

    #[test]
    fn a_failed_classification_keeps_the_values_and_marks_the_status() {
        let mut incident = incident_in(State::New);
        incident.classification = Some(Classification {
            status: ClassificationStatus::Pending,
            severity: Some(Severity::P1),
            category: None,
            confidence: 0.5,
            reasoning: "offline".into(),
            provider: "offline".into(),
            model: "rules-v1".into(),
        });
        let failure = TriageFailure {
            provider: "openai".into(),
            model: "gpt-4o".into(),
            reason: "401 Unauthorized".into(),
        };
        let transition = apply(&incident, &Action::Classify(Err(failure)), "openai/gpt-4o", at(3)).unwrap();
        assert_eq!(transition.after.severity, Severity::P1);
        assert_eq!(
            transition.after.classification.unwrap().status,
            ClassificationStatus::Failed
        );
    }
}
