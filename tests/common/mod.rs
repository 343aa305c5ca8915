//! Helpers shared by integration tests.
#![allow(dead_code)] // Each test crate uses a different subset.

use std::io::Write;
use std::path::PathBuf;

/// Folder with the real test models: `$TOLK_TEST_MODELS`, else `<repo>/models/downloaded`
/// (filled by `scripts/fetch-test-models.sh`).
pub fn test_models_dir() -> PathBuf {
    match std::env::var_os("TOLK_TEST_MODELS") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/downloaded"),
    }
}

/// Path of a real test model, or `None` after printing a visible `SKIPPED:` line to stderr, so a
/// test without its model returns early but never passes silently.
pub fn test_model(name: &str) -> Option<PathBuf> {
    let path = test_models_dir().join(name);
    if path.is_file() {
        Some(path)
    } else {
        // Written to the stderr handle, not with eprintln!, which the test harness captures:
        // the line must be visible in a normal `cargo test` run.
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED: test model {} not found (run scripts/fetch-test-models.sh)",
            path.display()
        );
        None
    }
}

/// Path of a file under `tests/fixtures/`.
pub fn fixture(relative: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(relative)
}
