//! Parity of tolk's T5 stack with `transformers` on the tiny fixture models
//! (tests/fixtures/t5-tiny: Flan-T5 style, gated-gelu, tokenizer.json;
//! tests/fixtures/t5-tiny-relu: T5 style, relu, tied output, spiece.model
//! only; both made by scripts/gen_t5_fixture.py): position buckets,
//! tokenizer ids, greedy token ids, texts and log-probabilities, padded
//! batches, the n-gram ban, beam search; then the summarizer's behaviour: map-reduce of
//! long inputs, streaming, empty input, and clear errors for broken models.

mod common;

use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use tolk::generation::Hypothesis;
use tolk::hub::{resolve_needs, HubOptions, ModelFiles, ModelSource, T5_FILES};
use tolk::models::t5::relative_position_bucket;
use tolk::pipeline::summarize::t5::{T5Options, T5Summarizer};
use tolk::pipeline::{Summarizer, SummaryLength, SummaryRequest};
use tolk::text::Lang;

#[derive(Deserialize)]
struct Reference {
    max_new_tokens: usize,
    prefix: String,
    models: BTreeMap<String, ModelReference>,
    tokenizer_cases: Vec<TokCase>,
    buckets: Buckets,
}

#[derive(Deserialize)]
struct ModelReference {
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    text: String,
    input_ids: Vec<u32>,
    greedy_ids: Vec<u32>,
    greedy_text: String,
    greedy_logprobs: Vec<f32>,
    greedy_nr3_ids: Vec<u32>,
    beam4_ids: Vec<u32>,
    beam4_text: String,
    beam4_score: f32,
}

#[derive(Deserialize)]
struct TokCase {
    text: String,
    ids: Vec<u32>,
    slow_ids: Vec<u32>,
    decoded: String,
}

#[derive(Deserialize)]
struct Buckets {
    relative_positions: Vec<i64>,
    bidirectional: Vec<u32>,
    unidirectional: Vec<u32>,
}

const MODELS: [&str; 2] = ["t5-tiny", "t5-tiny-relu"];
const EOS: u32 = 1;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn reference() -> Reference {
    let path = fixtures().join("t5-tiny-reference.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn files_in(dir: &Path) -> anyhow::Result<ModelFiles> {
    resolve_needs(
        &ModelSource::Dir(dir.to_path_buf()),
        T5_FILES,
        &HubOptions::default(),
    )
}

/// The settings the reference was generated with: greedy, no n-gram ban.
fn parity_options() -> T5Options {
    T5Options {
        num_beams: Some(1),
        no_repeat_ngram_size: Some(0),
        max_new_tokens: Some(reference().max_new_tokens),
        ..Default::default()
    }
}

fn load_with(name: &str, opts: T5Options) -> T5Summarizer {
    let files = files_in(&fixtures().join(name)).unwrap();
    T5Summarizer::load(&files, &common::test_device(), opts).unwrap()
}

fn load(name: &str) -> T5Summarizer {
    load_with(name, parity_options())
}

/// `transformers` sequences start with the decoder start token.
fn generated(reference_ids: &[u32]) -> &[u32] {
    &reference_ids[1..]
}

fn assert_logprobs_close(got: &Hypothesis, want: &[f32], what: &str) {
    assert_eq!(got.token_logprobs.len(), want.len(), "{what}");
    for (step, (g, w)) in got.token_logprobs.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() < 1e-3,
            "{what}, step {step}: log-prob {g} vs transformers {w}"
        );
    }
}

