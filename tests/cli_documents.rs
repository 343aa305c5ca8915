//! Documents in, documents out, end to end with the tiny fixture model
//! (whose translations are noise: these tests prove the mechanisms —
//! structure, timings, protected spans, aligned records — not the model).

mod common;

use assert_cmd::Command;
use std::path::{Path, PathBuf};

fn model() -> PathBuf {
    common::fixture("marian-tiny")
}

fn tolk(home: &Path) -> Command {
    Command::from_std(common::isolated_tolk(home))
}

/// Runs `tolk translate --model-dir <tiny> ARGS`, expecting success; stdout.
fn translate(home: &Path, args: &[&str], input: &Path) -> String {
    let out = tolk(home)
        .args(["translate", "--beams", "1", "--model-dir"])
        .arg(model())
        .args(args)
        .arg(input)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    String::from_utf8(out.stdout).unwrap()
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

const SPANS: &[&str] = &[
    "https://de.wikipedia.org/wiki/Passau?x=1&y=2",
    "helfer@passau.de",
    "`cargo build --release`",
    "/etc/tolk/config.toml",
    "9,20 m",
    "24 °C",
    "😀",
    "🇩🇪",
];

const PROTECTED: &str =
    "Mehr unter https://de.wikipedia.org/wiki/Passau?x=1&y=2 oder per E-Mail an helfer@passau.de. \
Starte `cargo build --release` und lies /etc/tolk/config.toml.\n\n\
Der Pegel lag bei 9,20 m, es waren 24 °C 😀. Grüße aus 🇩🇪!\n";

#[test]
fn protected_spans_come_through_byte_identical_in_every_format() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path();
    let plain = write(home, "a.txt", PROTECTED);
    let markdown = write(home, "a.md", PROTECTED);
    let html = write(
        home,
        "a.html",
        &format!(
            "<p>{}</p>",
            PROTECTED.replace("\n\n", "</p><p>").replace('&', "&amp;")
        ),
    );
    let srt = write(
        home,
        "a.srt",
        &format!(
            "1\n00:00:01,000 --> 00:00:02,000\n{}\n",
            PROTECTED
                .replace("\n\n", "\n\n2\n00:00:03,000 --> 00:00:04,000\n")
                .trim_end()
        ),
    );
    for (input, args) in [
        (&plain, vec![]),
        (&markdown, vec![]),
        (&srt, vec![]),
        (&plain, vec!["--format", "jsonl"]),
        (&plain, vec!["--format", "tsv"]),
    ] {
        let mut out = translate(home, &args, input);
        // Aligned output also holds the sources: look at translations only.
        if args.contains(&"jsonl") {
            out = out
                .lines()
                .map(|l| {
                    let r: serde_json::Value = serde_json::from_str(l).unwrap();
                    r["translation"].as_str().unwrap().to_string()
                })
                .collect::<Vec<_>>()
                .join("\n");
        } else if args.contains(&"tsv") {
            out = out
                .lines()
                .skip(1)
                .map(|l| l.rsplit('\t').next().unwrap().to_string())
                .collect::<Vec<_>>()
                .join("\n");
        }
        for span in SPANS {
            assert_eq!(
                out.matches(span).count(),
                1,
                "{span:?} not exactly once in the translation of {} {args:?}:\n{out}",
                input.display()
            );
        }
    }
    // In HTML the URL's & is written as an entity, as it was in the input.
    let out = translate(home, &[], &html);
    for span in SPANS {
        let span = span.replace('&', "&amp;");
        assert_eq!(out.matches(&span).count(), 1, "{span:?} in {out}");
    }
}

