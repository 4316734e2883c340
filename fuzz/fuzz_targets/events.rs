#![no_main]
//! `cargo +nightly fuzz run events`: see `harness::events` and FUZZING.md.

#[allow(dead_code)] // each target calls one function of the harness
#[path = "../harness.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|bytes: &[u8]| harness::events(bytes));
