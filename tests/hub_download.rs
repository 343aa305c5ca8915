//! Downloads through hf-hub against a local mock of the Hub, into temp caches.

// The cache fixtures use Unix symlinks.
#![cfg(unix)]

mod common;

use common::{add_snapshot, sha256_hex, MockHub, MockRepo, COMMIT};
use tolk::hub::{self, HubOptions, ModelSource, MARIAN_FILES};

fn online(cache: &std::path::Path, hub: &MockHub) -> HubOptions {
    HubOptions {
        offline: false,
        progress: false,
        cache_dir: Some(cache.to_path_buf()),
        endpoint: Some(hub.url.clone()),
    }
}

fn marian_repo(name: &str) -> MockRepo {
    MockRepo::new(
        name,
        &[
            ("config.json", br#"{"model_type":"marian"}"#),
            ("model.safetensors", b"safetensors-bytes"),
            ("source.spm", b"src"),
            ("target.spm", b"tgt"),
            ("vocab.json", br#"{"a":1}"#),
        ],
    )
}

#[test]
fn downloads_into_the_cache_layout_and_remembers_absent_files() {
    let mock = MockHub::start(vec![marian_repo("o/m")]);
    let cache = tempfile::tempdir().unwrap();
    let source = ModelSource::hub("o/m", "main");
    let files = hub::resolve_needs(&source, MARIAN_FILES, &online(cache.path(), &mock)).unwrap();

    let repo_dir = cache.path().join("models--o--m");
    assert_eq!(files.root, repo_dir.join("snapshots").join(COMMIT));
    assert_eq!(
        std::fs::read_to_string(repo_dir.join("refs/main")).unwrap(),
        COMMIT
    );
    let weights = files.path("model.safetensors").unwrap();
    assert_eq!(std::fs::read(weights).unwrap(), b"safetensors-bytes");
    let blob = std::fs::read_link(weights).unwrap();
    assert!(blob.ends_with(sha256_hex(b"safetensors-bytes")), "{blob:?}");
    // The second weights format is never asked for once the first exists.
    assert!(!mock.paths().iter().any(|p| p.contains("pytorch_model.bin")));
    // Absent optional files are no error, and are remembered like huggingface_hub does.
    assert!(files.get("generation_config.json").is_none());
    assert!(repo_dir
        .join(".no_exist")
        .join(COMMIT)
        .join("generation_config.json")
        .exists());
    assert!(hub::verify_cached_in(cache.path(), "o/m", "main")
        .unwrap()
        .is_ok());

    // A second run needs no request at all, online or offline.
    let before = mock.paths().len();
    hub::resolve_needs(&source, MARIAN_FILES, &online(cache.path(), &mock)).unwrap();
    let offline = HubOptions {
        offline: true,
        ..online(cache.path(), &mock)
    };
    let again = hub::resolve_needs(&source, MARIAN_FILES, &offline).unwrap();
    assert_eq!(again.files, files.files);
    assert_eq!(mock.paths().len(), before);
}

#[test]
fn partial_cache_is_completed_at_the_cached_commit() {
    let mock = MockHub::start(vec![marian_repo("o/m")]);
    let cache = tempfile::tempdir().unwrap();
    add_snapshot(
        cache.path(),
        "o/m",
        COMMIT,
        &["main"],
        &[("config.json", br#"{"model_type":"marian"}"#, false)],
    );
    let source = ModelSource::hub("o/m", "main");
    let files = hub::resolve(
        &source,
        &["config.json", "source.spm"],
        &[],
        &online(cache.path(), &mock),
    )
    .unwrap();
    assert_eq!(files.files.len(), 2);
    let paths = mock.paths();
    assert_eq!(
        paths,
        vec![format!("/o/m/resolve/{COMMIT}/source.spm"); 2],
        "metadata + download at the pinned commit"
    );
    // hf-hub's ref named after the commit is cleaned up; main still points at it.
    assert!(!cache.path().join("models--o--m/refs").join(COMMIT).exists());
    assert_eq!(
        std::fs::read_to_string(cache.path().join("models--o--m/refs/main")).unwrap(),
        COMMIT
    );
}

#[test]
fn missing_repo_gated_repo_and_missing_file_have_their_own_messages() {
    let mut gated = marian_repo("o/gated");
    gated.refuse = Some((403, "GatedRepo"));
    let mock = MockHub::start(vec![marian_repo("o/m"), gated]);
    let cache = tempfile::tempdir().unwrap();
    let opts = online(cache.path(), &mock);

    let err = hub::resolve(
        &ModelSource::hub("o/nope", "main"),
        &["config.json"],
        &[],
        &opts,
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains(&format!("model o/nope was not found on {}", mock.url)),
        "{err}"
    );
    assert!(err.contains("HF_TOKEN"), "{err}");

    let err = hub::resolve(
        &ModelSource::hub("o/gated", "main"),
        &["config.json"],
        &[],
        &opts,
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("is gated or private") && err.contains("accept its terms"),
        "{err}"
    );

    let err = hub::resolve(&ModelSource::hub("o/m", "v9"), &["config.json"], &[], &opts)
        .unwrap_err()
        .to_string();
    assert!(err.contains("revision v9 of o/m was not found"), "{err}");

    let err = hub::resolve(
        &ModelSource::hub("o/m", "main"),
        &["config.json", "spiece.model"],
        &[],
        &opts,
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("o/m on") && err.contains("has no file spiece.model"),
        "{err}"
    );

    let err = hub::resolve_needs(
        &ModelSource::hub("o/m", "main"),
        &[hub::Need::FirstOf(&["a.bin", "b.bin"])],
        &opts,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("has none of a.bin, b.bin"), "{err}");
}

#[test]
fn remote_file_list_comes_from_the_info_api() {
    let mock = MockHub::start(vec![marian_repo("o/m")]);
    let cache = tempfile::tempdir().unwrap();
    let files = hub::list_remote_files("o/m", "main", &online(cache.path(), &mock)).unwrap();
    assert_eq!(
        files,
        [
            "config.json",
            "model.safetensors",
            "source.spm",
            "target.spm",
            "vocab.json"
        ]
    );
    assert_eq!(mock.paths(), ["/api/models/o/m/revision/main"]);
}
