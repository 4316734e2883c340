//! The bounded vocabularies shared by JSON, gRPC, metric labels and the store.
//!
//! Every value here may end up as a Prometheus label, so each set is closed:
//! parsing an unknown value is an error that lists the accepted ones.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A value outside one of the closed vocabularies.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} `{value}`; expected one of: {expected}")]
pub struct UnknownValue {
    pub what: &'static str,
    pub value: String,
    pub expected: String,
}

macro_rules! closed_vocabulary {
    (
        $(#[$meta:meta])*
        $name:ident, $what:literal {
            $( $variant:ident => $text:literal $(| $alias:literal)* ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name { $( $variant ),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[ $( $name::$variant ),+ ];

            /// The canonical spelling, used in JSON, the database and metric labels.
            pub const fn as_str(self) -> &'static str {
                match self { $( $name::$variant => $text ),+ }
            }
        }

        impl FromStr for $name {
            type Err = UnknownValue;

            fn from_str(value: &str) -> Result<Self, Self::Err> {
                let lowered = value.trim().to_ascii_lowercase();
                match lowered.as_str() {
                    $( t if t.eq_ignore_ascii_case($text) $(|| t == $alias)* => Ok($name::$variant), )+
                    _ => Err(UnknownValue {
                        what: $what,
                        value: value.to_owned(),
                        expected: [$( $text ),+].join(", "),
                    }),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }

        #[cfg(feature = "utoipa")]
        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                utoipa::openapi::schema::ObjectBuilder::new()
                    .schema_type(utoipa::openapi::schema::Type::String)
                    .enum_values(Some([$( $text ),+]))
                    .into()
            }
        }

        #[cfg(feature = "utoipa")]
        impl utoipa::ToSchema for $name {}

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
                text.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

closed_vocabulary! {
    /// Incident priority: `P0` is critical, `P4` informational.
    ///
    /// Source vocabularies map onto it: critical/high/medium/low/info and
    /// PagerDuty's critical/error/warning/info, as Alertmanager `severity` labels use them.
    Severity, "severity" {
        P0 => "P0" | "critical" | "fatal" | "emergency",
        P1 => "P1" | "high" | "error" | "major",
        P2 => "P2" | "medium" | "warning" | "warn" | "moderate",
        P3 => "P3" | "low" | "minor",
        P4 => "P4" | "info" | "informational" | "none",
    }
}

closed_vocabulary! {
    /// Where an incident is in its lifecycle (DESIGN §2).
    State, "state" {
        New => "NEW",
        Assigned => "ASSIGNED",
        Acknowledged => "ACKNOWLEDGED",
        InProgress => "IN_PROGRESS",
        Resolved => "RESOLVED",
    }
}

closed_vocabulary! {
    /// The system that reported an event.
    Source, "source" {
        Sentinel => "sentinel",
        Shield => "shield",
        EdgeAgent => "edge-agent" | "edge_agent",
        Governance => "governance",
        Alertmanager => "alertmanager",
        Prometheus => "prometheus",
        Grafana => "grafana",
        Pagerduty => "pagerduty",
        Api => "api",
        Manual => "manual",
        Other => "other",
    }
}

closed_vocabulary! {
    /// What kind of LLM-operations problem an incident is.
    Category, "category" {
        Performance => "performance",
        Availability => "availability",
        Security => "security",
        ModelDrift => "model_drift" | "model-drift" | "drift",
        DataQuality => "data_quality" | "data-quality",
        Cost => "cost",
        Compliance => "compliance",
        Infrastructure => "infrastructure",
        Other => "other",
    }
}

closed_vocabulary! {
    /// Whether an event reports a problem or its end.
    EventStatus, "status" {
        Firing => "firing" | "trigger" | "triggered" | "open",
        Resolved => "resolved" | "resolve" | "ok",
    }
}

impl State {
    pub const fn is_open(self) -> bool {
        !matches!(self, State::Resolved)
    }
}

// The enums come from a macro, so `#[derive(Default)]` with `#[default]` cannot be used.
#[allow(clippy::derivable_impls)]
impl Default for Severity {
    fn default() -> Self {
        Severity::P2
    }
}

#[allow(clippy::derivable_impls)]
impl Default for Category {
    fn default() -> Self {
        Category::Other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_vocabularies_map_onto_priorities() {
        let cases = [
            ("critical", Severity::P0),
            ("high", Severity::P1),
            ("medium", Severity::P2),
            ("low", Severity::P3),
            ("info", Severity::P4),
            ("error", Severity::P1),
            ("warning", Severity::P2),
            ("P3", Severity::P3),
            ("p1", Severity::P1),
            ("CRITICAL", Severity::P0),
        ];
        for (text, expected) in cases {
            assert_eq!(text.parse::<Severity>().unwrap(), expected, "{text}");
        }
    }

    #[test]
    fn unknown_values_name_the_accepted_ones() {
        let error = "P9".parse::<Severity>().unwrap_err();
        assert_eq!(
            error.to_string(),
            "unknown severity `P9`; expected one of: P0, P1, P2, P3, P4"
        );
        assert!("bogus".parse::<Source>().is_err());
        assert!("in_progress".parse::<State>().is_ok());
    }

    #[test]
    fn canonical_spelling_round_trips() {
        for state in State::ALL {
            assert_eq!(state.as_str().parse::<State>().unwrap(), *state);
        }
        for category in Category::ALL {
            assert_eq!(category.as_str().parse::<Category>().unwrap(), *category);
        }
        assert_eq!(serde_json::to_string(&Source::EdgeAgent).unwrap(), "\"edge-agent\"");
    }
}
