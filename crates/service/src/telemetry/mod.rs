//! Metrics and logs: the registry and its named events, the HTTP middleware, the
//! process collector and the `/metrics` listener.

pub mod exporter;
pub mod grpc;
pub mod logging;
pub mod metrics;
pub mod middleware;
pub mod process;

pub use logging::init_logging;
pub use metrics::Metrics;
