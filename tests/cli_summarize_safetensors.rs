//! `tolk summarize --method llm` on transformers safetensors checkpoints of
//! the llama family: from a local folder, from a (mock) Hub repo that has no
//! GGUF file, and the errors for other model types and incomplete folders.
//! The tiny checkpoints have random weights, so their text is noise; what is
//! checked is that the CLI ends exactly as the library (whose logits
//! tests/llm_safetensors.rs compares with transformers) does: the same
//! summary, or — when the noise holds no whole sentence within the token
//! budget, which summaries never cut — the same error, reached only after
//! the model has generated that budget.

mod common;

use assert_cmd::Command;
use candle_core::Device;
use common::{stdout_ok, tolk, MockHub, MockRepo};
use std::path::Path;
use tolk::pipeline::summarize::llm::{LlmOptions, LlmSummarizer};
use tolk::pipeline::{SummaryLength, SummaryRequest};
use tolk::text::Lang;

const ENGLISH: &str = "The city council approved the new budget on Monday. \
The budget raises spending on schools and public transport. \
Critics said the budget ignores rising rents.";

/// What the library writes for ENGLISH in one sentence, greedy (or its error).
fn library_summary(fixture: &str) -> Result<String, String> {
    let mut s = LlmSummarizer::load_dir(
        &common::fixture(fixture),
        &Device::Cpu,
        LlmOptions::default(),
    )
    .unwrap();
    let req = SummaryRequest {
        text: ENGLISH,
        lang: Lang::En,
        length: SummaryLength::Sentences(1),
    };
    tolk::pipeline::Summarizer::summarize(&mut s, &req, &mut |_| {}).map_err(|e| format!("{e:#}"))
}

/// The CLI's run `out` ended as the library did for `fixture`.
fn assert_same_outcome(out: &std::process::Output, fixture: &str) {
    match library_summary(fixture) {
        Ok(want) => {
            assert!(!want.is_empty());
            assert_eq!(stdout_ok(out).trim_end(), want, "{fixture}");
        }
        Err(want) => {
            assert!(
                want.contains("no complete sentence within its budget"),
                "{fixture}: the library failed otherwise: {want}"
            );
            // The model's label differs (folder name vs repo id); the cause must not.
            let cause = want.split_once(": ").map_or(want.as_str(), |(_, c)| c);
            let err = one_line_error(out);
            assert!(
                err.ends_with(cause),
                "{fixture}: CLI {err:?}, library {want:?}"
            );
        }
    }
}

/// `tolk summarize` of ENGLISH (stdin) in one sentence, with `model` flags.
fn summarize<S: AsRef<std::ffi::OsStr>>(mut cmd: Command, model: &[S]) -> std::process::Output {
    cmd.args(["summarize", "--source", "en", "--sentences", "1"])
        .args(model)
        .arg("-")
        .write_stdin(ENGLISH)
        .output()
        .unwrap()
}

fn one_line_error(out: &std::process::Output) -> String {
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr).trim_end().to_string();
    assert_eq!(err.lines().count(), 1, "{err}");
    err
}

#[test]
fn model_dir_with_a_checkpoint_summarizes_like_the_library() {
    let tmp = tempfile::tempdir().unwrap();
    for fixture in ["llama-tiny", "llama3-tiny"] {
        let dir = common::fixture(fixture);
        let out = summarize(tolk(tmp.path()), &[Path::new("--model-dir"), &dir]);
        assert_same_outcome(&out, fixture);
    }
}

