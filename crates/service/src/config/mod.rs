//! Typed configuration, layered: built-in defaults, then the TOML file, then
//! environment variables and flags (clap merges those two; a flag wins).
//! Everything is validated at start-up; a wrong value names its key and the reason.

mod llm;
mod notify;
mod oncall;
mod secret;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use lim_domain::EventRules;
use lim_domain::duration::{format_duration, parse_duration};
use lim_domain::escalation::EscalationPolicy;
use lim_domain::oncall::Schedule;
use lim_domain::routing::Route;
use serde::Deserialize;

pub use llm::{DEFAULT_PRICES, LlmSettings, Price};
pub use notify::{
    ChannelSettings, ChannelSpec, JobSettings, PAGERDUTY_EVENTS_URL, SmtpServer, percent_decode, reactions,
};
pub use oncall::Person;
pub use secret::Secret;

impl Settings {
    /// The API listeners on an address other machines can reach.
    pub fn exposed_listeners(&self) -> Vec<(&'static str, SocketAddr)> {
        [("http.addr", self.http.addr), ("grpc.addr", self.grpc_addr)]
            .into_iter()
            .filter(|(_, addr)| !addr.ip().is_loopback())
            .collect()
    }
}

pub const DEFAULT_DATABASE_URL: &str = "sqlite://data/incidents.db";

/// Values given on the command line or in the environment; `None` leaves the file's.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Overrides {
    /// TOML configuration file.
    #[arg(long, env = "LIM_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// HTTP API listen address.
    #[arg(long, env = "LIM_HTTP_ADDR", value_name = "HOST:PORT")]
    pub http_addr: Option<String>,
    /// gRPC API listen address.
    #[arg(long, env = "LIM_GRPC_ADDR", value_name = "HOST:PORT")]
    pub grpc_addr: Option<String>,
    /// Prometheus `/metrics` listen address.
    #[arg(long, env = "LIM_METRICS_ADDR", value_name = "HOST:PORT")]
    pub metrics_addr: Option<String>,
    /// `sqlite://PATH` (embedded default) or `postgres://USER@HOST:PORT/DB`.
    #[arg(long, env = "LIM_DATABASE_URL", value_name = "URL")]
    pub database_url: Option<String>,
    /// Log format: `text` (default) or `json`.
    #[arg(long, env = "LIM_LOG_FORMAT", value_name = "FORMAT")]
    pub log_format: Option<String>,
    /// Log filter, e.g. `info` or `llm_incident_manager=debug`.
    #[arg(long, env = "LIM_LOG_LEVEL", value_name = "FILTER")]
    pub log_level: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub http: HttpSettings,
    pub grpc_addr: SocketAddr,
    /// Largest gRPC request message accepted; larger ones get `RESOURCE_EXHAUSTED`.
    pub grpc_max_message_bytes: usize,
    pub metrics_addr: SocketAddr,
    /// When set, `/metrics` wants `Authorization: Bearer TOKEN`.
    pub metrics_token: Option<secret::Secret>,
    /// Serve the API on a non-loopback address while no API key exists.
    pub allow_anonymous: bool,
    /// Failed key checks a client may make in a minute before it gets 429.
    pub auth_max_failures: u32,
    pub database: DatabaseSettings,
    pub events: EventRules,
    pub jobs: JobSettings,
    pub channels: BTreeMap<String, ChannelSettings>,
    /// In order: the first that matches an incident decides.
    pub routes: Vec<Route>,
    pub people: BTreeMap<String, Person>,
    pub schedules: BTreeMap<String, Schedule>,
    pub policies: BTreeMap<String, EscalationPolicy>,
    pub llm: LlmSettings,
    pub log: LogSettings,
}

#[derive(Debug, Clone)]
pub struct HttpSettings {
    pub addr: SocketAddr,
    /// Largest request body accepted; larger ones get 413.
    pub max_body_bytes: usize,
    /// Longest request target (path and query) read; longer ones get 414.
    pub max_uri_bytes: usize,
    /// Requests still running after this long get 503 (a stuck store must not pile up requests).
    pub request_timeout: Duration,
    /// A connection that has not sent a whole request head within this long is closed.
    pub header_timeout: Duration,
    /// A request whose body has not arrived within this long gets 408.
    pub body_timeout: Duration,
    /// On shutdown, requests in flight get this long to finish; then every connection closes.
    pub drain_timeout: Duration,
    /// Where people reach this service (links in notifications).
    pub public_url: String,
}

