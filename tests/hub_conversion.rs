//! The default translation model as the Hub really holds it: a mock Hub on
//! 127.0.0.1 laid out like `Helsinki-NLP/opus-mt-de-en` (main: a legacy
//! 2020 `pytorch_model.bin`, `rust_model.ot`, `tf_model.h5`, no
//! `model.safetensors`; the conversion bot's pull request `refs/pr/4` adds
//! `model.safetensors`), answering the discussions, refs and model-info APIs
//! as the Hub does. The weights are the tiny Marian fixture, so the output
//! must be transformers' (tests/fixtures/marian-tiny-reference.json).

// The cache uses Unix symlinks.
#![cfg(unix)]

mod common;

use common::{
    pr_commit, MockDiscussion, MockHub, MockRepo, COMMIT, CONVERSION_BOT, CONVERSION_TITLE,
};
use std::path::Path;
use std::process::Output;

const REPO: &str = "Helsinki-NLP/opus-mt-de-en";
const NOTE: &str =
    "tolk: using model.safetensors from refs/pr/4 (the Hub's conversion of pytorch_model.bin)";

fn fixture_bytes(name: &str) -> Vec<u8> {
    std::fs::read(common::fixture(name)).unwrap()
}

/// main of the real repo, with the tiny model's contents.
fn main_files() -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = [
        "config.json",
        "generation_config.json",
        "source.spm",
        "target.spm",
        "vocab.json",
        "tokenizer_config.json",
    ]
    .iter()
    .map(|n| (n.to_string(), fixture_bytes(&format!("marian-tiny/{n}"))))
    .collect();
    files.push((
        "pytorch_model.bin".into(),
        fixture_bytes("pytorch/marian-tiny-legacy.bin"),
    ));
    files.push((
        "rust_model.ot".into(),
        b"rust weights: never downloaded".to_vec(),
    ));
    files.push((
        "tf_model.h5".into(),
        b"tf weights: never downloaded".to_vec(),
    ));
    files.push(("README.md".into(), b"# opus-mt-de-en".to_vec()));
    files.push((".gitattributes".into(), b"*.bin filter=lfs".to_vec()));
    files
}

/// The conversion bot's branch: main's files plus model.safetensors.
fn converted_files() -> Vec<(String, Vec<u8>)> {
    let mut files = main_files();
    files.push((
        "model.safetensors".into(),
        fixture_bytes("marian-tiny/model.safetensors"),
    ));
    files
}

fn as_refs(files: &[(String, Vec<u8>)]) -> Vec<(&str, &[u8])> {
    files
        .iter()
        .map(|(n, c)| (n.as_str(), c.as_slice()))
        .collect()
}

/// The repo with discussions #1–#3 that must be ignored and `pr4` as #4.
fn opus_mt(pr4: Option<Vec<(String, Vec<u8>)>>) -> MockRepo {
    let main = main_files();
    let mut repo = MockRepo::new(REPO, &as_refs(&main));
    let garbage: Vec<(String, Vec<u8>)> = vec![("model.safetensors".into(), b"garbage".to_vec())];
    repo.discussions
        .push(MockDiscussion::discussion("a-user", "Translation quality"));
    // Someone else's PR with the bot's title, and a closed bot PR: never used.
    repo.discussions.push(MockDiscussion::pull_request(
        "someone-else",
        CONVERSION_TITLE,
        &as_refs(&garbage),
    ));
    let mut closed =
        MockDiscussion::pull_request(CONVERSION_BOT, CONVERSION_TITLE, &as_refs(&garbage));
    closed.status = "closed";
    repo.discussions.push(closed);
    if let Some(files) = pr4 {
        repo.discussions.push(MockDiscussion::pull_request(
            CONVERSION_BOT,
            CONVERSION_TITLE,
            &as_refs(&files),
        ));
    }
    repo
}

#[derive(serde::Deserialize)]
struct Reference {
    cases: Vec<Case>,
}

#[derive(serde::Deserialize)]
struct Case {
    text: String,
    beam4_text: String,
}

/// An article of three of the reference sentences (paragraphs), and what
/// transformers makes of them with the model's generation config (4 beams)
/// and the reference's max_length (20, passed as --max-length).
fn article(dir: &Path) -> (std::path::PathBuf, Vec<String>) {
    let reference: Reference =
        serde_json::from_slice(&fixture_bytes("marian-tiny-reference.json")).unwrap();
    let cases: Vec<&Case> = [0, 2, 5].iter().map(|&i| &reference.cases[i]).collect();
    let path = dir.join("article.txt");
    let text: Vec<&str> = cases.iter().map(|c| c.text.as_str()).collect();
    std::fs::write(&path, text.join("\n\n") + "\n").unwrap();
    (path, cases.iter().map(|c| c.beam4_text.clone()).collect())
}

