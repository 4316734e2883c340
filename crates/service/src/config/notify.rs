//! The `[jobs]`, `[channels.NAME]` and `[[routes]]` tables (DESIGN §7): what the file
//! says, checked and turned into the settings the executor, the channels and routing use.
//! Every refusal names its key (`routes[1].channels`, `channels.ops.url`).

use std::collections::BTreeMap;
use std::time::Duration;

use lim_domain::escalation::{EscalationPolicy, Target};
use lim_domain::jobs::Backoff;
use lim_domain::matcher::{Matchers, OneOrMany};
use lim_domain::oncall::Schedule;
use lim_domain::reactions::LlmTriage;
use lim_domain::routing::{Route, Routes};
use lim_domain::triage::LlmProvider;
use lim_domain::{ChannelKind, JobKind, NotifyEvent, Reactions};
use serde::Deserialize;

use super::secret::Secret;
use super::{ConfigError, duration_key};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileJobs {
    max_attempts: Option<u32>,
    backoff_base: Option<String>,
    backoff_max: Option<String>,
    concurrency: Option<FileConcurrency>,
    retention: Option<String>,
    lease: Option<String>,
}

/// One number for every kind, or a number per kind.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum FileConcurrency {
    Every(u32),
    PerKind(BTreeMap<String, u32>),
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileChannel {
    #[serde(rename = "type")]
    kind: Option<String>,
    url: Option<String>,
    secret: Option<String>,
    smtp: Option<String>,
    from: Option<String>,
    to: Option<Vec<String>>,
    routing_key: Option<String>,
    max_attempts: Option<u32>,
    timeout: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileRoute {
    name: Option<String>,
    #[serde(default, rename = "match")]
    equal: BTreeMap<String, OneOrMany>,
    #[serde(default)]
    match_re: BTreeMap<String, OneOrMany>,
    team: Option<String>,
    assignee: Option<String>,
    #[serde(default)]
    channels: Vec<String>,
    notify_on: Option<Vec<String>>,
    escalation_policy: Option<String>,
    group_wait: Option<String>,
}

/// How the executor runs jobs.
#[derive(Debug, Clone)]
pub struct JobSettings {
    pub max_attempts: u32,
    pub backoff: Backoff,
    /// Jobs of each kind run at once in this process.
    pub concurrency: BTreeMap<JobKind, u32>,
    /// How long finished jobs are kept.
    pub retention: Duration,
    /// How long a claimed job is a worker's before another may take it (a worker that
    /// died); longer than any job takes.
    pub lease: Duration,
}

impl Default for JobSettings {
    fn default() -> Self {
        JobSettings {
            max_attempts: 8,
            backoff: Backoff {
                base: Duration::from_secs(1),
                max: Duration::from_secs(600),
            },
            concurrency: JobKind::ALL
                .iter()
                .map(|kind| (*kind, default_concurrency(*kind)))
                .collect(),
            retention: Duration::from_secs(7 * 86_400),
            lease: Duration::from_secs(120),
        }
    }
}

fn default_concurrency(kind: JobKind) -> u32 {
    match kind {
        JobKind::Housekeeping => 1,
        _ => 8,
    }
}

/// A channel, ready to deliver.
#[derive(Debug, Clone)]
pub struct ChannelSettings {
    pub name: String,
    pub spec: ChannelSpec,
    /// Attempts of each delivery, when the channel sets its own.
    pub max_attempts: Option<u32>,
    /// How long one delivery attempt may take.
    pub timeout: Duration,
}

impl ChannelSettings {
    pub fn kind(&self) -> ChannelKind {
        match self.spec {
            ChannelSpec::Webhook { .. } => ChannelKind::Webhook,
            ChannelSpec::Slack { .. } => ChannelKind::Slack,
            ChannelSpec::Email { .. } => ChannelKind::Email,
            ChannelSpec::Pagerduty { .. } => ChannelKind::Pagerduty,
        }
    }
}

#[derive(Debug, Clone)]
pub enum ChannelSpec {
    Webhook {
        url: String,
        secret: Option<Secret>,
    },
    Slack {
        url: Secret,
    },
    Email {
        smtp: SmtpServer,
        from: String,
        to: Vec<String>,
    },
    Pagerduty {
        routing_key: Secret,
        url: String,
    },
}

/// Where mail goes: `smtp://[user:password@]host:port` (STARTTLS when the server offers
/// it) or `smtps://…` (TLS from the start).
#[derive(Debug, Clone)]
pub struct SmtpServer {
    pub implicit_tls: bool,
    pub host: String,
    pub port: u16,
    pub credentials: Option<(String, Secret)>,
}

/// PagerDuty's Events API v2.
pub const PAGERDUTY_EVENTS_URL: &str = "https://events.pagerduty.com/v2/enqueue";

pub(super) fn jobs(file: FileJobs) -> Result<JobSettings, ConfigError> {
    let defaults = JobSettings::default();
    let max_attempts = file.max_attempts.unwrap_or(defaults.max_attempts);
    if !(1..=100).contains(&max_attempts) {
        return Err(invalid(
            "jobs.max_attempts",
            format!("{max_attempts} is outside 1..=100"),
        ));
    }
    let backoff = Backoff {
        base: duration_key("jobs.backoff_base", file.backoff_base, "1s", 0, 3600)?,
        max: duration_key("jobs.backoff_max", file.backoff_max, "10m", 0, 86_400)?,
    };
    if backoff.max < backoff.base {
        return Err(invalid("jobs.backoff_max", "is shorter than jobs.backoff_base".into()));
    }
    let mut concurrency = defaults.concurrency;
    match file.concurrency {
        None => {}
        Some(FileConcurrency::Every(every)) => {
            for (kind, value) in concurrency.iter_mut() {
                *value = if *kind == JobKind::Housekeeping { 1 } else { every };
            }
        }
        Some(FileConcurrency::PerKind(per_kind)) => {
            for (name, value) in per_kind {
                let kind: JobKind = name
                    .parse()
                    .map_err(|error: lim_domain::UnknownValue| invalid("jobs.concurrency", error.to_string()))?;
                concurrency.insert(kind, value);
            }
        }
    }
    if let Some((kind, value)) = concurrency.iter().find(|(_, value)| !(1..=1000).contains(*value)) {
        return Err(invalid(
            "jobs.concurrency",
            format!("{kind}: {value} is outside 1..=1000"),
        ));
    }
    Ok(JobSettings {
        max_attempts,
        backoff,
        concurrency,
        retention: duration_key("jobs.retention", file.retention, "7d", 60, 365 * 86_400)?,
        lease: duration_key("jobs.lease", file.lease, "2m", 1, 86_400)?,
    })
}

pub(super) fn channels(file: BTreeMap<String, FileChannel>) -> Result<BTreeMap<String, ChannelSettings>, ConfigError> {
    file.into_iter()
        .map(|(name, channel)| Ok((name.clone(), channel_settings(&name, channel)?)))
        .collect()
}

fn channel_settings(name: &str, file: FileChannel) -> Result<ChannelSettings, ConfigError> {
    let key = |field: &str| format!("channels.{name}.{field}");
    let kind: ChannelKind = file
        .kind
        .as_deref()
        .ok_or_else(|| invalid(key("type"), "is required: webhook, slack, email or pagerduty".into()))?
        .parse()
        .map_err(|error: lim_domain::UnknownValue| invalid(key("type"), error.to_string()))?;
    let unused = |field: &str, present: bool| {
        if present {
            Err(invalid(key(field), format!("is not a setting of a {kind} channel")))
        } else {
            Ok(())
        }
    };
    let secret = |field: &str, value: Option<String>| -> Result<Secret, ConfigError> {
        let value = value.ok_or_else(|| invalid(key(field), format!("is required for a {kind} channel")))?;
        Secret::resolve(&value).map_err(|problem| invalid(key(field), problem))
    };
    let spec = match kind {
        ChannelKind::Webhook => {
            unused("smtp", file.smtp.is_some())?;
            unused("from", file.from.is_some())?;
            unused("to", file.to.is_some())?;
            unused("routing_key", file.routing_key.is_some())?;
            let url = file
                .url
                .ok_or_else(|| invalid(key("url"), "is required for a webhook channel".into()))?;
            http_url(&key("url"), &url)?;
            let secret = file
                .secret
                .map(|secret| Secret::resolve(&secret).map_err(|problem| invalid(key("secret"), problem)))
                .transpose()?;
            ChannelSpec::Webhook { url, secret }
        }
        ChannelKind::Slack => {
            for (field, present) in [
                ("secret", file.secret.is_some()),
                ("smtp", file.smtp.is_some()),
                ("from", file.from.is_some()),
                ("to", file.to.is_some()),
                ("routing_key", file.routing_key.is_some()),
            ] {
                unused(field, present)?;
            }
            let url = secret("url", file.url)?;
            http_url(&key("url"), url.expose()).map_err(|_| invalid(key("url"), "is not an http(s) URL".into()))?;
            ChannelSpec::Slack { url }
        }
        ChannelKind::Email => {
            unused("url", file.url.is_some())?;
            unused("secret", file.secret.is_some())?;
            unused("routing_key", file.routing_key.is_some())?;
            let smtp = smtp_server(&key("smtp"), &secret("smtp", file.smtp)?)?;
            let from = file
                .from
                .ok_or_else(|| invalid(key("from"), "is required for an email channel".into()))?;
            let to = file.to.unwrap_or_default();
            if to.is_empty() {
                return Err(invalid(key("to"), "lists no recipient".into()));
            }
            for address in std::iter::once(&from).chain(&to) {
                if address.parse::<lettre::message::Mailbox>().is_err() {
                    return Err(invalid(
                        key(if *address == from { "from" } else { "to" }),
                        format!("`{address}` is not an email address"),
                    ));
                }
            }
            ChannelSpec::Email { smtp, from, to }
        }
        ChannelKind::Pagerduty => {
            unused("secret", file.secret.is_some())?;
            unused("smtp", file.smtp.is_some())?;
            unused("from", file.from.is_some())?;
            unused("to", file.to.is_some())?;
            let url = file.url.unwrap_or_else(|| PAGERDUTY_EVENTS_URL.to_owned());
            http_url(&key("url"), &url)?;
            ChannelSpec::Pagerduty {
                routing_key: secret("routing_key", file.routing_key)?,
                url,
            }
        }
    };
    if let Some(attempts) = file.max_attempts.filter(|attempts| !(1..=100).contains(attempts)) {
        return Err(invalid(key("max_attempts"), format!("{attempts} is outside 1..=100")));
    }
    Ok(ChannelSettings {
        name: name.to_owned(),
        spec,
        max_attempts: file.max_attempts,
        timeout: duration_key(key("timeout"), file.timeout, "10s", 1, 600)?,
    })
}

fn http_url(key: &str, url: &str) -> Result<(), ConfigError> {
    match reqwest::Url::parse(url) {
        Ok(parsed) if matches!(parsed.scheme(), "http" | "https") && parsed.host().is_some() => Ok(()),
        _ => Err(invalid(
            key,
            format!("`{}` is not an http(s) URL", lim_domain::text::excerpt(url)),
        )),
    }
}

fn smtp_server(key: &str, url: &Secret) -> Result<SmtpServer, ConfigError> {
    // The URL may hold a password: an error says what is wrong, never the URL.
    let refused = |problem: &str| {
        invalid(
            key,
            format!("{problem}; write smtp://[user:password@]host:port or smtps://…"),
        )
    };
    let parsed = reqwest::Url::parse(url.expose()).map_err(|_| refused("is not a URL"))?;
    let implicit_tls = match parsed.scheme() {
        "smtp" => false,
        "smtps" => true,
        _ => return Err(refused("has a scheme other than smtp or smtps")),
    };
    let host = parsed.host_str().ok_or_else(|| refused("names no host"))?.to_owned();
    let port = parsed.port().unwrap_or(if implicit_tls { 465 } else { 587 });
    let credentials = match (parsed.username(), parsed.password()) {
        ("", _) => None,
        (user, password) => {
            let decode = |text: &str| {
                percent_decode(text).ok_or_else(|| refused("has credentials that are not valid percent-encoding"))
            };
            Some((
                decode(user)?,
                Secret::resolve(&decode(password.unwrap_or(""))?).map_err(|problem| invalid(key, problem))?,
            ))
        }
    };
    Ok(SmtpServer {
        implicit_tls,
        host,
        port,
        credentials,
    })
}

/// `text` with its `%XX` escapes decoded (an SMTP URL's user and password); None when an
/// escape is not two hexadecimal digits or the result is not UTF-8.
pub fn percent_decode(text: &str) -> Option<String> {
    let mut bytes = Vec::with_capacity(text.len());
    let mut rest = text.as_bytes();
    while let Some((&first, tail)) = rest.split_first() {
        if first == b'%' {
            let hex = std::str::from_utf8(tail.get(..2)?).ok()?;
            bytes.push(u8::from_str_radix(hex, 16).ok()?);
            rest = &tail[2..];
        } else {
            bytes.push(first);
            rest = tail;
        }
    }
    String::from_utf8(bytes).ok()
}

pub(super) fn routes(
    file: Vec<FileRoute>,
    channels: &BTreeMap<String, ChannelSettings>,
    schedules: &BTreeMap<String, Schedule>,
    policies: &BTreeMap<String, EscalationPolicy>,
) -> Result<Vec<Route>, ConfigError> {
    let mut routes: Vec<Route> = Vec::with_capacity(file.len());
    for (index, route) in file.into_iter().enumerate() {
        let key = |field: &str| format!("routes[{index}].{field}");
        let name = route
            .name
            .filter(|name| !name.trim().is_empty())
            .ok_or_else(|| invalid(key("name"), "is required".into()))?;
        if routes.iter().any(|earlier| earlier.name == name) {
            return Err(invalid(key("name"), format!("`{name}` names an earlier route too")));
        }
        let matchers = Matchers::parse(&route.equal, &route.match_re).map_err(|error| ConfigError::Invalid {
            key: format!("routes[{index}].{}", error.key),
            reason: error.problem,
        })?;
        if let Some(unknown) = route.channels.iter().find(|channel| !channels.contains_key(*channel)) {
            return Err(invalid(
                key("channels"),
                format!("`{unknown}` is no channel; define it as [channels.{unknown}]"),
            ));
        }
        let notify_on = match route.notify_on {
            None => Route::DEFAULT_NOTIFY_ON.to_vec(),
            Some(events) => events
                .iter()
                .map(|event| match event.parse::<NotifyEvent>() {
                    Ok(NotifyEvent::Escalated) | Err(_) => Err(invalid(
                        key("notify_on"),
                        format!("`{event}` is not one of created, acknowledged, resolved"),
                    )),
                    Ok(event) => Ok(event),
                })
                .collect::<Result<_, _>>()?,
        };
        if let Some(schedule) = route.assignee.as_deref().and_then(Target::oncall_schedule)
            && !schedules.contains_key(schedule)
        {
            return Err(invalid(
                key("assignee"),
                format!("`oncall:{schedule}` names no schedule; define it as [schedules.{schedule}]"),
            ));
        }
        if let Some(policy) = route.escalation_policy.as_deref()
            && !policies.contains_key(policy)
        {
            return Err(invalid(
                key("escalation_policy"),
                format!("`{policy}` is no escalation policy; define it as [escalation_policies.{policy}]"),
            ));
        }
        let group_wait = route
            .group_wait
            .map(|text| duration_key(key("group_wait"), Some(text), "0s", 1, 3600))
            .transpose()?;
        routes.push(Route {
            name,
            matchers,
            team: route.team,
            assignee: route.assignee,
            escalation_policy: route.escalation_policy,
            channels: route.channels,
            notify_on,
            group_wait,
        });
    }
    Ok(routes)
}

/// What changes cause, from the routes, channels, schedules, escalation policies and the
/// jobs' default attempts.
pub fn reactions(settings: &super::Settings) -> Reactions {
    let channels = &settings.channels;
    Reactions {
        routes: Routes::new(settings.routes.to_vec()),
        channel_attempts: channels
            .iter()
            .filter_map(|(name, channel)| channel.max_attempts.map(|attempts| (name.clone(), attempts)))
            .collect(),
        default_attempts: settings.jobs.max_attempts,
        // PagerDuty keeps one alert per incident (its dedup key): grouping is its own.
        ungrouped_channels: channels
            .iter()
            .filter(|(_, channel)| channel.kind() == ChannelKind::Pagerduty)
            .map(|(name, _)| name.clone())
            .collect(),
        policies: settings.policies.clone(),
        schedules: settings.schedules.clone(),
        llm: (settings.llm.provider != LlmProvider::Offline).then_some(LlmTriage {
            classify: settings.llm.classify,
            insights: settings.llm.insights,
            max_attempts: settings.llm.max_retries + 1,
        }),
    }
}

fn invalid(key: impl Into<String>, reason: String) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        reason,
    }
}
