//! Third-party payloads (Alertmanager, PagerDuty) are tolerant: an alert must never be
//! lost over a size limit, because their senders treat a 4xx as final and drop the
//! whole group. So before validation their events are made to fit: over-long text is
//! shortened, labels past the limit are folded into the description, and the incident
//! is marked with what was changed (the label [`ADJUSTED_LABEL`]).

use std::collections::BTreeMap;
use std::fmt::Write;

use chrono::{DateTime, Utc};

use crate::event::{
    EventRules, MANUAL_FINGERPRINT_PREFIX, MAX_DESCRIPTION_CHARS, MAX_FINGERPRINT_CHARS, MAX_LABEL_KEY_CHARS,
    MAX_LABEL_VALUE_CHARS, MAX_LABELS, MAX_TITLE_CHARS, RawEvent,
};
use crate::fingerprint::derive_fingerprint_of_text;
use crate::text::shortened;

/// The label that says what was changed to make an event fit. Prometheus label names
/// cannot hold a dot, so it never collides with a label of the alert.
pub const ADJUSTED_LABEL: &str = "incident_manager.adjusted";

/// Labels kept first when an alert has more than fit; the rest are kept in key order.
const KEPT_FIRST: &[&str] = &[
    "alertname",
    "severity",
    "category",
    "service",
    "namespace",
    "cluster",
    "job",
    "instance",
    "pod",
    "team",
];

/// An event made to fit, and what was changed (empty when nothing was).
#[derive(Debug, Clone)]
pub struct Fitted {
    pub event: RawEvent,
    pub changes: Vec<String>,
}

/// Makes `raw` pass validation's size and character rules without losing what it says.
pub fn fit_to_limits(mut raw: RawEvent, now: DateTime<Utc>, rules: &EventRules) -> Fitted {
    let mut changes = Vec::new();
    raw.title = raw
        .title
        .map(|title| fit_text(&title, MAX_TITLE_CHARS, "title", &mut changes));
    let mut description = raw
        .description
        .take()
        .map(|description| without_nul(&description))
        .unwrap_or_default();
    raw.labels = fit_labels(std::mem::take(&mut raw.labels), &mut description, &mut changes);
    if !description.is_empty() {
        raw.description = Some(fit_text(
            &description,
            MAX_DESCRIPTION_CHARS,
            "description",
            &mut changes,
        ));
    }
    raw.fingerprint = raw
        .fingerprint
        .map(|fingerprint| fit_fingerprint(fingerprint, &mut changes));
    if let Some(occurred_at) = raw.occurred_at
        && (occurred_at - now)
            .to_std()
            .is_ok_and(|ahead| ahead > rules.max_clock_skew)
    {
        raw.occurred_at = None;
        changes.push(format!(
            "time {occurred_at} was in the future; the time received is kept"
        ));
    }
    if !changes.is_empty() {
        raw.labels.insert(
            ADJUSTED_LABEL.to_owned(),
            shortened(&changes.join("; "), MAX_LABEL_VALUE_CHARS),
        );
    }
    Fitted { event: raw, changes }
}

fn fit_text(text: &str, limit: usize, what: &str, changes: &mut Vec<String>) -> String {
    let text = without_nul(text.trim());
    if text.chars().count() <= limit {
        return text;
    }
    changes.push(format!("{what} shortened to {limit} characters"));
    shortened(&text, limit)
}

