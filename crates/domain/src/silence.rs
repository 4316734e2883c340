//! Silences (maintenance windows, DESIGN §7): matchers as in routes and a time window.
//! While a silence holds an incident, the incident is recorded and counted but notifies
//! and escalates nobody; when it ends, an incident still open and unacknowledged starts
//! its escalation then. Silences are runtime data kept in the store, made over the API.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::event::{FieldError, optional_text, required_text};
use crate::incident::{Incident, InvalidId};
use crate::matcher::{Matchers, OneOrMany};
use crate::vocabulary::{Category, Severity, Source};

/// Longest `comment` (characters).
pub const MAX_COMMENT_CHARS: usize = 1024;
/// Longest `created_by` (characters).
pub const MAX_AUTHOR_CHARS: usize = 128;
/// Most matchers in each of a silence's tables (`match`, `match_re`).
pub const MAX_MATCHERS: usize = 32;
/// Most values of one matcher: every active silence is compiled again when it is read,
/// so a silence's regular expressions stay few.
pub const MAX_MATCHER_VALUES: usize = 16;
/// Longest matcher key or value (characters); a pattern longer than this is no silence.
pub const MAX_MATCHER_CHARS: usize = 1024;

/// A silence's id: a UUIDv7, so that silences list newest first by id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema), schema(value_type = String, format = Uuid))]
#[serde(transparent)]
pub struct SilenceId(pub Uuid);

impl SilenceId {
    pub fn generate() -> Self {
        SilenceId(Uuid::now_v7())
    }
}

impl fmt::Display for SilenceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for SilenceId {
    type Err = InvalidId;

    /// The hyphenated form only, as for incident ids.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text.len() != 36 {
            return Err(InvalidId);
        }
        Uuid::parse_str(text).map(SilenceId).map_err(|_| InvalidId)
    }
}

closed_vocabulary! {
    /// Where a silence is in its window.
    SilenceState, "silence state" {
        Pending => "pending",
        Active => "active",
        Expired => "expired",
    }
}

/// Matchers as written, in the shape of a route's (`match`, `match_re`), kept so that a
/// silence reads back as it was made.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct SilenceMatchers {
    /// Equality: `source`, `severity`, `category` or `labels.NAME`, each one value or a list.
    #[serde(rename = "match", default, skip_serializing_if = "BTreeMap::is_empty")]
    #[cfg_attr(feature = "utoipa", schema(value_type = Object))]
    pub equal: BTreeMap<String, OneOrMany>,
    /// Fully anchored regular expressions over the same keys.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[cfg_attr(feature = "utoipa", schema(value_type = Object))]
    pub match_re: BTreeMap<String, OneOrMany>,
}

impl SilenceMatchers {
    /// Compiles the matchers as the API takes them; `field` prefixes the key in errors
    /// (`matchers`). Values of `source`, `severity` and `category` are exact spellings, as
    /// everywhere in the API (a route in the configuration may write them loosely).
    fn compile(&self, field: &str) -> Result<Matchers, FieldError> {
        if self.equal.is_empty() && self.match_re.is_empty() {
            return Err(FieldError::new(
                field,
                "names no matcher; a silence must say which incidents it holds (match or match_re)",
            ));
        }
        for (table, matchers) in [("match", &self.equal), ("match_re", &self.match_re)] {
            if matchers.len() > MAX_MATCHERS {
                return Err(FieldError::new(
                    format!("{field}.{table}"),
                    format!("has {} matchers; the limit is {MAX_MATCHERS}", matchers.len()),
                ));
            }
            for (key, values) in matchers {
                let values = values.values();
                let name = format!("{field}.{table}.{}", crate::text::excerpt(key));
                if key.contains('\0') {
                    return Err(FieldError::new(name, "has a NUL character in its key"));
                }
                if key.chars().count() > MAX_MATCHER_CHARS {
                    return Err(FieldError::new(
                        name,
                        format!("is longer than {MAX_MATCHER_CHARS} characters"),
                    ));
                }
                if values.is_empty() || values.len() > MAX_MATCHER_VALUES {
                    return Err(FieldError::new(name, format!("needs 1 to {MAX_MATCHER_VALUES} values")));
                }
                if values.iter().any(|value| value.chars().count() > MAX_MATCHER_CHARS) {
                    return Err(FieldError::new(
                        name,
                        format!("has a value longer than {MAX_MATCHER_CHARS} characters"),
                    ));
                }
                if values.iter().any(|value| value.contains('\0')) {
                    return Err(FieldError::new(name, "has a value with a NUL character"));
                }
                if table == "match" {
                    let exact = |value: &str| match key.as_str() {
                        "source" => value.parse::<Source>().map(drop),
                        "severity" => value.parse::<Severity>().map(drop),
                        "category" => value.parse::<Category>().map(drop),
                        _ => Ok(()),
                    };
                    if let Some(error) = values.iter().find_map(|value| exact(value).err()) {
                        return Err(FieldError::new(name, error.to_string()));
                    }
                }
            }
        }
        Matchers::parse(&self.equal, &self.match_re)
            .map_err(|error| FieldError::new(format!("{field}.{}", error.key), error.problem))
    }
}

