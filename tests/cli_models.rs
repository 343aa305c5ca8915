//! `tolk models` end to end. Each run gets a clean environment (HOME and
//! HF_HOME in a temp folder, no proxies), so env vars never leak between tests;
//! the network is either nothing (127.0.0.1:9) or a local mock of the Hub.

// The cache fixtures use Unix symlinks.
#![cfg(unix)]

mod common;

use common::{add_snapshot, marian_files, tolk, MockHub, MockRepo, COMMIT};
use predicates::prelude::*;
use std::path::Path;

fn cache(home: &Path) -> std::path::PathBuf {
    home.join("hf").join("hub")
}

fn stderr_of(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn pull_without_network_fails_with_one_line_naming_the_endpoint() {
    let home = tempfile::tempdir().unwrap();
    for args in [
        vec!["models", "pull", "x/y"],
        vec!["models", "pull", "x/y", "--files", "config.json"],
    ] {
        let output = tolk(home.path()).args(&args).output().unwrap();
        assert!(!output.status.success());
        let stderr = stderr_of(&output);
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.starts_with("tolk: error: cannot "), "{stderr}");
        assert!(stderr.contains("http://127.0.0.1:9/x/y"), "{stderr}");
        assert!(
            stderr.contains("check the network or HF_ENDPOINT"),
            "{stderr}"
        );
    }
}

