//! The `[people.NAME]`, `[schedules.NAME]` and `[escalation_policies.NAME]` tables
//! (DESIGN §7): who can be reached and how, who is on call when, and whom an incident
//! escalates to. Every refusal names its key (`schedules.primary.start`,
//! `escalation_policies.urgent.levels[1].notify`).

use std::collections::BTreeMap;

use chrono::{DateTime, FixedOffset};
use lim_domain::escalation::{EscalationPolicy, Level, Target};
use lim_domain::oncall::{Override, Rotation, Schedule};
use lim_domain::text::excerpt;
use serde::Deserialize;

use super::notify::ChannelSettings;
use super::{ConfigError, duration_key};
use lim_domain::ChannelKind;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FilePerson {
    email: Option<String>,
    slack: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileSchedule {
    #[serde(default)]
    participants: Vec<String>,
    rotation: Option<String>,
    start: Option<String>,
    #[serde(default)]
    overrides: Vec<FileOverride>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileOverride {
    from: Option<String>,
    to: Option<String>,
    who: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FilePolicy {
    #[serde(default)]
    levels: Vec<FileLevel>,
    repeat: Option<u32>,
    repeat_interval: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileLevel {
    after: Option<String>,
    #[serde(default)]
    notify: Vec<String>,
}

/// How a person is reached: through the first email channel (by name) with their address,
/// through the first Slack channel with a mention of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Person {
    pub name: String,
    pub email: Option<String>,
    /// A Slack member id (`U024BE7LH`), mentioned as `<@U024BE7LH>`, or a name written
    /// with its `@`.
    pub slack: Option<String>,
}

impl Person {
    /// The channels that reach this person, one per contact, each the first configured
    /// channel of its type (the channels in name order).
    pub fn contact_channels<'a>(&self, channels: &'a BTreeMap<String, ChannelSettings>) -> Vec<&'a str> {
        let first = |kind: ChannelKind| {
            channels
                .values()
                .find(|channel| channel.kind() == kind)
                .map(|channel| channel.name.as_str())
        };
        let mut found = Vec::new();
        if self.email.is_some() {
            found.extend(first(ChannelKind::Email));
        }
        if self.slack.is_some() {
            found.extend(first(ChannelKind::Slack));
        }
        found
    }
}

pub(super) fn people(
    file: BTreeMap<String, FilePerson>,
    channels: &BTreeMap<String, ChannelSettings>,
) -> Result<BTreeMap<String, Person>, ConfigError> {
    let mut people = BTreeMap::new();
    for (name, person) in file {
        let key = |field: &str| format!("people.{name}.{field}");
        if channels.contains_key(&name) {
            return Err(invalid(
                format!("people.{name}"),
                format!("`{name}` names a channel too; escalation targets must be unambiguous"),
            ));
        }
        if let Some(email) = &person.email {
            if email.parse::<lettre::message::Mailbox>().is_err() {
                return Err(invalid(
                    key("email"),
                    format!("`{}` is not an email address", excerpt(email)),
                ));
            }
            if !channels.values().any(|channel| channel.kind() == ChannelKind::Email) {
                return Err(invalid(
                    key("email"),
                    "is reached through an email channel, and none is configured".into(),
                ));
            }
        }
        if let Some(slack) = &person.slack {
            if slack.trim().is_empty() {
                return Err(invalid(key("slack"), "is empty".into()));
            }
            if !channels.values().any(|channel| channel.kind() == ChannelKind::Slack) {
                return Err(invalid(
                    key("slack"),
                    "is reached through a slack channel, and none is configured".into(),
                ));
            }
        }
        if person.email.is_none() && person.slack.is_none() {
            return Err(invalid(
                format!("people.{name}"),
                "gives no contact; set email or slack".into(),
            ));
        }
        people.insert(
            name.clone(),
            Person {
                name,
                email: person.email,
                slack: person.slack,
            },
        );
    }
    Ok(people)
}

pub(super) fn schedules(
    file: BTreeMap<String, FileSchedule>,
    people: &BTreeMap<String, Person>,
) -> Result<BTreeMap<String, Schedule>, ConfigError> {
    let mut schedules = BTreeMap::new();
    for (name, schedule) in file {
        let key = |field: &str| format!("schedules.{name}.{field}");
        let rotation = schedule
            .rotation
            .as_deref()
            .ok_or_else(|| {
                invalid(
                    key("rotation"),
                    "is required: daily, weekly or a length such as 12h".into(),
                )
            })
            .and_then(|text| Rotation::parse(text).map_err(|problem| invalid(key("rotation"), problem)))?;
        let start = time(&key("start"), schedule.start)?;
        let overrides = schedule
            .overrides
            .into_iter()
            .enumerate()
            .map(|(index, replacement)| {
                Ok(Override {
                    from: time(&key(&format!("overrides[{index}].from")), replacement.from)?,
                    to: time(&key(&format!("overrides[{index}].to")), replacement.to)?,
                    who: replacement.who.unwrap_or_default(),
                })
            })
            .collect::<Result<Vec<_>, ConfigError>>()?;
        let schedule = Schedule::new(&name, schedule.participants, rotation, start, overrides)
            .map_err(|error| invalid(key(&error.field), error.problem))?;
        if let Some(stranger) = schedule.people().find(|person| !people.contains_key(*person)) {
            return Err(invalid(
                format!("schedules.{name}"),
                format!("`{stranger}` is no person; define them as [people.{stranger}] with a contact"),
            ));
        }
        schedules.insert(name, schedule);
    }
    Ok(schedules)
}

pub(super) fn policies(
    file: BTreeMap<String, FilePolicy>,
    channels: &BTreeMap<String, ChannelSettings>,
    people: &BTreeMap<String, Person>,
    schedules: &BTreeMap<String, Schedule>,
) -> Result<BTreeMap<String, EscalationPolicy>, ConfigError> {
    let mut policies = BTreeMap::new();
    for (name, policy) in file {
        let key = |field: &str| format!("escalation_policies.{name}.{field}");
        let mut levels = Vec::with_capacity(policy.levels.len());
        for (index, level) in policy.levels.into_iter().enumerate() {
            let after = duration_key(
                key(&format!("levels[{index}].after")),
                level.after,
                "0s",
                0,
                30 * 86_400,
            )?;
            let notify = level
                .notify
                .iter()
                .map(|target| {
                    target_of(target, channels, people, schedules)
                        .map_err(|problem| invalid(key(&format!("levels[{index}].notify")), problem))
                })
                .collect::<Result<Vec<_>, _>>()?;
            levels.push(Level { after, notify });
        }
        let repeat = policy.repeat.unwrap_or(0);
        if repeat > 100 {
            return Err(invalid(key("repeat"), format!("{repeat} is outside 0..=100")));
        }
        let repeat_interval = match policy.repeat_interval {
            None => None,
            Some(text) => Some(duration_key(key("repeat_interval"), Some(text), "0s", 0, 30 * 86_400)?),
        };
        let policy = EscalationPolicy::new(&name, levels, repeat, repeat_interval)
            .map_err(|(field, problem)| invalid(key(&field), problem))?;
        policies.insert(name, policy);
    }
    Ok(policies)
}

/// A level's target: `oncall:SCHEDULE`, a channel's name or a person's.
fn target_of(
    text: &str,
    channels: &BTreeMap<String, ChannelSettings>,
    people: &BTreeMap<String, Person>,
    schedules: &BTreeMap<String, Schedule>,
) -> Result<Target, String> {
    if let Some(schedule) = Target::oncall_schedule(text) {
        return if schedules.contains_key(schedule) {
            Ok(Target::OnCall(schedule.to_owned()))
        } else {
            Err(format!(
                "`{}` names no schedule; define it as [schedules.{schedule}]",
                excerpt(text)
            ))
        };
    }
    if channels.contains_key(text) {
        return Ok(Target::Channel(text.to_owned()));
    }
    if people.contains_key(text) {
        return Ok(Target::Person(text.to_owned()));
    }
    Err(format!(
        "`{}` is neither a channel, a person nor oncall:SCHEDULE",
        excerpt(text)
    ))
}

/// An RFC 3339 time with its offset, as the operator wrote it.
fn time(key: &str, value: Option<String>) -> Result<DateTime<FixedOffset>, ConfigError> {
    let text = value.ok_or_else(|| {
        invalid(
            key,
            "is required: an RFC 3339 time such as 2026-01-05T09:00:00+01:00".into(),
        )
    })?;
    DateTime::parse_from_rfc3339(&text).map_err(|_| {
        invalid(
            key,
            format!(
                "`{}` is not an RFC 3339 time such as 2026-01-05T09:00:00+01:00",
                excerpt(&text)
            ),
        )
    })
}

fn invalid(key: impl Into<String>, reason: String) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        reason,
    }
}
