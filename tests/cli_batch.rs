//! `tolk batch` end to end with the tiny Marian fixture: outputs, manifest
//! and exit codes on a tree with bad files; 100 article variants with
//! summaries and JSONL; crash (`--fail-after`, SIGKILL) and Ctrl-C then
//! resume, with no partial output at any point; determinism; shards.

mod common;

use common::{isolated_tolk, tolk};
use serde_json::Value;
use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/marian-tiny")
}

fn sample() -> String {
    fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("samples/de_article.txt"))
        .unwrap()
}

/// The arguments every run here shares: the tiny model, greedy, short
/// outputs (its random weights would otherwise ramble to 128 tokens).
fn batch_args(input: &Path, out: &Path) -> Vec<String> {
    vec![
        "batch".into(),
        input.display().to_string(),
        "-o".into(),
        out.display().to_string(),
        "--model-dir".into(),
        fixture().display().to_string(),
        "--beams".into(),
        "1".into(),
        "--max-length".into(),
        "12".into(),
    ]
}

struct Outcome {
    code: i32,
    stderr: String,
}

fn run(home: &Path, args: &[String]) -> Outcome {
    let out = tolk(home).args(args).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!stderr.contains("panicked"), "panic: {stderr}");
    Outcome {
        code: out.status.code().unwrap_or(-1),
        stderr,
    }
}

/// A number from the final table, e.g. `count(stderr, "files done")`.
fn count(stderr: &str, row: &str) -> usize {
    stderr
        .lines()
        .find_map(|l| l.trim_start().strip_prefix(row))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no row {row:?} in: {stderr}"))
}

fn write(root: &Path, rel: &str, bytes: &[u8]) {
    let path = root.join(rel);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, bytes).unwrap();
}

fn manifest(out: &Path) -> Vec<Value> {
    let text = fs::read_to_string(out.join("tolk-manifest.jsonl")).unwrap_or_default();
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The latest record per input.
fn latest(out: &Path) -> HashMap<String, Value> {
    manifest(out)
        .into_iter()
        .map(|r| (r["path"].as_str().unwrap().to_string(), r))
        .collect()
}

/// Every file under `dir` (relative path → bytes).
fn files_under(dir: &Path) -> HashMap<String, Vec<u8>> {
    walk(dir, dir)
}

fn walk(root: &Path, dir: &Path) -> HashMap<String, Vec<u8>> {
    let mut files = HashMap::new();
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(walk(root, &path));
        } else {
            let rel = path
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            files.insert(rel, fs::read(&path).unwrap());
        }
    }
    files
}

/// Every output in place is complete: some manifest record lists it with
/// exactly its sha256. Returns how many outputs there are.
fn assert_no_partial_output(out: &Path) -> usize {
    assert_no_partial_output_except(out, &[])
}

fn assert_no_partial_output_except(out: &Path, users_own: &[&str]) -> usize {
    let mut vouched: HashMap<String, Vec<String>> = HashMap::new();
    for record in manifest(out) {
        for o in record["outputs"].as_array().unwrap() {
            vouched
                .entry(o["path"].as_str().unwrap().to_string())
                .or_default()
                .push(o["sha256"].as_str().unwrap().to_string());
        }
    }
    let mut outputs = 0;
    for (rel, bytes) in files_under(out) {
        if users_own.contains(&rel.as_str()) {
            continue;
        }
        if rel.ends_with(".en.txt") || rel.ends_with(".summary.txt") {
            let hash = common::sha256_hex(&bytes);
            assert!(
                vouched.get(&rel).is_some_and(|h| h.contains(&hash)),
                "{rel} is in place but no manifest record vouches for its content"
            );
            outputs += 1;
        }
    }
    outputs
}

fn temp_files(out: &Path) -> Vec<String> {
    files_under(out)
        .into_keys()
        .filter(|f| f.contains(".tolk-part-"))
        .collect()
}