#[test]
fn jsonl_and_tsv_give_one_aligned_record_per_sentence() {
    let tmp = tempfile::tempdir().unwrap();
    let sample = common::repo_root().join("samples/de_article.txt");
    let out = translate(tmp.path(), &["--format", "jsonl"], &sample);
    let records: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // Counted by hand in src/text/sentences.rs: 21 sentences in 5 paragraphs.
    assert_eq!(records.len(), 21);
    let german = std::fs::read_to_string(&sample).unwrap();
    let paragraphs: Vec<String> = german
        .split("\n\n")
        .filter(|p| !p.trim().is_empty())
        .map(|p| p.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    for (p, paragraph) in paragraphs.iter().enumerate() {
        let sources: Vec<&str> = records
            .iter()
            .filter(|r| r["paragraph"] == p)
            .map(|r| r["source"].as_str().unwrap())
            .collect();
        assert_eq!(&sources.join(" "), paragraph, "paragraph {p}");
    }
    let mut last = (0, 0);
    for (i, r) in records.iter().enumerate() {
        let key = (
            r["paragraph"].as_u64().unwrap(),
            r["sentence"].as_u64().unwrap(),
        );
        if i > 0 {
            assert!(
                key == (last.0, last.1 + 1) || key == (last.0 + 1, 0),
                "{last:?} then {key:?}"
            );
        }
        last = key;
        let score = r["score"].as_f64().unwrap();
        assert!(score < 0.0 && score.is_finite(), "{r}");
        assert!(r["translation"].is_string() && r["hit_max_length"].is_boolean());
        assert_eq!(r["split"], false);
    }
    let tsv = translate(tmp.path(), &["--format", "tsv"], &sample);
    let lines: Vec<&str> = tsv.lines().collect();
    assert_eq!(
        lines[0],
        "paragraph\tsentence\tscore\thit_max_length\tsplit\tsource\ttranslation"
    );
    assert_eq!(lines.len(), 22);
    assert!(lines[1..].iter().all(|l| l.split('\t').count() == 7));
}

#[test]
fn jsonl_flags_outputs_cut_at_max_length() {
    let tmp = tempfile::tempdir().unwrap();
    let input = write(
        tmp.path(),
        "a.txt",
        "Der Pegel der Donau sinkt seit Dienstag langsam wieder.",
    );
    let out = translate(
        tmp.path(),
        &["--format", "jsonl", "--max-length", "3"],
        &input,
    );
    let r: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(r["hit_max_length"], true, "{r}");
}

/// Tag names of a page in document order (a crude but independent reader).
fn tags(html: &str) -> Vec<String> {
    html.split('<')
        .skip(1)
        .filter(|t| !t.starts_with('!') && !t.starts_with('/'))
        .map(|t| {
            t.chars()
                .take_while(|c| c.is_ascii_alphanumeric())
                .collect::<String>()
                .to_lowercase()
        })
        .collect()
}

fn attr_values(html: &str, name: &str) -> Vec<String> {
    let key = format!(" {name}=\"");
    html.match_indices(&key)
        .map(|(i, _)| {
            let rest = &html[i + key.len()..];
            rest[..rest.find('"').unwrap()].to_string()
        })
        .collect()
}

#[test]
fn a_news_page_keeps_its_markup_links_and_untranslated_parts() {
    let tmp = tempfile::tempdir().unwrap();
    let page = common::fixture("pages/de_news.html");
    let german = std::fs::read_to_string(&page).unwrap();
    let out_file = tmp.path().join("out/page.en.html");
    translate(tmp.path(), &["-o", out_file.to_str().unwrap()], &page);
    let english = std::fs::read_to_string(&out_file).unwrap();
    // Every element is still there, in order; links keep their targets.
    assert_eq!(tags(&english), tags(&german));
    assert_eq!(attr_values(&english, "href"), attr_values(&german, "href"));
    assert_eq!(attr_values(&english, "src"), attr_values(&german, "src"));
    assert!(english.starts_with("<!DOCTYPE html><html lang=\"en\" class=\"no-js\">"));
    assert!(english.contains("<meta charset=\"utf-8\">"));
    for kept in [
        "<style>.teaser { display: none; } body { font-family: sans-serif; }</style>",
        "var Titel = \"Nicht übersetzen\";",
        "<!-- Tracking: nicht übersetzen -->",
        "https://www.passau.de/hochwasser",
        "helfer@passau.de",
        "9,20 m",
        "24 °C",
    ] {
        assert!(english.contains(kept), "lost {kept:?}");
    }
    // Text, alt, title, placeholder and the description are translated.
    for gone in [
        "Nach tagelangem Regen",
        "Überflutete Uferpromenade",
        "Suche nach Artikeln",
        "In Passau sinkt der Pegel der Donau langsam.",
        "Die Innpromenade am Montag",
    ] {
        assert!(!english.contains(gone), "untranslated {gone:?}");
    }
    // Well-formed: every inline element that was closed is closed.
    for t in ["a", "strong", "em", "span", "p", "li", "h1", "h2"] {
        assert_eq!(
            english.matches(&format!("<{t}>")).count() + english.matches(&format!("<{t} ")).count(),
            english.matches(&format!("</{t}>")).count(),
            "<{t}> not balanced"
        );
    }
}

const SRT: &str = "1\n00:00:01,000 --> 00:00:03,000\nGestern bin ich mit meinem Bruder\n\n2\n00:00:03,100 --> 00:00:05,000\nnach Hause gegangen.\n\n3\n00:00:06,000 --> 00:00:08,000\n<i>Es regnete.</i>\n";

#[test]
fn subtitles_keep_their_timings() {
    let tmp = tempfile::tempdir().unwrap();
    let srt = write(tmp.path(), "a.srt", SRT);
    let out = translate(tmp.path(), &[], &srt);
    let skeleton = |t: &str| -> Vec<String> {
        t.lines()
            .filter(|l| l.contains("-->") || l.trim().parse::<u32>().is_ok() || l.is_empty())
            .map(String::from)
            .collect()
    };
    assert_eq!(skeleton(&out), skeleton(SRT));
    assert!(!out.contains("Gestern"));
    assert!(out.contains("<i>") && out.contains("</i>"));
    // VTT by content with --input-format.
    let vtt = write(
        tmp.path(),
        "a.txt",
        "WEBVTT\n\n00:01.000 --> 00:02.000 align:start\nGuten Tag.\n",
    );
    let out = translate(tmp.path(), &["--input-format", "vtt"], &vtt);
    assert!(
        out.starts_with("WEBVTT\n\n00:01.000 --> 00:02.000 align:start\n"),
        "{out}"
    );
}

#[test]
fn invalid_subtitles_fail_alone_with_the_line_number_and_write_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let bad = write(
        tmp.path(),
        "bad.srt",
        "1\n00:00:01,000 --> 00:00:02,000\nGut.\n\n2\n00:00:03 --> 00:00:04\nNein.\n",
    );
    let out_file = tmp.path().join("bad.en.srt");
    let out = tolk(tmp.path())
        .args(["translate", "--model-dir"])
        .arg(model())
        .arg(&bad)
        .arg("-o")
        .arg(&out_file)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("line 6:"), "{stderr}");
    assert!(!out_file.exists());
}

