//! `--engine llm` on the command line: its flags, its errors, and runs of
//! `translate`, `translate --summary` and `batch` on the small real SmolLM2
//! GGUF (`scripts/fetch-test-models.sh`; without it those tests print
//! `SKIPPED:`). SmolLM2-135M translates poorly: these tests check the
//! contract (structure, one model for both tasks, manifests), never quality;
//! quality is checked on the Qwen 1.5B in `llm_translate_real`.

mod common;

use assert_cmd::Command;
use std::path::Path;

const SMOLLM2: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";

fn tolk(home: &Path) -> Command {
    Command::from_std(common::isolated_tolk(home))
}

/// Runs tolk with `args` and German text on stdin: (exit code, stdout, stderr).
fn run(home: &Path, args: &[&str]) -> (i32, String, String) {
    let out = tolk(home)
        .args(args)
        .write_stdin("Der Hund schläft. Die Katze spielt.\n")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn assert_one_line_error(stderr: &str, needle: &str) {
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains(needle), "{needle:?} in {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn marian_only_flags_are_refused_for_the_llm_engine() {
    let home = tempfile::tempdir().unwrap();
    let gguf = home.path().join("m.gguf");
    std::fs::write(&gguf, b"not loaded").unwrap();
    let gguf = gguf.to_str().unwrap();
    for (flag, value) in [("--beams", "4"), ("--quantize", "q8")] {
        let (code, out, err) = run(
            home.path(),
            &[
                "translate",
                "--engine",
                "llm",
                "--model-file",
                gguf,
                flag,
                value,
                "-",
            ],
        );
        assert_eq!(code, 1, "{err}");
        assert!(out.is_empty());
        assert_one_line_error(&err, &format!("{flag} is for --engine marian"));
    }
}

#[test]
fn model_file_is_for_the_llm_engine_and_must_exist() {
    let home = tempfile::tempdir().unwrap();
    let (code, _, err) = run(home.path(), &["translate", "--model-file", "x.gguf", "-"]);
    assert_eq!(code, 1, "{err}");
    assert_one_line_error(&err, "--model-file is for --engine llm");
    let (code, _, err) = run(
        home.path(),
        &[
            "translate",
            "--engine",
            "llm",
            "--model-file",
            "missing.gguf",
            "-",
        ],
    );
    assert_eq!(code, 1, "{err}");
    assert_one_line_error(&err, "missing.gguf: no such file");
    let (code, _, err) = run(
        home.path(),
        &[
            "translate",
            "--engine",
            "llm",
            "--model-file",
            "a.gguf",
            "--model",
            "r/x",
            "-",
        ],
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("cannot be used with"), "{err}");
}

#[test]
fn sentences_per_prompt_must_be_between_1_and_32() {
    let home = tempfile::tempdir().unwrap();
    for n in ["0", "33", "x"] {
        let (code, _, err) = run(
            home.path(),
            &[
                "translate",
                "--engine",
                "llm",
                "--sentences-per-prompt",
                n,
                "-",
            ],
        );
        assert_eq!(code, 2, "{n}: {err}");
        assert!(err.contains("--sentences-per-prompt"), "{err}");
    }
}

#[test]
fn the_default_llm_model_is_named_when_it_is_missing_offline() {
    let home = tempfile::tempdir().unwrap();
    let (code, _, err) = run(
        home.path(),
        &["translate", "--engine", "llm", "--offline", "-"],
    );
    assert_eq!(code, 1, "{err}");
    assert_one_line_error(&err, "Qwen/Qwen2.5-1.5B-Instruct-GGUF");
}

#[test]
fn empty_input_loads_no_model() {
    let home = tempfile::tempdir().unwrap();
    let out = tolk(home.path())
        .args([
            "translate",
            "--engine",
            "llm",
            "--model-file",
            "missing.gguf",
            "-",
        ])
        .write_stdin("  \n")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(out.stdout.is_empty());
}

#[test]
fn translate_and_summarize_with_one_small_model() {
    let Some(model) = common::test_model(SMOLLM2) else {
        return;
    };
    let home = tempfile::tempdir().unwrap();
    let (code, out, err) = run(
        home.path(),
        &[
            "translate",
            "--engine",
            "llm",
            "--model-file",
            model.to_str().unwrap(),
            "--summary",
            "--sentences",
            "1",
            "--quiet",
            "-",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let (translation, summary) = out
        .split_once("\n\nSummary:\n")
        .expect("translation, then summary");
    assert!(
        !translation.trim().is_empty() && !translation.contains('\n'),
        "{out}"
    );
    assert!(!summary.trim().is_empty(), "{out}");
}

#[test]
fn batch_translates_and_summarizes_with_one_small_model() {
    let Some(model) = common::test_model(SMOLLM2) else {
        return;
    };
    let home = tempfile::tempdir().unwrap();
    let input = home.path().join("in");
    std::fs::create_dir_all(&input).unwrap();
    std::fs::write(
        input.join("a.txt"),
        "Der Hund schläft.\n\nDie Katze spielt.\n",
    )
    .unwrap();
    std::fs::write(input.join("b.txt"), "Es regnet in Berlin.\n").unwrap();
    let out_dir = home.path().join("out");
    let model = model.to_str().unwrap();
    let status = tolk(home.path())
        .args([
            "batch",
            input.to_str().unwrap(),
            "-o",
            out_dir.to_str().unwrap(),
        ])
        .args(["--engine", "llm", "--model-file", model, "--quiet"])
        .args(["--tasks", "translate,summarize", "--summary-method", "llm"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&status.stderr);
    assert!(status.status.success(), "{stderr}");
    let a = std::fs::read_to_string(out_dir.join("a.txt.en.txt")).unwrap();
    assert_eq!(
        a.trim_end().split("\n\n").count(),
        2,
        "paragraphs kept: {a}"
    );
    assert!(out_dir.join("b.txt.summary.txt").is_file());
    let manifest = std::fs::read_to_string(out_dir.join("tolk-manifest.jsonl")).unwrap();
    for line in manifest.lines() {
        let record: serde_json::Value = serde_json::from_str(line).unwrap();
        let options = &record["options"];
        let translation = options["translation_model"].as_str().unwrap();
        let summary = options["summary_model"].as_str().unwrap();
        assert!(
            translation.starts_with("llm:") && translation.contains(SMOLLM2),
            "{translation}"
        );
        assert!(
            translation.contains("--sentences-per-prompt 4"),
            "{translation}"
        );
        assert!(
            translation.starts_with(summary),
            "one model: {translation} / {summary}"
        );
    }
}
