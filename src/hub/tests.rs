//! Tests against folders laid out exactly like the HF cache (real symlinks).
//! Every test passes its cache folder explicitly, so none touches the
//! process environment and they can run in parallel.

use super::*;
use sha2::{Digest, Sha256};
use std::fs;

const COMMIT_A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const COMMIT_B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Writes one snapshot the way hf-hub does: the blob under its hash (sha256
/// for `lfs` files, a made-up git sha1 otherwise), a relative symlink to it.
fn add_snapshot(
    cache: &Path,
    repo: &str,
    commit: &str,
    refs: &[&str],
    files: &[(&str, &[u8], bool)],
) {
    let root = cache.join(cache::repo_folder_name(repo));
    fs::create_dir_all(root.join("blobs")).unwrap();
    for (name, content, lfs) in files {
        let blob = if *lfs {
            sha256_hex(content)
        } else {
            sha256_hex(content)[..40].to_string()
        };
        fs::write(root.join("blobs").join(&blob), content).unwrap();
        let link = root.join("snapshots").join(commit).join(name);
        fs::create_dir_all(link.parent().unwrap()).unwrap();
        let depth = name.matches('/').count() + 2;
        let target = format!("{}blobs/{blob}", "../".repeat(depth));
        std::os::unix::fs::symlink(target, &link).unwrap();
    }
    for name in refs {
        let path = root.join("refs").join(name);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, commit).unwrap();
    }
}

fn marian_snapshot(cache: &Path, repo: &str) {
    add_snapshot(
        cache,
        repo,
        COMMIT_A,
        &["main"],
        &[
            ("config.json", br#"{"model_type":"marian"}"#, false),
            ("model.safetensors", b"weights", true),
            ("source.spm", b"src-spm", true),
            ("target.spm", b"tgt-spm", true),
            ("vocab.json", br#"{"a":0}"#, false),
        ],
    );
}

fn offline(cache: &Path) -> HubOptions {
    HubOptions {
        offline: true,
        progress: false,
        cache_dir: Some(cache.to_path_buf()),
        endpoint: Some("http://127.0.0.1:9".into()),
    }
}

#[test]
fn offline_hit_returns_snapshot_paths() {
    let tmp = tempfile::tempdir().unwrap();
    marian_snapshot(tmp.path(), "Helsinki-NLP/opus-mt-de-en");
    let source = ModelSource::hub("Helsinki-NLP/opus-mt-de-en", "main");
    let files = resolve_needs(&source, MARIAN_FILES, &offline(tmp.path())).unwrap();
    let snapshot = tmp
        .path()
        .join("models--Helsinki-NLP--opus-mt-de-en/snapshots")
        .join(COMMIT_A);
    assert_eq!(files.root, snapshot);
    assert_eq!(
        files.path("source.spm").unwrap(),
        snapshot.join("source.spm")
    );
    assert_eq!(
        fs::read(files.path("target.spm").unwrap()).unwrap(),
        b"tgt-spm"
    );
    // The first present alternative is taken; absent optional files are no error.
    assert!(files.get("model.safetensors").is_some());
    assert!(files.get("pytorch_model.bin").is_none());
    assert!(files.get("generation_config.json").is_none());
    assert!(files.path("generation_config.json").is_err());
}

#[test]
fn offline_miss_names_repo_cache_and_remedy() {
    let tmp = tempfile::tempdir().unwrap();
    let source = ModelSource::hub("Helsinki-NLP/opus-mt-de-en", "main");
    let err = resolve(&source, &["config.json"], &[], &offline(tmp.path())).unwrap_err();
    let line = crate::cli::one_line(&err);
    assert!(
        line.contains("Helsinki-NLP/opus-mt-de-en is not in the cache"),
        "{line}"
    );
    assert!(line.contains(&tmp.path().display().to_string()), "{line}");
    assert!(
        line.contains("tolk models pull Helsinki-NLP/opus-mt-de-en"),
        "{line}"
    );
    assert!(line.contains("--model-dir"), "{line}");
    assert!(!line.contains('\n'));
}

#[test]
fn offline_partial_snapshot_names_the_missing_file() {
    let tmp = tempfile::tempdir().unwrap();
    add_snapshot(
        tmp.path(),
        "o/m",
        COMMIT_A,
        &["v1"],
        &[("config.json", b"{}", false)],
    );
    let source = ModelSource::hub("o/m", "v1");
    let err = resolve(
        &source,
        &["config.json", "source.spm"],
        &[],
        &offline(tmp.path()),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("lacks source.spm"), "{err}");
    assert!(err.contains("tolk models pull o/m --revision v1"), "{err}");
}

#[test]
fn revision_by_commit_hash_needs_no_ref() {
    let tmp = tempfile::tempdir().unwrap();
    add_snapshot(
        tmp.path(),
        "o/m",
        COMMIT_B,
        &[],
        &[("config.json", b"{}", false)],
    );
    let by_commit = ModelSource::hub("o/m", COMMIT_B);
    let files = resolve(&by_commit, &["config.json"], &[], &offline(tmp.path())).unwrap();
    assert!(files.get("config.json").is_some());
    // No ref named main: "main" is not cached.
    let by_branch = ModelSource::hub("o/m", "main");
    assert!(resolve(&by_branch, &["config.json"], &[], &offline(tmp.path())).is_err());
}

#[test]
fn known_absent_optional_file_is_skipped_offline_and_online() {
    let tmp = tempfile::tempdir().unwrap();
    add_snapshot(
        tmp.path(),
        "o/m",
        COMMIT_A,
        &["main"],
        &[("config.json", b"{}", false)],
    );
    let dir = RepoDir::new(tmp.path(), "o/m");
    dir.mark_absent(COMMIT_A, "generation_config.json");
    let source = ModelSource::hub("o/m", "main");
    // Online, but the unreachable endpoint proves no request is made.
    let online = HubOptions {
        offline: false,
        ..offline(tmp.path())
    };
    let files = resolve(
        &source,
        &["config.json"],
        &["generation_config.json"],
        &online,
    )
    .unwrap();
    assert_eq!(files.files.len(), 1);
}

#[test]
fn network_failure_is_one_line_naming_the_endpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let source = ModelSource::hub("x/y", "main");
    let online = HubOptions {
        offline: false,
        ..offline(tmp.path())
    };
    let err = resolve(&source, &["config.json"], &[], &online).unwrap_err();
    let line = crate::cli::one_line(&err);
    assert!(
        line.starts_with("cannot download config.json from http://127.0.0.1:9/x/y ("),
        "{line}"
    );
    assert!(line.contains("check the network or HF_ENDPOINT"), "{line}");
    assert!(!line.contains('\n'));
}

#[test]
fn dir_mode_errors_are_specific() {
    let tmp = tempfile::tempdir().unwrap();
    let opts = HubOptions::default();
    let missing = ModelSource::Dir(tmp.path().join("nope"));
    let err = resolve(&missing, &["config.json"], &[], &opts)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("does not exist") && err.contains("nope"),
        "{err}"
    );

    let file = tmp.path().join("a-file");
    fs::write(&file, "x").unwrap();
    let err = resolve(&ModelSource::Dir(file), &["config.json"], &[], &opts)
        .unwrap_err()
        .to_string();
    assert!(err.contains("is a file, not a model folder"), "{err}");

    fs::write(tmp.path().join("config.json"), "{}").unwrap();
    fs::create_dir(tmp.path().join("source.spm")).unwrap(); // a folder is not the file
    let dir = ModelSource::Dir(tmp.path().to_path_buf());
    let err = resolve_needs(&dir, MARIAN_FILES, &opts)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(
            "lacks model.safetensors or pytorch_model.bin, source.spm, target.spm, vocab.json"
        ),
        "{err}"
    );
}

