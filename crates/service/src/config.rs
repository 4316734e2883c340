//! Typed configuration, layered: built-in defaults, then the TOML file, then
//! environment variables and flags (clap merges those two; a flag wins).
//! Everything is validated at start-up; a wrong value names its key and the reason.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

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
    /// gRPC API listen address (reserved: validated and kept free of the other
    /// listeners, served once the gRPC API exists).
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
    pub metrics_addr: SocketAddr,
    pub database: DatabaseSettings,
    pub log: LogSettings,
}

#[derive(Debug, Clone)]
pub struct HttpSettings {
    pub addr: SocketAddr,
    /// Largest request body accepted; larger ones get 413.
    pub max_body_bytes: usize,
    /// Requests still running after this long get 503 (a stuck store must not pile up requests).
    pub request_timeout_secs: u64,
}

#[derive(Debug, Clone)]
pub struct DatabaseSettings {
    pub url: String,
    pub max_connections: u32,
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
    Invalid { key: &'static str, reason: String },
}

/// The file as written; every key optional, unknown keys refused.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSettings {
    #[serde(default)]
    http: FileHttp,
    #[serde(default)]
    grpc: FileAddr,
    #[serde(default)]
    metrics: FileAddr,
    #[serde(default)]
    database: FileDatabase,
    #[serde(default)]
    log: FileLog,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileHttp {
    addr: Option<String>,
    max_body_bytes: Option<usize>,
    request_timeout_secs: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileAddr {
    addr: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileDatabase {
    url: Option<String>,
    max_connections: Option<u32>,
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
        let settings = Settings {
            http: HttpSettings {
                addr: socket_addr("http.addr", &pick(&overrides.http_addr, file.http.addr, "0.0.0.0:8080"))?,
                max_body_bytes: bounded(
                    "http.max_body_bytes",
                    file.http.max_body_bytes.unwrap_or(5 * 1024 * 1024),
                    1024,
                    256 * 1024 * 1024,
                )?,
                request_timeout_secs: bounded(
                    "http.request_timeout_secs",
                    file.http.request_timeout_secs.unwrap_or(30),
                    1,
                    3600,
                )?,
            },
            grpc_addr: socket_addr("grpc.addr", &pick(&overrides.grpc_addr, file.grpc.addr, "0.0.0.0:8081"))?,
            metrics_addr: socket_addr(
                "metrics.addr",
                &pick(&overrides.metrics_addr, file.metrics.addr, "0.0.0.0:9090"),
            )?,
            database: DatabaseSettings {
                url: database_url(&pick(&overrides.database_url, file.database.url, DEFAULT_DATABASE_URL))?,
                max_connections: bounded(
                    "database.max_connections",
                    file.database.max_connections.unwrap_or(8),
                    1,
                    1000,
                )?,
            },
            log: LogSettings {
                format: log_format(&pick(&overrides.log_format, file.log.format, "text"))?,
                level: log_level(&pick(&overrides.log_level, file.log.level, "info"))?,
            },
        };
        settings.check_ports()?;
        Ok(settings)
    }

    fn check_ports(&self) -> Result<(), ConfigError> {
        let listeners = [
            ("http.addr", self.http.addr),
            ("grpc.addr", self.grpc_addr),
            ("metrics.addr", self.metrics_addr),
        ];
        for (index, (key, addr)) in listeners.iter().enumerate() {
            let clash = listeners[..index]
                .iter()
                .find(|(_, other)| other.port() != 0 && *other == *addr);
            if let Some((other_key, _)) = clash {
                return Err(ConfigError::Invalid {
                    key,
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
        reason: error.to_string(),
    })
}

fn socket_addr(key: &'static str, value: &str) -> Result<SocketAddr, ConfigError> {
    value.parse().map_err(|_| ConfigError::Invalid {
        key,
        reason: format!("`{value}` is not a socket address; expected IP:PORT such as 0.0.0.0:8080"),
    })
}

fn bounded<T: PartialOrd + std::fmt::Display>(key: &'static str, value: T, min: T, max: T) -> Result<T, ConfigError> {
    if value < min || value > max {
        return Err(ConfigError::Invalid {
            key,
            reason: format!("{value} is outside {min}..={max}"),
        });
    }
    Ok(value)
}

fn database_url(value: &str) -> Result<String, ConfigError> {
    let supported = ["sqlite://", "sqlite:", "postgres://", "postgresql://"];
    let rest = supported.iter().find_map(|scheme| value.strip_prefix(scheme));
    match rest {
        Some(rest) if !rest.is_empty() => Ok(value.to_owned()),
        _ => Err(ConfigError::Invalid {
            key: "database.url",
            reason: format!("`{value}` is not supported; use sqlite://PATH or postgres://USER@HOST:PORT/DB"),
        }),
    }
}

fn log_format(value: &str) -> Result<LogFormat, ConfigError> {
    match value {
        "text" => Ok(LogFormat::Text),
        "json" => Ok(LogFormat::Json),
        other => Err(ConfigError::Invalid {
            key: "log.format",
            reason: format!("`{other}` is not text or json"),
        }),
    }
}

fn log_level(value: &str) -> Result<String, ConfigError> {
    tracing_subscriber::EnvFilter::try_new(value)
        .map(|_| value.to_owned())
        .map_err(|error| ConfigError::Invalid {
            key: "log.level",
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
    fn wrong_values_name_the_key_and_the_reason() {
        let message = |text: &str| load_toml(text).unwrap_err().to_string();
        assert!(message("[http]\naddr = \"nowhere\"\n").contains("http.addr: `nowhere` is not a socket address"));
        assert!(message("[database]\nurl = \"mysql://x\"\n").contains("database.url"));
        assert!(message("[log]\nformat = \"xml\"\n").contains("log.format"));
        assert!(message("[http]\nmax_body_bytes = 1\n").contains("http.max_body_bytes: 1 is outside"));
        assert!(message("[http]\nadr = \"x\"\n").contains("unknown field `adr`"));
        assert!(
            message("[metrics]\naddr = \"0.0.0.0:8080\"\n")
                .contains("metrics.addr: 0.0.0.0:8080 is already used by http.addr")
        );
    }
}
