//! `tolk translate` end to end with the tiny fixture model, and every error
//! path: one clear line on stderr, a non-zero exit, no panic, no partial file.

mod common;

use assert_cmd::Command;
use common::{stdout_ok, tolk};
use std::path::{Path, PathBuf};

fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/marian-tiny")
}

fn sample() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("samples/de_article.txt")
}

/// Runs a command expected to fail; returns its single stderr line.
fn one_line_error(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        !out.status.success(),
        "expected failure, got success; stderr: {stderr}"
    );
    assert!(!stderr.contains("panicked"), "panic: {stderr}");
    assert_eq!(
        stderr.trim_end().lines().count(),
        1,
        "want one line, got: {stderr}"
    );
    assert!(stderr.starts_with("tolk: error: "), "{stderr}");
    stderr
}

/// Blocks of text separated by blank lines.
fn paragraphs(text: &str) -> usize {
    text.split("\n\n").filter(|p| !p.trim().is_empty()).count()
}

#[test]
fn translates_the_sample_keeping_its_paragraphs() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tolk(tmp.path())
        .args(["translate", "--beams", "1", "--model-dir"])
        .arg(fixture())
        .arg(sample())
        .output()
        .unwrap();
    let english = stdout_ok(&out);
    let german = std::fs::read_to_string(sample()).unwrap();
    assert!(!english.trim().is_empty());
    assert_eq!(paragraphs(&english), paragraphs(&german));
    assert!(
        !english.contains("Kasachstan"),
        "the German text came back untranslated"
    );
}

#[test]
fn output_file_stdin_and_determinism() {
    let tmp = tempfile::tempdir().unwrap();
    let out_file = tmp.path().join("out/en.txt");
    tolk(tmp.path())
        .args(["translate", "--model-dir"])
        .arg(fixture())
        .arg(sample())
        .arg("-o")
        .arg(&out_file)
        .assert()
        .success();
    let from_file = std::fs::read_to_string(&out_file).unwrap();
    // Nothing but the output is left in its folder.
    assert_eq!(
        std::fs::read_dir(out_file.parent().unwrap())
            .unwrap()
            .count(),
        1
    );

    let from_stdin = tolk(tmp.path())
        .args(["translate", "-", "--model-dir"])
        .arg(fixture())
        .write_stdin(std::fs::read(sample()).unwrap())
        .output()
        .unwrap();
    assert!(from_stdin.status.success());
    assert_eq!(
        String::from_utf8(from_stdin.stdout).unwrap().trim_end(),
        from_file.trim_end()
    );
}

#[test]
fn empty_input_gives_empty_output_without_loading_a_model() {
    let tmp = tempfile::tempdir().unwrap();
    let empty = tmp.path().join("empty.txt");
    std::fs::write(&empty, "").unwrap();
    // The model folder does not even exist: it must not be needed.
    tolk(tmp.path())
        .args(["translate", "--model-dir", "/nonexistent"])
        .arg(&empty)
        .assert()
        .success()
        .stdout("");
}

#[test]
fn input_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = one_line_error(tolk(tmp.path()).args(["translate", "/no/such/file.txt"]));
    assert!(missing.contains("no such file"), "{missing}");

    let dir = one_line_error(tolk(tmp.path()).arg("translate").arg(tmp.path()));
    assert!(dir.contains("is a directory"), "{dir}");

    let bad = tmp.path().join("latin1.txt");
    std::fs::write(&bad, b"Gr\xfc\xdfe aus K\xf6ln").unwrap();
    let err = one_line_error(tolk(tmp.path()).arg("translate").arg(&bad));
    assert!(err.contains("invalid UTF-8 at byte offset 2"), "{err}");
    assert!(err.contains("--lossy"), "{err}");
    tolk(tmp.path())
        .args(["translate", "--lossy", "--model-dir"])
        .arg(fixture())
        .arg(&bad)
        .assert()
        .success();

    let binary = tmp.path().join("blob.bin");
    std::fs::write(&binary, b"\x7fELF\x00\x01\x02").unwrap();
    let err = one_line_error(tolk(tmp.path()).arg("translate").arg(&binary));
    assert!(err.contains("binary"), "{err}");

    let big = tmp.path().join("big.txt");
    std::fs::write(&big, "Hallo Welt. ".repeat(100)).unwrap();
    let err = one_line_error(
        tolk(tmp.path())
            .args(["translate", "--max-bytes", "100"])
            .arg(&big),
    );
    assert!(err.contains("over the limit"), "{err}");
}

/// Copies the fixture model, then lets `change` damage the copy.
fn broken_model(tmp: &Path, change: impl FnOnce(&Path)) -> PathBuf {
    let dir = tmp.join("model");
    std::fs::create_dir_all(&dir).unwrap();
    for entry in std::fs::read_dir(fixture()).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.join(entry.file_name())).unwrap();
    }
    change(&dir);
    dir
}

