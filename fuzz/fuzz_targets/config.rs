#![no_main]
//! `cargo +nightly fuzz run config`: see `harness::config` and FUZZING.md.

#[allow(dead_code)] // each target calls one function of the harness
#[path = "../harness.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|bytes: &[u8]| harness::config(bytes));
