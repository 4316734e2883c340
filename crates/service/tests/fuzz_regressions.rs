//! Every input a fuzz target ever failed on (`tests/fuzz_regressions/<target>/`), and the
//! seeds of the fuzz corpora (`fuzz/seeds/<target>/`), replayed on stable through the
//! same functions the `cargo fuzz` targets call (`fuzz/harness.rs`). See FUZZING.md.

#[path = "../../../fuzz/harness.rs"]
mod harness;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

/// The files of `dir`, in name order; none when it does not exist. Dot files
/// (`.gitkeep`) are not inputs.
fn inputs(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .map(|entry| entry.expect("read a directory entry").path())
        .filter(|path| path.is_file())
        .filter(|path| {
            !path
                .file_name()
                .is_some_and(|name| name.to_string_lossy().starts_with('.'))
        })
        .collect();
    files.sort();
    files
}

/// Runs `target` on every input of `dirs`; fails naming each input that panicked.
fn replay(name: &str, target: fn(&[u8]), dirs: &[PathBuf]) -> usize {
    let mut failed = Vec::new();
    let mut count = 0;
    for path in dirs.iter().flat_map(|dir| inputs(dir)) {
        let bytes = std::fs::read(&path).unwrap_or_else(|error| panic!("read {}: {error}", path.display()));
        count += 1;
        if catch_unwind(AssertUnwindSafe(|| target(&bytes))).is_err() {
            failed.push(path.display().to_string());
        }
    }
    assert!(
        failed.is_empty(),
        "the {name} target panicked on (the panic messages are above):\n{}",
        failed.join("\n")
    );
    count
}

/// Replays the regressions and the seeds of the target `name`.
fn replay_target(name: &str, target: fn(&[u8])) {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dirs = [
        manifest.join("tests/fuzz_regressions").join(name),
        manifest.join("../../fuzz/seeds").join(name),
    ];
    let count = replay(name, target, &dirs);
    assert!(
        count > 0,
        "no input for the {name} target: fuzz/seeds/{name}/ holds its seeds"
    );
}

#[test]
fn events_inputs_that_ever_failed_do_not_fail_again() {
    replay_target("events", harness::events);
}

#[test]
fn alertmanager_inputs_that_ever_failed_do_not_fail_again() {
    replay_target("alertmanager", harness::alertmanager);
}

#[test]
fn config_inputs_that_ever_failed_do_not_fail_again() {
    replay_target("config", harness::config);
}
