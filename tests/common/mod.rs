//! Helpers shared by integration tests.
#![allow(dead_code)]

use std::path::PathBuf;

/// The test model `name` from models/downloaded/, or `None` after printing a
/// visible SKIPPED line (fetch them with scripts/fetch-test-models.sh).
pub fn test_model(name: &str) -> Option<PathBuf> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("models/downloaded")
        .join(name);
    if path.is_file() {
        Some(path)
    } else {
        eprintln!(
            "SKIPPED: {} missing; run scripts/fetch-test-models.sh",
            path.display()
        );
        None
    }
}