fn translate_with(tmp: &Path, model: &Path) -> String {
    let out = tmp.join("out.txt");
    let err = one_line_error(
        tolk(tmp)
            .args(["translate", "--model-dir"])
            .arg(model)
            .arg(sample())
            .arg("-o")
            .arg(&out),
    );
    assert!(!out.exists(), "a failed run left an output file");
    err
}

#[test]
fn model_folder_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();

    let no_weights = broken_model(&t.join("a"), |d| {
        std::fs::remove_file(d.join("model.safetensors")).unwrap()
    });
    let err = translate_with(t, &no_weights);
    assert!(err.contains("model.safetensors"), "{err}");

    let bad_config = broken_model(&t.join("b"), |d| {
        std::fs::write(d.join("config.json"), "{ not json").unwrap()
    });
    let err = translate_with(t, &bad_config);
    assert!(
        err.contains("config.json") && err.contains("broken"),
        "{err}"
    );

    let wrong_kind = broken_model(&t.join("c"), |d| {
        std::fs::write(
            d.join("config.json"),
            r#"{"model_type": "t5", "d_model": 32}"#,
        )
        .unwrap()
    });
    let err = translate_with(t, &wrong_kind);
    assert!(
        err.contains("'t5'") && err.contains("not a Marian"),
        "{err}"
    );

    let truncated = broken_model(&t.join("d"), |d| {
        let w = d.join("model.safetensors");
        let bytes = std::fs::read(&w).unwrap();
        std::fs::write(&w, &bytes[..bytes.len() / 2]).unwrap();
    });
    let err = translate_with(t, &truncated);
    assert!(err.contains("model.safetensors"), "{err}");

    let bad_spm = broken_model(&t.join("e"), |d| {
        std::fs::write(d.join("source.spm"), b"\x0a\xff\xff").unwrap()
    });
    let err = translate_with(t, &bad_spm);
    assert!(err.contains("source.spm"), "{err}");

    let missing_dir = translate_with(t, &t.join("nope"));
    assert!(missing_dir.contains("nope"), "{missing_dir}");
}

#[test]
fn device_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let err = one_line_error(
        tolk(tmp.path())
            .args(["translate", "--device", "tpu"])
            .arg(sample()),
    );
    assert!(err.contains("unknown device 'tpu'"), "{err}");
    if !cfg!(feature = "cuda") {
        let err = one_line_error(
            tolk(tmp.path())
                .args(["translate", "--device", "cuda", "--model-dir"])
                .arg(fixture())
                .arg(sample()),
        );
        assert!(
            err.contains("no CUDA support") && err.contains("--features cuda"),
            "{err}"
        );
    }
}

/// A CUDA build: with a GPU, `--device cuda` translates exactly as the CPU
/// does; without one (no GPU, or the driver stub of scripts/cuda-toolkit.sh)
/// it is a one-line error, and `--device auto` falls back to the CPU.
#[cfg(feature = "cuda")]
#[test]
fn cuda_translates_like_the_cpu_or_fails_in_one_line() {
    let tmp = tempfile::tempdir().unwrap();
    let run = |device: &str| {
        tolk(tmp.path())
            .args(["translate", "--device", device, "--model-dir"])
            .arg(fixture())
            .arg(sample())
            .output()
            .unwrap()
    };
    let cpu = run("cpu");
    assert!(
        cpu.status.success(),
        "{}",
        String::from_utf8_lossy(&cpu.stderr)
    );
    let auto = run("auto");
    assert_eq!(auto.stdout, cpu.stdout, "--device auto");
    if candle_core::Device::new_cuda(0).is_ok() {
        let gpu = run("cuda");
        assert!(
            gpu.status.success(),
            "{}",
            String::from_utf8_lossy(&gpu.stderr)
        );
        assert_eq!(gpu.stdout, cpu.stdout);
    } else {
        let err = one_line_error(
            tolk(tmp.path())
                .args(["translate", "--device", "cuda", "--model-dir"])
                .arg(fixture())
                .arg(sample()),
        );
        assert!(err.contains("no usable NVIDIA GPU"), "{err}");
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED: no CUDA device (checked the one-line error instead)"
        );
    }
}

#[test]
fn a_missing_model_without_network_says_how_to_get_it() {
    let tmp = tempfile::tempdir().unwrap();
    let err = one_line_error(tolk(tmp.path()).arg("translate").arg(sample()));
    assert!(
        err.contains("127.0.0.1:9"),
        "should name the endpoint: {err}"
    );

    let err = one_line_error(
        tolk(tmp.path())
            .args(["translate", "--offline"])
            .arg(sample()),
    );
    assert!(
        err.contains("tolk models pull Helsinki-NLP/opus-mt-de-en"),
        "{err}"
    );
    let err = one_line_error(
        tolk(tmp.path())
            .env("HF_HUB_OFFLINE", "1")
            .arg("translate")
            .arg(sample()),
    );
    assert!(
        err.contains("--offline") || err.contains("offline"),
        "{err}"
    );
}