#[test]
fn a_tree_with_bad_files_gets_outputs_a_manifest_and_exit_code_2() {
    let tmp = tempfile::tempdir().unwrap();
    let (input, out) = (tmp.path().join("articles"), tmp.path().join("out"));
    let article = sample();
    write(&input, "top.txt", article.as_bytes());
    write(
        &input,
        "politik/2024/lang.md",
        format!("# Kasachstan\n\n{article}").as_bytes(),
    );
    write(&input, "politik/kurz.txt", b"Die Proteste gehen weiter.\n");
    write(&input, "latin1.txt", b"Gr\xfc\xdfe aus K\xf6ln\n");
    write(&input, "empty.txt", b"");
    write(&input, "blob.txt", b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR");
    write(&input, "vorhanden.txt", "Schon übersetzt.\n".as_bytes());
    write(
        &input,
        "image.png",
        b"not text, not matched by the default globs",
    );
    write(
        &out,
        "vorhanden.txt.en.txt",
        b"a translation the user made\n",
    );

    let first = run(tmp.path(), &batch_args(&input, &out));
    assert_eq!(first.code, 2, "{}", first.stderr);
    assert_eq!(count(&first.stderr, "files done"), 3, "{}", first.stderr);
    assert_eq!(count(&first.stderr, "files failed"), 4, "{}", first.stderr);

    for rel in ["top.txt", "politik/2024/lang.md", "politik/kurz.txt"] {
        let english = fs::read_to_string(out.join(format!("{rel}.en.txt"))).unwrap();
        assert!(!english.trim().is_empty(), "{rel}");
        assert!(
            !english.contains("Proteste"),
            "{rel} came back untranslated"
        );
    }
    // Markdown keeps its heading marker; the plain text keeps its paragraphs.
    let md = fs::read_to_string(out.join("politik/2024/lang.md.en.txt")).unwrap();
    assert!(md.starts_with("# "), "{md}");
    let top = fs::read_to_string(out.join("top.txt.en.txt")).unwrap();
    let paragraphs = |t: &str| t.split("\n\n").filter(|p| !p.trim().is_empty()).count();
    assert_eq!(paragraphs(&top), paragraphs(&article));
    assert_eq!(
        fs::read_to_string(out.join("vorhanden.txt.en.txt")).unwrap(),
        "a translation the user made\n"
    );
    for bad in ["latin1", "empty", "blob", "image.png"] {
        assert!(
            !files_under(&out).keys().any(|k| k.starts_with(bad)),
            "{bad} got an output"
        );
    }

    let records = latest(&out);
    assert_eq!(records.len(), 7, "{records:?}");
    let status = |p: &str| records[p]["status"].as_str().unwrap().to_string();
    let error = |p: &str| records[p]["error"].as_str().unwrap_or("").to_string();
    assert_eq!(status("top.txt"), "done");
    assert_eq!(status("politik/2024/lang.md"), "done");
    assert!(error("latin1.txt").contains("invalid UTF-8 at byte offset 2"));
    assert!(error("empty.txt").contains("empty"));
    assert!(error("blob.txt").contains("binary"));
    assert!(error("vorhanden.txt").contains("not written by tolk"));
    let top = &records["top.txt"];
    assert_eq!(
        top["sha256"].as_str().unwrap(),
        common::sha256_hex(article.as_bytes())
    );
    assert!(top["options"]["translation_model"]
        .as_str()
        .unwrap()
        .ends_with("marian-tiny"));
    assert_eq!(top["options"]["beams"], 1);
    assert!(top["sentences"].as_u64().unwrap() > 10);
    assert!(top["timings"]["translate_ms"].is_u64());
    assert_eq!(
        assert_no_partial_output_except(&out, &["vorhanden.txt.en.txt"]),
        3
    );

    // Again: nothing to redo, the bad files fail again.
    let second = run(tmp.path(), &batch_args(&input, &out));
    assert_eq!(second.code, 2);
    assert_eq!(
        count(&second.stderr, "files skipped"),
        3,
        "{}",
        second.stderr
    );

    // Fixed inputs and --force: everything succeeds, the user's file is replaced.
    fs::remove_file(input.join("latin1.txt")).unwrap();
    fs::remove_file(input.join("empty.txt")).unwrap();
    fs::remove_file(input.join("blob.txt")).unwrap();
    let mut args = batch_args(&input, &out);
    args.push("--force".into());
    let forced = run(tmp.path(), &args);
    assert_eq!(forced.code, 0, "{}", forced.stderr);
    assert_ne!(
        fs::read_to_string(out.join("vorhanden.txt.en.txt")).unwrap(),
        "a translation the user made\n"
    );
    assert!(temp_files(&out).is_empty());
}

/// 100 variants of the sample article (copies, shuffled paragraphs, extra
/// sentences, Markdown) in 10 folders.
fn hundred_articles(root: &Path) {
    let article = sample();
    let paragraphs: Vec<&str> = article
        .split("\n\n")
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect();
    for i in 0..100 {
        let mut ps: Vec<String> = paragraphs.iter().map(|p| p.to_string()).collect();
        let text = match i % 4 {
            0 => article.clone(),
            1 => {
                ps.rotate_left(i % paragraphs.len());
                ps.join("\n\n")
            }
            2 => format!("Meldung Nummer {i} aus Almaty.\n\n{}", ps.join("\n\n")),
            _ => ps[..(i % paragraphs.len()) + 1].join("\n\n"),
        };
        let (name, text) = if i % 10 == 9 {
            (
                format!("folder{}/article{i}.md", i % 10),
                format!("## Bericht {i}\n\n{text}"),
            )
        } else {
            (format!("folder{}/article{i}.txt", i % 10), text)
        };
        write(root, &name, text.as_bytes());
    }
}

#[test]
fn a_hundred_articles_translated_and_summarized_then_jsonl() {
    let tmp = tempfile::tempdir().unwrap();
    let (input, out) = (tmp.path().join("articles"), tmp.path().join("out"));
    hundred_articles(&input);
    write(&input, "folder0/drafts/skip.txt", b"Entwurf.\n");

    let mut args = batch_args(&input, &out);
    args.extend(
        [
            "--tasks",
            "translate,summarize",
            "--exclude",
            "**/drafts/**",
            "--jobs",
            "3",
        ]
        .map(String::from),
    );
    let first = run(tmp.path(), &args);
    assert_eq!(first.code, 0, "{}", first.stderr);
    assert_eq!(count(&first.stderr, "files done"), 100, "{}", first.stderr);
    assert!(first.stderr.contains("throughput"), "{}", first.stderr);
    let outputs = files_under(&out);
    let translations: Vec<&String> = outputs.keys().filter(|k| k.ends_with(".en.txt")).collect();
    let summaries: Vec<&String> = outputs
        .keys()
        .filter(|k| k.ends_with(".summary.txt"))
        .collect();
    assert_eq!((translations.len(), summaries.len()), (100, 100));
    assert!(!outputs.keys().any(|k| k.contains("drafts")));
    assert_eq!(assert_no_partial_output(&out), 200);
    // Identical inputs in different places of the batch translate identically.
    let copies: Vec<&Vec<u8>> = (0..100)
        .step_by(4)
        .filter(|i| i % 10 != 9)
        .map(|i| &outputs[&format!("folder{}/article{i}.txt.en.txt", i % 10)])
        .collect();
    assert!(copies.len() > 20);
    assert!(copies.windows(2).all(|w| w[0] == w[1]));
    // Each summary is made of sentences of its translation.
    let summary = String::from_utf8(outputs["folder1/article1.txt.summary.txt"].clone()).unwrap();
    let english = String::from_utf8(outputs["folder1/article1.txt.en.txt"].clone()).unwrap();
    assert!(!summary.trim().is_empty());
    let flat = english.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(flat.contains(
        summary
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .as_str()
    ));

    // The same folder as one JSONL file agrees with the files.
    let jsonl_out = tmp.path().join("jsonl");
    let mut args = batch_args(&input, &jsonl_out);
    args.extend(
        [
            "--tasks",
            "translate,summarize",
            "--format",
            "jsonl",
            "--glob",
            "*.txt",
        ]
        .map(String::from),
    );
    let jsonl = run(tmp.path(), &args);
    assert_eq!(jsonl.code, 0, "{}", jsonl.stderr);
    let text = fs::read_to_string(jsonl_out.join("tolk-results.jsonl")).unwrap();
    let records: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // --glob '*.txt' takes the 90 text files and the draft.
    assert_eq!(records.len(), 91);
    let r1 = records
        .iter()
        .find(|r| r["path"] == "folder1/article1.txt")
        .unwrap();
    assert_eq!(
        r1["translation"].as_str().unwrap().trim_end(),
        english.trim_end()
    );
    assert_eq!(
        r1["summary"].as_str().unwrap().trim_end(),
        summary.trim_end()
    );
    assert!(r1["sha256"].is_string() && r1["models"]["translation"].is_string());
    assert!(r1["timings"]["translate_ms"].is_u64());
    assert_eq!(
        files_under(&jsonl_out).len(),
        3,
        "results, manifest and lock only"
    );

    // Resume of the first run: nothing to do.
    let mut args = batch_args(&input, &out);
    args.extend(
        [
            "--tasks",
            "translate,summarize",
            "--exclude",
            "**/drafts/**",
            "--resume",
        ]
        .map(String::from),
    );
    let again = run(tmp.path(), &args);
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert_eq!(
        count(&again.stderr, "files skipped"),
        100,
        "{}",
        again.stderr
    );
}

#[test]
fn identical_inputs_give_identical_outputs_across_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("articles");
    hundred_articles(&input);
    let keep: Vec<String> = (0..12).map(|i| format!("article{i}.*")).collect();
    let mut outputs = Vec::new();
    let mut keys = Vec::new();
    for name in ["one", "two"] {
        let out = tmp.path().join(name);
        let mut args = batch_args(&input, &out);
        for k in &keep {
            args.extend(["--glob".to_string(), format!("**/{k}")]);
        }
        let r = run(tmp.path(), &args);
        assert_eq!(r.code, 0, "{}", r.stderr);
        let mut files = files_under(&out);
        files.remove("tolk-manifest.jsonl");
        assert_eq!(files.keys().filter(|k| k.ends_with(".en.txt")).count(), 12);
        outputs.push(files);
        let mut k: Vec<(String, String)> = latest(&out)
            .into_iter()
            .map(|(p, r)| (p, r["key"].as_str().unwrap().to_string()))
            .collect();
        k.sort();
        keys.push(k);
    }
    assert_eq!(outputs[0], outputs[1]);
    assert_eq!(keys[0], keys[1]);
}

