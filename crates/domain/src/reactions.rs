//! What an incident change causes: routing decides a new incident's route, team,
//! assignee and escalation policy; each change a route notifies of becomes one delivery
//! job per channel (or, with the route's `group_wait`, a place in the route's next grouped
//! notification); a route's escalation policy becomes the job of its first level. All of
//! it is decided here, before the store writes the change, so that the change and what it
//! causes are written in one transaction (a transactional outbox): a stored incident
//! always has its jobs, and no job exists for a change that was not stored.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, TimeDelta, Utc};
use uuid::Uuid;

use crate::escalation::{EscalationPolicy, Target};
use crate::incident::{Incident, PendingEscalation, TimelineEntry};
use crate::jobs::{Escalation, GroupWindow, JobPayload, NewJob, NotifyEvent};
use crate::lifecycle::{self, Action, Transition};
use crate::oncall::Schedule;
use crate::routing::{Route, Routes};
use crate::triage::ClassificationStatus;
use crate::vocabulary::State;

/// The configured consequences of changes.
#[derive(Debug, Clone, Default)]
pub struct Reactions {
    pub routes: Routes,
    /// Attempts of each channel's deliveries (a channel's `max_attempts`, else the default).
    pub channel_attempts: BTreeMap<String, u32>,
    pub default_attempts: u32,
    /// Channels told of every incident on its own even under a route's `group_wait`
    /// (PagerDuty: one alert per incident, deduplicated by its key).
    pub ungrouped_channels: BTreeSet<String>,
    pub policies: BTreeMap<String, EscalationPolicy>,
    pub schedules: BTreeMap<String, Schedule>,
    /// What a configured LLM provider is asked of every new incident; none with the
    /// offline classifier alone.
    pub llm: Option<LlmTriage>,
}

/// The LLM questions a new incident causes, each a background job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LlmTriage {
    /// Refine the classification of an incident whose sender left its severity or
    /// category to triage.
    pub classify: bool,
    /// Explain every new incident.
    pub insights: bool,
    /// Attempts of each question (the provider's `max_retries` + 1).
    pub max_attempts: u32,
}

/// A new incident as routing leaves it, and what to write beside it.
#[derive(Debug, Clone, PartialEq)]
pub struct Opening {
    pub incident: Incident,
    /// In order: created (which names the route that matched), then assigned when the
    /// route did so.
    pub entries: Vec<TimelineEntry>,
    /// The route's assignment, for the state metrics (NEW → ASSIGNED).
    pub assignment: Option<Transition>,
    pub jobs: Vec<NewJob>,
    /// The route's grouped notification this incident belongs in (`group_wait`).
    pub group: Option<GroupRequest>,
}

/// A place in a route's grouped notification: the store puts the incident in the route's
/// open group, or, when none is open, opens `window` and writes `jobs` (one per channel,
/// due when the window closes).
#[derive(Debug, Clone, PartialEq)]
pub struct GroupRequest {
    pub window: GroupWindow,
    pub jobs: Vec<NewJob>,
}

impl Reactions {
    /// Routes a new incident: the first matching route gives its team, assignee (the
    /// incident is then ASSIGNED, by the route) and escalation policy (whose first level
    /// becomes a job), and a delivery to each of its channels when it notifies of creation.
    pub fn open(&self, incident: Incident, now: DateTime<Utc>) -> Opening {
        let mut opening = self.route(incident, now);
        self.ask_the_model(&mut opening, now);
        opening
    }

    /// The LLM questions about a new incident: its classification, when the sender left
    /// the severity or category to triage (pending until the answer), and its insights.
    fn ask_the_model(&self, opening: &mut Opening, now: DateTime<Utc>) {
        let Some(llm) = self.llm else {
            return;
        };
        let incident = &mut opening.incident;
        if llm.classify
            && let Some(classification) = incident.classification.as_mut()
        {
            classification.status = ClassificationStatus::Pending;
            opening
                .jobs
                .push(NewJob::llm(incident.id, JobPayload::LlmClassify, llm.max_attempts, now));
        }
        if llm.insights {
            opening
                .jobs
                .push(NewJob::llm(incident.id, JobPayload::LlmInsights, llm.max_attempts, now));
        }
    }

