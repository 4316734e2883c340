//! What an incident change causes: routing decides a new incident's route, team and
//! assignee, and each change a route notifies of becomes one delivery job per channel.
//! All of it is decided here, before the store writes the change, so that the change and
//! what it causes are written in one transaction (a transactional outbox): a stored
//! incident always has its jobs, and no job exists for a change that was not stored.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use crate::incident::{Incident, TimelineEntry};
use crate::jobs::{NewJob, NotifyEvent};
use crate::lifecycle::{self, Action, Transition};
use crate::routing::{Route, Routes};
use crate::vocabulary::State;

/// The configured consequences of changes.
#[derive(Debug, Clone, Default)]
pub struct Reactions {
    pub routes: Routes,
    /// Attempts of each channel's deliveries (a channel's `max_attempts`, else the default).
    pub channel_attempts: BTreeMap<String, u32>,
    pub default_attempts: u32,
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
}

impl Reactions {
    /// Routes a new incident: the first matching route gives its team and assignee (the
    /// incident is then ASSIGNED, by the route), and a delivery to each of its channels
    /// when it notifies of creation.
    pub fn open(&self, incident: Incident, now: DateTime<Utc>) -> Opening {
        let Some(route) = self.routes.first_match(&incident) else {
            return Opening {
                entries: vec![lifecycle::created_entry(&incident)],
                incident,
                assignment: None,
                jobs: Vec::new(),
            };
        };
        let mut incident = incident;
        incident.route = Some(route.name.clone());
        // One entry, not two: every routed incident would otherwise write a second one.
        let mut created = lifecycle::created_entry(&incident);
        created.message.push_str(&format!(" ({})", routing_note(route)));
        let mut entries = vec![created];
        let mut assignment = None;
        if let Some(assignee) = &route.assignee {
            let action = Action::Assign {
                assignee: assignee.clone(),
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
        let jobs = self.deliveries(&incident, route, NotifyEvent::Created, now);
        Opening {
            incident,
            entries,
            assignment,
            jobs,
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

    fn attempts(&self, channel: &str) -> u32 {
        self.channel_attempts
            .get(channel)
            .copied()
            .unwrap_or(self.default_attempts)
            .max(1)
    }
}

/// `routed by `critical`: team ml-oncall; notifies ops, pager`.
fn routing_note(route: &Route) -> String {
    let mut note = format!("routed by `{}`", route.name);
    if let Some(team) = &route.team {
        note.push_str(&format!(": team {team}"));
    }
    if !route.channels.is_empty() {
        note.push_str(&format!("; notifies {}", route.channels.join(", ")));
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
}
