#![no_main]
//! `cargo +nightly fuzz run alertmanager`: see `harness::alertmanager` and FUZZING.md.

#[allow(dead_code)] // each target calls one function of the harness
#[path = "../harness.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|bytes: &[u8]| harness::alertmanager(bytes));