#[test]
fn fixture_covers_the_hard_cases() {
    let r = reference();
    let limit = r.max_new_tokens + 1;
    for name in MODELS {
        let cases = &r.models[name].cases;
        let stops = cases
            .iter()
            .filter(|c| c.greedy_ids.len() < limit && c.greedy_ids.last() == Some(&EOS))
            .count();
        let full = cases.iter().filter(|c| c.greedy_ids.len() == limit).count();
        assert!(stops >= 2 && full >= 2, "{name}: {stops} stop, {full} full");
        // Long enough to reach the decoder's logarithmic buckets (>= 16).
        assert!(cases.iter().any(|c| c.greedy_ids.len() > 17));
        assert!(cases.iter().any(|c| c.greedy_nr3_ids != c.greedy_ids));
    }
    let t = load("t5-tiny");
    // An input with characters the vocabulary lacks (<unk> = 2).
    assert!(r.models["t5-tiny"]
        .cases
        .iter()
        .any(|c| c.input_ids.contains(&2)));
    // The embedding table is larger than the tokenizer's vocabulary.
    assert!(t.model().config().vocab_size > 320);
}

#[test]
fn position_buckets_match_transformers() {
    let b = reference().buckets;
    for (i, &rel) in b.relative_positions.iter().enumerate() {
        assert_eq!(
            relative_position_bucket(rel, true, 32, 128),
            b.bidirectional[i],
            "bidirectional bucket of {rel}"
        );
        assert_eq!(
            relative_position_bucket(rel, false, 32, 128),
            b.unidirectional[i],
            "unidirectional bucket of {rel}"
        );
    }
}

/// Whether the text holds a special token literally (tolk drops those,
/// where `transformers` keeps them).
fn has_special_literal(text: &str) -> bool {
    ["</s>", "<pad>", "<unk>", "<extra_id_"]
        .iter()
        .any(|s| text.contains(s))
}

/// T5's special ids other than `<unk>` (2): pad, eos, and the sentinels
/// that follow the 300 pieces of the fixture's SentencePiece model.
fn is_control(id: u32) -> bool {
    !(2..300).contains(&id)
}

fn check_tokenizer(name: &str, want_ids: impl Fn(&TokCase) -> &Vec<u32>) {
    let r = reference();
    let t = load(name);
    let tok = t.tokenizer();
    let mut literal_cases = 0;
    for case in &r.tokenizer_cases {
        let ids = tok.encode(&case.text).unwrap();
        if has_special_literal(&case.text) {
            literal_cases += 1;
            // Only the final </s> is special; the literals are dropped.
            let (last, body) = ids.split_last().unwrap();
            assert_eq!(*last, EOS);
            assert!(
                !body.iter().any(|&id| is_control(id)),
                "{name}: {:?} → {ids:?}",
                case.text
            );
            if name == "t5-tiny" {
                // Otherwise exactly what transformers gives.
                let (want_last, want_body) = want_ids(case).split_last().unwrap();
                let kept: Vec<u32> = want_body
                    .iter()
                    .copied()
                    .filter(|&id| !is_control(id))
                    .collect();
                assert!(kept.len() < want_body.len());
                assert_eq!(
                    (body, last),
                    (&kept[..], want_last),
                    "{name}: {:?}",
                    case.text
                );
            }
            continue;
        }
        assert_eq!(&ids, want_ids(case), "{name}: ids of {:?}", case.text);
        assert_eq!(
            tok.decode(&ids).unwrap(),
            case.decoded,
            "{name}: decode of {:?}",
            case.text
        );
    }
    assert_eq!(literal_cases, 1);
    // The inputs of the generation cases as well.
    for c in &r.models[name].cases {
        assert_eq!(
            tok.encode(&c.text).unwrap(),
            c.input_ids,
            "{name}: {:?}",
            c.text
        );
    }
}

#[test]
fn tokenizer_json_matches_t5_tokenizer_fast() {
    check_tokenizer("t5-tiny", |c| &c.ids);
}

#[test]
fn spiece_model_matches_sentencepiece() {
    check_tokenizer("t5-tiny-relu", |c| &c.slow_ids);
}