fn tolk(home: &Path, hub: &MockHub, args: &[&str]) -> Output {
    common::isolated_tolk(home)
        .env("HF_ENDPOINT", &hub.url)
        .args(args)
        .output()
        .unwrap()
}

fn stdout_ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn paragraphs(text: &str) -> Vec<String> {
    text.split("\n\n")
        .map(|p| p.trim().to_string())
        .filter(|p| !p.is_empty())
        .collect()
}

fn assert_never_fetched(hub: &MockHub, names: &[&str]) {
    for path in hub.paths() {
        for name in names {
            assert!(!path.ends_with(name), "{name} was requested: {path}");
        }
    }
}

const OTHER_FORMATS: &[&str] = &[
    "rust_model.ot",
    "tf_model.h5",
    "flax_model.msgpack",
    ".onnx",
];

#[test]
fn the_conversion_pr_is_used_cached_and_found_again_offline() {
    let hub = MockHub::start(vec![opus_mt(Some(converted_files()))]);
    let tmp = tempfile::tempdir().unwrap();
    let (input, want) = article(tmp.path());
    let input = input.to_str().unwrap();

    // The README's first command, unchanged: no model flags.
    let out = tolk(
        tmp.path(),
        &hub,
        &["translate", "--max-length", "20", input],
    );
    assert_eq!(paragraphs(&stdout_ok(&out)), want);
    assert_eq!(stderr(&out).matches(NOTE).count(), 1, "{}", stderr(&out));
    assert_never_fetched(&hub, OTHER_FORMATS);
    assert_never_fetched(&hub, &["pytorch_model.bin"]);
    let paths = hub.paths();
    let api = format!("/api/models/{REPO}");
    assert!(
        paths.contains(&format!("{api}/discussions?p=0")),
        "{paths:?}"
    );
    assert!(
        paths.contains(&format!("{api}/revision/refs%2Fpr%2F4?blobs=true")),
        "{paths:?}"
    );
    assert!(
        paths.contains(&format!("/{REPO}/resolve/refs%2Fpr%2F4/model.safetensors")),
        "{paths:?}"
    );
    for ignored in ["refs%2Fpr%2F2", "refs%2Fpr%2F3"] {
        assert!(!paths.iter().any(|p| p.contains(ignored)), "{paths:?}");
    }

    // Cached the HF way: the PR is a ref like any other.
    let repo_dir = tmp
        .path()
        .join("hf/hub/models--Helsinki-NLP--opus-mt-de-en");
    let read = |p: &str| std::fs::read_to_string(repo_dir.join(p)).unwrap();
    assert_eq!(read("refs/main"), COMMIT);
    assert_eq!(read("refs/refs/pr/4"), pr_commit(4));
    assert!(repo_dir
        .join(format!("snapshots/{}/model.safetensors", pr_commit(4)))
        .is_file());
    assert!(repo_dir
        .join(format!(".no_exist/{COMMIT}/model.safetensors"))
        .exists());

    // Offline: no request at all, the same text, the same note.
    let before = hub.paths().len();
    let mut offline = common::isolated_tolk(tmp.path());
    offline
        .env("HF_ENDPOINT", &hub.url)
        .env("HF_HUB_OFFLINE", "1");
    let out = offline
        .args(["translate", "--max-length", "20", input])
        .output()
        .unwrap();
    assert_eq!(paragraphs(&stdout_ok(&out)), want);
    assert!(stderr(&out).contains(NOTE), "{}", stderr(&out));
    assert_eq!(hub.paths().len(), before, "offline run made requests");

    // The models commands see the same thing.
    let out = tolk(tmp.path(), &hub, &["models", "list"]);
    let list = stdout_ok(&out);
    assert!(
        list.lines()
            .any(|l| l.starts_with(REPO) && l.contains("main") && l.contains("refs/pr/4")),
        "{list}"
    );
    assert!(
        list.lines()
            .any(|l| l.contains("translation") && l.contains(REPO) && l.ends_with("cached")),
        "{list}"
    );
    let out = tolk(tmp.path(), &hub, &["models", "verify", REPO]);
    let verify = stdout_ok(&out);
    assert!(
        verify.lines().any(|l| l.starts_with("ok")
            && l.contains("model.safetensors (refs/pr/4)")
            && l.contains("sha256")),
        "{verify}"
    );
    let out = tolk(tmp.path(), &hub, &["models", "path", REPO]);
    let snapshot = stdout_ok(&out).trim().to_string();
    assert!(snapshot.ends_with(COMMIT), "{snapshot}");
    assert!(stderr(&out).contains("refs/pr/4"), "{}", stderr(&out));
    let before = hub.paths().len();
    let out = tolk(
        tmp.path(),
        &hub,
        &[
            "translate",
            "--max-length",
            "20",
            "--model-dir",
            &snapshot,
            input,
        ],
    );
    assert_eq!(paragraphs(&stdout_ok(&out)), want);
    assert!(stderr(&out).contains(NOTE), "{}", stderr(&out));
    assert_eq!(hub.paths().len(), before);
}

