//! Extractive summaries: TextRank over sentence similarity.
//!
//! No model: the article's own sentences are ranked and the best ones are
//! returned in their original order. Sentences are bags of lowercased words
//! with the stop words of German and English removed and common inflection
//! endings stripped ("Proteste"/"Protesten" → "protest"). Two sentences are
//! as similar as the TextRank paper (Mihalcea & Tarau, 2004) defines:
//! shared words / (ln(1 + |S₁|) + ln(1 + |S₂|)) — the paper uses ln |S|, the
//! 1 + keeps one-word sentences from dividing by zero. Weighted PageRank
//! (damping 0.85) runs on that graph until the scores move by less than
//! 1e-9 in total (at most 1000 rounds). The random jump favours early
//! sentences a little (the first is twice as likely as the last), which
//! also decides between sentences that are otherwise equal; exact ties in
//! the final score go to the earlier sentence.
//!
//! The method is language-agnostic: it extracts from whatever text it gets
//! (the CLI translates a German article first when English is wanted).
//!
//! Cost: the similarity graph is built from an inverted index, so sentence
//! pairs with no word in common cost nothing, but the number of edges is
//! quadratic in the number of sentences at worst, and PageRank walks them
//! all in each of its ~130 rounds. 3 000 sentences of one topic (2.4
//! million edges) take about 5 s in an unoptimized debug build and a
//! fraction of that optimized; book-length inputs of 100 000 sentences are
//! not a use case and may take minutes.

use super::{Summarizer, SummaryLength, SummaryRequest};
use crate::text::sentences_in;
use anyhow::{bail, Result};
use std::collections::HashMap;

/// The id this engine reports in logs and manifests.
pub const MODEL_ID: &str = "extractive-textrank";

const DAMPING: f64 = 0.85;
/// The weight of the first sentence in the random jump, relative to the last.
const FIRST_SENTENCE_PRIOR: f64 = 2.0;
const TOLERANCE: f64 = 1e-9;
const MAX_ROUNDS: usize = 1000;

/// Summarizes by picking the most central sentences of the article.
#[derive(Debug, Clone, Default)]
pub struct ExtractiveSummarizer;

impl ExtractiveSummarizer {
    pub fn new() -> Self {
        Self
    }
}

impl Summarizer for ExtractiveSummarizer {
    fn model_id(&self) -> String {
        MODEL_ID.to_string()
    }

    /// Returns the chosen sentences joined by spaces and passes the whole
    /// summary to `on_text` once (nothing is generated piece by piece), so
    /// `--stream` prints it like any other engine's output.
    ///
    /// A length of zero (`Sentences(0)` or `Words(0)`) is an error; an
    /// article without sentences gives an empty summary.
    fn summarize(&mut self, req: &SummaryRequest, on_text: &mut dyn FnMut(&str)) -> Result<String> {
        let sentences = sentences_in(req.text);
        let chosen = extract(&sentences, req.length)?;
        let summary = chosen
            .iter()
            .map(|&i| sentences[i].as_str())
            .collect::<Vec<_>>()
            .join(" ");
        if !summary.is_empty() {
            on_text(&summary);
        }
        Ok(summary)
    }
}

/// The indices, ascending, of the sentences that make the summary.
///
/// `Sentences(n)` picks the `min(n, count)` best sentences. `Words(n)` adds
/// sentences from the best down whenever they still fit in `n` words
/// (counted as whitespace-separated tokens), skipping those that do not;
/// if not even the best one fits, it alone is returned, so a non-empty
/// article always gets a non-empty summary. A length of zero is an error.
pub fn extract(sentences: &[String], length: SummaryLength) -> Result<Vec<usize>> {
    match length {
        SummaryLength::Sentences(0) => bail!("a summary needs at least 1 sentence, not 0"),
        SummaryLength::Words(0) => bail!("a summary needs at least 1 word, not 0"),
        _ => {}
    }
    if sentences.is_empty() {
        return Ok(Vec::new());
    }
    let scores = rank_sentences(sentences);
    let mut order: Vec<usize> = (0..sentences.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));

    let mut chosen: Vec<usize> = match length {
        SummaryLength::Sentences(n) => order.iter().copied().take(n).collect(),
        SummaryLength::Words(budget) => {
            let mut used = 0;
            let mut picked = Vec::new();
            for &i in &order {
                let words = sentences[i].split_whitespace().count();
                if used + words <= budget {
                    used += words;
                    picked.push(i);
                }
            }
            if picked.is_empty() {
                picked.push(order[0]);
            }
            picked
        }
    };
    chosen.sort_unstable();
    Ok(chosen)
}