#[test]
fn greedy_matches_transformers_one_by_one() {
    let r = reference();
    for name in MODELS {
        let t = load(name);
        for c in &r.models[name].cases {
            let what = format!("{name}: {:?}", c.text);
            let hyp = &t
                .generate_ids(std::slice::from_ref(&c.input_ids), r.max_new_tokens, None)
                .unwrap()[0];
            assert_eq!(hyp.tokens, generated(&c.greedy_ids), "greedy ids, {what}");
            assert_eq!(
                t.tokenizer().decode(&hyp.tokens).unwrap(),
                c.greedy_text,
                "text, {what}"
            );
            assert_logprobs_close(hyp, &c.greedy_logprobs, &what);
        }
    }
}

#[test]
fn a_padded_batch_gives_the_same_ids() {
    let r = reference();
    for name in MODELS {
        let t = load(name);
        let cases = &r.models[name].cases;
        let inputs: Vec<Vec<u32>> = cases.iter().map(|c| c.input_ids.clone()).collect();
        let hyps = t.generate_ids(&inputs, r.max_new_tokens, None).unwrap();
        for (c, hyp) in cases.iter().zip(&hyps) {
            assert_eq!(hyp.tokens, generated(&c.greedy_ids), "{name}: {:?}", c.text);
            assert_logprobs_close(hyp, &c.greedy_logprobs, &c.text);
        }
    }
}

#[test]
fn no_repeat_ngram_ban_matches_transformers() {
    let r = reference();
    for name in MODELS {
        let t = load_with(
            name,
            T5Options {
                no_repeat_ngram_size: Some(3),
                ..parity_options()
            },
        );
        for c in &r.models[name].cases {
            let hyp = &t
                .generate_ids(std::slice::from_ref(&c.input_ids), r.max_new_tokens, None)
                .unwrap()[0];
            assert_eq!(
                hyp.tokens,
                generated(&c.greedy_nr3_ids),
                "{name}: {:?}",
                c.text
            );
        }
    }
}

#[test]
fn beam_search_matches_transformers() {
    let r = reference();
    for name in MODELS {
        let t = load_with(
            name,
            T5Options {
                num_beams: Some(4),
                ..parity_options()
            },
        );
        for c in &r.models[name].cases {
            let hyp = &t
                .generate_ids(std::slice::from_ref(&c.input_ids), r.max_new_tokens, None)
                .unwrap()[0];
            assert_eq!(hyp.tokens, generated(&c.beam4_ids), "{name}: {:?}", c.text);
            assert_eq!(t.tokenizer().decode(&hyp.tokens).unwrap(), c.beam4_text);
            assert!(
                (hyp.score - c.beam4_score).abs() < 1e-3,
                "{name}: {:?}: score {} vs {}",
                c.text,
                hyp.score,
                c.beam4_score
            );
        }
    }
}

fn request(text: &str) -> SummaryRequest<'_> {
    SummaryRequest {
        text,
        lang: Lang::En,
        length: SummaryLength::Sentences(2),
    }
}

#[test]
fn summarizer_prefixes_streams_and_returns_the_reference_text() {
    let r = reference();
    for name in MODELS {
        let mut t = load(name);
        assert!(t.model_id().contains(name));
        for c in &r.models[name].cases {
            let article = c.text.strip_prefix(&r.prefix).unwrap();
            let mut pieces = Vec::new();
            let summary = t
                .summarize(&request(article), &mut |s| pieces.push(s.to_string()))
                .unwrap();
            assert_eq!(summary, c.greedy_text.trim(), "{name}: {article:?}");
            assert_eq!(pieces.concat(), summary, "{name}: streamed pieces");
            // Several words arrive as several pieces, not all at the end.
            if summary.split_whitespace().count() > 3 {
                assert!(pieces.len() > 2, "{name}: {pieces:?}");
            }
        }
        // A second run gives the same: no state leaks between calls.
        let c = &r.models[name].cases[1];
        let article = c.text.strip_prefix(&r.prefix).unwrap();
        let again = t.summarize(&request(article), &mut |_| {}).unwrap();
        assert_eq!(again, c.greedy_text.trim());
    }
}

