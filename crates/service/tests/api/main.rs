//! Black-box tests: the application on free ports with a fresh database.

mod alertmanager;
mod bad_input;
mod concurrency;
mod events;
mod helpers;
mod lifecycle;
mod limits;
mod metrics;
mod pages;
mod restart;
mod strict_input;
