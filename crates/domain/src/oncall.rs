//! On-call schedules (DESIGN §7): who is on call at a moment, and the shifts of a window.
//!
//! A rotation hands off every `rotation` from `start` on, through the participants in their
//! order; before `start` it has nobody. Overrides put someone else on call for a while,
//! anywhere in time, and where they overlap the one listed later wins (the newest
//! arrangement is usually written last). Times are absolute: `daily` is 24 hours and the
//! offset of `start` is fixed, so there is no daylight saving to follow; answers are given
//! in that offset, the one the operator wrote.

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, FixedOffset, TimeDelta, Utc};
use serde::Serialize;

use crate::duration::{format_duration, parse_duration};
use crate::text::excerpt;

const NANOS_PER_SECOND: i128 = 1_000_000_000;

/// How long each participant stays on call before handing off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rotation {
    Daily,
    Weekly,
    Every(Duration),
}

impl Rotation {
    /// Shorter rotations are surely a mistake (`1s` for `1d`), and would make every window
    /// hold more shifts than anyone can read.
    pub const SHORTEST: Duration = Duration::from_secs(60);

    /// `daily`, `weekly`, or a duration (`12h`); at least one minute. Error text says what is accepted.
    pub fn parse(text: &str) -> Result<Rotation, String> {
        let accepted = "write daily, weekly or a length of at least 1m such as 12h";
        match text.trim() {
            "daily" => Ok(Rotation::Daily),
            "weekly" => Ok(Rotation::Weekly),
            written => {
                let Ok(length) = parse_duration(written) else {
                    return Err(format!("`{}` is not a rotation; {accepted}", excerpt(text)));
                };
                if length < Rotation::SHORTEST {
                    return Err(format!("`{}` is too short a rotation; {accepted}", excerpt(text)));
                }
                Ok(Rotation::Every(length))
            }
        }
    }

    pub fn length(&self) -> Duration {
        match self {
            Rotation::Daily => Duration::from_secs(86_400),
            Rotation::Weekly => Duration::from_secs(7 * 86_400),
            Rotation::Every(length) => *length,
        }
    }
}

impl fmt::Display for Rotation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rotation::Daily => f.write_str("daily"),
            Rotation::Weekly => f.write_str("weekly"),
            Rotation::Every(length) => f.write_str(&format_duration(*length)),
        }
    }
}

/// `who` is on call instead of the rotation from `from` (inclusive) to `to` (exclusive).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Override {
    pub from: DateTime<FixedOffset>,
    pub to: DateTime<FixedOffset>,
    pub who: String,
}

/// One person on call from `from` (inclusive) to `to` (exclusive), in the schedule's offset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Shift {
    pub person: String,
    pub from: DateTime<FixedOffset>,
    pub to: DateTime<FixedOffset>,
}

/// A schedule that cannot be used: `field` names the key within its table
/// (`participants`, `overrides[1].to`), so that configuration can point at it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct ScheduleError {
    pub field: String,
    pub problem: String,
}

impl ScheduleError {
    fn new(field: impl Into<String>, problem: impl Into<String>) -> ScheduleError {
        ScheduleError {
            field: field.into(),
            problem: problem.into(),
        }
    }
}

/// The refusal of a window that holds more than `limit` shifts; nothing was returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the window holds more than {limit} shifts; ask for a shorter one")]
pub struct TooManyShifts {
    pub limit: usize,
}

/// A rotation with its overrides, checked once so that answering never fails.
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    name: String,
    participants: Vec<String>,
    rotation: Rotation,
    start: DateTime<FixedOffset>,
    overrides: Vec<Override>,
}

/// A shift while it is worked out: in UTC, and borrowing the person's name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stretch<'a> {
    person: &'a str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
}