    fn route(&self, incident: Incident, now: DateTime<Utc>) -> Opening {
        let Some(route) = self.routes.first_match(&incident) else {
            return Opening {
                entries: vec![lifecycle::created_entry(&incident)],
                incident,
                assignment: None,
                jobs: Vec::new(),
                group: None,
            };
        };
        let mut incident = incident;
        incident.route = Some(route.name.clone());
        let assignee = route.assignee.as_deref().map(|assignee| self.person_for(assignee, now));
        let mut jobs = Vec::new();
        if let Some(policy) = route
            .escalation_policy
            .as_deref()
            .and_then(|name| self.policies.get(name))
        {
            let start = incident.created_at;
            let step = policy.first_step(start);
            incident.escalation_policy = Some(policy.name.clone());
            incident.next_escalation = Some(PendingEscalation {
                level: step.level,
                due_at: step.due_at,
            });
            let escalation = Escalation {
                policy: policy.name.clone(),
                level: step.level,
                run: step.run,
                started_at: start,
                held_by: None,
            };
            jobs.push(NewJob::escalate(
                incident.id,
                escalation,
                step.due_at,
                self.default_attempts.max(1),
            ));
        }
        // One entry, not two: every routed incident would otherwise write a second one.
        let mut created = lifecycle::created_entry(&incident);
        created
            .message
            .push_str(&format!(" ({})", routing_note(route, assignee.as_ref())));
        let mut entries = vec![created];
        let mut assignment = None;
        if let Some(Assignee::Person(assignee)) = assignee {
            let action = Action::Assign {
                assignee,
                team: route.team.clone(),
            };
            let actor = format!("route {}", route.name);
            if let Ok(transition) = lifecycle::apply(&incident, &action, &actor, now) {
                incident = transition.after.clone();
                entries.push(transition.entry.clone());
                assignment = Some(transition);
            }
        } else if route.team.is_some() {
            incident.team = route.team.clone();
        }
        let mut group = None;
        if route.notifies_of(NotifyEvent::Created) {
            match route.group_wait {
                Some(wait) => {
                    let (alone, grouped): (Vec<&String>, Vec<&String>) = route
                        .channels
                        .iter()
                        .partition(|channel| self.ungrouped_channels.contains(*channel));
                    jobs.extend(alone.into_iter().map(|channel| {
                        NewJob::notify(
                            incident.id,
                            channel,
                            NotifyEvent::Created,
                            None,
                            self.attempts(channel),
                            now,
                        )
                    }));
                    if !grouped.is_empty() {
                        let window = GroupWindow {
                            id: Uuid::now_v7(),
                            route: route.name.clone(),
                            from: now,
                            to: now + TimeDelta::from_std(wait).unwrap_or(TimeDelta::MAX),
                        };
                        let jobs = grouped
                            .into_iter()
                            .map(|channel| NewJob::notify_group(channel, window.clone(), self.attempts(channel)))
                            .collect();
                        group = Some(GroupRequest { window, jobs });
                    }
                }
                None => jobs.extend(self.deliveries(&incident, route, NotifyEvent::Created, now)),
            }
        }
        Opening {
            incident,
            entries,
            assignment,
            jobs,
            group,
        }
    }

    /// The deliveries a stored change causes: acknowledgement and resolution, to the
    /// channels of the incident's route when it notifies of them.
    pub fn after(&self, transition: &Transition, now: DateTime<Utc>) -> Vec<NewJob> {
        let event = match (transition.before.state, transition.after.state) {
            (from, State::Acknowledged) if from != State::Acknowledged => NotifyEvent::Acknowledged,
            (from, State::Resolved) if from.is_open() => NotifyEvent::Resolved,
            _ => return Vec::new(),
        };
        let route = transition
            .after
            .route
            .as_deref()
            .and_then(|name| self.routes.by_name(name));
        match route {
            Some(route) => self.deliveries(&transition.after, route, event, now),
            None => Vec::new(),
        }
    }

