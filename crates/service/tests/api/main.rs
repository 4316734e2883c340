//! Black-box tests: the application on free ports with a fresh database.

mod alertmanager;
mod auth;
mod bad_input;
mod concurrency;
mod escalation;
mod events;
mod grpc;
mod helpers;
mod lifecycle;
mod limits;
mod llm;
#[path = "../support/llm_server.rs"]
mod llm_server;
mod metrics;
mod notifications;
mod oncall;
mod pages;
#[path = "../support/receiver.rs"]
mod receiver;
mod restart;
#[path = "../support/service_process.rs"]
#[allow(dead_code)] // the tests here use a part of it
mod service_process;
#[path = "../support/smtp.rs"]
mod smtp;
mod strict_input;
