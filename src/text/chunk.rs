//! Fitting text into a model's token budget without losing any of it.
//!
//! Token counts come from the caller (`count_tokens`), so the same code
//! serves the translator's sentence limit and a summarizer's context window.

use super::normalize_whitespace;

/// Splits `sentence` into pieces of at most `max_tokens` tokens each.
///
/// The whitespace is normalized first (a sentence that fits comes back as
/// one normalized piece). A piece that is too long is cut at the safest
/// point: after `;`, then after `:`, then before a spaced dash (` – `,
/// ` — `, ` - `), then after `,`, preferring points in the middle half of
/// the piece and the point nearest its middle; failing all of those, at the
/// space nearest the middle; and as a last resort (one long "word", such as
/// a URL) between the characters in the middle. Pieces are cut again until
/// they fit; a single character that still does not fit is returned as it is.
///
/// Nothing is dropped: the pieces joined with single spaces give the
/// normalized sentence, except that two pieces cut from inside one word
/// join without a space (concatenate those directly).
pub fn split_long(
    sentence: &str,
    max_tokens: usize,
    count_tokens: &dyn Fn(&str) -> usize,
) -> Vec<String> {
    let text = normalize_whitespace(sentence);
    let mut pieces = Vec::new();
    split_into(&text, max_tokens, count_tokens, &mut pieces);
    pieces
}

fn split_into(
    text: &str,
    max_tokens: usize,
    count_tokens: &dyn Fn(&str) -> usize,
    pieces: &mut Vec<String>,
) {
    if text.is_empty() {
        return;
    }
    if count_tokens(text) <= max_tokens {
        pieces.push(text.to_string());
        return;
    }
    match cut(text) {
        Some((left, right)) => {
            split_into(left, max_tokens, count_tokens, pieces);
            split_into(right, max_tokens, count_tokens, pieces);
        }
        None => pieces.push(text.to_string()),
    }
}

/// Cuts normalized `text` in two non-empty parts (see [`split_long`]).
fn cut(text: &str) -> Option<(&str, &str)> {
    let middle = text.len() / 2;
    let middle_half = text.len() / 4..=text.len() * 3 / 4;
    let nearest = |spaces: &[usize], only_middle: bool| -> Option<usize> {
        spaces
            .iter()
            .copied()
            .filter(|p| !only_middle || middle_half.contains(p))
            .min_by_key(|p| p.abs_diff(middle))
    };
    // Each tier lists the spaces to cut at; the space itself is dropped.
    let tiers: Vec<Vec<usize>> = vec![
        spaces_after(text, ";"),
        spaces_after(text, ":"),
        [" – ", " — ", " - "]
            .iter()
            .flat_map(|dash| text.match_indices(dash).map(|(i, _)| i))
            .collect(),
        spaces_after(text, ","),
    ];
    let space = tiers
        .iter()
        .find_map(|tier| nearest(tier, true))
        .or_else(|| tiers.iter().find_map(|tier| nearest(tier, false)))
        .or_else(|| {
            let all: Vec<usize> = text.match_indices(' ').map(|(i, _)| i).collect();
            nearest(&all, false)
        });
    if let Some(p) = space {
        return Some((&text[..p], &text[p + 1..]));
    }
    // One long word: cut between characters, at the boundary nearest the middle.
    let boundary = text
        .char_indices()
        .map(|(i, _)| i)
        .filter(|i| *i > 0)
        .min_by_key(|i| i.abs_diff(middle))?;
    Some((&text[..boundary], &text[boundary..]))
}

/// The indices of the spaces that directly follow `mark`.
fn spaces_after(text: &str, mark: &str) -> Vec<usize> {
    text.match_indices(mark)
        .map(|(i, _)| i + mark.len())
        .filter(|p| text.as_bytes().get(*p) == Some(&b' '))
        .collect()
}