/// A long article of many distinct English sentences.
fn long_article() -> String {
    let subjects = [
        "The government",
        "The president",
        "Many people",
        "The police",
        "The city",
    ];
    let verbs = [
        "announced",
        "protested against",
        "reported",
        "discussed",
        "rejected",
    ];
    let objects = [
        "the new law on gas prices",
        "the state of emergency",
        "the decision of the parliament",
        "the accident on the motorway",
        "the plans for the capital",
    ];
    let mut sentences = Vec::new();
    for (i, s) in subjects.iter().enumerate() {
        for (j, v) in verbs.iter().enumerate() {
            for (k, o) in objects.iter().enumerate() {
                sentences.push(format!("{s} {v} {o} on day {}.", i * 25 + j * 5 + k + 1));
            }
        }
    }
    sentences
        .chunks(6)
        .map(|p| p.join(" "))
        .collect::<Vec<_>>()
        .join("\n\n")
}

#[test]
fn long_articles_are_summarized_in_parts_then_as_a_whole() {
    let article = long_article();
    let mut t = load_with(
        "t5-tiny",
        T5Options {
            max_new_tokens: Some(40),
            ..Default::default()
        },
    );
    let tokens = t.tokenizer().token_count(&article).unwrap();
    assert!(
        tokens > 2 * 512,
        "the article must need chunks: {tokens} tokens"
    );
    let mut pieces = Vec::new();
    let summary = t
        .summarize(&request(&article), &mut |s| pieces.push(s.to_string()))
        .unwrap();
    assert!(!summary.is_empty());
    assert_eq!(pieces.concat(), summary);
    let warnings = t.take_warnings();
    assert!(warnings.iter().any(|w| w.contains("parts")), "{warnings:?}");
    // The final pass is one generation of at most max_new_tokens tokens.
    assert!(t.tokenizer().token_count(&summary).unwrap() <= 41 + 8);

    // A small input limit forces more than one round of map-reduce.
    let mut small = load_with(
        "t5-tiny",
        T5Options {
            max_new_tokens: Some(12),
            max_input_tokens: Some(64),
            ..Default::default()
        },
    );
    let summary = small.summarize(&request(&article), &mut |_| {}).unwrap();
    assert!(!summary.is_empty());
    let rounds = small
        .take_warnings()
        .iter()
        .filter(|w| w.contains("parts"))
        .count();
    assert!(rounds >= 2, "rounds: {rounds}");
}

#[test]
fn empty_input_gives_an_empty_summary() {
    let mut t = load("t5-tiny");
    for text in ["", "   \n\n \t "] {
        let mut called = false;
        let summary = t.summarize(&request(text), &mut |_| called = true).unwrap();
        assert_eq!(summary, "");
        assert!(!called);
    }
}

#[test]
fn german_input_is_summarized_with_a_warning() {
    let r = reference();
    let mut t = load("t5-tiny");
    let c = &r.models["t5-tiny"].cases[3];
    let article = c.text.strip_prefix(&r.prefix).unwrap();
    assert!(article.starts_with("Die Regierung"));
    let req = SummaryRequest {
        lang: Lang::De,
        ..request(article)
    };
    assert_eq!(
        t.summarize(&req, &mut |_| {}).unwrap(),
        c.greedy_text.trim()
    );
    let warnings = t.take_warnings();
    assert!(
        warnings.iter().any(|w| w.contains("translate")),
        "{warnings:?}"
    );
    // English input leaves no such warning.
    t.summarize(&request(article), &mut |_| {}).unwrap();
    assert!(t.take_warnings().is_empty());
}

#[test]
fn zero_length_is_an_error() {
    let mut t = load_with("t5-tiny", T5Options::default());
    let req = SummaryRequest {
        text: "Some text.",
        lang: Lang::En,
        length: SummaryLength::Words(0),
    };
    assert!(t.summarize(&req, &mut |_| {}).is_err());
}

