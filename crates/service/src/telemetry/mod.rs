//! Metrics and logs: the registry and its named events, the HTTP middleware, the
//! process collector and the `/metrics` listener.

pub mod exporter;
pub mod metrics;
pub mod middleware;
pub mod process;

pub use metrics::Metrics;

use crate::config::{LogFormat, LogSettings};

/// Installs the global `tracing` subscriber: human-readable by default, JSON by setting.
pub fn init_logging(settings: &LogSettings) {
    let filter = tracing_subscriber::EnvFilter::new(&settings.level);
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match settings.format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}
