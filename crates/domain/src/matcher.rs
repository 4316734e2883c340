//! Which incidents a route (or a silence) applies to: matchers over `source`, `severity`,
//! `category` and `labels.NAME`, each comparing for equality with one of its values
//! (`match`) or with a fully anchored regular expression (`match_re`). Every matcher of a
//! set must hold. A label the incident does not have reads as the empty string, as in
//! Alertmanager.

use std::collections::BTreeMap;
use std::fmt;

use regex::Regex;
use serde::{Deserialize, Serialize};

use crate::incident::Incident;
use crate::text::excerpt;
use crate::vocabulary::{Category, Severity, Source};

/// A matcher's value as written: one string or a list of them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    pub fn values(&self) -> Vec<&str> {
        match self {
            OneOrMany::One(value) => vec![value.as_str()],
            OneOrMany::Many(values) => values.iter().map(String::as_str).collect(),
        }
    }
}

/// What an incident is matched on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Field {
    Source,
    Severity,
    Category,
    Label(String),
}

impl Field {
    pub fn parse(key: &str) -> Result<Field, String> {
        match key {
            "source" => Ok(Field::Source),
            "severity" => Ok(Field::Severity),
            "category" => Ok(Field::Category),
            _ => match key.strip_prefix("labels.") {
                Some(name) if !name.is_empty() => Ok(Field::Label(name.to_owned())),
                _ => Err(format!(
                    "`{}` is not a field to match; use source, severity, category or labels.NAME",
                    excerpt(key)
                )),
            },
        }
    }

    fn value<'a>(&self, incident: &'a Incident) -> &'a str {
        match self {
            Field::Source => incident.source.as_str(),
            Field::Severity => incident.severity.as_str(),
            Field::Category => incident.category.as_str(),
            Field::Label(name) => incident.labels.get(name).map_or("", String::as_str),
        }
    }
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Field::Source => f.write_str("source"),
            Field::Severity => f.write_str("severity"),
            Field::Category => f.write_str("category"),
            Field::Label(name) => write!(f, "labels.{name}"),
        }
    }
}

#[derive(Debug, Clone)]
enum Condition {
    /// Equal to one of these (vocabulary values in their canonical spelling).
    OneOf(Vec<String>),
    /// Matching one of these, anchored at both ends.
    Regex(Vec<Regex>),
}

#[derive(Debug, Clone)]
pub struct Matcher {
    field: Field,
    condition: Condition,
}

impl Matcher {
    fn holds(&self, incident: &Incident) -> bool {
        let value = self.field.value(incident);
        match &self.condition {
            Condition::OneOf(values) => values.iter().any(|expected| expected == value),
            Condition::Regex(patterns) => patterns.iter().any(|pattern| pattern.is_match(value)),
        }
    }
}

/// A set of matchers; an incident matches when every one holds (an empty set matches all).
#[derive(Debug, Clone, Default)]
pub struct Matchers(Vec<Matcher>);

/// A matcher that cannot be used: `key` names it within its table (`match.severity`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {problem}")]
pub struct MatcherError {
    pub key: String,
    pub problem: String,
}

impl Matchers {
    /// Compiles the `match` (equality) and `match_re` (regular expression) tables. Values
    /// of `source`, `severity` and `category` may be written in any accepted spelling.
    pub fn parse(
        equal: &BTreeMap<String, OneOrMany>,
        regex: &BTreeMap<String, OneOrMany>,
    ) -> Result<Matchers, MatcherError> {
        let mut matchers = Vec::new();
        for (key, values) in equal {
            let error = |problem: String| MatcherError {
                key: format!("match.{key}"),
                problem,
            };
            let field = Field::parse(key).map_err(error)?;
            let values = values
                .values()
                .into_iter()
                .map(|value| canonical(&field, value))
                .collect::<Result<Vec<_>, _>>()
                .map_err(error)?;
            matchers.push(Matcher {
                field,
                condition: Condition::OneOf(values),
            });
        }
        for (key, patterns) in regex {
            let error = |problem: String| MatcherError {
                key: format!("match_re.{key}"),
                problem,
            };
            let field = Field::parse(key).map_err(error)?;
            let patterns = patterns
                .values()
                .into_iter()
                .map(|pattern| {
                    Regex::new(&format!("^(?:{pattern})$"))
                        .map_err(|problem| format!("`{}` is not a regular expression: {problem}", excerpt(pattern)))
                })
                .collect::<Result<Vec<_>, _>>()
                .map_err(error)?;
            matchers.push(Matcher {
                field,
                condition: Condition::Regex(patterns),
            });
        }
        Ok(Matchers(matchers))
    }

