//! The batch driver with a stand-in translator (upper-cases each sentence),
//! so that every rule is checked quickly and exactly; the CLI tests run the
//! same paths with a real (tiny) Marian model.

use super::manifest::{read_jsonl, JsonlContents, Record, ResultRecord, Status};
use super::run::*;
use super::*;
use super::{DiscoverOptions, Shard};
use crate::io::ReadOptions;
use crate::pipeline::summarize::extractive::ExtractiveSummarizer;
use crate::pipeline::summarize::SummaryLength;
use crate::pipeline::translate::{Translator, Unit};
use crate::text::Lang;
use anyhow::{bail, Result};
use std::cell::RefCell;
use std::fs;
use std::path::Path;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Upper-cases sentences; remembers each model batch; fails on "BOOM";
/// sets `cancel_at` after that many batches; runs `during` at each batch.
struct Upper {
    batches: Rc<RefCell<Vec<Vec<String>>>>,
    cancel: Option<(usize, &'static AtomicBool)>,
    during: Option<Box<dyn Fn()>>,
}

impl Translator for Upper {
    fn model_id(&self) -> String {
        "upper".into()
    }
    fn encode(&self, text: &str) -> Result<Vec<u32>> {
        Ok(vec![0; text.split_whitespace().count()])
    }
    fn translate_encoded(&mut self, units: &[&Unit]) -> Result<Vec<String>> {
        let s: Vec<&str> = units.iter().map(|u| u.text.as_str()).collect();
        if let Some(during) = &self.during {
            during();
        }
        if s.iter().any(|x| x.contains("BOOM")) {
            bail!("the model choked");
        }
        self.batches
            .borrow_mut()
            .push(s.iter().map(|x| x.to_string()).collect());
        if let Some((after, flag)) = self.cancel {
            if self.batches.borrow().len() >= after {
                flag.store(true, Ordering::SeqCst);
            }
        }
        Ok(s.iter().map(|x| x.to_uppercase()).collect())
    }
    fn max_input_tokens(&self) -> usize {
        64
    }
    /// Any pass is one model call, so tests see the passes.
    fn batch_size(&self) -> usize {
        usize::MAX
    }
}

fn config(input: &Path, output: &Path) -> BatchConfig {
    BatchConfig {
        input_dir: input.to_path_buf(),
        output_dir: output.to_path_buf(),
        discover: DiscoverOptions {
            recursive: true,
            ..Default::default()
        },
        tasks: Tasks {
            translate: true,
            summarize: false,
        },
        output_format: OutputFormat::Files,
        input_format: None,
        source: None,
        read: ReadOptions::default(),
        force: false,
        shard: None,
        batch_units: 1000,
        jobs: 2,
        summary_length: SummaryLength::Sentences(1),
        translation_model: "upper".into(),
        summary_model: None,
        beams: None,
        max_length: None,
    }
}

struct Run {
    report: BatchReport,
    batches: Vec<Vec<String>>,
}

fn run_with(cfg: BatchConfig, cancel: Option<(usize, &'static AtomicBool)>) -> Run {
    run_full(cfg, cancel, None)
}

fn run_full(
    cfg: BatchConfig,
    cancel: Option<(usize, &'static AtomicBool)>,
    during: Option<Box<dyn Fn()>>,
) -> Run {
    let batches = Rc::new(RefCell::new(Vec::new()));
    let translator = Upper {
        batches: Rc::clone(&batches),
        cancel,
        during,
    };
    let summarize = cfg.tasks.summarize;
    let engines = Engines {
        translator: Lazy::ready(Box::new(translator)),
        summarizer: summarize.then(|| {
            Lazy::new(|| {
                Ok(Box::new(ExtractiveSummarizer::new()) as Box<dyn crate::pipeline::Summarizer>)
            })
        }),
    };
    let flag = cancel.map(|(_, f)| f).unwrap_or(&NEVER);
    let report = run_batch(cfg, engines, flag, &mut Silent).unwrap();
    let batches = batches.borrow().clone();
    Run { report, batches }
}

static NEVER: AtomicBool = AtomicBool::new(false);

fn run(cfg: BatchConfig) -> Run {
    run_with(cfg, None)
}

fn write(root: &Path, rel: &str, bytes: &[u8]) {
    let path = root.join(rel);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, bytes).unwrap();
}

fn manifest(out: &Path) -> Vec<Record> {
    let contents: JsonlContents<Record> = read_jsonl(&out.join("tolk-manifest.jsonl")).unwrap();
    assert!(contents.broken_lines.is_empty());
    contents.entries.into_iter().map(|(_, r)| r).collect()
}

/// Every file under `dir`, relative, sorted.
fn files_under(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = walkdir::WalkDir::new(dir)
        .into_iter()
        .flatten()
        .filter(|e| e.file_type().is_file())
        .map(|e| {
            e.path()
                .strip_prefix(dir)
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    names.sort();
    names
}

#[test]
fn a_tree_with_bad_files_then_resume_then_a_change() {
    let tmp = tempfile::tempdir().unwrap();
    let (input, out) = (tmp.path().join("in"), tmp.path().join("out"));
    write(&input, "a.txt", b"Eins ist gut. Zwei ist besser.\n");
    write(&input, "sub/b.md", b"# Titel\n\nText hier.\n");
    write(&input, "sub/deep/c.txt", b"Drei.\n");
    write(&input, "latin1.txt", b"Gr\xfc\xdfe\n");
    write(&input, "empty.txt", b"");
    write(&input, "blob.txt", b"ab\0cd");
    write(&input, "taken.txt", b"Schon da.\n");
    write(&out, "taken.txt.en.txt", b"the user's own file\n");

    let first = run(config(&input, &out));
    let r = &first.report;
    assert_eq!((r.done, r.skipped, r.failed), (3, 0, 4), "{:?}", r.failures);
    assert_eq!(
        fs::read_to_string(out.join("a.txt.en.txt")).unwrap(),
        "EINS IST GUT. ZWEI IST BESSER.\n"
    );
    // Markdown markup is kept, only the prose translated.
    assert_eq!(
        fs::read_to_string(out.join("sub/b.md.en.txt")).unwrap(),
        "# TITEL\n\nTEXT HIER.\n"
    );
    assert_eq!(
        fs::read_to_string(out.join("taken.txt.en.txt")).unwrap(),
        "the user's own file\n"
    );
    let reasons: Vec<(String, String)> = r.failures.clone();
    let reason = |name: &str| {
        reasons
            .iter()
            .find(|(p, _)| p == name)
            .map(|(_, e)| e.clone())
            .unwrap_or_default()
    };
    assert!(reason("latin1.txt").contains("invalid UTF-8"));
    assert!(reason("empty.txt").contains("empty"));
    assert!(reason("blob.txt").contains("binary"));
    assert!(reason("taken.txt").contains("not written by tolk"));

    let records = manifest(&out);
    assert_eq!(records.len(), 7);
    let a = records.iter().find(|r| r.path == "a.txt").unwrap();
    assert_eq!(a.status, Status::Done);
    assert_eq!(a.outputs.len(), 1);
    assert_eq!(a.outputs[0].path, "a.txt.en.txt");
    assert_eq!(a.sentences, 2);
    assert_eq!((a.words_in, a.words_out), (6, 6));
    assert_eq!(a.models.translation.as_deref(), Some("upper"));
    assert!(a.sha256.is_some() && a.key.is_some() && a.options.is_some());

    // Resume: the done files are skipped without a model call; the failed
    // ones fail again.
    let second = run(config(&input, &out));
    let r = &second.report;
    assert_eq!((r.done, r.skipped, r.failed), (0, 3, 4));
    assert!(second.batches.is_empty());

    // A changed input, a deleted output and a changed option are redone.
    write(&input, "a.txt", b"Eins ist anders.\n");
    fs::remove_file(out.join("sub/deep/c.txt.en.txt")).unwrap();
    let third = run(config(&input, &out));
    assert_eq!((third.report.done, third.report.skipped), (2, 1));
    let mut cfg = config(&input, &out);
    cfg.beams = Some(2);
    assert_eq!(run(cfg).report.done, 3);

    // --force redoes everything and overwrites the foreign output.
    let mut cfg = config(&input, &out);
    cfg.force = true;
    let forced = run(cfg);
    assert_eq!((forced.report.done, forced.report.failed), (4, 3));
    assert_eq!(
        fs::read_to_string(out.join("taken.txt.en.txt")).unwrap(),
        "SCHON DA.\n"
    );
    assert!(
        files_under(&out).iter().all(|f| !f.contains(".tolk-part")),
        "{:?}",
        files_under(&out)
    );
}

#[test]
fn sentences_of_many_files_share_model_batches() {
    let tmp = tempfile::tempdir().unwrap();
    let (input, out) = (tmp.path().join("in"), tmp.path().join("out"));
    for i in 0..10 {
        write(
            &input,
            &format!("f{i}.txt"),
            format!("Datei {i} eins. Datei {i} zwei ist länger.").as_bytes(),
        );
    }
    let run = run(config(&input, &out));
    assert_eq!(run.report.done, 10);
    // 20 sentences in one pass: one model call with sentences of all files.
    assert_eq!(run.batches.len(), 1, "{:?}", run.batches);
    assert_eq!(run.batches[0].len(), 20);
    for i in 0..10 {
        assert_eq!(
            fs::read_to_string(out.join(format!("f{i}.txt.en.txt"))).unwrap(),
            format!("DATEI {i} EINS. DATEI {i} ZWEI IST LÄNGER.\n")
        );
    }
}

#[test]
fn a_sentence_that_breaks_the_model_fails_only_its_file() {
    let tmp = tempfile::tempdir().unwrap();
    let (input, out) = (tmp.path().join("in"), tmp.path().join("out"));
    write(&input, "good1.txt", b"Gut.");
    write(&input, "bad.txt", b"Ein BOOM hier.");
    write(&input, "good2.txt", b"Auch gut.");
    let run = run(config(&input, &out));
    assert_eq!((run.report.done, run.report.failed), (2, 1));
    assert_eq!(run.report.failures[0].0, "bad.txt");
    assert!(run.report.failures[0].1.contains("choked"));
    assert!(out.join("good2.txt.en.txt").exists());
    assert!(!out.join("bad.txt.en.txt").exists());
}

#[test]
fn an_interrupt_abandons_the_current_batch_and_resume_finishes() {
    static CANCEL: AtomicBool = AtomicBool::new(false);
    let tmp = tempfile::tempdir().unwrap();
    let (input, out) = (tmp.path().join("in"), tmp.path().join("out"));
    for i in 0..6 {
        write(
            &input,
            &format!("f{i}.txt"),
            format!("Satz {i}.").as_bytes(),
        );
    }
    let mut cfg = config(&input, &out);
    // One file per pass; the flag is raised during the second pass.
    cfg.batch_units = 1;
    let first = run_with(cfg.clone(), Some((2, &CANCEL)));
    assert!(first.report.interrupted);
    // Pass 2 had already been translated when the flag was raised, so it is
    // written; pass 3 is refused at its first model call and abandoned.
    assert_eq!(first.report.done, 2);
    assert_eq!(manifest(&out).len(), 2);
    assert_eq!(
        files_under(&out),
        [
            ".tolk-batch.lock",
            "f0.txt.en.txt",
            "f1.txt.en.txt",
            "tolk-manifest.jsonl"
        ]
    );

    CANCEL.store(false, Ordering::SeqCst);
    let second = run(cfg);
    assert!(!second.report.interrupted);
    assert_eq!((second.report.done, second.report.skipped), (4, 2));
    assert_eq!(second.batches.len(), 4);
}

#[test]
fn jsonl_results_resume_and_drop_unvouched_lines() {
    let tmp = tempfile::tempdir().unwrap();
    let (input, out) = (tmp.path().join("in"), tmp.path().join("out"));
    write(&input, "a.txt", b"Eins. Zwei. Drei ist gut.");
    write(&input, "b.txt", b"Vier.");
    let mut cfg = config(&input, &out);
    cfg.output_format = OutputFormat::Jsonl;
    cfg.tasks.summarize = true;
    cfg.summary_model = Some("extractive-textrank".into());
    let first = run(cfg.clone());
    assert_eq!(first.report.done, 2);
    let results_path = out.join("tolk-results.jsonl");
    let results: JsonlContents<ResultRecord> = read_jsonl(&results_path).unwrap();
    assert_eq!(results.entries.len(), 2);
    let a = &results.entries[0].1;
    assert_eq!(a.path, "a.txt");
    assert_eq!(a.translation.as_deref(), Some("EINS. ZWEI. DREI IST GUT."));
    assert_eq!(a.summary.as_ref().map(|s| s.split(". ").count()), Some(1));
    assert_eq!(a.models.summary.as_deref(), Some("extractive-textrank"));
    // No per-file outputs in this format.
    assert!(!out.join("a.txt.en.txt").exists());

    // A line appended just before a crash, with no manifest record behind it.
    let mut orphan = a.clone();
    orphan.path = "ghost.txt".into();
    let mut text = fs::read_to_string(&results_path).unwrap();
    text.push_str(&serde_json::to_string(&orphan).unwrap());
    text.push('\n');
    fs::write(&results_path, text).unwrap();

    let second = run(cfg);
    assert_eq!((second.report.done, second.report.skipped), (0, 2));
    let results: JsonlContents<ResultRecord> = read_jsonl(&results_path).unwrap();
    let paths: Vec<&str> = results
        .entries
        .iter()
        .map(|(_, r)| r.path.as_str())
        .collect();
    assert_eq!(paths, ["a.txt", "b.txt"]);
}

#[test]
fn shards_split_the_work_and_merge() {
    let tmp = tempfile::tempdir().unwrap();
    let (input, out) = (tmp.path().join("in"), tmp.path().join("out"));
    for i in 0..12 {
        write(
            &input,
            &format!("d{}/f{i}.txt", i % 3),
            format!("Satz {i}.").as_bytes(),
        );
    }
    let mut done = 0;
    for index in 1..=3 {
        let mut cfg = config(&input, &out);
        cfg.shard = Some(Shard { index, count: 3 });
        let r = run(cfg).report;
        assert_eq!(r.failed, 0);
        done += r.done;
    }
    assert_eq!(done, 12);
    let report = super::merge_manifests(&out).unwrap();
    assert_eq!((report.shards, report.records), (3, 12));
    // The merged manifest makes an unsharded resume a no-op.
    let r = run(config(&input, &out)).report;
    assert_eq!((r.done, r.skipped), (0, 12));
}

#[test]
fn the_output_folder_may_not_be_the_input_and_is_skipped_inside_it() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("in");
    write(&input, "a.txt", b"Eins.");
    let batches = Rc::new(RefCell::new(Vec::new()));
    let engines = Engines {
        translator: Lazy::ready(Box::new(Upper {
            batches,
            cancel: None,
            during: None,
        })),
        summarizer: None,
    };
    let err = run_batch(config(&input, &input), engines, &NEVER, &mut Silent).unwrap_err();
    assert!(err.to_string().contains("is the input folder"), "{err}");

    let out = input.join("en");
    let first = run(config(&input, &out));
    assert_eq!(first.report.done, 1);
    // The outputs (`a.txt.en.txt` matches *.txt) are not read back as inputs.
    let second = run(config(&input, &out));
    assert_eq!((second.report.total, second.report.skipped), (1, 1));
}

#[test]
fn an_input_that_changes_during_the_run_is_translated_as_read_and_redone_later() {
    let tmp = tempfile::tempdir().unwrap();
    let (input, out) = (tmp.path().join("in"), tmp.path().join("out"));
    write(&input, "a.txt", b"Erste Fassung.");
    let path = input.join("a.txt");
    let edit: Box<dyn Fn()> = Box::new(move || {
        // A different size, so the change shows even within one mtime tick.
        fs::write(&path, "Zweite, längere Fassung.").unwrap();
    });
    let first = run_full(config(&input, &out), None, Some(edit));
    assert_eq!(first.report.done, 1);
    assert_eq!(
        fs::read_to_string(out.join("a.txt.en.txt")).unwrap(),
        "ERSTE FASSUNG.\n"
    );
    let record = &manifest(&out)[0];
    assert!(record.changed_during_run);
    assert_eq!(
        record.sha256.as_deref(),
        Some(super::outputs::sha256_hex(b"Erste Fassung.").as_str())
    );
    let second = run(config(&input, &out));
    assert_eq!(second.report.done, 1);
    assert_eq!(
        fs::read_to_string(out.join("a.txt.en.txt")).unwrap(),
        "ZWEITE, LÄNGERE FASSUNG.\n"
    );
}

#[test]
fn summarize_only_writes_only_summaries() {
    let tmp = tempfile::tempdir().unwrap();
    let (input, out) = (tmp.path().join("in"), tmp.path().join("out"));
    write(
        &input,
        "a.txt",
        b"Eins ist gut. Zwei ist gut. Drei ist gut.",
    );
    let mut cfg = config(&input, &out);
    cfg.tasks = Tasks {
        translate: false,
        summarize: true,
    };
    cfg.summary_model = Some("extractive-textrank".into());
    let r = run(cfg);
    assert_eq!(r.report.done, 1);
    assert_eq!(
        files_under(&out),
        [
            ".tolk-batch.lock",
            "a.txt.summary.txt",
            "tolk-manifest.jsonl"
        ]
    );
    let summary = fs::read_to_string(out.join("a.txt.summary.txt")).unwrap();
    // One sentence of the (upper-cased) translation.
    assert!(summary.ends_with("IST GUT.\n"), "{summary:?}");
    assert_eq!(summary.matches('.').count(), 1, "{summary:?}");
}

#[test]
fn english_inputs_are_summarized_as_they_are_not_translated() {
    let tmp = tempfile::tempdir().unwrap();
    let (input, out) = (tmp.path().join("in"), tmp.path().join("out"));
    write(&input, "de.txt", b"Das ist gut. Es ist sehr gut.");
    let english = "The council met on Monday. It was the first meeting of the year.";
    write(&input, "en.txt", english.as_bytes());
    let mut cfg = config(&input, &out);
    cfg.tasks = Tasks {
        translate: true,
        summarize: true,
    };
    let r = run(cfg.clone());
    assert_eq!(r.report.done, 2);
    // Only the German sentences reached the model.
    let sent: Vec<String> = r.batches.concat();
    assert_eq!(sent.len(), 2, "{sent:?}");
    assert!(sent.iter().all(|s| !s.contains("council")), "{sent:?}");
    assert_eq!(
        fs::read_to_string(out.join("en.txt.en.txt")).unwrap(),
        format!("{english}\n")
    );
    let summary = fs::read_to_string(out.join("en.txt.summary.txt")).unwrap();
    assert!(
        summary.starts_with("The "),
        "the original, not upper-cased: {summary:?}"
    );

    // --source de: every input is German, as before detection existed.
    let forced = tmp.path().join("forced");
    cfg.output_dir = forced.clone();
    cfg.source = Some(Lang::De);
    let r = run(cfg);
    assert_eq!(r.batches.concat().len(), 4);
    assert_eq!(
        fs::read_to_string(forced.join("en.txt.en.txt")).unwrap(),
        format!("{}\n", english.to_uppercase())
    );
}

#[test]
fn a_run_of_english_inputs_never_loads_the_translator() {
    let tmp = tempfile::tempdir().unwrap();
    let (input, out) = (tmp.path().join("in"), tmp.path().join("out"));
    write(&input, "en.txt", b"This is the text. It is in English.");
    let mut cfg = config(&input, &out);
    cfg.tasks = Tasks {
        translate: false,
        summarize: true,
    };
    let engines = Engines {
        translator: Lazy::new(|| bail!("the translator must not load")),
        summarizer: Some(Lazy::new(|| {
            Ok(Box::new(ExtractiveSummarizer::new()) as Box<dyn crate::pipeline::Summarizer>)
        })),
    };
    let report = run_batch(cfg, engines, &NEVER, &mut Silent).unwrap();
    assert_eq!(
        (report.done, report.failed),
        (1, 0),
        "{:?}",
        report.failures
    );
}
