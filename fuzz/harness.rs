//! What each fuzz target does with its input, shared by the `cargo fuzz` targets
//! (`fuzz/fuzz_targets/*.rs`, nightly) and the regression test that replays every input
//! that ever failed (`crates/service/tests/fuzz_regressions.rs`, stable). See FUZZING.md.
//!
//! Each function takes the bytes as the service would receive them and runs the same
//! calls, in the same order, as the service does through its public API (the handlers
//! themselves need a running store). Refusing the input is expected; a panic is a bug.
//!
//! Only crates both sides depend on are used here: `lim_domain`, `llm_incident_manager`,
//! `chrono` and `toml`.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{DateTime, Utc};
use lim_domain::classifier::classify;
use lim_domain::event::{MAX_BATCH_EVENTS, ObjectOnly, validate_batch};
use lim_domain::fit::fit_to_limits;
use lim_domain::{Event, EventRules, RawBatch, RawEvent};
use llm_incident_manager::config::{Overrides, Settings, percent_decode};
use llm_incident_manager::http::alertmanager::{chunk_events, in_payload, read_payload};
use llm_incident_manager::http::error::ApiError;
use llm_incident_manager::http::events::is_batch;
use llm_incident_manager::http::extract::parse_json;

/// The clock of every run: fixed, so that an input replays the same way on any day
/// (`occurred_at` is checked against it).
fn now() -> DateTime<Utc> {
    DateTime::from_timestamp(1_796_342_400, 0).expect("2026-12-04T00:00:00Z")
}

/// What an error answer carries: the JSON body the API would send.
fn answer(error: ApiError) {
    let _ = ApiError::body_json(error.kind, &error.message);
}

/// `POST /v1/events`: `submit_events` (an array is a batch, anything else one object),
/// `parse_json`, then `IncidentManager::ingest` / `ingest_one` up to the store: validation
/// (which runs the offline classifier on events that name no severity or category) and,
/// here, the classifier on every valid event.
pub fn events(bytes: &[u8]) {
    let now = now();
    let rules = EventRules::default();
    let validated = if is_batch(bytes) {
        let RawBatch(raw) = match parse_json(bytes) {
            Ok(batch) => batch,
            Err(error) => return answer(error),
        };
        validate_batch(raw, now, &rules)
    } else {
        let ObjectOnly(raw): ObjectOnly<RawEvent> = match parse_json(bytes) {
            Ok(event) => event,
            Err(error) => return answer(error),
        };
        raw.validate(now, &rules).map(|event| vec![event])
    };
    match validated {
        Ok(events) => events.iter().for_each(classify_event),
        Err(error) => answer(ApiError::from(error)),
    }
}

fn classify_event(event: &Event) {
    let verdict = classify(&event.title, &event.description, &event.labels);
    assert!(
        (0.0..=1.0).contains(&verdict.confidence),
        "confidence {} is outside 0..=1",
        verdict.confidence
    );
}

/// `POST /v1/integrations/alertmanager`: `receive_webhook`'s own steps (the payload and
/// its version, each chunk of alerts made events), then `IncidentManager::ingest_tolerant`
/// up to the store (`fit_to_limits`, validation), and the classifier on every valid event.
pub fn alertmanager(bytes: &[u8]) {
    let now = now();
    let rules = EventRules::default();
    let payload = match read_payload(bytes) {
        Ok(payload) => payload,
        Err(error) => return answer(error),
    };
    for (chunk_index, chunk) in payload.alerts.chunks(MAX_BATCH_EVENTS).enumerate() {
        let first = chunk_index * MAX_BATCH_EVENTS;
        let raw_events = match chunk_events(chunk, first) {
            Ok(events) => events,
            Err(error) => return answer(error),
        };
        for (index, raw) in raw_events.into_iter().enumerate() {
            let fitted = fit_to_limits(raw, now, &rules);
            let _ = fitted.changes.join("; ");
            match fitted.event.validate(now, &rules) {
                Ok(event) => classify_event(&event),
                Err(error) => return answer(in_payload(error.in_batch(index), first)),
            }
        }
    }
}

/// The TOML configuration: the bytes written to a file, `Settings::load` with no other
/// override (the `LIM_*` variables are read by clap, which is not involved here), then
/// the reactions the service derives from the settings.
///
/// A `file:PATH` secret is read from disk; an input that names one is skipped, so that
/// the fuzzer does not read `/dev/zero` or block on a FIFO (environment, not a bug). An
/// `env:NAME` secret does read the environment: it only decides whether the name is set.
pub fn config(bytes: &[u8]) {
    if names_a_file_secret(bytes) {
        return;
    }
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let path = config_dir().join(format!(
        "config-{}-{}.toml",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::write(&path, bytes).expect("write the configuration file");
    let loaded = Settings::load(&Overrides {
        config: Some(path.clone()),
        ..Overrides::default()
    });
    let _ = std::fs::remove_file(&path);
    match loaded {
        Ok(settings) => {
            let _ = llm_incident_manager::config::reactions(&settings);
        }
        Err(error) => {
            let _ = error.to_string();
        }
    }
}

fn config_dir() -> PathBuf {
    let dir = std::env::temp_dir().join("lim-fuzz-config");
    std::fs::create_dir_all(&dir).expect("create the configuration directory");
    dir
}

/// True when a string of the document, as written or percent-decoded once as the service
/// decodes an SMTP URL's password, holds `file:`.
fn names_a_file_secret(bytes: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return false; // not UTF-8: the file is refused before any secret is read
    };
    let Ok(document) = text.parse::<toml::Table>() else {
        return false; // not TOML: refused before any secret is read
    };
    fn any_string(value: &toml::Value, test: &dyn Fn(&str) -> bool) -> bool {
        match value {
            toml::Value::String(text) => test(text),
            toml::Value::Array(items) => items.iter().any(|item| any_string(item, test)),
            toml::Value::Table(table) => table.values().any(|item| any_string(item, test)),
            _ => false,
        }
    }
    let names_file =
        |text: &str| text.contains("file:") || percent_decode(text).is_some_and(|decoded| decoded.contains("file:"));
    document.values().any(|value| any_string(value, &names_file))
}
