//! Absurd sizes in a model's `config.json` (Marian, T5, a llama checkpoint)
//! get one clear error line before anything is allocated: never an abort
//! ("memory allocation of ... failed"), a panic, or a backtrace, even with
//! RUST_BACKTRACE=1 (candle then attaches one to its errors).

mod common;

use serde_json::{json, Value};
use std::path::{Path, PathBuf};

const ENGLISH: &str = "The city council approved the new budget on Monday. \
The budget raises spending on schools.";

/// A copy of fixture `name` with `change` applied to its config.json.
fn broken_copy(tmp: &Path, name: &str, change: (&str, Value)) -> PathBuf {
    let dir = tmp.join(format!("{name}-{}", change.0));
    std::fs::create_dir_all(&dir).unwrap();
    for entry in std::fs::read_dir(common::fixture(name)).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.join(entry.file_name())).unwrap();
    }
    let path = dir.join("config.json");
    let mut config: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    config[change.0] = change.1;
    std::fs::write(&path, config.to_string()).unwrap();
    dir
}

/// Runs tolk on the model folder and returns its one error line.
fn one_error_line(tmp: &Path, kind: &str, dir: &Path) -> String {
    let mut cmd = common::isolated_tolk(tmp);
    cmd.env("RUST_BACKTRACE", "1");
    match kind {
        "marian" => cmd.args(["translate", "--model-dir"]).arg(dir).arg("-"),
        "t5" => cmd
            .args([
                "summarize",
                "--method",
                "t5",
                "--source",
                "en",
                "--model-dir",
            ])
            .arg(dir)
            .arg("-"),
        _ => cmd
            .args(["summarize", "--source", "en", "--model-dir"])
            .arg(dir)
            .arg("-"),
    };
    let out = assert_cmd::Command::from_std(cmd)
        .write_stdin(if kind == "marian" {
            "Die Regierung will die Preise begrenzen."
        } else {
            ENGLISH
        })
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    // 1, not a signal (an abort has no exit code) or a panic's 101.
    assert_eq!(out.status.code(), Some(1), "{kind} {dir:?}: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "{kind} {dir:?}: {stderr}");
    assert!(stderr.starts_with("tolk: error: "), "{stderr}");
    for bad in [
        "panicked",
        "memory allocation",
        "backtrace",
        " at /",
        "   0: ",
    ] {
        assert!(!stderr.contains(bad), "{kind}: {stderr}");
    }
    stderr
}

#[test]
fn absurd_marian_configs_are_one_line_errors() {
    let tmp = tempfile::tempdir().unwrap();
    for (key, value, says) in [
        (
            "max_position_embeddings",
            json!(2147483648u64),
            "max_position_embeddings = 2147483648 is out of range",
        ),
        (
            "d_model",
            json!(3000000000u64),
            "d_model = 3000000000 is out of range",
        ),
        (
            "vocab_size",
            json!(4000000000u64),
            "vocab_size = 4000000000 is out of range",
        ),
        (
            "decoder_vocab_size",
            json!(4000000000u64),
            "decoder_vocab_size",
        ),
        (
            "encoder_layers",
            json!(0),
            "encoder_layers = 0 is out of range",
        ),
        ("decoder_layers", json!(-3), "invalid value: integer `-3`"),
        (
            "encoder_attention_heads",
            json!(0),
            "encoder_attention_heads = 0",
        ),
        (
            "decoder_attention_heads",
            json!(5),
            "d_model = 32 is not divisible by decoder_attention_heads = 5",
        ),
        ("encoder_ffn_dim", json!(1u64 << 40), "encoder_ffn_dim"),
    ] {
        let dir = broken_copy(tmp.path(), "marian-tiny", (key, value));
        let line = one_error_line(tmp.path(), "marian", &dir);
        assert!(line.contains(says), "{key}: {line}");
        assert!(line.contains("config.json"), "{key}: {line}");
    }
}

#[test]
fn absurd_t5_configs_are_one_line_errors() {
    let tmp = tempfile::tempdir().unwrap();
    for (key, value, says) in [
        (
            "d_model",
            json!(2147483648u64),
            "d_model = 2147483648 is out of range",
        ),
        (
            "vocab_size",
            json!(3000000000u64),
            "vocab_size = 3000000000 is out of range",
        ),
        ("num_layers", json!(0), "num_layers = 0 is out of range"),
        ("num_heads", json!(-1), "invalid value: integer `-1`"),
        ("num_heads", json!(0), "num_heads = 0 is out of range"),
        ("d_kv", json!(1u64 << 33), "d_kv"),
        (
            "relative_attention_num_buckets",
            json!(1u64 << 40),
            "relative_attention_num_buckets",
        ),
    ] {
        let dir = broken_copy(tmp.path(), "t5-tiny", (key, value));
        let line = one_error_line(tmp.path(), "t5", &dir);
        assert!(line.contains(says), "{key}: {line}");
    }
}

#[test]
fn absurd_llama_checkpoint_configs_are_one_line_errors() {
    let tmp = tempfile::tempdir().unwrap();
    for (key, value, says) in [
        (
            "max_position_embeddings",
            json!(2147483648u64),
            "max_position_embeddings = 2147483648 is out of range",
        ),
        (
            "hidden_size",
            json!(4294967296u64),
            "hidden_size = 4294967296 is out of range",
        ),
        (
            "num_hidden_layers",
            json!(0),
            "num_hidden_layers = 0 is out of range",
        ),
        (
            "num_hidden_layers",
            json!(-2),
            "num_hidden_layers is not a non-negative integer",
        ),
        ("num_attention_heads", json!(0), "num_attention_heads 0"),
        ("num_key_value_heads", json!(3), "num_key_value_heads"),
    ] {
        let dir = broken_copy(tmp.path(), "llama-tiny", (key, value));
        let line = one_error_line(tmp.path(), "llama", &dir);
        assert!(line.contains(says), "{key}: {line}");
    }
}

#[test]
fn candle_errors_keep_to_the_cause_under_rust_backtrace() {
    // Weights of the wrong shape: candle builds its error with a backtrace
    // when RUST_BACKTRACE is set; the line must still be one line.
    let tmp = tempfile::tempdir().unwrap();
    let dir = broken_copy(tmp.path(), "marian-tiny", ("d_model", json!(64)));
    let line = one_error_line(tmp.path(), "marian", &dir);
    assert!(line.contains("do not fit a Marian model"), "{line}");
}