impl Schedule {
    /// Refuses a schedule that could leave an answer empty or absurd: no participant, a blank
    /// name, a rotation under a minute, an override that is blank or does not end after it
    /// begins. The error names the key within the schedule's table (`participants`,
    /// `overrides[1].to`, counted from 0), for configuration to prefix with the table's name.
    pub fn new(
        name: &str,
        participants: Vec<String>,
        rotation: Rotation,
        start: DateTime<FixedOffset>,
        overrides: Vec<Override>,
    ) -> Result<Schedule, ScheduleError> {
        if participants.is_empty() {
            return Err(ScheduleError::new("participants", "lists nobody"));
        }
        if let Some(index) = participants.iter().position(|person| person.trim().is_empty()) {
            return Err(ScheduleError::new(format!("participants[{index}]"), "is blank"));
        }
        // `Rotation::parse` already refuses these, but a rotation can be built without it.
        if rotation.length() < Rotation::SHORTEST {
            return Err(ScheduleError::new(
                "rotation",
                format!("`{rotation}` is shorter than {}", format_duration(Rotation::SHORTEST)),
            ));
        }
        for (index, replacement) in overrides.iter().enumerate() {
            if replacement.who.trim().is_empty() {
                return Err(ScheduleError::new(format!("overrides[{index}].who"), "is blank"));
            }
            if replacement.to <= replacement.from {
                return Err(ScheduleError::new(
                    format!("overrides[{index}].to"),
                    format!("is not after overrides[{index}].from"),
                ));
            }
        }
        Ok(Schedule {
            name: name.to_owned(),
            participants,
            rotation,
            start,
            overrides,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn participants(&self) -> &[String] {
        &self.participants
    }

    pub fn rotation(&self) -> Rotation {
        self.rotation
    }

    pub fn start(&self) -> DateTime<FixedOffset> {
        self.start
    }

    pub fn overrides(&self) -> &[Override] {
        &self.overrides
    }

    /// Everyone the schedule can put on call, participants first, then the people named
    /// by overrides (a name may come more than once), for configuration to check.
    pub fn people(&self) -> impl Iterator<Item = &str> {
        let participants = self.participants.iter().map(String::as_str);
        participants.chain(self.overrides.iter().map(|replacement| replacement.who.as_str()))
    }

    /// The shift covering `at` (overrides applied); None when nobody is on call (before `start`,
    /// outside any override).
    pub fn oncall(&self, at: DateTime<Utc>) -> Option<Shift> {
        self.stretch_at(at).map(|stretch| self.shift(stretch))
    }

    /// The shifts overlapping [from, to), in order, overrides applied. A shift is as long as
    /// the same arrangement holds: an override splits the rotation shift it falls into, and a
    /// later override the earlier one. Shifts are not clipped to the window, and shifts of one
    /// person in a row stay apart, since each boundary is a real handoff. Time with nobody on
    /// call has no shift. A window holding more than `limit` shifts is refused as soon as the
    /// shift past the limit is found, so a long window costs no more than `limit` shifts.
    pub fn shifts(&self, from: DateTime<Utc>, to: DateTime<Utc>, limit: usize) -> Result<Vec<Shift>, TooManyShifts> {
        match self.shift_page(from, to, limit) {
            (shifts, None) => Ok(shifts),
            (_, Some(_)) => Err(TooManyShifts { limit }),
        }
    }

    /// The first `limit` shifts overlapping [from, to), as [`Schedule::shifts`] lists them,
    /// and, when the window holds more, the moment to ask from for the rest.
    pub fn shift_page(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        limit: usize,
    ) -> (Vec<Shift>, Option<DateTime<Utc>>) {
        let mut shifts = Vec::new();
        let mut cursor = from;
        while cursor < to {
            let Some(stretch) = self.stretch_at(cursor) else {
                match self.next_cover_after(cursor) {
                    Some(next) => {
                        cursor = next;
                        continue;
                    }
                    None => break,
                }
            };
            if shifts.len() == limit {
                return (shifts, Some(cursor));
            }
            shifts.push(self.shift(stretch));
            // A stretch ends after the moment it covers, except one cut at the end of time:
            // stopping there keeps the loop finite whatever the arithmetic did.
            if stretch.to <= cursor {
                break;
            }
            cursor = stretch.to;
        }
        (shifts, None)
    }

    /// Who is on call at `at`, for as long as the same arrangement holds around it: the
    /// override listed last among those covering `at`, up to where a later one cuts in; or
    /// else the rotation's shift, up to where any override cuts in.
    fn stretch_at(&self, at: DateTime<Utc>) -> Option<Stretch<'_>> {
        let covering = self.overrides.iter().rposition(|replacement| covers(replacement, at));
        let Some(index) = covering else {
            let shift = self.rotation_shift(at)?;
            return Some(Stretch {
                from: resumed_since(shift.from, &self.overrides, at),
                to: cut_in_at(shift.to, &self.overrides, at),
                ..shift
            });
        };
        let replacement = &self.overrides[index];
        let later = &self.overrides[index + 1..];
        Some(Stretch {
            person: &replacement.who,
            from: resumed_since(replacement.from.to_utc(), later, at),
            to: cut_in_at(replacement.to.to_utc(), later, at),
        })
    }

    /// The rotation's own shift covering `at`, overrides aside; none before `start`.
    fn rotation_shift(&self, at: DateTime<Utc>) -> Option<Stretch<'_>> {
        let start = self.start.to_utc();
        if at < start {
            return None;
        }
        // In nanoseconds as i128, which holds any span chrono can represent and any
        // `Duration`, so that neither the count nor the product can overflow.
        let length = i128::try_from(self.rotation.length().as_nanos()).ok()?;
        let index = nanoseconds(at - start) / length;
        let participant = usize::try_from(index % self.participants.len() as i128).ok()?;
        // The shift's start lies between `start` and `at`, so it is always representable.
        let from = plus_nanoseconds(start, index * length)?;
        // A shift that would end past the last instant chrono represents ends there.
        let to = plus_nanoseconds(start, (index + 1) * length).unwrap_or(DateTime::<Utc>::MAX_UTC);
        Some(Stretch {
            person: &self.participants[participant],
            from,
            to,
        })
    }

    /// When someone is next on call after `at`, a moment when nobody is.
    fn next_cover_after(&self, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let rotation_start = Some(self.start.to_utc()).filter(|start| *start > at);
        let override_starts = self.overrides.iter().map(|replacement| replacement.from.to_utc());
        override_starts.filter(|from| *from > at).chain(rotation_start).min()
    }

    /// `stretch` in the schedule's offset. The few hours at either end of chrono's calendar
    /// (around the year 262 000) that the offset pushes past it are shown as its last (or
    /// first) moment: chrono's serde panics on them.
    fn shift(&self, stretch: Stretch<'_>) -> Shift {
        let offset = *self.start.offset();
        let local_minus_utc = TimeDelta::seconds(i64::from(offset.local_minus_utc()));
        let earliest = DateTime::<Utc>::MIN_UTC
            .checked_sub_signed(local_minus_utc)
            .unwrap_or(DateTime::<Utc>::MIN_UTC);
        let latest = DateTime::<Utc>::MAX_UTC
            .checked_sub_signed(local_minus_utc)
            .unwrap_or(DateTime::<Utc>::MAX_UTC);
        let shown = |moment: DateTime<Utc>| moment.clamp(earliest, latest).with_timezone(&offset);
        Shift {
            person: stretch.person.to_owned(),
            from: shown(stretch.from),
            to: shown(stretch.to),
        }
    }
}

fn covers(replacement: &Override, at: DateTime<Utc>) -> bool {
    replacement.from.to_utc() <= at && at < replacement.to.to_utc()
}

/// The latest of `from` and the ends of `overrides` that ended by `at`: none of `overrides`
/// covers `at`, so the last one to end before it is where the stretch around `at` begins.
fn resumed_since(from: DateTime<Utc>, overrides: &[Override], at: DateTime<Utc>) -> DateTime<Utc> {
    let ends = overrides.iter().map(|replacement| replacement.to.to_utc());
    ends.filter(|end| *end <= at).fold(from, Ord::max)
}

/// The earliest of `to` and the starts of `overrides` after `at`.
fn cut_in_at(to: DateTime<Utc>, overrides: &[Override], at: DateTime<Utc>) -> DateTime<Utc> {
    let starts = overrides.iter().map(|replacement| replacement.from.to_utc());
    starts.filter(|start| *start > at).fold(to, Ord::min)
}

fn nanoseconds(delta: TimeDelta) -> i128 {
    // `subsec_nanos` carries the sign of the delta, so the sum is exact either way.
    i128::from(delta.num_seconds()) * NANOS_PER_SECOND + i128::from(delta.subsec_nanos())
}

fn plus_nanoseconds(moment: DateTime<Utc>, nanos: i128) -> Option<DateTime<Utc>> {
    let seconds = i64::try_from(nanos.div_euclid(NANOS_PER_SECOND)).ok()?;
    let subsecond = u32::try_from(nanos.rem_euclid(NANOS_PER_SECOND)).ok()?;
    moment.checked_add_signed(TimeDelta::new(seconds, subsecond)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MICROSECOND: TimeDelta = TimeDelta::microseconds(1);

    fn local(text: &str) -> DateTime<FixedOffset> {
        DateTime::parse_from_rfc3339(text).unwrap()
    }

    fn utc(text: &str) -> DateTime<Utc> {
        local(text).to_utc()
    }

    fn names(people: &[&str]) -> Vec<String> {
        people.iter().map(|person| person.to_string()).collect()
    }

    fn replacement(from: &str, to: &str, who: &str) -> Override {
        Override {
            from: local(from),
            to: local(to),
            who: who.into(),
        }
    }

    fn schedule(rotation: Rotation, start: &str, overrides: Vec<Override>) -> Schedule {
        Schedule::new(
            "primary",
            names(&["ada", "bob", "cy"]),
            rotation,
            local(start),
            overrides,
        )
        .unwrap()
    }

    fn shift(person: &str, from: &str, to: &str) -> Shift {
        Shift {
            person: person.into(),
            from: local(from),
            to: local(to),
        }
    }

    fn person_at(schedule: &Schedule, at: DateTime<Utc>) -> Option<String> {
        schedule.oncall(at).map(|shift| shift.person)
    }

    #[test]
    fn the_instant_of_a_handoff_belongs_to_the_next_person() {
        let schedule = schedule(Rotation::Daily, "2026-01-05T09:00:00Z", vec![]);
        let handoff = utc("2026-01-06T09:00:00Z");
        assert_eq!(
            schedule.oncall(handoff - MICROSECOND),
            Some(shift("ada", "2026-01-05T09:00:00Z", "2026-01-06T09:00:00Z"))
        );
        assert_eq!(
            schedule.oncall(handoff),
            Some(shift("bob", "2026-01-06T09:00:00Z", "2026-01-07T09:00:00Z"))
        );
        assert_eq!(person_at(&schedule, utc("2026-01-05T09:00:00Z")), Some("ada".into()));
    }

    #[test]
    fn the_cycle_wraps_around_the_participants() {
        let schedule = schedule(Rotation::Daily, "2026-01-05T09:00:00Z", vec![]);
        assert_eq!(person_at(&schedule, utc("2026-01-07T10:00:00Z")), Some("cy".into()));
        assert_eq!(person_at(&schedule, utc("2026-01-08T10:00:00Z")), Some("ada".into()));
        assert_eq!(person_at(&schedule, utc("2026-01-09T10:00:00Z")), Some("bob".into()));
        // 3000 days later: 3000 is a multiple of 3.
        assert_eq!(person_at(&schedule, utc("2034-03-24T10:00:00Z")), Some("ada".into()));
    }

    #[test]
    fn a_12h_rotation_hands_off_twice_a_day() {
        let schedule = schedule(Rotation::parse("12h").unwrap(), "2026-01-05T09:00:00Z", vec![]);
        assert_eq!(
            schedule.oncall(utc("2026-01-05T21:00:00Z")),
            Some(shift("bob", "2026-01-05T21:00:00Z", "2026-01-06T09:00:00Z"))
        );
        assert_eq!(person_at(&schedule, utc("2026-01-06T08:59:59Z")), Some("bob".into()));
        assert_eq!(person_at(&schedule, utc("2026-01-06T09:00:00Z")), Some("cy".into()));
        assert_eq!(person_at(&schedule, utc("2026-01-06T21:00:00Z")), Some("ada".into()));
    }

    #[test]
    fn a_weekly_rotation_lasts_seven_days() {
        let schedule = schedule(Rotation::Weekly, "2026-01-05T09:00:00Z", vec![]);
        assert_eq!(
            schedule.oncall(utc("2026-01-11T23:00:00Z")),
            Some(shift("ada", "2026-01-05T09:00:00Z", "2026-01-12T09:00:00Z"))
        );
        assert_eq!(person_at(&schedule, utc("2026-01-12T09:00:00Z")), Some("bob".into()));
        assert_eq!(person_at(&schedule, utc("2026-01-26T09:00:00Z")), Some("ada".into()));
    }

    #[test]
    fn handoffs_fall_at_the_local_time_of_start_and_answers_carry_its_offset() {
        let east = schedule(Rotation::Daily, "2026-01-05T09:00:00+02:00", vec![]);
        let answer = east.oncall(utc("2026-01-06T07:00:00Z")).unwrap();
        assert_eq!(answer.person, "bob");
        assert_eq!(answer.from.to_rfc3339(), "2026-01-06T09:00:00+02:00");
        assert_eq!(answer.to.to_rfc3339(), "2026-01-07T09:00:00+02:00");
        assert_eq!(person_at(&east, utc("2026-01-06T06:59:59Z")), Some("ada".into()));

        let west = schedule(Rotation::Daily, "2026-01-05T09:00:00-05:00", vec![]);
        let answer = west.oncall(utc("2026-01-06T14:00:00Z")).unwrap();
        assert_eq!(answer.person, "bob");
        assert_eq!(answer.from.to_rfc3339(), "2026-01-06T09:00:00-05:00");
        assert_eq!(answer.to.to_rfc3339(), "2026-01-07T09:00:00-05:00");
        assert_eq!(person_at(&west, utc("2026-01-06T13:59:59Z")), Some("ada".into()));
    }

    #[test]
    fn before_start_nobody_is_on_call() {
        let schedule = schedule(Rotation::Daily, "2026-01-05T09:00:00+01:00", vec![]);
        assert_eq!(schedule.oncall(utc("2026-01-05T08:00:00Z") - MICROSECOND), None);
        assert_eq!(person_at(&schedule, utc("2026-01-05T08:00:00Z")), Some("ada".into()));
        assert_eq!(schedule.oncall(utc("1999-12-31T23:59:59Z")), None);
    }

    #[test]
    fn an_override_wins_inside_its_window_and_the_rotation_resumes_after_it() {
        let cover = replacement("2026-01-05T12:00:00Z", "2026-01-05T18:00:00Z", "dee");
        let schedule = schedule(Rotation::Daily, "2026-01-05T09:00:00Z", vec![cover]);
        assert_eq!(
            schedule.oncall(utc("2026-01-05T12:00:00Z")),
            Some(shift("dee", "2026-01-05T12:00:00Z", "2026-01-05T18:00:00Z"))
        );
        assert_eq!(
            schedule.oncall(utc("2026-01-05T12:00:00Z") - MICROSECOND),
            Some(shift("ada", "2026-01-05T09:00:00Z", "2026-01-05T12:00:00Z"))
        );
        assert_eq!(
            schedule.oncall(utc("2026-01-05T18:00:00Z")),
            Some(shift("ada", "2026-01-05T18:00:00Z", "2026-01-06T09:00:00Z"))
        );
    }

    #[test]
    fn an_override_before_start_covers_time_the_rotation_does_not() {
        let early = replacement("2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z", "dee");
        let schedule = schedule(Rotation::Daily, "2026-01-05T09:00:00Z", vec![early]);
        assert_eq!(person_at(&schedule, utc("2026-01-01T12:00:00Z")), Some("dee".into()));
        assert_eq!(schedule.oncall(utc("2026-01-02T00:00:00Z")), None);
        assert_eq!(schedule.oncall(utc("2025-12-31T23:59:59Z")), None);
    }

    #[test]
    fn where_overrides_overlap_the_one_listed_later_wins() {
        let long = replacement("2026-01-05T10:00:00Z", "2026-01-05T20:00:00Z", "dee");
        let short = replacement("2026-01-05T12:00:00Z", "2026-01-05T14:00:00Z", "eve");
        let schedule = schedule(
            Rotation::Daily,
            "2026-01-05T09:00:00Z",
            vec![long.clone(), short.clone()],
        );
        assert_eq!(
            schedule.oncall(utc("2026-01-05T11:00:00Z")),
            Some(shift("dee", "2026-01-05T10:00:00Z", "2026-01-05T12:00:00Z"))
        );
        assert_eq!(
            schedule.oncall(utc("2026-01-05T13:00:00Z")),
            Some(shift("eve", "2026-01-05T12:00:00Z", "2026-01-05T14:00:00Z"))
        );
        assert_eq!(
            schedule.oncall(utc("2026-01-05T14:00:00Z")),
            Some(shift("dee", "2026-01-05T14:00:00Z", "2026-01-05T20:00:00Z"))
        );

        let reversed = self::schedule(Rotation::Daily, "2026-01-05T09:00:00Z", vec![short, long]);
        assert_eq!(
            reversed.oncall(utc("2026-01-05T13:00:00Z")),
            Some(shift("dee", "2026-01-05T10:00:00Z", "2026-01-05T20:00:00Z"))
        );
    }

    #[test]
    fn shifts_in_a_window_are_split_by_an_override_and_not_clipped() {
        // An override by the person already on call still hands off at its edges.
        let overrides = vec![
            replacement("2026-01-06T12:00:00+01:00", "2026-01-06T15:00:00+01:00", "dee"),
            replacement("2026-01-06T15:00:00+01:00", "2026-01-06T16:00:00+01:00", "bob"),
        ];
        let schedule = schedule(Rotation::Daily, "2026-01-05T09:00:00+01:00", overrides);
        let shifts = schedule
            .shifts(utc("2026-01-05T20:00:00Z"), utc("2026-01-07T08:00:00Z"), 10)
            .unwrap();
        assert_eq!(
            shifts,
            vec![
                shift("ada", "2026-01-05T09:00:00+01:00", "2026-01-06T09:00:00+01:00"),
                shift("bob", "2026-01-06T09:00:00+01:00", "2026-01-06T12:00:00+01:00"),
                shift("dee", "2026-01-06T12:00:00+01:00", "2026-01-06T15:00:00+01:00"),
                shift("bob", "2026-01-06T15:00:00+01:00", "2026-01-06T16:00:00+01:00"),
                shift("bob", "2026-01-06T16:00:00+01:00", "2026-01-07T09:00:00+01:00"),
            ]
        );
        assert_eq!(shifts[0].from.to_rfc3339(), "2026-01-05T09:00:00+01:00");
    }

    #[test]
    fn time_with_nobody_on_call_has_no_shift() {
        let early = replacement("2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z", "dee");
        let schedule = schedule(Rotation::Daily, "2026-01-05T09:00:00Z", vec![early]);
        let shifts = schedule
            .shifts(utc("2025-12-01T00:00:00Z"), utc("2026-01-05T10:00:00Z"), 10)
            .unwrap();
        assert_eq!(
            shifts,
            vec![
                shift("dee", "2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z"),
                shift("ada", "2026-01-05T09:00:00Z", "2026-01-06T09:00:00Z"),
            ]
        );
        let before_anything = schedule.shifts(utc("2025-01-01T00:00:00Z"), utc("2025-02-01T00:00:00Z"), 10);
        assert_eq!(before_anything, Ok(vec![]));
    }

    #[test]
    fn who_is_on_call_agrees_with_the_listed_shifts() {
        let overrides = vec![
            replacement("2026-01-04T00:00:00Z", "2026-01-05T12:00:00Z", "dee"),
            replacement("2026-01-05T11:00:00Z", "2026-01-06T10:00:00Z", "eve"),
            replacement("2026-01-06T06:00:00Z", "2026-01-06T07:00:00Z", "fay"),
        ];
        let schedule = schedule(Rotation::parse("7h").unwrap(), "2026-01-05T09:00:00+03:00", overrides);
        let shifts = schedule
            .shifts(utc("2026-01-03T00:00:00Z"), utc("2026-01-08T00:00:00Z"), 100)
            .unwrap();
        assert_eq!(shifts.len(), 10, "{shifts:?}");
        for pair in shifts.windows(2) {
            assert!(pair[0].to <= pair[1].from, "{pair:?}");
        }
        for listed in &shifts {
            assert_eq!(schedule.oncall(listed.from.to_utc()).as_ref(), Some(listed));
            assert_eq!(schedule.oncall(listed.to.to_utc() - MICROSECOND).as_ref(), Some(listed));
        }
    }

    #[test]
    fn a_window_with_more_shifts_than_the_limit_is_refused() {
        let schedule = schedule(Rotation::parse("1m").unwrap(), "2026-01-05T09:00:00Z", vec![]);
        let ten_years = schedule.shifts(utc("2026-01-01T00:00:00Z"), utc("2036-01-01T00:00:00Z"), 1000);
        assert_eq!(ten_years, Err(TooManyShifts { limit: 1000 }));
        let exactly = schedule.shifts(utc("2026-01-05T09:00:00Z"), utc("2026-01-05T09:03:00Z"), 3);
        assert_eq!(exactly.map(|shifts| shifts.len()), Ok(3));
        let one_more = schedule.shifts(utc("2026-01-05T09:00:00Z"), utc("2026-01-05T09:03:01Z"), 3);
        assert_eq!(one_more, Err(TooManyShifts { limit: 3 }));
    }

    #[test]
    fn a_long_window_is_read_page_by_page() {
        let schedule = schedule(Rotation::Daily, "2026-01-05T09:00:00+01:00", vec![]);
        let (first, next) = schedule.shift_page(utc("2026-01-05T08:00:00Z"), utc("2026-01-10T08:00:00Z"), 2);
        assert_eq!(first.len(), 2);
        assert_eq!(next, Some(utc("2026-01-07T08:00:00Z")));
        let (rest, after) = schedule.shift_page(next.unwrap(), utc("2026-01-10T08:00:00Z"), 10);
        assert_eq!(rest.len(), 3);
        assert_eq!(after, None);
        assert_eq!(rest[0].person, "cy");
        assert_eq!(rest[0].from, first[1].to);
    }

    #[test]
    fn a_window_that_ends_before_it_starts_is_empty() {
        let schedule = schedule(Rotation::Daily, "2026-01-05T09:00:00Z", vec![]);
        let backwards = schedule.shifts(utc("2026-02-01T00:00:00Z"), utc("2026-01-10T00:00:00Z"), 10);
        assert_eq!(backwards, Ok(vec![]));
        let empty = schedule.shifts(utc("2026-02-01T00:00:00Z"), utc("2026-02-01T00:00:00Z"), 10);
        assert_eq!(empty, Ok(vec![]));
    }

    #[test]
    fn nothing_panics_at_the_ends_of_time() {
        let (first, last) = (DateTime::<Utc>::MIN_UTC, DateTime::<Utc>::MAX_UTC);
        for start in ["2026-01-05T09:00:00+05:00", "2026-01-05T09:00:00-05:00"] {
            let overrides = vec![Override {
                from: (last - TimeDelta::hours(30)).fixed_offset(),
                to: last.fixed_offset(),
                who: "dee".into(),
            }];
            let minute = schedule(Rotation::parse("1m").unwrap(), start, overrides);
            for at in [first, last, last - TimeDelta::hours(40)] {
                serde_json::to_string(&minute.oncall(at)).unwrap();
            }
            assert_eq!(minute.oncall(first), None);
            let whole_of_time = minute.shifts(first, last, 100);
            assert_eq!(whole_of_time, Err(TooManyShifts { limit: 100 }), "{start}");
            let end = minute.shifts(last - TimeDelta::minutes(3), last, 10).unwrap();
            assert_eq!(end.len(), 1, "{start}: {end:?}");
            serde_json::to_string(&end).unwrap();
        }

        let forever = Schedule::new(
            "forever",
            names(&["ada"]),
            Rotation::Every(Duration::MAX),
            first.fixed_offset(),
            vec![],
        )
        .unwrap();
        let only = forever.oncall(utc("2026-01-05T09:00:00Z")).unwrap();
        assert_eq!((only.from, only.to), (first.fixed_offset(), last.fixed_offset()));
        let all = forever.shifts(first, last, 1);
        assert_eq!(all.map(|shifts| shifts.len()), Ok(1));
    }

    #[test]
    fn a_shift_is_written_in_json_with_its_offset() {
        let json =
            serde_json::to_value(shift("ada", "2026-01-05T09:00:00+01:00", "2026-01-06T09:00:00+01:00")).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "person": "ada",
                "from": "2026-01-05T09:00:00+01:00",
                "to": "2026-01-06T09:00:00+01:00",
            })
        );
    }

    #[test]
    fn schedule_refusals_name_the_field() {
        let start = local("2026-01-05T09:00:00Z");
        let refusal = |participants: &[&str], rotation: Rotation, overrides: Vec<Override>| {
            Schedule::new("primary", names(participants), rotation, start, overrides).unwrap_err()
        };
        assert_eq!(
            refusal(&[], Rotation::Daily, vec![]),
            ScheduleError::new("participants", "lists nobody")
        );
        assert_eq!(
            refusal(&["ada", " "], Rotation::Daily, vec![]),
            ScheduleError::new("participants[1]", "is blank")
        );
        assert_eq!(refusal(&["ada", ""], Rotation::Daily, vec![]).field, "participants[1]");
        let short = refusal(&["ada"], Rotation::Every(Duration::from_secs(30)), vec![]);
        assert_eq!(short.field, "rotation");
        let fine = replacement("2026-01-05T10:00:00Z", "2026-01-05T11:00:00Z", "dee");
        let backwards = replacement("2026-01-05T11:00:00Z", "2026-01-05T10:00:00Z", "dee");
        assert_eq!(
            refusal(&["ada"], Rotation::Daily, vec![fine.clone(), backwards]),
            ScheduleError::new("overrides[1].to", "is not after overrides[1].from")
        );
        // The same instant written in two offsets is no window at all.
        let instant = replacement("2026-01-05T11:00:00+01:00", "2026-01-05T10:00:00Z", "dee");
        assert_eq!(
            refusal(&["ada"], Rotation::Daily, vec![instant]).field,
            "overrides[0].to"
        );
        let nobody = replacement("2026-01-05T10:00:00Z", "2026-01-05T11:00:00Z", "  ");
        assert_eq!(
            refusal(&["ada"], Rotation::Daily, vec![fine, nobody]).to_string(),
            "overrides[1].who: is blank"
        );
    }

    #[test]
    fn a_schedule_tells_who_it_can_put_on_call() {
        let cover = replacement("2026-01-05T10:00:00Z", "2026-01-05T11:00:00Z", "dee");
        let schedule = schedule(Rotation::Daily, "2026-01-05T09:00:00Z", vec![cover.clone()]);
        assert_eq!(schedule.name(), "primary");
        assert_eq!(schedule.participants(), names(&["ada", "bob", "cy"]));
        assert_eq!(schedule.overrides(), [cover]);
        assert_eq!(schedule.people().collect::<Vec<_>>(), ["ada", "bob", "cy", "dee"]);
    }

    #[test]
    fn rotations_are_daily_weekly_or_a_length_of_at_least_a_minute() {
        assert_eq!(Rotation::parse("daily"), Ok(Rotation::Daily));
        assert_eq!(Rotation::parse("weekly"), Ok(Rotation::Weekly));
        assert_eq!(
            Rotation::parse("12h"),
            Ok(Rotation::Every(Duration::from_secs(12 * 3600)))
        );
        assert_eq!(
            Rotation::parse("1d").map(|rotation| rotation.length()),
            Ok(Rotation::Daily.length())
        );
        assert_eq!(Rotation::parse("1m"), Ok(Rotation::Every(Duration::from_secs(60))));
        assert_eq!(Rotation::Weekly.length(), Duration::from_secs(604_800));
        for text in ["0s", "30s", "59999ms", "fortnightly", "", "12 hours"] {
            let error = Rotation::parse(text).unwrap_err();
            assert!(
                error.contains("write daily, weekly or a length of at least 1m such as 12h"),
                "{text}: {error}"
            );
        }
    }

    #[test]
    fn rotations_are_shown_as_they_are_written() {
        for text in ["daily", "weekly", "12h", "90m", "1d"] {
            assert_eq!(Rotation::parse(text).unwrap().to_string(), text);
        }
    }
}