    fn deliveries(&self, incident: &Incident, route: &Route, event: NotifyEvent, now: DateTime<Utc>) -> Vec<NewJob> {
        if !route.notifies_of(event) {
            return Vec::new();
        }
        route
            .channels
            .iter()
            .map(|channel| NewJob::notify(incident.id, channel, event, None, self.attempts(channel), now))
            .collect()
    }

    /// Attempts of a delivery through `channel`.
    pub fn attempts(&self, channel: &str) -> u32 {
        self.channel_attempts
            .get(channel)
            .copied()
            .unwrap_or(self.default_attempts)
            .max(1)
    }

    /// Who `assignee` (a person, or `oncall:SCHEDULE`) is at `now`.
    fn person_for(&self, assignee: &str, now: DateTime<Utc>) -> Assignee {
        let Some(schedule) = Target::oncall_schedule(assignee) else {
            return Assignee::Person(assignee.to_owned());
        };
        match self.schedules.get(schedule).and_then(|found| found.oncall(now)) {
            Some(shift) => Assignee::Person(shift.person),
            None => Assignee::NobodyOnCall(schedule.to_owned()),
        }
    }
}

/// Whom a route assigns a new incident to.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Assignee {
    Person(String),
    /// The route names a schedule on which nobody is on call now.
    NobodyOnCall(String),
}

