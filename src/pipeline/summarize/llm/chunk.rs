//! Cutting a long article into parts that fit the model's context.
//!
//! TODO(lead): replace with `crate::text::sentences_in` +
//! `crate::text::chunk_sentences` (branch `text`) once merged; this minimal
//! private version has the same contract: sentences packed in order into
//! chunks of at most `max_tokens`, nothing dropped, an over-long sentence cut
//! at word boundaries.

/// Splits `text` into sentences: after `.`, `!`, `?` (optionally followed by
/// closing quotes or brackets) before whitespace, and at blank lines.
pub fn split_sentences(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for paragraph in text.split("\n\n") {
        let mut current = String::new();
        let words: Vec<&str> = paragraph.split_whitespace().collect();
        for word in words {
            if !current.is_empty() {
                current.push(' ');
            }
            current.push_str(word);
            let core = word.trim_end_matches(['"', '\'', ')', ']', '»', '«', '“', '”', '’']);
            if core.ends_with(['.', '!', '?']) {
                out.push(std::mem::take(&mut current));
            }
        }
        if !current.is_empty() {
            out.push(current);
        }
    }
    out
}

/// Packs `sentences` into chunks of at most `max_tokens` tokens (joined with
/// spaces); a sentence longer than that is cut between words first, and a
/// single word that still does not fit becomes a chunk of its own.
pub fn chunk_sentences(
    sentences: &[String],
    max_tokens: usize,
    count_tokens: &dyn Fn(&str) -> usize,
) -> Vec<String> {
    let mut pieces = Vec::new();
    for s in sentences {
        if count_tokens(s) <= max_tokens {
            pieces.push(s.clone());
            continue;
        }
        let mut current = String::new();
        for word in s.split_whitespace() {
            let candidate = if current.is_empty() {
                word.to_string()
            } else {
                format!("{current} {word}")
            };
            if !current.is_empty() && count_tokens(&candidate) > max_tokens {
                pieces.push(std::mem::replace(&mut current, word.to_string()));
            } else {
                current = candidate;
            }
        }
        if !current.is_empty() {
            pieces.push(current);
        }
    }
    let mut chunks = Vec::new();
    let mut current = String::new();
    for piece in pieces {
        let candidate = if current.is_empty() {
            piece.clone()
        } else {
            format!("{current} {piece}")
        };
        if !current.is_empty() && count_tokens(&candidate) > max_tokens {
            chunks.push(std::mem::replace(&mut current, piece));
        } else {
            current = candidate;
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

    #[test]
    fn sentences_split_after_end_marks_and_paragraphs() {
        let s = split_sentences(
            "Er kam. Sie ging!  Warum?\n\nNeuer Absatz ohne Punkt\n\n„Zitat.“ Ende",
        );
        assert_eq!(
            s,
            vec![
                "Er kam.",
                "Sie ging!",
                "Warum?",
                "Neuer Absatz ohne Punkt",
                "„Zitat.“",
                "Ende"
            ]
        );
    }

    #[test]
    fn chunks_respect_the_budget_and_keep_every_word() {
        let sentences: Vec<String> = ["a b c.", "d e.", "f g h i j k l m n.", "o."]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let chunks = chunk_sentences(&sentences, 4, &words);
        assert!(chunks.iter().all(|c| words(c) <= 4), "{chunks:?}");
        assert_eq!(chunks.join(" "), sentences.join(" "));
        assert_eq!(chunks[0], "a b c.");
    }
}