/// A silence as a person asks for it.
#[derive(Debug, Clone, Default)]
pub struct NewSilence {
    pub matchers: SilenceMatchers,
    /// Default: now.
    pub starts_at: Option<DateTime<Utc>>,
    pub ends_at: Option<DateTime<Utc>>,
    pub comment: Option<String>,
    pub created_by: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Silence {
    pub id: SilenceId,
    pub matchers: SilenceMatchers,
    compiled: Matchers,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    pub comment: String,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl PartialEq for Silence {
    /// Compiled matchers follow from the written ones.
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id
            && self.matchers == other.matchers
            && self.starts_at == other.starts_at
            && self.ends_at == other.ends_at
            && self.comment == other.comment
            && self.created_by == other.created_by
            && self.created_at == other.created_at
            && self.updated_at == other.updated_at
    }
}

impl NewSilence {
    /// Checks the request: at least one valid matcher, a window that ends after it starts
    /// and after `now`, and texts within their limits. Errors name the field.
    pub fn validate(self, now: DateTime<Utc>) -> Result<Silence, FieldError> {
        let compiled = self.matchers.compile("matchers")?;
        let starts_at = self.starts_at.unwrap_or(now);
        let ends_at = self
            .ends_at
            .ok_or_else(|| FieldError::new("ends_at", "is required: when the silence ends (RFC 3339)"))?;
        if ends_at <= starts_at {
            return Err(FieldError::new("ends_at", "is not after starts_at"));
        }
        if ends_at <= now {
            return Err(FieldError::new(
                "ends_at",
                "is in the past; a silence must end in the future",
            ));
        }
        let comment = required_text(self.comment, "comment", MAX_COMMENT_CHARS)?;
        let created_by = optional_text(self.created_by, "created_by", MAX_AUTHOR_CHARS)?;
        Ok(Silence {
            id: SilenceId::generate(),
            matchers: self.matchers,
            compiled,
            starts_at,
            ends_at,
            comment,
            created_by: if created_by.is_empty() {
                "api".to_owned()
            } else {
                created_by
            },
            created_at: now,
            updated_at: now,
        })
    }
}

impl Silence {
    /// A silence read back from the store (whose matchers were checked when it was made).
    #[allow(clippy::too_many_arguments)]
    pub fn restore(
        id: SilenceId,
        matchers: SilenceMatchers,
        starts_at: DateTime<Utc>,
        ends_at: DateTime<Utc>,
        comment: String,
        created_by: String,
        created_at: DateTime<Utc>,
        updated_at: DateTime<Utc>,
    ) -> Result<Silence, FieldError> {
        let compiled = Matchers::parse(&matchers.equal, &matchers.match_re)
            .map_err(|error| FieldError::new(format!("matchers.{}", error.key), error.problem))?;
        Ok(Silence {
            id,
            matchers,
            compiled,
            starts_at,
            ends_at,
            comment,
            created_by,
            created_at,
            updated_at,
        })
    }

    pub fn state(&self, now: DateTime<Utc>) -> SilenceState {
        if now < self.starts_at {
            SilenceState::Pending
        } else if now < self.ends_at {
            SilenceState::Active
        } else {
            SilenceState::Expired
        }
    }

    /// True when the silence is active at `now` and matches the incident.
    pub fn holds(&self, incident: &Incident, now: DateTime<Utc>) -> bool {
        self.state(now) == SilenceState::Active && self.compiled.matches(incident)
    }

    /// The silence ended at `now` (a pending one never starts); unchanged when it had
    /// already ended.
    pub fn expire(mut self, now: DateTime<Utc>) -> Silence {
        if self.state(now) == SilenceState::Expired {
            return self;
        }
        self.starts_at = self.starts_at.min(now);
        self.ends_at = now;
        self.updated_at = now;
        self
    }
}

/// The active silence among `silences` that holds `incident` longest, if any (the one
/// whose end decides when the incident may escalate).
pub fn holding<'a>(silences: &'a [Silence], incident: &Incident, now: DateTime<Utc>) -> Option<&'a Silence> {
    silences
        .iter()
        .filter(|silence| silence.holds(incident, now))
        .max_by_key(|silence| silence.ends_at)
}

#[cfg(test)]
mod tests {
    use chrono::TimeDelta;