#[derive(Debug, Clone)]
pub struct DatabaseSettings {
    pub url: String,
    pub max_connections: u32,
    /// Events that may wait to be written (either backend) before writes get 503.
    pub max_queued_events: u32,
    /// PostgreSQL: tasks that store events, several requests to a transaction.
    pub ingest_writers: u32,
    /// PostgreSQL: prepared statements kept per connection.
    pub statement_cache: u32,
}

#[derive(Debug, Clone)]
pub struct LogSettings {
    pub format: LogFormat,
    pub level: String,
}

/// A configuration value that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read configuration file {path}: {reason}")]
    Unreadable { path: String, reason: String },
    #[error("invalid configuration file {path}: {reason}")]
    Malformed { path: String, reason: String },
    #[error("invalid configuration: {key}: {reason}")]
    Invalid { key: String, reason: String },
}

/// The file as written; every key optional, unknown keys refused.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSettings {
    #[serde(default)]
    http: FileHttp,
    #[serde(default)]
    grpc: FileGrpc,
    #[serde(default)]
    metrics: FileMetrics,
    #[serde(default)]
    auth: FileAuth,
    #[serde(default)]
    database: FileDatabase,
    #[serde(default)]
    events: FileEvents,
    #[serde(default)]
    jobs: notify::FileJobs,
    #[serde(default)]
    channels: BTreeMap<String, notify::FileChannel>,
    #[serde(default)]
    routes: Vec<notify::FileRoute>,
    #[serde(default)]
    people: BTreeMap<String, oncall::FilePerson>,
    #[serde(default)]
    schedules: BTreeMap<String, oncall::FileSchedule>,
    #[serde(default)]
    escalation_policies: BTreeMap<String, oncall::FilePolicy>,
    #[serde(default)]
    llm: llm::FileLlm,
    #[serde(default)]
    log: FileLog,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileHttp {
    addr: Option<String>,
    max_body_bytes: Option<usize>,
    max_uri_bytes: Option<usize>,
    request_timeout: Option<String>,
    header_timeout: Option<String>,
    body_timeout: Option<String>,
    drain_timeout: Option<String>,
    public_url: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileEvents {
    max_clock_skew: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileMetrics {
    addr: Option<String>,
    /// A secret (`env:`, `file:` or literal): `/metrics` then wants `Authorization: Bearer TOKEN`.
    token: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileAuth {
    allow_anonymous: Option<bool>,
    max_failures: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileGrpc {
    addr: Option<String>,
    max_message_bytes: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileDatabase {
    url: Option<String>,
    max_connections: Option<u32>,
    max_queued_events: Option<u32>,
    ingest_writers: Option<u32>,
    statement_cache: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileLog {
    format: Option<String>,
    level: Option<String>,
}

impl Settings {
    /// Loads the file named by `overrides.config` (if any) and applies the overrides.
    pub fn load(overrides: &Overrides) -> Result<Settings, ConfigError> {
        let file = match &overrides.config {
            Some(path) => read_file(path)?,
            None => FileSettings::default(),
        };
        let pick = |over: &Option<String>, file: Option<String>, default: &str| {
            over.clone().or(file).unwrap_or_else(|| default.to_owned())
        };
        let jobs = notify::jobs(file.jobs)?;
        let channels = notify::channels(file.channels)?;
        let people = oncall::people(file.people, &channels)?;
        let schedules = oncall::schedules(file.schedules, &people)?;
        let policies = oncall::policies(file.escalation_policies, &channels, &people, &schedules)?;
        let routes = notify::routes(file.routes, &channels, &schedules, &policies)?;
        let llm = llm::llm(file.llm)?;
        let mut settings = Settings {
            http: HttpSettings {
                addr: socket_addr(
                    "http.addr",
                    &pick(&overrides.http_addr, file.http.addr, "127.0.0.1:8080"),
                )?,
                max_body_bytes: bounded(
                    "http.max_body_bytes",
                    file.http.max_body_bytes.unwrap_or(5 * 1024 * 1024),
                    1024,
                    256 * 1024 * 1024,
                )?,
                max_uri_bytes: bounded(
                    "http.max_uri_bytes",
                    file.http.max_uri_bytes.unwrap_or(8 * 1024),
                    256,
                    60 * 1024,
                )?,
                request_timeout: duration_key("http.request_timeout", file.http.request_timeout, "30s", 1, 3600)?,
                header_timeout: duration_key("http.header_timeout", file.http.header_timeout, "10s", 1, 600)?,
                body_timeout: duration_key("http.body_timeout", file.http.body_timeout, "20s", 1, 3600)?,
                drain_timeout: duration_key("http.drain_timeout", file.http.drain_timeout, "10s", 0, 600)?,
                public_url: String::new(),
            },
            grpc_addr: socket_addr(
                "grpc.addr",
                &pick(&overrides.grpc_addr, file.grpc.addr, "127.0.0.1:8081"),
            )?,
            grpc_max_message_bytes: bounded(
                "grpc.max_message_bytes",
                file.grpc.max_message_bytes.unwrap_or(4 * 1024 * 1024),
                1024,
                256 * 1024 * 1024,
            )?,
            metrics_addr: socket_addr(
                "metrics.addr",
                &pick(&overrides.metrics_addr, file.metrics.addr, "127.0.0.1:9090"),
            )?,
            metrics_token: file
                .metrics
                .token
                .as_deref()
                .map(|written| {
                    secret::Secret::resolve(written).map_err(|reason| ConfigError::Invalid {
                        key: "metrics.token".into(),
                        reason,
                    })
                })
                .transpose()?,
            allow_anonymous: file.auth.allow_anonymous.unwrap_or(false),
            auth_max_failures: bounded(
                "auth.max_failures",
                file.auth.max_failures.unwrap_or(crate::auth::MAX_FAILURES),
                1,
                1_000_000,
            )?,
            database: DatabaseSettings {
                url: database_url(&pick(&overrides.database_url, file.database.url, DEFAULT_DATABASE_URL))?,
                max_connections: bounded(
                    "database.max_connections",
                    file.database.max_connections.unwrap_or(8),
                    1,
                    1000,
                )?,
                max_queued_events: bounded(
                    "database.max_queued_events",
                    file.database.max_queued_events.unwrap_or(20_000),
                    1000,
                    10_000_000,
                )?,
                ingest_writers: bounded(
                    "database.ingest_writers",
                    file.database.ingest_writers.unwrap_or(4),
                    1,
                    64,
                )?,
                statement_cache: bounded(
                    "database.statement_cache",
                    file.database.statement_cache.unwrap_or(100),
                    0,
                    10_000,
                )?,
            },
            jobs,
            channels,
            routes,
            people,
            schedules,
            policies,
            llm,
            events: EventRules {
                max_clock_skew: duration_key(
                    "events.max_clock_skew",
                    file.events.max_clock_skew,
                    "10m",
                    0,
                    7 * 86_400,
                )?,
            },
            log: LogSettings {
                format: log_format(&pick(&overrides.log_format, file.log.format, "text"))?,
                level: log_level(&pick(&overrides.log_level, file.log.level, "info"))?,
            },
        };
        if settings.http.body_timeout >= settings.http.request_timeout {
            return Err(ConfigError::Invalid {
                key: "http.body_timeout".into(),
                reason: format!(
                    "{} must be shorter than http.request_timeout ({}), so that a slow body gets 408",
                    format_duration(settings.http.body_timeout),
                    format_duration(settings.http.request_timeout)
                ),
            });
        }
        settings.check_leases()?;
        settings.check_pool()?;
        settings.check_ports()?;
        settings.http.public_url = match file.http.public_url {
            Some(url) => public_url(&url)?,
            None => format!("http://{}", settings.http.addr),
        };
        Ok(settings)
    }

    /// On PostgreSQL each ingest writer holds a pooled connection for its transaction: some
    /// must stay for reads, job claims and the readiness check while ingest writes.
    fn check_pool(&self) -> Result<(), ConfigError> {
        let database = &self.database;
        if database.url.starts_with("postgres") && database.ingest_writers >= database.max_connections {
            return Err(ConfigError::Invalid {
                key: "database.ingest_writers".into(),
                reason: format!(
                    "{} must be fewer than database.max_connections ({}), so that reads, jobs and the \
                     readiness check keep a connection while ingest writes",
                    database.ingest_writers, database.max_connections
                ),
            });
        }
        Ok(())
    }

    /// A job's attempt must end before its lease does, or another worker (or replica)
    /// takes the job while it still runs and the delivery or provider request is made
    /// twice. An LLM attempt may first wait for a concurrency permit (as long as one
    /// request at most) and then make its request: twice `llm.timeout` must fit.
    fn check_leases(&self) -> Result<(), ConfigError> {
        let lease = self.jobs.lease;
        let too_long = |key: String, what: String| ConfigError::Invalid {
            key,
            reason: format!(
                "{what} must be shorter than jobs.lease ({}), or a job still running would be taken again",
                format_duration(lease)
            ),
        };
        if self.llm.provider != lim_domain::triage::LlmProvider::Offline && self.llm.timeout * 2 >= lease {
            return Err(too_long(
                "llm.timeout".into(),
                format!(
                    "twice {} (a request and the wait for a concurrency permit)",
                    format_duration(self.llm.timeout)
                ),
            ));
        }
        for (name, channel) in &self.channels {
            if channel.timeout >= lease {
                return Err(too_long(
                    format!("channels.{name}.timeout"),
                    format_duration(channel.timeout),
                ));
            }
        }
        Ok(())
    }

    fn check_ports(&self) -> Result<(), ConfigError> {
        let listeners = [
            ("http.addr", self.http.addr),
            ("grpc.addr", self.grpc_addr),
            ("metrics.addr", self.metrics_addr),
        ];
        for (index, (key, addr)) in listeners.iter().enumerate() {
            let clash = listeners[..index].iter().find(|(_, other)| {
                // One port on a wildcard address and on a specific one clash too.
                other.port() != 0
                    && other.port() == addr.port()
                    && (other.ip() == addr.ip() || other.ip().is_unspecified() || addr.ip().is_unspecified())
            });
            if let Some((other_key, _)) = clash {
                return Err(ConfigError::Invalid {
                    key: (*key).into(),
                    reason: format!("{addr} is already used by {other_key}"),
                });
            }
        }
        Ok(())
    }
}

fn read_file(path: &Path) -> Result<FileSettings, ConfigError> {
    let display = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Unreadable {
        path: display.clone(),
        reason: error.to_string(),
    })?;
    toml::from_str(&text).map_err(|error| ConfigError::Malformed {
        path: display,
        reason: toml_problem(&text, &error),
    })
}

/// What is wrong with the file and where, without quoting it: the line may hold a secret
/// written literally, and this message reaches logs and the reload endpoint.
fn toml_problem(text: &str, error: &toml::de::Error) -> String {
    let message = error.message().trim_end();
    match error.span() {
        Some(span) => {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.rsplit('\n').next().map_or(0, |last| last.chars().count()) + 1;
            format!("{message} (line {line}, column {column})")
        }
        None => message.to_owned(),
    }
}

fn socket_addr(key: &'static str, value: &str) -> Result<SocketAddr, ConfigError> {
    value.parse().map_err(|_| ConfigError::Invalid {
        key: key.into(),
        reason: format!("`{value}` is not a socket address; expected IP:PORT such as 0.0.0.0:8080"),
    })
}

fn bounded<T: PartialOrd + std::fmt::Display>(key: &'static str, value: T, min: T, max: T) -> Result<T, ConfigError> {
    if value < min || value > max {
        return Err(ConfigError::Invalid {
            key: key.into(),
            reason: format!("{value} is outside {min}..={max}"),
        });
    }
    Ok(value)
}

/// A duration key (`30s`, `10m`) within `min_secs..=max_secs`.
pub(crate) fn duration_key(
    key: impl Into<String>,
    value: Option<String>,
    default: &str,
    min_secs: u64,
    max_secs: u64,
) -> Result<Duration, ConfigError> {
    let key = key.into();
    let text = value.unwrap_or_else(|| default.to_owned());
    let duration = parse_duration(&text).map_err(|reason| ConfigError::Invalid {
        key: key.clone(),
        reason,
    })?;
    let (min, max) = (Duration::from_secs(min_secs), Duration::from_secs(max_secs));
    if duration < min || duration > max {
        return Err(ConfigError::Invalid {
            key,
            reason: format!("{text} is outside {}..={}", format_duration(min), format_duration(max)),
        });
    }
    Ok(duration)
}

/// The base of links to this service in notifications, without a trailing slash.
fn public_url(value: &str) -> Result<String, ConfigError> {
    match reqwest::Url::parse(value) {
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => {
            Ok(value.trim_end_matches('/').to_owned())
        }
        _ => Err(ConfigError::Invalid {
            key: "http.public_url".into(),
            reason: format!("`{value}` is not an http(s) URL"),
        }),
    }
}

fn database_url(value: &str) -> Result<String, ConfigError> {
    let supported = ["sqlite://", "sqlite:", "postgres://", "postgresql://"];
    let rest = supported.iter().find_map(|scheme| value.strip_prefix(scheme));
    match rest {
        Some(rest) if !rest.is_empty() => Ok(value.to_owned()),
        _ => Err(ConfigError::Invalid {
            key: "database.url".into(),
            reason: format!("`{value}` is not supported; use sqlite://PATH or postgres://USER@HOST:PORT/DB"),
        }),
    }
}

fn log_format(value: &str) -> Result<LogFormat, ConfigError> {
    match value {
        "text" => Ok(LogFormat::Text),
        "json" => Ok(LogFormat::Json),
        other => Err(ConfigError::Invalid {
            key: "log.format".into(),
            reason: format!("`{other}` is not text or json"),
        }),
    }
}

fn log_level(value: &str) -> Result<String, ConfigError> {
    // An empty filter parses, and silences every log line: surely not what was meant.
    if value.trim().is_empty() {
        return Err(ConfigError::Invalid {
            key: "log.level".into(),
            reason: "is empty; give a level such as `info` or a filter such as `llm_incident_manager=debug`".into(),
        });
    }
    tracing_subscriber::EnvFilter::try_new(value)
        .map(|_| value.to_owned())
        .map_err(|error| ConfigError::Invalid {
            key: "log.level".into(),
            reason: format!("`{value}`: {error}"),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_toml(text: &str) -> Result<Settings, ConfigError> {
        let dir = std::env::temp_dir().join(format!("lim-config-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("config.toml");
        std::fs::write(&path, text).unwrap();
        Settings::load(&Overrides {
            config: Some(path),
            ..Overrides::default()
        })
    }

    #[test]
    fn people_schedules_and_policies_are_checked_naming_the_key() {
        let mail = "[channels.mail]\ntype = \"email\"\nsmtp = \"smtp://127.0.0.1:25\"\nfrom = \"a@example.com\"\n\
                    to = [\"b@example.com\"]\n[people.ana]\nemail = \"ana@example.com\"\n";
        let schedule = "[schedules.primary]\nparticipants = [\"ana\"]\nrotation = \"daily\"\n\
                        start = \"2026-01-05T09:00:00+01:00\"\n";
        let refused = |text: String| match load_toml(&text).unwrap_err() {
            ConfigError::Invalid { key, reason } => (key, reason),
            other => panic!("{other}"),
        };
        let (key, _) = refused(format!("{mail}[people.bo]\n"));
        assert_eq!(key, "people.bo");
        let (key, reason) = refused(format!(
            "{mail}[schedules.primary]\nparticipants = [\"zed\"]\nrotation = \"daily\"\n\
                                              start = \"2026-01-05T09:00:00Z\"\n"
        ));
        assert_eq!(key, "schedules.primary");
        assert!(reason.contains("`zed` is no person"), "{reason}");
        let (key, _) = refused(format!("{mail}{schedule}").replace("daily", "fortnightly"));
        assert_eq!(key, "schedules.primary.rotation");
        let (key, reason) = refused(format!(
            "{mail}{schedule}[escalation_policies.urgent]\nlevels = [{{ after = \"5m\", notify = [\"oncall:nosuch\"] }}]\n"
        ));
        assert_eq!(key, "escalation_policies.urgent.levels[0].notify");
        assert!(reason.contains("names no schedule"), "{reason}");
        let (key, reason) = refused(format!(
            "{mail}[escalation_policies.urgent]\nlevels = [{{ after = \"5m\", notify = [\"nobody\"] }}]\n"
        ));
        assert_eq!(key, "escalation_policies.urgent.levels[0].notify");
        assert!(
            reason.contains("neither a channel, a person nor oncall:SCHEDULE"),
            "{reason}"
        );
        let (key, _) = refused(format!(
            "{mail}[[routes]]\nname = \"r\"\nescalation_policy = \"nosuch\"\n"
        ));
        assert_eq!(key, "routes[0].escalation_policy");
        let (key, _) = refused(format!(
            "{mail}[[routes]]\nname = \"r\"\nassignee = \"oncall:nosuch\"\n"
        ));
        assert_eq!(key, "routes[0].assignee");
        let (key, _) = refused(format!("{mail}[[routes]]\nname = \"r\"\ngroup_wait = \"soon\"\n"));
        assert_eq!(key, "routes[0].group_wait");
        let settings = load_toml(&format!(
            "{mail}{schedule}[escalation_policies.urgent]\nrepeat = 2\n\
             levels = [{{ after = \"0s\", notify = [\"mail\"] }}, {{ after = \"10m\", notify = [\"ana\", \"oncall:primary\"] }}]\n\
             [[routes]]\nname = \"r\"\nassignee = \"oncall:primary\"\nescalation_policy = \"urgent\"\ngroup_wait = \"30s\"\n"
        ))
        .unwrap();
        let policy = &settings.policies["urgent"];
        assert_eq!((policy.levels.len(), policy.repeat), (2, 2));
        assert_eq!(settings.routes[0].group_wait, Some(Duration::from_secs(30)));
    }

    #[test]
    fn a_malformed_file_is_refused_with_where_but_not_what_it_says() {
        let error = load_toml("[channels.ops]\ntype = \"webhook\"\nsecret = \"s3cret-value").unwrap_err();
        let message = error.to_string();
        assert!(message.contains("line 3"), "{message}");
        assert!(
            !message.contains("s3cret-value"),
            "a secret on the line is not quoted: {message}"
        );
    }

    #[test]
    fn defaults_need_no_configuration() {
        let settings = Settings::load(&Overrides::default()).unwrap();
        assert_eq!(settings.http.addr.port(), 8080);
        assert_eq!(settings.grpc_addr.port(), 8081);
        assert_eq!(settings.metrics_addr.port(), 9090);
        assert_eq!(settings.database.url, DEFAULT_DATABASE_URL);
        assert_eq!(settings.log.format, LogFormat::Text);
    }

    #[test]
    fn the_file_is_read_and_flags_win_over_it() {
        let settings = load_toml("[http]\naddr = \"127.0.0.1:7000\"\n[log]\nformat = \"json\"\n").unwrap();
        assert_eq!(settings.http.addr.to_string(), "127.0.0.1:7000");
        assert_eq!(settings.log.format, LogFormat::Json);
        let dir = std::env::temp_dir().join(format!("lim-config-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("c.toml");
        std::fs::write(&path, "[http]\naddr = \"127.0.0.1:7000\"\n").unwrap();
        let overrides = Overrides {
            config: Some(path),
            http_addr: Some("127.0.0.1:7001".into()),
            ..Overrides::default()
        };
        assert_eq!(Settings::load(&overrides).unwrap().http.addr.port(), 7001);
    }

    #[test]
    fn routes_channels_and_jobs_are_read_and_checked() {
        let settings = load_toml(
            "[jobs]\nmax_attempts = 5\nconcurrency = { notify = 16 }\n\n\
             [channels.ops]\ntype = \"webhook\"\nurl = \"https://hooks.example.com/x\"\nmax_attempts = 2\n\
             [channels.mail]\ntype = \"email\"\nsmtp = \"smtps://bot:p%40ss@mail.example.com\"\n\
             from = \"bot@example.com\"\nto = [\"oncall@example.com\"]\n\n\
             [[routes]]\nname = \"critical\"\nmatch = { severity = \"critical\" }\nchannels = [\"ops\", \"mail\"]\n\
             notify_on = [\"created\"]\n",
        )
        .unwrap();
        assert_eq!(settings.jobs.max_attempts, 5);
        assert_eq!(settings.jobs.concurrency[&lim_domain::JobKind::Notify], 16);
        assert_eq!(settings.routes[0].name, "critical");
        assert_eq!(settings.routes[0].notify_on, [lim_domain::NotifyEvent::Created]);
        let ChannelSpec::Email { smtp, .. } = &settings.channels["mail"].spec else {
            panic!("an email channel")
        };
        assert!(smtp.implicit_tls);
        assert_eq!(smtp.port, 465);
        assert_eq!(smtp.credentials.as_ref().unwrap().1.expose(), "p@ss");
        let reactions = reactions(&settings);
        assert_eq!(reactions.channel_attempts["ops"], 2);
        assert_eq!(reactions.default_attempts, 5);
    }

    #[test]
    fn a_bad_route_or_channel_is_refused_naming_its_key() {
        let message = |text: &str| load_toml(text).unwrap_err().to_string();
        let hook = "[channels.ops]\ntype = \"webhook\"\nurl = \"https://x.example.com\"\n";
        assert!(
            message(&format!("{hook}[[routes]]\nname = \"a\"\nchannels = [\"pager\"]\n"))
                .contains("routes[0].channels: `pager` is no channel; define it as [channels.pager]")
        );
        assert!(
            message(&format!(
                "{hook}[[routes]]\nname = \"a\"\nmatch_re = {{ \"labels.m\" = \"gpt-(4\" }}\n"
            ))
            .contains("routes[0].match_re.labels.m: `gpt-(4` is not a regular expression")
        );
        assert!(message(&format!("{hook}[[routes]]\nchannels = [\"ops\"]\n")).contains("routes[0].name: is required"));
        assert!(message("[channels.x]\ntype = \"fax\"\n").contains("channels.x.type: unknown channel type `fax`"));
        assert!(message("[channels.x]\ntype = \"webhook\"\nurl = \"ftp://x\"\n").contains("channels.x.url"));
        assert!(
            message("[channels.x]\ntype = \"slack\"\nurl = \"env:LIM_TEST_UNSET_SLACK_URL\"\n")
                .contains("channels.x.url: the environment variable LIM_TEST_UNSET_SLACK_URL is not set")
        );
        assert!(
            message("[channels.x]\ntype = \"webhook\"\nurl = \"https://x.example.com\"\nsmtp = \"smtp://h\"\n")
                .contains("channels.x.smtp: is not a setting of a webhook channel")
        );
        let secret_url = "smtp://bot:hunter2@";
        let refused = message(&format!(
            "[channels.m]\ntype = \"email\"\nsmtp = \"{secret_url}\"\nfrom = \"a@b.c\"\nto = [\"d@e.f\"]\n"
        ));
        assert!(
            refused.contains("channels.m.smtp") && !refused.contains("hunter2"),
            "{refused}"
        );
        assert!(message("[jobs]\nconcurrency = { printing = 2 }\n").contains("jobs.concurrency: unknown job kind"));
    }

    #[test]
    fn wrong_values_name_the_key_and_the_reason() {
        let message = |text: &str| load_toml(text).unwrap_err().to_string();
        assert!(message("[http]\naddr = \"nowhere\"\n").contains("http.addr: `nowhere` is not a socket address"));
        assert!(message("[database]\nurl = \"mysql://x\"\n").contains("database.url"));
        assert!(message("[log]\nformat = \"xml\"\n").contains("log.format"));
        assert!(message("[http]\nmax_body_bytes = 1\n").contains("http.max_body_bytes: 1 is outside"));
        assert!(message("[http]\nadr = \"x\"\n").contains("unknown field `adr`"));
        assert!(
            message("[http]\nheader_timeout = \"soon\"\n").contains("http.header_timeout: `soon` is not a duration")
        );
        assert!(message("[http]\nbody_timeout = \"40s\"\n").contains("http.body_timeout: 40s must be shorter"));
        assert!(
            message("[database]\nurl = \"postgres://db/lim\"\nmax_connections = 4\ningest_writers = 4\n")
                .contains("database.ingest_writers: 4 must be fewer than database.max_connections (4)")
        );
        assert!(
            message("[jobs]\nlease = \"5s\"\n[channels.ops]\ntype = \"webhook\"\nurl = \"https://x.example.com\"\n")
                .contains("channels.ops.timeout: 10s must be shorter than jobs.lease (5s)")
        );
        assert!(
            message(
                "[jobs]\nlease = \"50s\"\n[llm]\nprovider = \"openai\"\nmodel = \"gpt-4o-mini\"\n\
                 api_key = \"sk-test\"\ntimeout = \"30s\"\n"
            )
            .contains("llm.timeout: twice 30s")
        );
        assert!(message("[events]\nmax_clock_skew = \"30d\"\n").contains("events.max_clock_skew: 30d is outside"));
        assert!(message("[log]\nlevel = \"  \"\n").contains("log.level: is empty"));
        assert!(
            message("[metrics]\naddr = \"0.0.0.0:8080\"\n")
                .contains("metrics.addr: 0.0.0.0:8080 is already used by http.addr")
        );
    }
}