/// `routed by `critical`: team ml-oncall; notifies ops, pager; escalates by urgent`.
fn routing_note(route: &Route, assignee: Option<&Assignee>) -> String {
    let mut note = format!("routed by `{}`", route.name);
    if let Some(team) = &route.team {
        note.push_str(&format!(": team {team}"));
    }
    if !route.channels.is_empty() {
        note.push_str(&format!("; notifies {}", route.channels.join(", ")));
    }
    if let Some(policy) = &route.escalation_policy {
        note.push_str(&format!("; escalates by {policy}"));
    }
    if let Some(Assignee::NobodyOnCall(schedule)) = assignee {
        note.push_str(&format!("; nobody is on call on {schedule} to assign"));
    }
    note
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::event::{EventRules, RawEvent};
    use crate::incident::{IncidentId, TimelineKind};
    use crate::jobs::JobPayload;
    use crate::matcher::{Matchers, OneOrMany};

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000, 0).unwrap()
    }

    fn incident(severity: &str) -> Incident {
        let event = RawEvent {
            source: Some("sentinel".into()),
            title: Some("drift".into()),
            severity: Some(severity.into()),
            category: Some("model_drift".into()),
            ..RawEvent::default()
        }
        .validate(now(), &EventRules::default())
        .unwrap();
        Incident::open(IncidentId::generate(), &event, now())
    }

    fn route(name: &str, severity: Option<&str>, assignee: Option<&str>, channels: &[&str]) -> Route {
        let equal: BTreeMap<String, OneOrMany> = severity
            .map(|severity| ("severity".to_owned(), OneOrMany::One(severity.into())))
            .into_iter()
            .collect();
        Route {
            name: name.into(),
            matchers: Matchers::parse(&equal, &BTreeMap::new()).unwrap(),
            team: Some("ml-oncall".into()),
            assignee: assignee.map(Into::into),
            escalation_policy: None,
            channels: channels.iter().map(|channel| channel.to_string()).collect(),
            notify_on: Route::DEFAULT_NOTIFY_ON.to_vec(),
            group_wait: None,
        }
    }

    fn reactions(routes: Vec<Route>) -> Reactions {
        Reactions {
            routes: Routes::new(routes),
            channel_attempts: BTreeMap::from([("pager".to_owned(), 3)]),
            default_attempts: 8,
            ..Reactions::default()
        }
    }

    #[test]
    fn the_first_matching_route_assigns_and_notifies_its_channels() {
        let reactions = reactions(vec![
            route("critical", Some("P0"), Some("ana"), &["pager", "slack"]),
            route("default", None, None, &["slack"]),
        ]);

        let opening = reactions.open(incident("P0"), now());

        assert_eq!(opening.incident.route.as_deref(), Some("critical"));
        assert_eq!(opening.incident.state, State::Assigned);
        assert_eq!(opening.incident.assignee.as_deref(), Some("ana"));
        let kinds: Vec<_> = opening.entries.iter().map(|entry| entry.kind).collect();
        assert_eq!(kinds, [TimelineKind::Created, TimelineKind::Assigned]);
        assert_eq!(
            opening.entries[0].message,
            "P0 incident opened: drift (routed by `critical`: team ml-oncall; notifies pager, slack)"
        );
        assert_eq!(opening.entries[1].actor, "route critical");
        assert_eq!(opening.assignment.as_ref().unwrap().before.state, State::New);
        let channels: Vec<(&str, u32)> = opening
            .jobs
            .iter()
            .map(|job| match &job.payload {
                JobPayload::Notify(notification) => (notification.channel.as_str(), job.max_attempts),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(channels, [("pager", 3), ("slack", 8)]);
    }

    #[test]
    fn an_incident_no_route_matches_stays_new_and_notifies_nobody() {
        let reactions = reactions(vec![route("critical", Some("P0"), Some("ana"), &["pager"])]);
        let opening = reactions.open(incident("P3"), now());
        assert_eq!(opening.incident.state, State::New);
        assert_eq!(opening.incident.route, None);
        assert_eq!(opening.entries.len(), 1);
        assert!(opening.jobs.is_empty());
    }

    #[test]
    fn a_route_without_assignee_sets_the_team_and_leaves_the_incident_new() {
        let reactions = reactions(vec![route("default", None, None, &[])]);
        let opening = reactions.open(incident("P2"), now());
        assert_eq!(opening.incident.state, State::New);
        assert_eq!(opening.incident.team.as_deref(), Some("ml-oncall"));
        assert_eq!(opening.entries.len(), 1);
        assert!(
            opening.entries[0]
                .message
                .ends_with("(routed by `default`: team ml-oncall)")
        );
    }

    #[test]
    fn acknowledgement_and_resolution_notify_the_routes_channels_once() {
        let mut only_resolved = route("default", None, None, &["slack"]);
        only_resolved.notify_on = vec![NotifyEvent::Resolved];
        let reactions = reactions(vec![only_resolved]);
        let opened = reactions.open(incident("P2"), now()).incident;
        let acked = lifecycle::apply(&opened, &Action::Acknowledge, "ana", now()).unwrap();
        assert!(
            reactions.after(&acked, now()).is_empty(),
            "the route does not notify of it"
        );
        let resolved = lifecycle::apply(&acked.after, &Action::Resolve { note: None }, "ana", now()).unwrap();
        let jobs = reactions.after(&resolved, now());
        assert_eq!(jobs.len(), 1);
        let JobPayload::Notify(notification) = &jobs[0].payload else {
            panic!()
        };
        assert_eq!(notification.event, NotifyEvent::Resolved);
    }

    fn with_policy(mut route: Route) -> Reactions {
        route.escalation_policy = Some("urgent".into());
        let mut reactions = reactions(vec![route]);
        let levels = vec![crate::escalation::Level {
            after: std::time::Duration::from_secs(300),
            notify: vec![Target::Channel("pager".into())],
        }];
        let policy = EscalationPolicy::new("urgent", levels, 0, None).unwrap();
        reactions.policies.insert("urgent".into(), policy);
        reactions
    }

    #[test]
    fn a_routes_escalation_policy_schedules_its_first_level() {
        let reactions = with_policy(route("default", None, None, &[]));
        let opening = reactions.open(incident("P1"), now());
        let incident = &opening.incident;
        assert_eq!(incident.escalation_policy.as_deref(), Some("urgent"));
        let due_at = now() + chrono::TimeDelta::seconds(300);
        assert_eq!(incident.next_escalation, Some(PendingEscalation { level: 1, due_at }));
        let [job] = opening.jobs.as_slice() else {
            panic!("{:?}", opening.jobs)
        };
        assert_eq!(job.due_at, due_at);
        assert_eq!(job.chain.as_deref(), Some(crate::jobs::ESCALATION_CHAIN));
        let JobPayload::Escalate(escalation) = &job.payload else {
            panic!("{job:?}")
        };
        assert_eq!((escalation.level, escalation.run, escalation.started_at), (1, 0, now()));
        assert!(opening.entries[0].message.ends_with("escalates by urgent)"));
    }

    #[test]
    fn acknowledging_an_escalating_incident_clears_its_next_level() {
        let reactions = with_policy(route("default", None, Some("ana"), &[]));
        let opened = reactions.open(incident("P1"), now()).incident;
        assert!(opened.next_escalation.is_some());
        let reassigned = lifecycle::apply(&opened, &Action::assign(Some("bo".into()), None).unwrap(), "ana", now());
        assert!(
            reassigned.unwrap().after.next_escalation.is_some(),
            "a reassignment does not stop it"
        );
        let acked = lifecycle::apply(&opened, &Action::Acknowledge, "ana", now()).unwrap();
        assert_eq!(acked.after.next_escalation, None);
    }

    #[test]
    fn an_oncall_assignee_is_whoever_is_on_call_when_the_incident_opens() {
        use chrono::FixedOffset;
        let mut reactions = reactions(vec![route("default", None, Some("oncall:primary"), &[])]);
        let start = now().with_timezone(&FixedOffset::east_opt(0).unwrap());
        let schedule = Schedule::new(
            "primary",
            vec!["ana".into(), "bo".into()],
            crate::oncall::Rotation::Daily,
            start,
            vec![],
        )
        .unwrap();
        reactions.schedules.insert("primary".into(), schedule);
        let tomorrow = now() + chrono::TimeDelta::days(1);
        let opening = reactions.open(incident("P2"), tomorrow);
        assert_eq!(opening.incident.assignee.as_deref(), Some("bo"));
        assert_eq!(opening.incident.state, State::Assigned);
        let before_start = reactions.open(incident("P2"), now() - chrono::TimeDelta::days(1));
        assert_eq!(before_start.incident.state, State::New);
        assert!(
            before_start.entries[0].message.contains("nobody is on call on primary"),
            "{}",
            before_start.entries[0].message
        );
    }

    #[test]
    fn a_grouping_route_asks_for_a_group_and_leaves_pagerduty_alone() {
        let mut grouping = route("default", None, None, &["ops", "pager"]);
        grouping.group_wait = Some(std::time::Duration::from_secs(30));
        let mut reactions = reactions(vec![grouping]);
        reactions.ungrouped_channels.insert("pager".into());
        let opening = reactions.open(incident("P2"), now());
        let alone: Vec<&str> = opening
            .jobs
            .iter()
            .map(|job| match &job.payload {
                JobPayload::Notify(notification) => notification.channel.as_str(),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(alone, ["pager"]);
        let group = opening.group.expect("a group");
        assert_eq!(group.window.route, "default");
        assert_eq!(
            (group.window.from, group.window.to),
            (now(), now() + chrono::TimeDelta::seconds(30))
        );
        let [job] = group.jobs.as_slice() else { panic!() };
        assert_eq!(job.incident_id, None);
        assert_eq!(job.due_at, group.window.to);
    }

    #[test]
    fn a_configured_provider_is_asked_to_classify_what_triage_decided_and_to_explain() {
        let mut reactions = reactions(vec![]);
        reactions.llm = Some(LlmTriage {
            classify: true,
            insights: true,
            max_attempts: 3,
        });
        let given = reactions.open(incident("P1"), now());
        let kinds: Vec<_> = given.jobs.iter().map(|job| job.payload.kind()).collect();
        assert_eq!(
            kinds,
            [crate::jobs::JobKind::LlmInsights],
            "the sender decided both: nothing to classify"
        );
        let event = RawEvent {
            source: Some("sentinel".into()),
            title: Some("drift".into()),
            ..RawEvent::default()
        }
        .validate(now(), &EventRules::default())
        .unwrap();
        let left_to_triage = reactions.open(Incident::open(IncidentId::generate(), &event, now()), now());
        let kinds: Vec<_> = left_to_triage.jobs.iter().map(|job| job.payload.kind()).collect();
        assert_eq!(
            kinds,
            [crate::jobs::JobKind::LlmClassify, crate::jobs::JobKind::LlmInsights]
        );
        assert_eq!(
            left_to_triage.incident.classification.unwrap().status,
            ClassificationStatus::Pending
        );
        assert!(left_to_triage.jobs.iter().all(|job| job.max_attempts == 3));
    }
}