fn many_articles(input: &Path, count: usize) {
    let article = sample();
    for i in 0..count {
        write(
            input,
            &format!("d{}/a{i:03}.txt", i % 5),
            format!("Meldung {i}.\n\n{article}").as_bytes(),
        );
    }
}

#[test]
fn a_crash_after_n_files_then_resume_does_only_the_rest() {
    let tmp = tempfile::tempdir().unwrap();
    let (input, out) = (tmp.path().join("articles"), tmp.path().join("out"));
    many_articles(&input, 12);
    let mut args = batch_args(&input, &out);
    // Small passes, so that files are written while others wait.
    args.extend(["--batch-units", "30"].map(String::from));

    let mut crash = args.clone();
    crash.extend(["--fail-after", "4"].map(String::from));
    let crashed = run(tmp.path(), &crash);
    assert_eq!(crashed.code, 3, "{}", crashed.stderr);
    let done: Vec<String> = latest(&out)
        .into_iter()
        .filter(|(_, r)| r["status"] == "done")
        .map(|(p, _)| p)
        .collect();
    assert_eq!(done.len(), 4, "{done:?}");
    assert_eq!(assert_no_partial_output(&out), 4);

    let resumed = run(tmp.path(), &args);
    assert_eq!(resumed.code, 0, "{}", resumed.stderr);
    assert_eq!(
        count(&resumed.stderr, "files done"),
        8,
        "{}",
        resumed.stderr
    );
    assert_eq!(
        count(&resumed.stderr, "files skipped"),
        4,
        "{}",
        resumed.stderr
    );
    // The first four were not redone: one manifest line each.
    for path in &done {
        assert_eq!(
            manifest(&out)
                .iter()
                .filter(|r| r["path"] == path.as_str())
                .count(),
            1
        );
    }
    assert_eq!(assert_no_partial_output(&out), 12);
    assert!(temp_files(&out).is_empty(), "{:?}", temp_files(&out));
}