/// Packs consecutive sentences into chunks of at most `max_tokens` tokens
/// (sentences inside a chunk are joined with single spaces); a sentence too
/// long for any chunk is first cut with [`split_long`].
///
/// Nothing is dropped and the order is kept: the chunks joined with spaces
/// give the sentences joined with spaces, whitespace normalized (with the
/// exception for words cut by [`split_long`]). Empty sentences are skipped.
pub fn chunk_sentences(
    sentences: &[String],
    max_tokens: usize,
    count_tokens: &dyn Fn(&str) -> usize,
) -> Vec<String> {
    let mut chunks = Vec::new();
    let mut current = String::new();
    for sentence in sentences {
        for piece in split_long(sentence, max_tokens, count_tokens) {
            if current.is_empty() {
                current = piece;
                continue;
            }
            let candidate = format!("{current} {piece}");
            if count_tokens(&candidate) <= max_tokens {
                current = candidate;
            } else {
                chunks.push(std::mem::replace(&mut current, piece));
            }
        }
    }
    if !current.is_empty() {
        chunks.push(current);
    }
    chunks
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> usize {
        s.split_whitespace().count()
    }

    fn chars(s: &str) -> usize {
        s.chars().count()
    }

    #[test]
    fn a_sentence_that_fits_comes_back_normalized() {
        assert_eq!(
            split_long("  Ein kurzer\n Satz. ", 10, &words),
            vec!["Ein kurzer Satz."]
        );
        assert!(split_long(" \n ", 10, &words).is_empty());
    }

    #[test]
    fn prefers_a_semicolon_over_commas() {
        let s = "eins, zwei, drei, vier; fünf, sechs, sieben, acht";
        assert_eq!(
            split_long(s, 5, &words),
            vec!["eins, zwei, drei, vier;", "fünf, sechs, sieben, acht"]
        );
    }

    #[test]
    fn prefers_a_colon_over_a_dash_and_a_dash_over_commas() {
        let s = "a b, c d: e f – g h, i j";
        assert_eq!(
            split_long(s, 9, &words),
            vec!["a b, c d:", "e f – g h, i j"]
        );
        let s = "a b, c d – e f, g h";
        assert_eq!(split_long(s, 7, &words), vec!["a b, c d", "– e f, g h"]);
    }

    #[test]
    fn picks_the_comma_nearest_the_middle() {
        let s = "a, b c d e f, g h i j k, l";
        assert_eq!(
            split_long(s, 11, &words),
            vec!["a, b c d e f,", "g h i j k, l"]
        );
    }

    #[test]
    fn punctuation_off_centre_beats_a_bare_space() {
        let s = "Am Anfang, dann lange nichts mehr bis hier zum Ende";
        assert_eq!(
            split_long(s, 8, &words),
            vec!["Am Anfang,", "dann lange nichts mehr bis hier zum Ende"]
        );
    }

    #[test]
    fn falls_back_to_the_space_nearest_the_middle() {
        let s = "eins zwei drei vier fünf sechs";
        assert_eq!(
            split_long(s, 3, &words),
            vec!["eins zwei drei", "vier fünf sechs"]
        );
    }

    #[test]
    fn cuts_a_long_word_between_characters() {
        let word = "Donaudampfschifffahrtsgesellschaftskapitänsmütze";
        let pieces = split_long(word, 10, &chars);
        assert!(pieces.len() >= 5);
        assert!(pieces.iter().all(|p| chars(p) <= 10), "{pieces:?}");
        assert_eq!(pieces.concat(), word);
    }

    #[test]
    fn an_unsplittable_character_is_returned_whole() {
        assert_eq!(split_long("ab", 0, &chars), vec!["a", "b"]);
    }

    /// Deterministic xorshift generator for the property tests.
    struct Rng(u64);

    impl Rng {
        fn below(&mut self, n: usize) -> usize {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 % n as u64) as usize
        }
    }

    const WORDS: &[&str] = &[
        "Haus",
        "Straße,",
        "und",
        "die",
        "Regierung;",
        "sagte:",
        "–",
        "Kinder",
        "ä",
        "groß,",
        "13.",
        "Almaty",
        "-",
        "—",
        ",",
        ";",
        ":",
        "x",
    ];

    fn random_sentence(rng: &mut Rng) -> String {
        let n = rng.below(60);
        let seps = [" ", "  ", "\n", "\t "];
        (0..n)
            .map(|_| {
                format!(
                    "{}{}",
                    WORDS[rng.below(WORDS.len())],
                    seps[rng.below(seps.len())]
                )
            })
            .collect()
    }

    #[test]
    fn split_long_never_drops_text_and_every_piece_fits() {
        let mut rng = Rng(0xDEAD_BEEF_1234_5678);
        for _ in 0..2000 {
            let sentence = random_sentence(&mut rng);
            let max = 1 + rng.below(8);
            let pieces = split_long(&sentence, max, &words);
            assert_eq!(pieces.join(" "), normalize_whitespace(&sentence));
            // Word counting never needs a cut inside a word.
            assert!(pieces.iter().all(|p| words(p) <= max && !p.is_empty()));
        }
    }

    #[test]
    fn chunks_pack_sentences_in_order_under_the_budget() {
        let sentences: Vec<String> = ["a b c", "d e", "f g h i", "j", "k l m n o p q r s", "t"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let chunks = chunk_sentences(&sentences, 5, &words);
        // The nine-word sentence is cut in the middle, then packed like
        // two sentences.
        assert_eq!(
            chunks,
            vec!["a b c d e", "f g h i j", "k l m n", "o p q r s", "t"]
        );
    }

    #[test]
    fn chunk_sentences_never_drops_text() {
        let mut rng = Rng(0x0123_4567_89AB_CDEF);
        for _ in 0..500 {
            let sentences: Vec<String> = (0..rng.below(12))
                .map(|_| random_sentence(&mut rng))
                .collect();
            let max = 1 + rng.below(30);
            let chunks = chunk_sentences(&sentences, max, &words);
            assert_eq!(chunks.join(" "), normalize_whitespace(&sentences.join(" ")));
            assert!(chunks.iter().all(|c| words(c) <= max && !c.is_empty()));
        }
    }

    #[test]
    fn no_sentences_no_chunks() {
        assert!(chunk_sentences(&[], 10, &words).is_empty());
        assert!(chunk_sentences(&[" ".to_string()], 10, &words).is_empty());
    }
}