/// TextRank scores of `sentences` (they sum to 1; higher is more central).
pub fn rank_sentences(sentences: &[String]) -> Vec<f64> {
    let n = sentences.len();
    if n == 0 {
        return Vec::new();
    }
    let graph = similarity_graph(sentences);
    let out_weight: Vec<f64> = graph
        .iter()
        .map(|edges| edges.iter().map(|(_, w)| w).sum())
        .collect();

    // The random jump, biased towards the start of the article.
    let mut jump: Vec<f64> = (0..n)
        .map(|i| {
            let from_end = if n > 1 {
                (n - 1 - i) as f64 / (n - 1) as f64
            } else {
                1.0
            };
            1.0 + (FIRST_SENTENCE_PRIOR - 1.0) * from_end
        })
        .collect();
    let total: f64 = jump.iter().sum();
    jump.iter_mut().for_each(|p| *p /= total);

    // The graph is symmetric, so sentence i receives from each neighbour j
    // the share w(i, j) / out_weight(j) of j's score; flatten it once.
    let inflow: Vec<Vec<(usize, f64)>> = graph
        .iter()
        .map(|edges| edges.iter().map(|&(j, w)| (j, w / out_weight[j])).collect())
        .collect();
    let dangling_nodes: Vec<usize> = (0..n).filter(|&j| out_weight[j] == 0.0).collect();

    let mut scores = jump.clone();
    let mut next = vec![0.0; n];
    for _ in 0..MAX_ROUNDS {
        // Sentences unrelated to all others pass their score on by jumping.
        let dangling: f64 = dangling_nodes.iter().map(|&j| scores[j]).sum();
        for (i, slot) in next.iter_mut().enumerate() {
            let received: f64 = inflow[i].iter().map(|&(j, share)| share * scores[j]).sum();
            *slot = (1.0 - DAMPING) * jump[i] + DAMPING * (received + dangling * jump[i]);
        }
        let change: f64 = scores.iter().zip(&next).map(|(a, b)| (a - b).abs()).sum();
        std::mem::swap(&mut scores, &mut next);
        if change < TOLERANCE {
            break;
        }
    }
    scores
}

/// For each sentence, its neighbours and the similarity to each.
fn similarity_graph(sentences: &[String]) -> Vec<Vec<(usize, f64)>> {
    let mut ids: HashMap<String, usize> = HashMap::new();
    let mut postings: Vec<Vec<usize>> = Vec::new();
    let mut bags: Vec<Vec<usize>> = Vec::with_capacity(sentences.len());
    let mut sizes: Vec<usize> = Vec::with_capacity(sentences.len());
    for (s, sentence) in sentences.iter().enumerate() {
        let words = content_words(sentence);
        sizes.push(words.len());
        let mut bag: Vec<usize> = words
            .into_iter()
            .map(|w| {
                let next_id = ids.len();
                *ids.entry(w).or_insert(next_id)
            })
            .collect();
        bag.sort_unstable();
        bag.dedup();
        for &id in &bag {
            if id == postings.len() {
                postings.push(Vec::new());
            }
            postings[id].push(s);
        }
        bags.push(bag);
    }

    let n = sentences.len();
    let mut shared = vec![0usize; n];
    let mut touched = Vec::new();
    (0..n)
        .map(|i| {
            for &id in &bags[i] {
                for &j in &postings[id] {
                    if j != i {
                        if shared[j] == 0 {
                            touched.push(j);
                        }
                        shared[j] += 1;
                    }
                }
            }
            touched.sort_unstable();
            let edges = touched
                .drain(..)
                .map(|j| {
                    let norm = (1.0 + sizes[i] as f64).ln() + (1.0 + sizes[j] as f64).ln();
                    let w = shared[j] as f64 / norm;
                    shared[j] = 0;
                    (j, w)
                })
                .collect();
            edges
        })
        .collect()
}