/// Starts a batch, waits until it has recorded at least one input, then
/// signals it; returns its exit code (None when killed by the signal).
fn signal_mid_run(tmp: &Path, args: &[String], out: &Path, signal: &str) -> Option<i32> {
    let mut child = isolated_tolk(tmp)
        .args(args)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while manifest(out).is_empty() && Instant::now() < deadline {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let status = std::process::Command::new("sh")
        .args(["-c", &format!("kill -{signal} {}", child.id())])
        .status()
        .unwrap();
    let _ = status;
    child.wait().unwrap().code()
}

#[test]
fn sigkill_mid_run_leaves_only_complete_outputs_and_resume_finishes() {
    let tmp = tempfile::tempdir().unwrap();
    let (input, out) = (tmp.path().join("articles"), tmp.path().join("out"));
    many_articles(&input, 40);
    let mut args = batch_args(&input, &out);
    args.extend(["--batch-units", "25"].map(String::from));
    let code = signal_mid_run(tmp.path(), &args, &out, "KILL");
    let before = assert_no_partial_output(&out);
    // Killed mid-run (no exit code), or it finished first on a fast machine.
    assert!(
        code.is_none() || (code == Some(0) && before == 40),
        "{code:?}"
    );

    let resumed = run(tmp.path(), &args);
    assert_eq!(resumed.code, 0, "{}", resumed.stderr);
    assert_eq!(
        count(&resumed.stderr, "files skipped"),
        before,
        "{}",
        resumed.stderr
    );
    assert_eq!(assert_no_partial_output(&out), 40);
    assert!(temp_files(&out).is_empty());
}

#[test]
fn ctrl_c_stops_cleanly_with_exit_code_130() {
    let tmp = tempfile::tempdir().unwrap();
    let (input, out) = (tmp.path().join("articles"), tmp.path().join("out"));
    many_articles(&input, 40);
    let mut args = batch_args(&input, &out);
    args.extend(["--batch-units", "25"].map(String::from));
    let code = signal_mid_run(tmp.path(), &args, &out, "INT");
    let before = assert_no_partial_output(&out);
    assert!(
        code == Some(130) || (code == Some(0) && before == 40),
        "{code:?}"
    );
    // No temporary file survives an orderly stop.
    assert!(temp_files(&out).is_empty());
    let resumed = run(tmp.path(), &args);
    assert_eq!(resumed.code, 0, "{}", resumed.stderr);
    assert_eq!(assert_no_partial_output(&out), 40);
}

#[test]
fn shards_cover_everything_once_and_merge() {
    let tmp = tempfile::tempdir().unwrap();
    let (input, out) = (tmp.path().join("articles"), tmp.path().join("out"));
    for i in 0..9 {
        write(
            &input,
            &format!("f{i}.txt"),
            format!("Das ist Satz {i}.").as_bytes(),
        );
    }
    let mut total = 0;
    for shard in ["1/3", "2/3", "3/3"] {
        let mut args = batch_args(&input, &out);
        args.extend(["--shard".to_string(), shard.to_string()]);
        let r = run(tmp.path(), &args);
        assert_eq!(r.code, 0, "{}", r.stderr);
        let file = format!("tolk-manifest.shard-{}-of-3.jsonl", &shard[..1]);
        total += fs::read_to_string(out.join(file)).unwrap().lines().count();
    }
    assert_eq!(total, 9);
    let merged = run(
        tmp.path(),
        &["batch", "--merge-manifests", "-o"]
            .iter()
            .map(|s| s.to_string())
            .chain([out.display().to_string()])
            .collect::<Vec<_>>(),
    );
    assert_eq!(merged.code, 0, "{}", merged.stderr);
    assert_eq!(latest(&out).len(), 9);
    assert!(!files_under(&out).keys().any(|k| k.contains(".shard-")));
    let again = run(tmp.path(), &batch_args(&input, &out));
    assert_eq!(count(&again.stderr, "files skipped"), 9, "{}", again.stderr);
}

#[test]
fn usage_errors_are_one_line() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("articles");
    write(&input, "a.txt", b"Hallo.");
    let cases: Vec<(Vec<String>, i32, &str)> = vec![
        (batch_args(&input, &input), 1, "is the input folder"),
        (
            batch_args(&tmp.path().join("nowhere"), &tmp.path().join("o")),
            1,
            "no such folder",
        ),
        (
            [
                batch_args(&input, &tmp.path().join("o")),
                vec!["--shard".into(), "0/2".into()],
            ]
            .concat(),
            2,
            "I/N",
        ),
        (
            [
                batch_args(&input, &tmp.path().join("o")),
                ["--tasks", "summarize", "--summary-method", "llm"]
                    .map(String::from)
                    .to_vec(),
            ]
            .concat(),
            1,
            // The llm engine's model is not cached and the Hub is unreachable.
            "cannot download smollm2-1.7b-instruct-q4_k_m.gguf from http://127.0.0.1:9",
        ),
        (
            [
                batch_args(&input, &tmp.path().join("o")),
                vec!["--glob".into(), "[".into()],
            ]
            .concat(),
            1,
            "not a valid glob",
        ),
    ];
    for (args, code, needle) in cases {
        let r = run(tmp.path(), &args);
        assert_eq!(r.code, code, "{args:?}: {}", r.stderr);
        assert_eq!(r.stderr.trim_end().lines().count(), 1, "{}", r.stderr);
        assert!(r.stderr.contains(needle), "{needle}: {}", r.stderr);
    }
}

