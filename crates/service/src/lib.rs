//! llm-incident-manager: turns events from LLM-ops components and Alertmanager into
//! incidents and drives them to resolution. See README.md and DESIGN.md.

pub mod app;
pub mod auth;
pub mod client;
pub mod clock;
pub mod config;
pub mod grpc;
pub mod http;
pub mod incidents;
pub mod jobs;
pub mod live;
pub mod llm;
pub mod notify;
pub mod telemetry;
pub mod tls;

pub use app::Application;