/// The sentence's words that carry content: lowercased, stop words and
/// one-character words dropped, inflection endings stripped.
fn content_words(sentence: &str) -> Vec<String> {
    sentence
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| w.chars().count() >= 2)
        .map(str::to_lowercase)
        .filter(|w| !STOP_WORDS.contains(&w.as_str()))
        .map(|w| stem(&w))
        .collect()
}

/// Strips one common German or English ending, keeping at least 4 letters,
/// so that "Proteste", "Protesten" and "protests" meet as "protest".
fn stem(word: &str) -> String {
    const ENDINGS: &[&str] = &[
        "ungen", "ung", "ern", "ing", "en", "er", "es", "em", "ed", "e", "s",
    ];
    let letters = word.chars().count();
    for ending in ENDINGS {
        if let Some(stem) = word.strip_suffix(ending) {
            if letters - ending.chars().count() >= 4 {
                return stem.to_string();
            }
        }
    }
    word.to_string()
}

/// German and English words too common to say what a sentence is about.
const STOP_WORDS: &[&str] = &[
    // German
    "aber", "alle", "allem", "allen", "aller", "alles", "als", "also", "am", "an", "ander",
    "andere", "anderen", "anderer", "anderes", "auch", "auf", "aus", "bei", "beim", "bin", "bis",
    "bist", "bzw", "da", "dabei", "dadurch", "dafür", "dagegen", "daher", "damit", "danach",
    "dann", "darauf", "darin", "darum", "das", "dass", "daß", "davon", "dazu", "dem", "den",
    "denen", "denn", "der", "deren", "des", "deshalb", "dessen", "die", "dies", "diese", "diesem",
    "diesen", "dieser", "dieses", "doch", "dort", "du", "durch", "ein", "eine", "einem", "einen",
    "einer", "eines", "einige", "er", "es", "etwa", "euch", "euer", "für", "gegen", "gewesen",
    "hab", "habe", "haben", "hat", "hatte", "hatten", "hier", "hin", "hinter", "ich", "ihm", "ihn",
    "ihnen", "ihr", "ihre", "ihrem", "ihren", "ihrer", "ihres", "im", "immer", "in", "ins", "ist",
    "ja", "jede", "jedem", "jeden", "jeder", "jedes", "jedoch", "jetzt", "kann", "kein", "keine",
    "keinem", "keinen", "keiner", "können", "könnte", "man", "mehr", "mein", "meine", "mich",
    "mir", "mit", "muss", "müssen", "nach", "nicht", "nichts", "noch", "nun", "nur", "ob", "oder",
    "ohne", "schon", "sehr", "sei", "seien", "sein", "seine", "seinem", "seinen", "seiner",
    "seines", "seit", "sich", "sie", "sind", "so", "soll", "sollen", "sollte", "sondern", "sowie",
    "über", "um", "und", "uns", "unser", "unsere", "unter", "viel", "viele", "vom", "von", "vor",
    "während", "war", "waren", "warum", "was", "weil", "welche", "welchem", "welchen", "welcher",
    "welches", "wenn", "wer", "werde", "werden", "wie", "wieder", "will", "wir", "wird", "wo",
    "worden", "wurde", "wurden", "zu", "zum", "zur", "zwar", "zwischen", // English
    "about", "after", "again", "all", "also", "an", "and", "any", "are", "as", "at", "be",
    "because", "been", "before", "being", "between", "both", "but", "by", "can", "could", "did",
    "do", "does", "doing", "down", "during", "each", "few", "for", "from", "further", "had", "has",
    "have", "having", "he", "her", "here", "hers", "him", "his", "how", "if", "into", "is", "it",
    "its", "just", "may", "me", "might", "more", "most", "must", "my", "no", "nor", "not", "now",
    "of", "off", "on", "once", "only", "or", "other", "our", "out", "over", "own", "said", "same",
    "she", "should", "since", "so", "some", "such", "than", "that", "the", "their", "them", "then",
    "there", "these", "they", "this", "those", "through", "to", "too", "under", "until", "up",
    "upon", "very", "was", "we", "were", "what", "when", "where", "which", "while", "who", "whom",
    "why", "will", "with", "would", "you", "your",
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::text::Lang;

    const SAMPLE: &str = include_str!("../../../samples/de_article.txt");

    fn summarize(text: &str, length: SummaryLength) -> Result<String> {
        let req = SummaryRequest {
            text,
            lang: Lang::De,
            length,
        };
        ExtractiveSummarizer::new().summarize(&req, &mut |_| {})
    }

    fn owned(sentences: &[&str]) -> Vec<String> {
        sentences.iter().map(|s| s.to_string()).collect()
    }

    /// Whether `summary` is input sentences, in input order, joined by spaces.
    fn is_ordered_subset(summary: &str, sentences: &[String]) -> bool {
        let mut rest = summary;
        for sentence in sentences {
            if let Some(after) = rest.strip_prefix(sentence.as_str()) {
                rest = after.strip_prefix(' ').unwrap_or(after);
            }
        }
        rest.is_empty()
    }

    #[test]
    fn model_id_names_the_method() {
        assert_eq!(
            ExtractiveSummarizer::new().model_id(),
            "extractive-textrank"
        );
    }

    #[test]
    fn empty_input_gives_an_empty_summary_and_no_callback() {
        let req = SummaryRequest {
            text: " \n\n ",
            lang: Lang::En,
            length: SummaryLength::Sentences(3),
        };
        let mut calls = 0;
        let summary = ExtractiveSummarizer::new()
            .summarize(&req, &mut |_| calls += 1)
            .unwrap();
        assert_eq!(summary, "");
        assert_eq!(calls, 0);
    }

    #[test]
    fn zero_length_is_an_error() {
        for length in [SummaryLength::Sentences(0), SummaryLength::Words(0)] {
            let err = summarize(SAMPLE, length).unwrap_err().to_string();
            assert!(err.contains("at least 1"), "{err}");
            assert!(summarize("", length).is_err());
        }
    }

    #[test]
    fn passes_the_whole_summary_to_on_text_once() {
        let req = SummaryRequest {
            text: SAMPLE,
            lang: Lang::De,
            length: SummaryLength::Sentences(2),
        };
        let mut streamed = Vec::new();
        let summary = ExtractiveSummarizer::new()
            .summarize(&req, &mut |piece| streamed.push(piece.to_string()))
            .unwrap();
        assert_eq!(streamed, vec![summary]);
    }

    #[test]
    fn is_deterministic() {
        let a = summarize(SAMPLE, SummaryLength::Sentences(4)).unwrap();
        let b = summarize(SAMPLE, SummaryLength::Sentences(4)).unwrap();
        assert_eq!(a, b);
        let sentences = sentences_in(SAMPLE);
        assert_eq!(rank_sentences(&sentences), rank_sentences(&sentences));
    }

    #[test]
    fn returns_exactly_min_n_count_sentences_in_original_order() {
        let sentences = sentences_in(SAMPLE);
        assert_eq!(sentences.len(), 21);
        for n in [1, 2, 3, 7, 21, 50] {
            let chosen = extract(&sentences, SummaryLength::Sentences(n)).unwrap();
            assert_eq!(chosen.len(), n.min(sentences.len()), "n = {n}");
            assert!(chosen.windows(2).all(|w| w[0] < w[1]), "{chosen:?}");
            let summary = summarize(SAMPLE, SummaryLength::Sentences(n)).unwrap();
            let expected: Vec<&str> = chosen.iter().map(|&i| sentences[i].as_str()).collect();
            assert_eq!(summary, expected.join(" "));
            assert!(is_ordered_subset(&summary, &sentences), "{summary}");
        }
    }

    #[test]
    fn more_sentences_extend_the_selection() {
        // Ranking is fixed, so a longer summary contains the shorter one.
        let sentences = sentences_in(SAMPLE);
        let short = extract(&sentences, SummaryLength::Sentences(2)).unwrap();
        let long = extract(&sentences, SummaryLength::Sentences(5)).unwrap();
        assert!(short.iter().all(|i| long.contains(i)));
    }

    #[test]
    fn word_budget_is_respected() {
        let sentences = sentences_in(SAMPLE);
        for budget in [40, 80, 150] {
            let summary = summarize(SAMPLE, SummaryLength::Words(budget)).unwrap();
            let words = summary.split_whitespace().count();
            assert!(words <= budget, "{words} > {budget}");
            assert!(words > 0);
            assert!(is_ordered_subset(&summary, &sentences));
        }
        // A budget smaller than every sentence (the shortest, the caption
        // line, has 2 words) still gives the best sentence.
        let chosen = extract(&sentences, SummaryLength::Words(1)).unwrap();
        let best = extract(&sentences, SummaryLength::Sentences(1)).unwrap();
        assert_eq!(chosen, best);
    }

    #[test]
    fn on_topic_sentences_outrank_an_off_topic_one() {
        // The off-topic sentence comes first, so the position prior favours it.
        let sentences = owned(&[
            "My cat likes to sleep on the sofa in the afternoon.",
            "The flood destroyed bridges and roads across the valley.",
            "Rescue teams searched the flooded valley for survivors.",
            "The river flood was the worst the valley has seen in decades.",
            "Survivors of the flood gathered in schools above the valley.",
            "Officials said rebuilding the bridges and roads will take years.",
        ]);
        let scores = rank_sentences(&sentences);
        for (i, score) in scores.iter().enumerate().skip(1) {
            assert!(*score > scores[0], "sentence {i}: {score} <= {}", scores[0]);
        }
        let chosen = extract(&sentences, SummaryLength::Sentences(1)).unwrap();
        assert_ne!(chosen, vec![0]);
        let sum: f64 = scores.iter().sum();
        assert!((sum - 1.0).abs() < 1e-9, "scores sum to {sum}");
    }

    #[test]
    fn inflected_forms_count_as_the_same_word() {
        // "Proteste"/"Protesten" and "Regierung"/"Regierungen" meet only after
        // stemming; without it, the middle sentence would share nothing.
        let sentences = owned(&[
            "Die Proteste gegen die Regierung wachsen.",
            "Bei den Protesten stürzten Regierungen.",
            "Ein Hund bellt laut im Garten.",
        ]);
        let graph = similarity_graph(&sentences);
        assert!(graph[1].iter().any(|&(j, _)| j == 0));
        assert!(graph[2].is_empty());
    }

    #[test]
    fn unrelated_sentences_are_ranked_by_position() {
        let sentences = owned(&[
            "Apples grow on trees.",
            "Trains run on rails.",
            "Violins have strings.",
        ]);
        let scores = rank_sentences(&sentences);
        assert!(scores[0] > scores[1] && scores[1] > scores[2], "{scores:?}");
        assert_eq!(
            extract(&sentences, SummaryLength::Sentences(2)).unwrap(),
            vec![0, 1]
        );
    }

    #[test]
    fn duplicate_sentences_tie_and_the_earlier_wins() {
        let sentences = owned(&[
            "Das Wetter bleibt sonnig.",
            "Der Zug fährt ab.",
            "Der Zug fährt ab.",
        ]);
        assert_eq!(
            extract(&sentences, SummaryLength::Sentences(1)).unwrap(),
            vec![1]
        );
    }

    #[test]
    fn odd_inputs_do_not_break_the_ranking() {
        for text in [
            "...",
            "!!! ???",
            "12345",
            "Wort",
            "a. b. c.",
            "Ä.\n\nÖ.\n\nÜ.",
        ] {
            let summary = summarize(text, SummaryLength::Sentences(1)).unwrap();
            assert!(!summary.is_empty(), "{text:?}");
            assert!(text.contains(&summary), "{summary:?} not from {text:?}");
        }
    }
}