#[test]
fn an_output_folder_inside_the_input_is_not_read_back() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("articles");
    write(&input, "a.txt", b"Das ist ein Satz.");
    let out = input.join("english");
    for round in 0..2 {
        let r = run(tmp.path(), &batch_args(&input, &out));
        assert_eq!(r.code, 0, "{}", r.stderr);
        assert!(
            r.stderr.contains("1 input(s)"),
            "round {round}: {}",
            r.stderr
        );
    }
    assert_eq!(latest(&out).len(), 1);
}

#[test]
fn quantized_runs_are_told_apart_from_f32_ones() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("articles");
    many_articles(&input, 3);
    let out = tmp.path().join("out");
    let f32_args = batch_args(&input, &out);
    let first = run(tmp.path(), &f32_args);
    assert_eq!(first.code, 0, "{}", first.stderr);
    assert_eq!(count(&first.stderr, "files done"), 3, "{}", first.stderr);

    // Other weights, other translations: nothing counts as done yet.
    let mut q8_args = f32_args.clone();
    q8_args.extend(["--quantize".to_string(), "q8".to_string()]);
    let second = run(tmp.path(), &q8_args);
    assert_eq!(second.code, 0, "{}", second.stderr);
    assert_eq!(count(&second.stderr, "files done"), 3, "{}", second.stderr);
    for (path, record) in latest(&out) {
        let model = record["options"]["translation_model"]
            .as_str()
            .unwrap_or("");
        assert!(model.ends_with("(--quantize q8)"), "{path}: {model}");
    }

    // The same options again: all up to date.
    let third = run(tmp.path(), &q8_args);
    assert_eq!(third.code, 0, "{}", third.stderr);
    assert_eq!(count(&third.stderr, "files skipped"), 3, "{}", third.stderr);
}