#[test]
fn dir_mode_finds_required_optional_and_alternatives() {
    let tmp = tempfile::tempdir().unwrap();
    for name in [
        "config.json",
        "pytorch_model.bin",
        "source.spm",
        "target.spm",
        "vocab.json",
        "generation_config.json",
    ] {
        fs::write(tmp.path().join(name), "x").unwrap();
    }
    let dir = ModelSource::Dir(tmp.path().to_path_buf());
    let files = resolve_needs(&dir, MARIAN_FILES, &HubOptions::default()).unwrap();
    assert_eq!(
        files.get("pytorch_model.bin"),
        Some(tmp.path().join("pytorch_model.bin").as_path())
    );
    assert!(files.get("generation_config.json").is_some());
    assert!(files.get("tokenizer_config.json").is_none());
    assert_eq!(files.files.len(), 6);
}

#[test]
fn unsafe_file_names_and_revisions_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let source = ModelSource::hub("o/m", "main");
    assert!(resolve(&source, &["../../etc/passwd"], &[], &offline(tmp.path())).is_err());
    assert!(resolve(&source, &["/etc/passwd"], &[], &offline(tmp.path())).is_err());
    let bad_rev = ModelSource::hub("o/m", "../x");
    assert!(resolve(&bad_rev, &["config.json"], &[], &offline(tmp.path())).is_err());
}

