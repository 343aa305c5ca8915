//! Parity of tolk's Marian stack with `transformers` on the tiny fixture
//! model (tests/fixtures/marian-tiny, made by scripts/gen_marian_fixture.py):
//! tokenizer pieces and ids, greedy and beam-search token ids, texts and
//! scores, one sentence at a time and as one padded batch.

mod common;

use serde::Deserialize;
use std::path::PathBuf;
use tolk::generation::Hypothesis;
use tolk::hub::{resolve_needs, HubOptions, ModelSource, MARIAN_FILES};
use tolk::pipeline::translate::{MarianTranslator, TranslateOptions, Translator};

#[derive(Deserialize)]
struct Reference {
    max_length: usize,
    cases: Vec<Case>,
    tokenizer_cases: Vec<TokCase>,
}

#[derive(Deserialize)]
struct Case {
    text: String,
    input_ids: Vec<u32>,
    greedy_ids: Vec<u32>,
    greedy_text: String,
    greedy_logprobs: Vec<f32>,
    beam4_ids: Vec<u32>,
    beam4_text: String,
    beam4_score: f32,
}

#[derive(Deserialize)]
struct TokCase {
    text: String,
    pieces: Vec<String>,
    ids: Vec<u32>,
    decoded: String,
}

fn fixture_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/marian-tiny")
}