#[test]
fn model_dir_errors_are_one_line() {
    let tmp = tempfile::tempdir().unwrap();
    let bert = tmp.path().join("bert");
    std::fs::create_dir(&bert).unwrap();
    std::fs::write(bert.join("config.json"), r#"{"model_type":"bert"}"#).unwrap();
    let out = summarize(tolk(tmp.path()), &[Path::new("--model-dir"), &bert]);
    let err = one_line_error(&out);
    assert!(
        err.contains("'bert'") && err.contains("supported: llama"),
        "{err}"
    );

    let no_weights = tmp.path().join("no-weights");
    std::fs::create_dir(&no_weights).unwrap();
    for name in ["config.json", "tokenizer.json", "tokenizer_config.json"] {
        std::fs::copy(
            common::fixture("llama-tiny").join(name),
            no_weights.join(name),
        )
        .unwrap();
    }
    let out = summarize(tolk(tmp.path()), &[Path::new("--model-dir"), &no_weights]);
    let err = one_line_error(&out);
    assert!(
        err.contains("has no model.safetensors or model.safetensors.index.json"),
        "{err}"
    );
}

fn fixture_files(fixture: &str) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(common::fixture(fixture))
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    files.push(("README.md".into(), b"# tiny".to_vec()));
    files
}

fn repo(name: &str, files: &[(String, Vec<u8>)]) -> MockRepo {
    let refs: Vec<(&str, &[u8])> = files
        .iter()
        .map(|(n, c)| (n.as_str(), c.as_slice()))
        .collect();
    MockRepo::new(name, &refs)
}

#[test]
fn hub_repo_without_gguf_is_downloaded_as_a_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let sharded = fixture_files("llama3-tiny");
    let bert = vec![
        (
            "config.json".to_string(),
            br#"{"model_type":"bert"}"#.to_vec(),
        ),
        ("model.safetensors".to_string(), b"not read".to_vec()),
        ("tokenizer.json".to_string(), b"{}".to_vec()),
    ];
    let hub = MockHub::start(vec![
        repo("acme/tiny-llama3", &sharded),
        repo("acme/bert", &bert),
    ]);

    let mut cmd = tolk(tmp.path());
    cmd.env("HF_ENDPOINT", &hub.url);
    let out = summarize(cmd, &["--model", "acme/tiny-llama3"]);
    assert_same_outcome(&out, "llama3-tiny");
    let paths = hub.paths();
    for shard in [
        "model-00001-of-00003.safetensors",
        "model-00002-of-00003.safetensors",
        "model-00003-of-00003.safetensors",
        "model.safetensors.index.json",
        "tokenizer.json",
    ] {
        assert!(
            paths.iter().any(|p| p.ends_with(&format!("/{shard}"))),
            "{shard} not fetched: {paths:?}"
        );
    }
    assert!(!paths.iter().any(|p| p.ends_with("/README.md")));

    // Cached now: works offline too.
    let mut cmd = tolk(tmp.path());
    cmd.env("HF_HUB_OFFLINE", "1");
    let out = summarize(cmd, &["--model", "acme/tiny-llama3"]);
    assert_same_outcome(&out, "llama3-tiny");

    // Another model type is refused before any weights are downloaded.
    let mut cmd = tolk(tmp.path());
    cmd.env("HF_ENDPOINT", &hub.url);
    let out = summarize(cmd, &["--model", "acme/bert"]);
    let err = one_line_error(&out);
    assert!(
        err.contains("'bert'") && err.contains("supported: llama"),
        "{err}"
    );
    assert!(!hub
        .paths()
        .iter()
        .any(|p| p.starts_with("/acme/bert/") && p.ends_with("model.safetensors")));
}

#[test]
fn models_pull_fetches_a_sharded_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let hub = MockHub::start(vec![repo(
        "acme/tiny-llama3",
        &fixture_files("llama3-tiny"),
    )]);
    let out = tolk(tmp.path())
        .env("HF_ENDPOINT", &hub.url)
        .args(["models", "pull", "--quiet", "acme/tiny-llama3"])
        .output()
        .unwrap();
    let listing = stdout_ok(&out);
    for name in [
        "config.json",
        "model.safetensors.index.json",
        "model-00002-of-00003.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
        "generation_config.json",
    ] {
        assert!(listing.contains(name), "{name} missing: {listing}");
    }
    assert!(!listing.contains("README.md"), "{listing}");
}
