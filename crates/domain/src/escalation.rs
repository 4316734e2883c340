//! Escalation policies (DESIGN §7): levels, each `after` a delay counted from the
//! incident's creation, that notify channels, people or whoever is on call; optionally
//! the levels run again (`repeat`) while nobody acknowledges. This file only plans which
//! level is due when; each level is a job in the store, so a restart neither loses nor
//! repeats one.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};

use crate::duration::format_duration;

/// Whom a level notifies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A configured channel, by name.
    Channel(String),
    /// A person of `[people.NAME]`, through their own contacts.
    Person(String),
    /// Whoever is on call on the schedule at the moment the level runs.
    OnCall(String),
}

impl Target {
    /// The prefix of an on-call target (`oncall:primary`), also used for assignees.
    pub const ONCALL_PREFIX: &str = "oncall:";

    /// The schedule named by `oncall:NAME`, if `text` is one.
    pub fn oncall_schedule(text: &str) -> Option<&str> {
        text.strip_prefix(Self::ONCALL_PREFIX)
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Channel(name) | Target::Person(name) => f.write_str(name),
            Target::OnCall(schedule) => write!(f, "{}{schedule}", Self::ONCALL_PREFIX),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Level {
    /// From the start of the escalation (the incident's creation).
    pub after: Duration,
    pub notify: Vec<Target>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EscalationPolicy {
    pub name: String,
    /// In order of `after`, at least one.
    pub levels: Vec<Level>,
    /// How many times the levels run again after the first run, while unacknowledged.
    pub repeat: u32,
    /// The wait after the last level before a repeat starts again at level 1.
    pub repeat_interval: Duration,
}

/// One level of one run of a policy, due at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    /// Counted from 1.
    pub level: u32,
    /// 0 for the first run, 1 for the first repeat, …
    pub run: u32,
    pub due_at: DateTime<Utc>,
}

impl EscalationPolicy {
    /// Checks what a policy needs to plan with; the problem names the key within the
    /// policy's table (`levels`, `levels[1].after`, `repeat_interval`).
    pub fn new(
        name: &str,
        levels: Vec<Level>,
        repeat: u32,
        repeat_interval: Option<Duration>,
    ) -> Result<EscalationPolicy, (String, String)> {
        if levels.is_empty() {
            return Err(("levels".into(), "lists no level".into()));
        }
        for (index, pair) in levels.windows(2).enumerate() {
            if pair[1].after < pair[0].after {
                return Err((
                    format!("levels[{}].after", index + 1),
                    format!(
                        "{} comes before the level above it ({}); list levels in the order they run",
                        format_duration(pair[1].after),
                        format_duration(pair[0].after)
                    ),
                ));
            }
        }
        if let Some(index) = levels.iter().position(|level| level.notify.is_empty()) {
            return Err((format!("levels[{index}].notify"), "names nobody to notify".into()));
        }
        let last = levels.last().expect("checked above").after;
        let repeat_interval = repeat_interval.unwrap_or(last);
        if repeat > 0 && last + repeat_interval == Duration::ZERO {
            return Err((
                "repeat_interval".into(),
                "is needed with `repeat` when every level is due at once (after = \"0s\"); \
                 say how long to wait before the levels run again"
                    .into(),
            ));
        }
        Ok(EscalationPolicy {
            name: name.to_owned(),
            levels,
            repeat,
            repeat_interval,
        })
    }

    /// The targets of a level (counted from 1).
    pub fn level(&self, level: u32) -> Option<&Level> {
        self.levels.get(usize::try_from(level).ok()?.checked_sub(1)?)
    }

    /// How long one run of the levels lasts, until the next run starts at level 1.
    pub fn run_length(&self) -> Duration {
        self.levels.last().map_or(Duration::ZERO, |level| level.after) + self.repeat_interval
    }

    /// The first level of an escalation that starts at `start`.
    pub fn first_step(&self, start: DateTime<Utc>) -> Step {
        Step {
            level: 1,
            run: 0,
            due_at: plus(start, self.levels[0].after),
        }
    }

    /// The level after `step`: the next of its run, else level 1 of the next run while
    /// repeats are left, else none (the escalation is over).
    pub fn next_step(&self, start: DateTime<Utc>, step: Step) -> Option<Step> {
        let (level, run) = if (step.level as usize) < self.levels.len() {
            (step.level + 1, step.run)
        } else if step.run < self.repeat {
            (1, step.run + 1)
        } else {
            return None;
        };
        let run_start = plus(start, self.run_length().saturating_mul(run));
        let after = self.level(level)?.after;
        Some(Step {
            level,
            run,
            due_at: plus(run_start, after),
        })
    }
}

fn plus(at: DateTime<Utc>, duration: Duration) -> DateTime<Utc> {
    TimeDelta::from_std(duration)
        .ok()
        .and_then(|delta| at.checked_add_signed(delta))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn start() -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000, 0).unwrap()
    }

