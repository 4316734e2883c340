//! Black-box tests: the application on free ports with a fresh database.

mod alertmanager;
mod bad_input;
mod concurrency;
mod events;
mod helpers;
mod lifecycle;
mod metrics;
mod restart;
