//! The bounded vocabularies shared by JSON, gRPC, metric labels and the store.
//!
//! Every value here may end up as a Prometheus label, so each set is closed:
//! parsing an unknown value is an error that lists the accepted ones.

/// A value outside one of the closed vocabularies.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} `{}`; expected one of: {expected}", crate::text::excerpt(value))]
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

            /// Every accepted spelling: the canonical one, then its aliases.
            pub const SPELLINGS: &'static [(&'static str, &'static [&'static str])] =
                &[ $( ($text, &[$( $alias ),*]) ),+ ];

            /// The canonical spelling, used in JSON, the database and metric labels.
            pub const fn as_str(self) -> &'static str {
                match self { $( $name::$variant => $text ),+ }
            }

            /// Reads a third party's spelling (an Alertmanager label, say): surrounding
            /// spaces and letter case do not matter. Our own API takes the exact spellings
            /// of [`Self::SPELLINGS`] only (`FromStr`).
            pub fn parse_lenient(value: &str) -> Result<Self, $crate::vocabulary::UnknownValue> {
                let trimmed = value.trim();
                $(
                    if trimmed.eq_ignore_ascii_case($text) $(|| trimmed.eq_ignore_ascii_case($alias))* {
                        return Ok($name::$variant);
                    }
                )+
                Err(Self::unknown(value))
            }

            fn unknown(value: &str) -> $crate::vocabulary::UnknownValue {
                $crate::vocabulary::UnknownValue {
                    what: $what,
                    value: value.to_owned(),
                    expected: $crate::vocabulary::spellings_list(Self::SPELLINGS),
                }
            }
        }

        impl ::std::str::FromStr for $name {
            type Err = $crate::vocabulary::UnknownValue;

            fn from_str(value: &str) -> Result<Self, Self::Err> {
                match value {
                    $( $text $(| $alias)* => Ok($name::$variant), )+
                    _ => Err(Self::unknown(value)),
                }
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl ::serde::Serialize for $name {
            fn serialize<S: ::serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }

        /// As answered: the canonical spellings.
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

        #[cfg(feature = "utoipa")]
        impl $name {
            /// As accepted in a request: every spelling of [`Self::SPELLINGS`].
            pub fn input_schema() -> utoipa::openapi::schema::Object {
                utoipa::openapi::schema::ObjectBuilder::new()
                    .schema_type(utoipa::openapi::schema::Type::String)
                    .enum_values(Some([$( $text $(, $alias)* ),+]))
                    .build()
            }
        }

        impl<'de> ::serde::Deserialize<'de> for $name {
            fn deserialize<D: ::serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = <::std::borrow::Cow<'de, str> as ::serde::Deserialize>::deserialize(deserializer)?;
                text.parse().map_err(::serde::de::Error::custom)
            }
        }
    };
}

/// `P0 (or critical, fatal), P1, …`: what an error lists as accepted.
pub fn spellings_list(spellings: &[(&str, &[&str])]) -> String {
    spellings
        .iter()
        .map(|(text, aliases)| match aliases {
            [] => (*text).to_owned(),
            aliases => format!("{text} (or {})", aliases.join(", ")),
        })
        .collect::<Vec<_>>()
        .join(", ")
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
        Firing => "firing" | "trigger" | "triggered",
        Resolved => "resolved" | "resolve",
    }
}

closed_vocabulary! {
    /// How a notification channel delivers (the `channel` metric label).
    ChannelKind, "channel type" {
        Webhook => "webhook",
        Slack => "slack",
        Email => "email",
        Pagerduty => "pagerduty",
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
        ];
        for (text, expected) in cases {
            assert_eq!(text.parse::<Severity>().unwrap(), expected, "{text}");
        }
    }

    #[test]
    fn our_api_takes_exact_spellings_and_third_parties_any_case() {
        assert!("p1".parse::<Severity>().is_err());
        assert!(" P1".parse::<Severity>().is_err());
        assert_eq!(Severity::parse_lenient(" Critical ").unwrap(), Severity::P0);
        assert_eq!(Severity::parse_lenient("p1").unwrap(), Severity::P1);
        assert!(Severity::parse_lenient("urgent").is_err());
    }

    #[test]
    fn every_alias_is_listed_and_vague_status_words_are_gone() {
        let error = "ok".parse::<EventStatus>().unwrap_err();
        assert_eq!(
            error.to_string(),
            "unknown status `ok`; expected one of: firing (or trigger, triggered), resolved (or resolve)"
        );
        assert!("open".parse::<EventStatus>().is_err());
        for (text, aliases) in Severity::SPELLINGS {
            for spelling in std::iter::once(text).chain(aliases.iter()) {
                assert!(spelling.parse::<Severity>().is_ok(), "{spelling}");
            }
        }
    }

    #[test]
    fn a_long_unknown_value_is_not_repeated_in_full() {
        let error = "x".repeat(10_000).parse::<Source>().unwrap_err().to_string();
        assert!(error.len() < 400, "{error}");
    }

    #[test]
    fn unknown_values_name_the_accepted_ones() {
        let error = "P9".parse::<Severity>().unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("unknown severity `P9`; expected one of: P0 (or critical, fatal, emergency), P1 (or high"),
            "{error}"
        );
        assert!("bogus".parse::<Source>().is_err());
        assert!("IN_PROGRESS".parse::<State>().is_ok());
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