fn reference() -> Reference {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/marian-tiny-reference.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Loads the fixture with the settings the reference was generated with.
fn load(num_beams: usize) -> MarianTranslator {
    let files = resolve_needs(
        &ModelSource::Dir(fixture_dir()),
        MARIAN_FILES,
        &HubOptions::default(),
    )
    .unwrap();
    let opts = TranslateOptions {
        num_beams: Some(num_beams),
        max_length: Some(reference().max_length),
        ..Default::default()
    };
    MarianTranslator::load(&files, &common::test_device(), &opts).unwrap()
}

/// `transformers` sequences start with the decoder start token.
fn generated(reference_ids: &[u32]) -> &[u32] {
    &reference_ids[1..]
}

#[test]
fn fixture_covers_the_hard_cases() {
    let r = reference();
    let t = load(1);
    // Outputs that stop at EOS and outputs that run to max_length.
    assert!(r.cases.iter().any(|c| c.greedy_ids.len() < r.max_length));
    assert!(r.cases.iter().any(|c| c.greedy_ids.len() == r.max_length));
    // A sentence with characters the spm does not know.
    assert!(r
        .cases
        .iter()
        .any(|c| c.input_ids.contains(&t.tokenizer().unk_id)));
}

#[test]
fn tokenizer_matches_marian_tokenizer() {
    let r = reference();
    let t = load(1);
    // The generation cases carry their input ids too.
    let from_cases: Vec<TokCase> = r
        .cases
        .iter()
        .map(|c| TokCase {
            text: c.text.clone(),
            pieces: Vec::new(),
            ids: c.input_ids.clone(),
            decoded: String::new(),
        })
        .collect();
    for case in r.tokenizer_cases.iter().chain(&from_cases) {
        if !case.pieces.is_empty() {
            assert_eq!(
                t.tokenizer().pieces(&case.text).unwrap(),
                case.pieces,
                "pieces of {:?}",
                case.text
            );
        }
        assert_eq!(
            t.tokenizer().encode(&case.text).unwrap(),
            case.ids,
            "ids of {:?}",
            case.text
        );
        if !case.decoded.is_empty() {
            assert_eq!(
                t.tokenizer().decode(&case.ids),
                case.decoded,
                "decode of {:?}",
                case.text
            );
        }
    }
}

fn assert_logprobs_close(got: &Hypothesis, want: &[f32], text: &str) {
    assert_eq!(got.token_logprobs.len(), want.len(), "{text:?}");
    for (g, w) in got.token_logprobs.iter().zip(want) {
        assert!(
            (g - w).abs() < 1e-3,
            "{text:?}: log-prob {g} vs transformers {w}"
        );
    }
}

#[test]
fn greedy_matches_transformers_one_by_one() {
    let r = reference();
    let t = load(1);
    for c in &r.cases {
        let hyp = &t.generate_ids(std::slice::from_ref(&c.input_ids)).unwrap()[0];
        assert_eq!(
            hyp.tokens,
            generated(&c.greedy_ids),
            "greedy ids of {:?}",
            c.text
        );
        assert_eq!(t.tokenizer().decode(&hyp.tokens), c.greedy_text);
        assert_logprobs_close(hyp, &c.greedy_logprobs, &c.text);
    }
}

#[test]
fn beam_search_matches_transformers_one_by_one() {
    let r = reference();
    let t = load(4);
    for c in &r.cases {
        let hyp = &t.generate_ids(std::slice::from_ref(&c.input_ids)).unwrap()[0];
        assert_eq!(
            hyp.tokens,
            generated(&c.beam4_ids),
            "beam ids of {:?}",
            c.text
        );
        assert_eq!(t.tokenizer().decode(&hyp.tokens), c.beam4_text);
        assert!(
            (hyp.score - c.beam4_score).abs() < 1e-3,
            "{:?}: score {} vs {}",
            c.text,
            hyp.score,
            c.beam4_score
        );
    }
}

#[test]
fn a_padded_batch_gives_the_same_ids() {
    let r = reference();
    let inputs: Vec<Vec<u32>> = r.cases.iter().map(|c| c.input_ids.clone()).collect();
    let greedy = |c: &Case| c.greedy_ids.clone();
    let beam = |c: &Case| c.beam4_ids.clone();
    for (beams, want) in [(1, &greedy as &dyn Fn(&Case) -> Vec<u32>), (4, &beam)] {
        let t = load(beams);
        let hyps = t.generate_ids(&inputs).unwrap();
        for (c, hyp) in r.cases.iter().zip(&hyps) {
            assert_eq!(
                hyp.tokens,
                generated(&want(c)),
                "batched ({beams} beams): {:?}",
                c.text
            );
        }
    }
}

/// Continuous batching: fewer rows than sentences, each finished
/// sentence's rows going to the next (sources longer and shorter than the
/// ones decoding, so the cross-attention padding grows both ways), gives
/// every sentence transformers' ids, greedy and with beams.
#[test]
fn a_queued_run_gives_the_same_ids() {
    let r = reference();
    let inputs: Vec<Vec<u32>> = r.cases.iter().map(|c| c.input_ids.clone()).collect();
    let lengths: Vec<usize> = inputs.iter().map(Vec::len).collect();
    assert!(lengths.windows(2).any(|w| w[0] < w[1]) && lengths.windows(2).any(|w| w[0] > w[1]));
    let greedy = |c: &Case| c.greedy_ids.clone();
    let beam = |c: &Case| c.beam4_ids.clone();
    for (beams, want) in [(1, &greedy as &dyn Fn(&Case) -> Vec<u32>), (4, &beam)] {
        let mut t = load(beams);
        for width in [1, 2, 3] {
            t.set_batch_size(width);
            let mut done = 0;
            let hyps = t
                .generate_ids_queued(&inputs, &mut |n| {
                    done += n;
                    Ok(())
                })
                .unwrap();
            assert_eq!(done, inputs.len());
            for (c, hyp) in r.cases.iter().zip(&hyps) {
                assert_eq!(
                    hyp.tokens,
                    generated(&want(c)),
                    "queued ({beams} beams, {width} at a time): {:?}",
                    c.text
                );
            }
        }
    }
}

#[test]
fn translator_trait_returns_texts_in_input_order() {
    let r = reference();
    let mut t = load(4);
    let texts: Vec<&str> = r.cases.iter().map(|c| c.text.as_str()).collect();
    let out = t.translate_batch(&texts).unwrap();
    let want: Vec<&str> = r.cases.iter().map(|c| c.beam4_text.as_str()).collect();
    assert_eq!(out, want);
    // Running again gives the same result: no state leaks between calls.
    assert_eq!(t.translate_batch(&texts).unwrap(), want);
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
    fn beam_search_matches_transformers_one_by_one() {
        on_cuda(super::beam_search_matches_transformers_one_by_one)
    }

    #[test]
    fn a_padded_batch_gives_the_same_ids() {
        on_cuda(super::a_padded_batch_gives_the_same_ids)
    }

    #[test]
    fn a_queued_run_gives_the_same_ids() {
        on_cuda(super::a_queued_run_gives_the_same_ids)
    }

    #[test]
    fn translator_trait_returns_texts_in_input_order() {
        on_cuda(super::translator_trait_returns_texts_in_input_order)
    }
}