    pub fn matches(&self, incident: &Incident) -> bool {
        self.0.iter().all(|matcher| matcher.holds(incident))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// A vocabulary value in its canonical spelling; a label value as written.
fn canonical(field: &Field, value: &str) -> Result<String, String> {
    let parsed = match field {
        Field::Source => Source::parse_lenient(value).map(Source::as_str),
        Field::Severity => Severity::parse_lenient(value).map(Severity::as_str),
        Field::Category => Category::parse_lenient(value).map(Category::as_str),
        Field::Label(_) => return Ok(value.to_owned()),
    };
    parsed.map(str::to_owned).map_err(|error| error.to_string())
}

#[cfg(test)]
mod tests {
    use chrono::DateTime;

    use super::*;
    use crate::event::{EventRules, RawEvent};
    use crate::incident::IncidentId;

    fn incident(severity: &str, labels: &[(&str, &str)]) -> Incident {
        let now = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let event = RawEvent {
            source: Some("sentinel".into()),
            title: Some("drift".into()),
            severity: Some(severity.into()),
            labels: labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            ..RawEvent::default()
        }
        .validate(now, &EventRules::default())
        .unwrap();
        Incident::open(IncidentId::generate(), &event, now)
    }

    fn table(pairs: &[(&str, OneOrMany)]) -> BTreeMap<String, OneOrMany> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect()
    }

    fn one(value: &str) -> OneOrMany {
        OneOrMany::One(value.into())
    }

    #[test]
    fn equality_takes_any_listed_value_in_any_spelling() {
        let matchers = Matchers::parse(
            &table(&[("severity", OneOrMany::Many(vec!["critical".into(), "P1".into()]))]),
            &BTreeMap::new(),
        )
        .unwrap();
        assert!(matchers.matches(&incident("P0", &[])));
        assert!(matchers.matches(&incident("high", &[])));
        assert!(!matchers.matches(&incident("P2", &[])));
    }

    #[test]
    fn regular_expressions_are_anchored_and_missing_labels_are_empty() {
        let matchers = Matchers::parse(&BTreeMap::new(), &table(&[("labels.model", one("gpt-4.*"))])).unwrap();
        assert!(matchers.matches(&incident("P2", &[("model", "gpt-4o")])));
        assert!(!matchers.matches(&incident("P2", &[("model", "my-gpt-4o")])));
        assert!(!matchers.matches(&incident("P2", &[])));
        let absent = Matchers::parse(&BTreeMap::new(), &table(&[("labels.team", one(""))])).unwrap();
        assert!(absent.matches(&incident("P2", &[])));
    }

    #[test]
    fn every_matcher_must_hold_and_none_matches_everything() {
        let both = Matchers::parse(
            &table(&[("source", one("sentinel"))]),
            &table(&[("labels.env", one("prod|staging"))]),
        )
        .unwrap();
        assert!(both.matches(&incident("P2", &[("env", "prod")])));
        assert!(!both.matches(&incident("P2", &[("env", "dev")])));
        assert!(Matchers::default().matches(&incident("P4", &[])));
    }

    #[test]
    fn bad_matchers_name_their_key() {
        let error = Matchers::parse(&BTreeMap::new(), &table(&[("labels.model", one("gpt-(4"))])).unwrap_err();
        assert_eq!(error.key, "match_re.labels.model");
        assert!(error.problem.contains("not a regular expression"), "{}", error.problem);
        let error = Matchers::parse(&table(&[("severity", one("P7"))]), &BTreeMap::new()).unwrap_err();
        assert_eq!(error.key, "match.severity");
        let error = Matchers::parse(&table(&[("title", one("x"))]), &BTreeMap::new()).unwrap_err();
        assert!(error.problem.contains("use source, severity, category or labels.NAME"));
    }
}