/// A copy of a fixture, to break.
fn copy_fixture(name: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(fixtures().join(name)).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.path().join(entry.file_name())).unwrap();
    }
    dir
}

fn load_error(dir: &Path) -> String {
    let files = match files_in(dir) {
        Ok(files) => files,
        Err(e) => return format!("{e:#}"),
    };
    match T5Summarizer::load(&files, &candle_core::Device::Cpu, T5Options::default()) {
        Ok(_) => panic!("{} loaded", dir.display()),
        Err(e) => format!("{e:#}"),
    }
}

#[test]
fn wrong_model_type_is_a_clear_error() {
    let dir = copy_fixture("t5-tiny");
    let config = dir.path().join("config.json");
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("\"model_type\": \"t5\"", "\"model_type\": \"bart\"");
    std::fs::write(&config, text).unwrap();
    let err = load_error(dir.path());
    assert!(
        err.contains("'bart'") && err.contains("not a T5 model"),
        "{err}"
    );

    // The Marian fixture is no T5 model either.
    let err = load_error(&fixtures().join("marian-tiny"));
    assert!(!err.is_empty());
}

#[test]
fn missing_or_broken_files_are_clear_errors() {
    // No tokenizer at all: resolving the files fails, naming them.
    let dir = copy_fixture("t5-tiny");
    std::fs::remove_file(dir.path().join("tokenizer.json")).unwrap();
    let err = load_error(dir.path());
    assert!(err.contains("tokenizer.json"), "{err}");

    // Files resolved elsewhere but without a tokenizer: the loader says so.
    let dir = copy_fixture("t5-tiny");
    let mut files = files_in(dir.path()).unwrap();
    files.files.remove("tokenizer.json");
    files.files.remove("spiece.model");
    let err = match T5Summarizer::load(&files, &candle_core::Device::Cpu, T5Options::default()) {
        Ok(_) => panic!("loaded without a tokenizer"),
        Err(e) => format!("{e:#}"),
    };
    assert!(err.contains("no tokenizer"), "{err}");

    // A truncated tokenizer.json.
    let dir = copy_fixture("t5-tiny");
    let path = dir.path().join("tokenizer.json");
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    let err = load_error(dir.path());
    assert!(err.contains("tokenizer.json"), "{err}");

    // A truncated model.safetensors.
    let dir = copy_fixture("t5-tiny");
    let path = dir.path().join("model.safetensors");
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    let err = load_error(dir.path());
    assert!(err.contains("model.safetensors"), "{err}");

    // Weights of the wrong shape (config says a wider model).
    let dir = copy_fixture("t5-tiny");
    let config = dir.path().join("config.json");
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("\"d_model\": 32", "\"d_model\": 64");
    std::fs::write(&config, text).unwrap();
    let err = load_error(dir.path());
    assert!(err.contains("do not fit a T5 model"), "{err}");

    // config.json that is not JSON.
    let dir = copy_fixture("t5-tiny");
    std::fs::write(dir.path().join("config.json"), "{ not json").unwrap();
    let err = load_error(dir.path());
    assert!(err.contains("config.json"), "{err}");
}

/// The same checks on a CUDA GPU (a `--features cuda` build), or a
/// `SKIPPED: no CUDA device` line without one.
#[cfg(feature = "cuda")]
mod on_cuda {
    use super::common::on_cuda;

    #[test]
    fn greedy_matches_transformers_one_by_one() {
        on_cuda(super::greedy_matches_transformers_one_by_one)
    }

    #[test]
    fn a_padded_batch_gives_the_same_ids() {
        on_cuda(super::a_padded_batch_gives_the_same_ids)
    }

    #[test]
    fn no_repeat_ngram_ban_matches_transformers() {
        on_cuda(super::no_repeat_ngram_ban_matches_transformers)
    }

    #[test]
    fn beam_search_matches_transformers() {
        on_cuda(super::beam_search_matches_transformers)
    }
}
