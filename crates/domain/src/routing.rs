//! Routes (DESIGN §7): the first route whose matchers hold decides an incident's team,
//! assignee, channels and escalation policy. A route without matchers matches every
//! incident, so a last one catches what the others leave.

use std::time::Duration;

use crate::incident::Incident;
use crate::jobs::NotifyEvent;
use crate::matcher::Matchers;

#[derive(Debug, Clone)]
pub struct Route {
    pub name: String,
    pub matchers: Matchers,
    pub team: Option<String>,
    /// A person, or `oncall:SCHEDULE`.
    pub assignee: Option<String>,
    pub escalation_policy: Option<String>,
    /// Channels notified of the changes in `notify_on`.
    pub channels: Vec<String>,
    pub notify_on: Vec<NotifyEvent>,
    /// Incidents the route opens within this long reach each channel as one notification.
    pub group_wait: Option<Duration>,
}

impl Route {
    /// The changes a route notifies of when it does not say.
    pub const DEFAULT_NOTIFY_ON: [NotifyEvent; 3] =
        [NotifyEvent::Created, NotifyEvent::Acknowledged, NotifyEvent::Resolved];

    pub fn notifies_of(&self, event: NotifyEvent) -> bool {
        self.notify_on.contains(&event)
    }
}

/// The routes in their order.
#[derive(Debug, Clone, Default)]
pub struct Routes(Vec<Route>);

impl Routes {
    pub fn new(routes: Vec<Route>) -> Self {
        Routes(routes)
    }

    /// The first route that matches the incident.
    pub fn first_match(&self, incident: &Incident) -> Option<&Route> {
        self.0.iter().find(|route| route.matchers.matches(incident))
    }

    pub fn by_name(&self, name: &str) -> Option<&Route> {
        self.0.iter().find(|route| route.name == name)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Route> {
        self.0.iter()
    }
}