#[test]
fn pull_rejects_a_bad_repo_id() {
    let home = tempfile::tempdir().unwrap();
    tolk(home.path())
        .args(["models", "pull", "not a repo"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("not a valid Hub repo id"));
}

#[test]
fn pull_downloads_the_marian_set_with_the_token_from_hf_token() {
    let home = tempfile::tempdir().unwrap();
    let mock = MockHub::start(vec![MockRepo::new(
        "Helsinki-NLP/opus-mt-de-en",
        &[
            ("config.json", br#"{"model_type":"marian"}"#),
            ("pytorch_model.bin", b"pickle"),
            ("tf_model.h5", b"not needed"),
            ("source.spm", b"s"),
            ("target.spm", b"t"),
            ("vocab.json", b"{}"),
            ("README.md", b"# readme"),
        ],
    )]);
    let output = tolk(home.path())
        .env("HF_ENDPOINT", &mock.url)
        .env("HF_TOKEN", "hf_secret")
        .args(["models", "pull", "Helsinki-NLP/opus-mt-de-en"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr_of(&output));
    let stdout = String::from_utf8(output.stdout).unwrap();
    let snapshot = cache(home.path())
        .join("models--Helsinki-NLP--opus-mt-de-en/snapshots")
        .join(COMMIT);
    assert!(stdout.contains(&snapshot.display().to_string()), "{stdout}");
    for name in [
        "config.json",
        "pytorch_model.bin",
        "source.spm",
        "target.spm",
        "vocab.json",
    ] {
        assert!(snapshot.join(name).is_file(), "{name} missing");
        assert!(stdout.contains(name), "{stdout}");
    }
    assert!(!snapshot.join("tf_model.h5").exists());
    let seen = mock.seen.lock().unwrap().clone();
    assert!(!seen.is_empty());
    assert!(
        seen.iter()
            .all(|s| s.authorization.as_deref() == Some("Bearer hf_secret")),
        "{seen:?}"
    );

    // Now cached: `list` marks the default present, and offline pulls succeed.
    tolk(home.path())
        .args(["models", "list"])
        .assert()
        .success()
        .stdout(predicate::str::contains("translation (marian)"))
        .stdout(predicate::str::contains(
            "Helsinki-NLP/opus-mt-de-en  cached",
        ));
    tolk(home.path())
        .env("HF_HUB_OFFLINE", "1")
        .args(["models", "pull", "Helsinki-NLP/opus-mt-de-en"])
        .assert()
        .success();
}

#[test]
fn pull_uses_the_login_token_file_and_hf_hub_cache() {
    let home = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(home.path().join("hf")).unwrap();
    std::fs::write(home.path().join("hf/token"), "hf_from_file\n").unwrap();
    let mock = MockHub::start(vec![MockRepo::new(
        "o/g-GGUF",
        &[("m.Q8_0.gguf", b"GGUF"), ("README.md", b"x")],
    )]);
    let elsewhere = home.path().join("elsewhere");
    tolk(home.path())
        .env("HF_ENDPOINT", &mock.url)
        .env("HF_HUB_CACHE", &elsewhere)
        .args(["models", "pull", "o/g-GGUF", "--quiet"])
        .assert()
        .success()
        .stdout(predicate::str::contains("m.Q8_0.gguf"));
    assert!(elsewhere
        .join("models--o--g-GGUF/snapshots")
        .join(COMMIT)
        .join("m.Q8_0.gguf")
        .is_file());
    assert!(!cache(home.path()).exists());
    let seen = mock.seen.lock().unwrap().clone();
    assert!(
        seen.iter()
            .all(|s| s.authorization.as_deref() == Some("Bearer hf_from_file")),
        "{seen:?}"
    );
}

#[test]
fn pull_asks_which_gguf_when_there_are_several() {
    let home = tempfile::tempdir().unwrap();
    let mock = MockHub::start(vec![MockRepo::new(
        "o/g",
        &[("a.gguf", b"A"), ("b.gguf", b"B")],
    )]);
    tolk(home.path())
        .env("HF_ENDPOINT", &mock.url)
        .args(["models", "pull", "o/g"])
        .assert()
        .failure()
        .stderr(predicate::str::contains(
            "2 GGUF files (a.gguf, b.gguf); choose one with --files",
        ));
    tolk(home.path())
        .env("HF_ENDPOINT", &mock.url)
        .args(["models", "pull", "o/g", "--files", "b.gguf"])
        .assert()
        .success();
    assert_eq!(
        std::fs::read(
            cache(home.path())
                .join("models--o--g/snapshots")
                .join(COMMIT)
                .join("b.gguf")
        )
        .unwrap(),
        b"B"
    );
}

#[test]
fn offline_pull_of_an_uncached_model_says_so() {
    let home = tempfile::tempdir().unwrap();
    tolk(home.path())
        .args([
            "models",
            "pull",
            "o/m",
            "--offline",
            "--files",
            "config.json",
        ])
        .assert()
        .failure()
        .stderr(predicate::str::contains("o/m is not in the cache"))
        .stderr(predicate::str::contains("offline mode is on"));
}

#[test]
fn list_on_an_empty_cache() {
    let home = tempfile::tempdir().unwrap();
    tolk(home.path())
        .args(["models", "list"])
        .assert()
        .success()
        .stdout(predicate::str::contains("No models in the cache"))
        .stdout(predicate::str::contains(
            "not cached (run `tolk models pull Helsinki-NLP/opus-mt-de-en`)",
        ));
    let output = tolk(home.path())
        .args(["models", "list", "--json"])
        .output()
        .unwrap();
    let doc: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(doc["models"].as_array().unwrap().len(), 0);
    assert_eq!(doc["defaults"][0]["cached"], false);
}

#[test]
fn list_on_a_filled_cache() {
    let home = tempfile::tempdir().unwrap();
    add_snapshot(
        &cache(home.path()),
        "Helsinki-NLP/opus-mt-de-en",
        COMMIT,
        &["main"],
        &marian_files(),
    );
    add_snapshot(
        &cache(home.path()),
        "o/tiny-GGUF",
        COMMIT,
        &["main"],
        &[("t.gguf", &[0u8; 2048], true)],
    );
    let output = tolk(home.path()).args(["models", "list"]).output().unwrap();
    assert!(output.status.success());
    let stdout = String::from_utf8(output.stdout).unwrap();
    let marian_row = stdout
        .lines()
        .find(|l| l.starts_with("Helsinki-NLP/opus-mt-de-en"))
        .unwrap();
    assert!(
        marian_row.contains("main") && marian_row.contains("translation (marian)"),
        "{stdout}"
    );
    let gguf_row = stdout
        .lines()
        .find(|l| l.starts_with("o/tiny-GGUF"))
        .unwrap();
    assert!(
        gguf_row.contains("2.00 KiB") && gguf_row.contains("summarization (gguf)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("Helsinki-NLP/opus-mt-de-en  cached"),
        "{stdout}"
    );

    let output = tolk(home.path())
        .args(["models", "list", "--json"])
        .output()
        .unwrap();
    let doc: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let models = doc["models"].as_array().unwrap();
    assert_eq!(models.len(), 2);
    assert_eq!(models[1]["size_on_disk"], 2048);
    assert_eq!(models[0]["task"], "translation");
    assert_eq!(doc["defaults"][0]["cached"], true);
}

#[test]
fn verify_and_path() {
    let home = tempfile::tempdir().unwrap();
    add_snapshot(
        &cache(home.path()),
        "o/m",
        COMMIT,
        &["main"],
        &marian_files(),
    );
    tolk(home.path())
        .args(["models", "verify", "o/m"])
        .assert()
        .success()
        .stdout(predicate::str::contains("5 files, all ok"));
    let snapshot = cache(home.path())
        .join("models--o--m/snapshots")
        .join(COMMIT);
    tolk(home.path())
        .args(["models", "path", "o/m"])
        .assert()
        .success()
        .stdout(format!("{}\n", snapshot.display()));

    // Truncate an LFS blob: verify names the file and fails.
    let blob = std::fs::canonicalize(snapshot.join("model.safetensors")).unwrap();
    std::fs::write(blob, b"weigh").unwrap();
    tolk(home.path())
        .args(["models", "verify", "o/m"])
        .assert()
        .failure()
        .stdout(predicate::str::contains("FAILED  model.safetensors"))
        .stdout(predicate::str::contains("1 failed"));

    tolk(home.path())
        .args(["models", "verify", "o/other"])
        .assert()
        .failure()
        .stderr(predicate::str::contains(
            "o/other (revision main) is not in the cache",
        ));
    tolk(home.path())
        .args(["models", "path", "o/m", "--revision", "v2"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("is not in the cache"));
}