#[test]
fn model_args_are_folders_or_repo_ids() {
    assert_eq!(
        parse_model_arg("Helsinki-NLP/opus-mt-de-en", "main").unwrap(),
        ModelSource::hub("Helsinki-NLP/opus-mt-de-en", "main")
    );
    assert_eq!(
        parse_model_arg("./models/x", "main").unwrap(),
        ModelSource::Dir(PathBuf::from("./models/x"))
    );
    assert_eq!(
        parse_model_arg("/abs/x", "main").unwrap(),
        ModelSource::Dir(PathBuf::from("/abs/x"))
    );
    let tmp = tempfile::tempdir().unwrap();
    let existing = tmp.path().display().to_string();
    assert!(matches!(
        parse_model_arg(&existing, "main").unwrap(),
        ModelSource::Dir(_)
    ));
    for bad in ["gpt2", "a/b/c", "a--b/c", "-a/b", "a/b.", "a /b", ""] {
        assert!(
            parse_model_arg(bad, "main").is_err(),
            "{bad} should be refused"
        );
    }
    let err = parse_model_arg("no_such_dir_xyz", "main")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("neither an existing folder nor a Hub repo id"),
        "{err}"
    );
}

#[test]
fn list_counts_shared_blobs_once_and_tells_tasks_apart() {
    let tmp = tempfile::tempdir().unwrap();
    marian_snapshot(tmp.path(), "Helsinki-NLP/opus-mt-de-en");
    // A second snapshot sharing the weights blob, plus one changed file.
    add_snapshot(
        tmp.path(),
        "Helsinki-NLP/opus-mt-de-en",
        COMMIT_B,
        &["refs/pr/1"],
        &[
            ("model.safetensors", b"weights", true),
            ("config.json", b"{\"v\":2}", false),
        ],
    );
    add_snapshot(
        tmp.path(),
        "o/tiny-GGUF",
        COMMIT_A,
        &["main"],
        &[("tiny.Q8_0.gguf", b"GGUF....", true)],
    );
    fs::create_dir_all(tmp.path().join("datasets--o--d")).unwrap();
    let models = list_cached_in(tmp.path()).unwrap();
    assert_eq!(models.len(), 2);
    let marian = &models[0];
    assert_eq!(marian.repo, "Helsinki-NLP/opus-mt-de-en");
    let first_snapshot: u64 = [
        &br#"{"model_type":"marian"}"#[..],
        b"weights",
        b"src-spm",
        b"tgt-spm",
        br#"{"a":0}"#,
    ]
    .iter()
    .map(|c| c.len() as u64)
    .sum();
    assert_eq!(
        marian.size_on_disk,
        first_snapshot + b"{\"v\":2}".len() as u64
    );
    assert_eq!(marian.kind, ModelKind::Marian);
    assert_eq!(
        marian.revisions(),
        vec!["main".to_string(), "refs/pr/1".to_string()]
    );
    assert_eq!(marian.snapshots[0].files.len(), 5);
    assert_eq!(models[1].repo, "o/tiny-GGUF");
    assert_eq!(models[1].task(), "summarization");
    assert_eq!(models[1].size_on_disk, 8);
    assert!(list_cached_in(&tmp.path().join("absent"))
        .unwrap()
        .is_empty());
}

#[test]
fn verify_accepts_a_good_snapshot() {
    let tmp = tempfile::tempdir().unwrap();
    marian_snapshot(tmp.path(), "o/m");
    let report = verify_cached_in(tmp.path(), "o/m", "main").unwrap();
    assert!(report.is_ok(), "{report:?}");
    assert_eq!(report.commit, COMMIT_A);
    let by_name = |n: &str| report.files.iter().find(|f| f.name == n).unwrap().clone();
    assert!(by_name("model.safetensors").sha256_checked);
    assert!(by_name("config.json").json_checked);
    assert!(!by_name("config.json").sha256_checked); // git sha1 blob: not hashed
}

#[test]
fn verify_detects_corrupt_blob_dangling_link_and_bad_json() {
    let tmp = tempfile::tempdir().unwrap();
    marian_snapshot(tmp.path(), "o/m");
    let root = tmp.path().join("models--o--m");
    fs::write(root.join("blobs").join(sha256_hex(b"weights")), b"weightZ").unwrap();
    fs::remove_file(root.join("blobs").join(sha256_hex(b"src-spm"))).unwrap();
    let vocab = fs::canonicalize(root.join("snapshots").join(COMMIT_A).join("vocab.json")).unwrap();
    fs::write(vocab, b"{not json").unwrap();
    let report = verify_cached_in(tmp.path(), "o/m", "main").unwrap();
    assert!(!report.is_ok());
    let problem = |n: &str| {
        report
            .files
            .iter()
            .find(|f| f.name == n)
            .unwrap()
            .problem
            .clone()
            .unwrap_or_default()
    };
    assert!(problem("model.safetensors").contains("sha256 mismatch"));
    assert!(problem("source.spm").contains("dangling symlink"));
    assert!(problem("vocab.json").contains("not valid JSON"));
    assert_eq!(problem("target.spm"), "");
    let err = verify_cached_in(tmp.path(), "o/other", "main")
        .unwrap_err()
        .to_string();
    assert!(err.contains("not in the cache"), "{err}");
}