#[test]
fn models_pull_fetches_what_translate_reads() {
    let hub = MockHub::start(vec![opus_mt(Some(converted_files()))]);
    let tmp = tempfile::tempdir().unwrap();
    let out = tolk(tmp.path(), &hub, &["models", "pull", "--quiet", REPO]);
    let listing = stdout_ok(&out);
    assert!(stderr(&out).contains(NOTE), "{}", stderr(&out));
    for name in [
        "config.json",
        "model.safetensors",
        "source.spm",
        "vocab.json",
    ] {
        assert!(listing.contains(name), "{name}: {listing}");
    }
    assert_never_fetched(&hub, OTHER_FORMATS);
    assert_never_fetched(&hub, &["pytorch_model.bin"]);
    // translate then needs nothing more.
    let (input, want) = article(tmp.path());
    let mut offline = common::isolated_tolk(tmp.path());
    offline.env("HF_HUB_OFFLINE", "1");
    let out = offline
        .args(["translate", "--max-length", "20", input.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(paragraphs(&stdout_ok(&out)), want);
}

/// Runs the default translation against `repo` (twice: online, then
/// offline from the cache) and checks the pickle of main was used.
fn falls_back_to_the_pickle(repo: MockRepo, note: &str) {
    let hub = MockHub::start(vec![repo]);
    let tmp = tempfile::tempdir().unwrap();
    let (input, want) = article(tmp.path());
    let input = input.to_str().unwrap();
    let out = tolk(
        tmp.path(),
        &hub,
        &["translate", "--max-length", "20", input],
    );
    assert_eq!(paragraphs(&stdout_ok(&out)), want);
    assert!(stderr(&out).contains(note), "{}", stderr(&out));
    assert!(!stderr(&out).contains(NOTE));
    assert_never_fetched(&hub, OTHER_FORMATS);
    assert!(hub
        .paths()
        .contains(&format!("/{REPO}/resolve/main/pytorch_model.bin")));
    let before = hub.paths().len();
    let mut offline = common::isolated_tolk(tmp.path());
    offline
        .env("HF_ENDPOINT", &hub.url)
        .env("HF_HUB_OFFLINE", "1");
    let out = offline
        .args(["translate", "--max-length", "20", input])
        .output()
        .unwrap();
    assert_eq!(paragraphs(&stdout_ok(&out)), want);
    assert_eq!(hub.paths().len(), before);
}

#[test]
fn main_with_only_a_legacy_pickle_and_no_conversion_works() {
    let main = main_files();
    falls_back_to_the_pickle(
        MockRepo::new(REPO, &as_refs(&main)),
        "tolk: using pytorch_model.bin of main (the Hub has no safetensors conversion of Helsinki-NLP/opus-mt-de-en)",
    );
}

#[test]
fn a_conversion_pr_without_safetensors_falls_back_with_a_clear_message() {
    falls_back_to_the_pickle(
        opus_mt(Some(main_files())),
        "tolk: refs/pr/4 (the Hub's safetensors conversion) has no model.safetensors; using pytorch_model.bin of main",
    );
}

#[test]
fn a_conversion_of_older_weights_is_not_used() {
    let mut stale = converted_files();
    for (name, content) in &mut stale {
        if name == "pytorch_model.bin" {
            *content = b"the 2020 weights before an update".to_vec();
        }
    }
    falls_back_to_the_pickle(
        opus_mt(Some(stale)),
        "tolk: refs/pr/4 converts an older pytorch_model.bin than main's; using pytorch_model.bin of main",
    );
}

#[test]
fn an_explicit_revision_is_taken_as_given() {
    let hub = MockHub::start(vec![opus_mt(Some(converted_files()))]);
    let tmp = tempfile::tempdir().unwrap();
    let (input, want) = article(tmp.path());
    let input = input.to_str().unwrap();
    // The PR branch itself: its model.safetensors, no search.
    let out = tolk(
        tmp.path(),
        &hub,
        &[
            "translate",
            "--max-length",
            "20",
            "--revision",
            "refs/pr/4",
            input,
        ],
    );
    assert_eq!(paragraphs(&stdout_ok(&out)), want);
    // main's commit: its pickle, no search either.
    let out = tolk(
        tmp.path(),
        &hub,
        &[
            "translate",
            "--max-length",
            "20",
            "--revision",
            COMMIT,
            input,
        ],
    );
    assert_eq!(paragraphs(&stdout_ok(&out)), want);
    let paths = hub.paths();
    assert!(
        !paths.iter().any(|p| p.contains("/discussions")),
        "{paths:?}"
    );
    assert!(paths.contains(&format!("/{REPO}/resolve/{COMMIT}/pytorch_model.bin")));
    assert_never_fetched(&hub, OTHER_FORMATS);
}