    use super::*;
    use crate::event::{EventRules, RawEvent};
    use crate::incident::IncidentId;

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000, 0).unwrap()
    }

    fn incident(severity: &str, model: &str) -> Incident {
        let event = RawEvent {
            source: Some("sentinel".into()),
            title: Some("drift".into()),
            severity: Some(severity.into()),
            labels: BTreeMap::from([("model".to_owned(), model.to_owned())]),
            ..RawEvent::default()
        }
        .validate(now(), &EventRules::default())
        .unwrap();
        Incident::open(IncidentId::generate(), &event, now())
    }

    fn silence(equal: &[(&str, &str)], minutes: i64) -> NewSilence {
        NewSilence {
            matchers: SilenceMatchers {
                equal: equal
                    .iter()
                    .map(|(key, value)| (key.to_string(), OneOrMany::One(value.to_string())))
                    .collect(),
                match_re: BTreeMap::new(),
            },
            ends_at: Some(now() + TimeDelta::minutes(minutes)),
            comment: Some("maintenance".into()),
            ..NewSilence::default()
        }
    }

    #[test]
    fn an_active_silence_holds_the_incidents_it_matches_and_no_others() {
        let silence = silence(&[("labels.model", "gpt-4o")], 60).validate(now()).unwrap();
        assert_eq!(silence.state(now()), SilenceState::Active);
        assert!(silence.holds(&incident("P1", "gpt-4o"), now()));
        assert!(!silence.holds(&incident("P1", "claude"), now()));
        assert_eq!(silence.created_by, "api");
    }

    #[test]
    fn a_silence_holds_only_within_its_window() {
        let mut pending = silence(&[("severity", "P1")], 60);
        pending.starts_at = Some(now() + TimeDelta::minutes(10));
        let pending = pending.validate(now()).unwrap();
        let incident = incident("P1", "x");
        assert_eq!(pending.state(now()), SilenceState::Pending);
        assert!(!pending.holds(&incident, now()));
        assert!(pending.holds(&incident, now() + TimeDelta::minutes(10)));
        assert!(!pending.holds(&incident, now() + TimeDelta::minutes(60)));
        assert_eq!(pending.state(now() + TimeDelta::minutes(60)), SilenceState::Expired);
    }

    #[test]
    fn an_expired_silence_no_longer_holds() {
        let silence = silence(&[("severity", "P1")], 60).validate(now()).unwrap();
        let later = now() + TimeDelta::minutes(5);
        let expired = silence.clone().expire(later);
        assert_eq!(expired.ends_at, later);
        assert_eq!(expired.state(later), SilenceState::Expired);
        assert!(!expired.holds(&incident("P1", "x"), later));
        assert_eq!(
            expired.clone().expire(later + TimeDelta::minutes(1)),
            expired,
            "expiring twice changes nothing"
        );
    }

    #[test]
    fn the_longest_holding_silence_decides() {
        let short = silence(&[("severity", "P1")], 10).validate(now()).unwrap();
        let long = silence(&[("labels.model", "gpt-4o")], 90).validate(now()).unwrap();
        let other = silence(&[("labels.model", "claude")], 900).validate(now()).unwrap();
        let silences = [short, long.clone(), other];
        assert_eq!(holding(&silences, &incident("P1", "gpt-4o"), now()), Some(&long));
        assert_eq!(holding(&silences, &incident("P3", "mistral"), now()), None);
    }

    #[test]
    fn a_silence_request_that_cannot_be_kept_is_refused_naming_the_field() {
        let refused = |request: NewSilence| request.validate(now()).unwrap_err().field;
        assert_eq!(refused(silence(&[], 60)), "matchers");
        assert_eq!(refused(silence(&[("severity", "P9")], 60)), "matchers.match.severity");
        assert_eq!(refused(silence(&[("title", "x")], 60)), "matchers.match.title");
        assert_eq!(refused(silence(&[("severity", "P1")], -1)), "ends_at");
        let mut backwards = silence(&[("severity", "P1")], 60);
        backwards.starts_at = Some(now() + TimeDelta::minutes(90));
        assert_eq!(refused(backwards), "ends_at");
        let mut no_end = silence(&[("severity", "P1")], 60);
        no_end.ends_at = None;
        assert_eq!(refused(no_end), "ends_at");
        let mut no_comment = silence(&[("severity", "P1")], 60);
        no_comment.comment = None;
        assert_eq!(refused(no_comment), "comment");
        let mut regex = silence(&[], 60);
        regex
            .matchers
            .match_re
            .insert("labels.model".into(), OneOrMany::One("gpt-(4".into()));
        assert_eq!(refused(regex), "matchers.match_re.labels.model");
    }

    #[test]
    fn matchers_read_back_as_written() {
        let silence = silence(&[("labels.model", "gpt-4o")], 60).validate(now()).unwrap();
        let json = serde_json::to_value(&silence.matchers).unwrap();
        assert_eq!(json, serde_json::json!({"match": {"labels.model": "gpt-4o"}}));
        let back: SilenceMatchers = serde_json::from_value(json).unwrap();
        assert_eq!(back, silence.matchers);
    }
}
