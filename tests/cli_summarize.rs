//! `tolk summarize` with engines that need no downloaded model: the
//! extractive engine, German articles translated first by the tiny Marian
//! fixture, and the error paths.

mod common;

use common::{stdout_ok, tolk};
use std::path::PathBuf;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

const ENGLISH: &str = "The city council approved the new budget on Monday. \
The budget raises spending on schools and public transport. \
Critics said the budget ignores rising rents. \
The weather was sunny all week. \
The mayor defended the budget as a plan for families and schools.";

fn sentences_of(text: &str) -> Vec<String> {
    tolk::text::split_sentences(text)
}

#[test]
fn extractive_summary_of_english_picks_whole_sentences_in_order() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tolk(tmp.path())
        .args([
            "summarize",
            "--method",
            "extractive",
            "--sentences",
            "2",
            "-",
        ])
        .write_stdin(ENGLISH)
        .output()
        .unwrap();
    let summary = stdout_ok(&out);
    let picked = sentences_of(summary.trim());
    assert_eq!(picked.len(), 2, "{summary}");
    let all = sentences_of(ENGLISH);
    let positions: Vec<usize> = picked
        .iter()
        .map(|s| all.iter().position(|a| a == s).unwrap())
        .collect();
    assert!(
        positions.windows(2).all(|w| w[0] < w[1]),
        "not in article order: {positions:?}"
    );
    assert!(
        !summary.contains("weather"),
        "the off-topic sentence was picked: {summary}"
    );
}

#[test]
fn german_articles_are_translated_before_extraction() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tolk(tmp.path())
        .args([
            "summarize",
            "--method",
            "extractive",
            "--length",
            "short",
            "--translation-model-dir",
        ])
        .arg(root().join("tests/fixtures/marian-tiny"))
        .arg(root().join("samples/de_article.txt"))
        .output()
        .unwrap();
    let summary = stdout_ok(&out);
    assert!(!summary.trim().is_empty());
    // The tiny model's "English" shares no words with the German article.
    assert!(
        !summary.contains("Kasachstan") && !summary.contains("Regierung"),
        "{summary}"
    );
}

#[test]
fn summary_errors_and_empty_input() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tolk(tmp.path())
        .args(["summarize", "--sentences", "0", "-"])
        .write_stdin(ENGLISH)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.contains("--sentences must be at least 1"), "{err}");

    tolk(tmp.path())
        .args(["summarize", "--method", "extractive", "-"])
        .write_stdin("   \n")
        .assert()
        .success()
        .stdout("");
}

#[test]
fn translate_with_summary_writes_both_files() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("article.en.txt");
    tolk(tmp.path())
        .args([
            "translate",
            "--summary",
            "--method",
            "extractive",
            "--beams",
            "1",
            "--model-dir",
        ])
        .arg(root().join("tests/fixtures/marian-tiny"))
        .arg(root().join("samples/de_article.txt"))
        .arg("-o")
        .arg(&out)
        .assert()
        .success();
    let translation = std::fs::read_to_string(&out).unwrap();
    let summary = std::fs::read_to_string(tmp.path().join("article.en.summary.txt")).unwrap();
    assert!(!summary.trim().is_empty());
    // Extractive: every word of the summary comes from the translation
    // (the tiny model's output has no sentence punctuation to split on).
    for word in summary.split_whitespace() {
        assert!(
            translation.contains(word),
            "{word:?} is not in the translation"
        );
    }
    assert!(summary.len() < translation.len());
}

/// The llm engine end to end on a real model (SmolLM2-135M from PyPI):
/// streaming prints exactly what the non-streaming run returns.
#[test]
fn llm_summary_streams_what_it_returns() {
    let Some(model) = common::test_model("SmolLM2-135M-Instruct.Q4_1.gguf") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let run = |extra: &[&str]| {
        let out = tolk(tmp.path())
            .args(["summarize", "--sentences", "1", "--model-file"])
            .arg(&model)
            .args(extra)
            .arg(root().join("samples/en_article.txt"))
            .output()
            .unwrap();
        stdout_ok(&out)
    };
    let plain = run(&[]);
    let streamed = run(&["--stream"]);
    assert!(!plain.trim().is_empty());
    assert_eq!(plain.trim_end(), streamed.trim_end());
    let article = std::fs::read_to_string(root().join("samples/en_article.txt")).unwrap();
    assert!(plain.len() < article.len() / 2, "not a summary: {plain}");
    assert!(plain.contains("Kazakhstan"), "off topic: {plain}");
}

#[test]
fn llm_model_dir_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tolk(tmp.path())
        .args(["summarize", "--source", "en", "--model-dir"])
        .arg(tmp.path())
        .arg(root().join("samples/en_article.txt"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("holds no .gguf file"), "{err}");
    let out = tolk(tmp.path())
        .args(["summarize", "--source", "en", "--offline", "-"])
        .write_stdin(ENGLISH)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("tolk models pull HuggingFaceTB/SmolLM2-1.7B-Instruct-GGUF"),
        "{err}"
    );
}

/// The t5 engine from the CLI, on the tiny T5 fixture: deterministic, and
/// streaming prints what the plain run returns.
#[test]
fn t5_summary_from_a_local_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let run = |extra: &[&str]| {
        let out = tolk(tmp.path())
            .args([
                "summarize",
                "--method",
                "t5",
                "--source",
                "en",
                "--model-dir",
            ])
            .arg(root().join("tests/fixtures/t5-tiny"))
            .args(extra)
            .arg(root().join("samples/en_article.txt"))
            .output()
            .unwrap();
        stdout_ok(&out)
    };
    let plain = run(&[]);
    assert!(!plain.trim().is_empty());
    assert_eq!(plain, run(&[]));
    assert_eq!(plain.trim_end(), run(&["--stream"]).trim_end());

    let out = tolk(tmp.path())
        .args([
            "summarize",
            "--method",
            "t5",
            "--source",
            "en",
            "--model-dir",
        ])
        .arg(root().join("tests/fixtures/marian-tiny"))
        .arg(root().join("samples/en_article.txt"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
}