/// Labels within the limits, one place left for [`ADJUSTED_LABEL`]; those that do not
/// fit are written at the end of the description, so nothing the sender said is lost.
fn fit_labels(
    labels: BTreeMap<String, String>,
    description: &mut String,
    changes: &mut Vec<String>,
) -> BTreeMap<String, String> {
    let mut shortened_values = 0;
    let mut fitted: Vec<(String, String)> = labels
        .into_iter()
        .map(|(key, value)| {
            let key = shortened(&without_nul(&key), MAX_LABEL_KEY_CHARS);
            let key = if key.is_empty() { "_".to_owned() } else { key };
            let value = without_nul(&value);
            if value.chars().count() > MAX_LABEL_VALUE_CHARS {
                shortened_values += 1;
                return (key, shortened(&value, MAX_LABEL_VALUE_CHARS));
            }
            (key, value)
        })
        .collect();
    if shortened_values > 0 {
        changes.push(format!(
            "{shortened_values} label values shortened to {MAX_LABEL_VALUE_CHARS} characters"
        ));
    }
    let room = MAX_LABELS - 1;
    if fitted.len() > room {
        // Stable: the labels that matter most first, then key order.
        fitted.sort_by_key(|(key, _)| {
            KEPT_FIRST
                .iter()
                .position(|kept| kept == key)
                .unwrap_or(KEPT_FIRST.len())
        });
        let folded = fitted.split_off(room);
        let _ = write!(description, "\n\nLabels beyond the limit of {MAX_LABELS}:");
        for (key, value) in &folded {
            let _ = write!(description, "\n{key}={value}");
        }
        changes.push(format!("{} labels moved to the description", folded.len()));
    }
    fitted.into_iter().collect()
}

fn fit_fingerprint(fingerprint: String, changes: &mut Vec<String>) -> String {
    let fingerprint = without_nul(fingerprint.trim());
    if fingerprint.chars().count() > MAX_FINGERPRINT_CHARS || fingerprint.starts_with(MANUAL_FINGERPRINT_PREFIX) {
        changes.push("fingerprint replaced by its hash".to_owned());
        return derive_fingerprint_of_text(&fingerprint);
    }
    fingerprint
}

/// NUL is valid JSON but no PostgreSQL text can hold it; U+FFFD shows where it was.
fn without_nul(text: &str) -> String {
    text.replace('\0', "\u{fffd}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::EventRules;

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000, 0).unwrap()
    }

    fn alert(labels: usize) -> RawEvent {
        RawEvent {
            source: Some("alertmanager".into()),
            title: Some("Disk full".into()),
            labels: (0..labels).map(|i| (format!("l{i:03}"), format!("v{i}"))).collect(),
            fingerprint: Some("a1b2".into()),
            ..RawEvent::default()
        }
    }

    #[test]
    fn an_event_within_the_limits_is_left_alone() {
        let fitted = fit_to_limits(alert(10), now(), &EventRules::default());
        assert!(fitted.changes.is_empty());
        assert!(!fitted.event.labels.contains_key(ADJUSTED_LABEL));
        assert!(fitted.event.validate(now(), &EventRules::default()).is_ok());
    }

    #[test]
    fn labels_past_the_limit_move_to_the_description_and_the_event_is_marked() {
        let mut raw = alert(100);
        raw.labels.insert("alertname".into(), "DiskFull".into());
        let fitted = fit_to_limits(raw, now(), &EventRules::default());
        let labels = &fitted.event.labels;
        assert_eq!(labels.len(), MAX_LABELS);
        assert_eq!(labels["alertname"], "DiskFull", "the labels that matter are kept");
        assert_eq!(labels[ADJUSTED_LABEL], "38 labels moved to the description");
        let description = fitted.event.description.as_deref().unwrap();
        assert!(description.contains("l099=v99"), "{description}");
        assert!(fitted.event.validate(now(), &EventRules::default()).is_ok());
    }

    #[test]
    fn over_long_values_nul_and_fingerprints_are_made_to_fit() {
        let mut raw = alert(1);
        raw.title = Some("t\0".repeat(400));
        raw.labels.insert("k".into(), "v".repeat(5000));
        raw.labels.insert("x".repeat(500), "v".into());
        raw.fingerprint = Some("f".repeat(300));
        raw.occurred_at = Some(now() + chrono::TimeDelta::days(3));
        let fitted = fit_to_limits(raw, now(), &EventRules::default());
        assert_eq!(fitted.changes.len(), 4, "{:?}", fitted.changes);
        let event = fitted.event.validate(now(), &EventRules::default()).unwrap();
        assert_eq!(event.title.chars().count(), MAX_TITLE_CHARS);
        assert_eq!(event.labels["k"].chars().count(), MAX_LABEL_VALUE_CHARS);
        assert_eq!(event.fingerprint.len(), 32);
        assert_eq!(event.occurred_at, now());
    }
}