    fn level(after_secs: u64, target: &str) -> Level {
        Level {
            after: Duration::from_secs(after_secs),
            notify: vec![Target::Channel(target.into())],
        }
    }

    fn policy(levels: Vec<Level>, repeat: u32, interval: Option<u64>) -> EscalationPolicy {
        EscalationPolicy::new("p", levels, repeat, interval.map(Duration::from_secs)).unwrap()
    }

    fn steps(policy: &EscalationPolicy) -> Vec<(u32, u32, i64)> {
        let mut step = Some(policy.first_step(start()));
        let mut seen = Vec::new();
        while let Some(current) = step {
            seen.push((current.level, current.run, (current.due_at - start()).num_seconds()));
            step = policy.next_step(start(), current);
            assert!(seen.len() < 100, "the plan never ends");
        }
        seen
    }

    #[test]
    fn levels_are_due_their_delay_after_the_start() {
        let policy = policy(vec![level(0, "ops"), level(300, "bo"), level(900, "boss")], 0, None);
        assert_eq!(steps(&policy), [(1, 0, 0), (2, 0, 300), (3, 0, 900)]);
    }

    #[test]
    fn repeat_runs_the_levels_again_after_the_last_one_and_the_interval() {
        let policy = policy(vec![level(0, "ops"), level(600, "bo")], 2, None);
        // A run lasts the last level's delay and, by default, as long again.
        assert_eq!(
            steps(&policy),
            [
                (1, 0, 0),
                (2, 0, 600),
                (1, 1, 1200),
                (2, 1, 1800),
                (1, 2, 2400),
                (2, 2, 3000)
            ]
        );
        let policy = EscalationPolicy::new("p", vec![level(60, "ops")], 1, Some(Duration::from_secs(30))).unwrap();
        assert_eq!(steps(&policy), [(1, 0, 60), (1, 1, 150)]);
    }

    #[test]
    fn a_policy_that_could_not_plan_is_refused_naming_the_key() {
        let refused = |levels, repeat, interval| EscalationPolicy::new("p", levels, repeat, interval).unwrap_err().0;
        assert_eq!(refused(vec![], 0, None), "levels");
        assert_eq!(
            refused(vec![level(60, "a"), level(30, "b")], 0, None),
            "levels[1].after"
        );
        assert_eq!(
            refused(
                vec![Level {
                    after: Duration::ZERO,
                    notify: vec![]
                }],
                0,
                None
            ),
            "levels[0].notify"
        );
        assert_eq!(refused(vec![level(0, "a")], 3, None), "repeat_interval");
        assert!(EscalationPolicy::new("p", vec![level(0, "a")], 3, Some(Duration::from_secs(60))).is_ok());
    }

    #[test]
    fn levels_are_counted_from_one() {
        let policy = policy(vec![level(0, "ops"), level(60, "bo")], 0, None);
        assert_eq!(policy.level(1).unwrap().notify[0], Target::Channel("ops".into()));
        assert_eq!(policy.level(2).unwrap().after, Duration::from_secs(60));
        assert_eq!(policy.level(0), None);
        assert_eq!(policy.level(3), None);
    }

    #[test]
    fn a_target_says_how_it_was_written() {
        assert_eq!(Target::oncall_schedule("oncall:primary"), Some("primary"));
        assert_eq!(Target::oncall_schedule("ana"), None);
        assert_eq!(Target::OnCall("primary".into()).to_string(), "oncall:primary");
        assert_eq!(Target::Person("bo".into()).to_string(), "bo");
    }
}