#[test]
fn max_bytes_holds_for_html_too() {
    let tmp = tempfile::tempdir().unwrap();
    let page = common::fixture("pages/de_news.html");
    let out = tolk(tmp.path())
        .args(["translate", "--max-bytes", "1000", "--model-dir"])
        .arg(model())
        .arg(&page)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("over the limit of 1000 bytes"), "{stderr}");
}

#[test]
fn summarize_reads_the_article_of_a_page_not_its_navigation() {
    let tmp = tempfile::tempdir().unwrap();
    let page = common::fixture("pages/en_blog.html");
    let out = tolk(tmp.path())
        .args(["summarize", "--method", "extractive", "--length", "long"])
        .arg(&page)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let summary = String::from_utf8(out.stdout).unwrap();
    assert!(summary.contains("loaf"), "{summary}");
    for furniture in ["newsletter", "Copyright", "Popular posts", "<p>", "Shop"] {
        assert!(!summary.contains(furniture), "{furniture:?} in {summary}");
    }

    // The same page on standard input: plain text unless --input-format says html.
    let html = std::fs::read_to_string(&page).unwrap();
    let stdin_summary = |flags: &[&str]| {
        let out = tolk(tmp.path())
            .args(["summarize", "--method", "extractive", "--length", "long"])
            .args(flags)
            .arg("-")
            .write_stdin(html.clone())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    assert_eq!(stdin_summary(&["--input-format", "html"]), summary);
    assert_ne!(stdin_summary(&[]), summary);
}

#[test]
fn batch_jsonl_has_the_aligned_sentences_and_reads_html_and_subtitles() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("in");
    std::fs::create_dir_all(&input).unwrap();
    write(
        &input,
        "a.txt",
        "Der Pegel sinkt. Siehe https://x.de/a?b=1 für mehr.\n\nDas ist gut.\n",
    );
    write(&input, "b.html", "<p>Das ist <b>sehr</b> gut.</p>");
    write(&input, "c.srt", SRT);
    let out_dir = tmp.path().join("out");
    let out = tolk(tmp.path())
        .args([
            "batch",
            "--beams",
            "1",
            "--format",
            "jsonl",
            "--glob",
            "*.txt",
            "--glob",
            "*.html",
            "--glob",
            "*.srt",
            "--model-dir",
        ])
        .arg(model())
        .arg(&input)
        .arg("-o")
        .arg(&out_dir)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let results = std::fs::read_to_string(out_dir.join("tolk-results.jsonl")).unwrap();
    let records: Vec<serde_json::Value> = results
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(records.len(), 3, "{results}");
    let a = records.iter().find(|r| r["path"] == "a.txt").unwrap();
    let sentences = a["sentences"].as_array().unwrap();
    let sources: Vec<&str> = sentences
        .iter()
        .map(|s| s["source"].as_str().unwrap())
        .collect();
    assert_eq!(
        sources,
        vec![
            "Der Pegel sinkt.",
            "Siehe https://x.de/a?b=1 für mehr.",
            "Das ist gut."
        ]
    );
    assert_eq!(sentences[2]["paragraph"], 1);
    assert!(sentences[1]["translation"]
        .as_str()
        .unwrap()
        .contains("https://x.de/a?b=1"));
    assert!(sentences.iter().all(|s| s["score"].is_number()));
    let b = records.iter().find(|r| r["path"] == "b.html").unwrap();
    let html = b["translation"].as_str().unwrap();
    assert!(
        html.starts_with("<p>") && html.contains("<b>") && html.contains("</b>"),
        "{html}"
    );
    let c = records.iter().find(|r| r["path"] == "c.srt").unwrap();
    assert!(c["translation"]
        .as_str()
        .unwrap()
        .contains("00:00:03,100 --> 00:00:05,000\n"));

    // As files, pages and subtitles keep their extension (and their structure).
    let files_dir = tmp.path().join("files");
    let out = tolk(tmp.path())
        .args([
            "batch",
            "--beams",
            "1",
            "--glob",
            "*.html",
            "--glob",
            "*.srt",
            "--model-dir",
        ])
        .arg(model())
        .arg(&input)
        .arg("-o")
        .arg(&files_dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let page = std::fs::read_to_string(files_dir.join("b.html.en.html")).unwrap();
    // (a file ends with a newline; a JSON field holds the text as it is)
    assert_eq!(page.trim_end(), html.trim_end());
    let subs = std::fs::read_to_string(files_dir.join("c.srt.en.srt")).unwrap();
    assert_eq!(
        subs.trim_end(),
        c["translation"].as_str().unwrap().trim_end()
    );
    assert!(!files_dir.join("b.html.en.txt").exists());
}
