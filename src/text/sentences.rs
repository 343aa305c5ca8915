//! German-aware sentence splitting.
//!
//! A sentence ends at `.`, `!`, `?` or `…` (runs such as `?!` or `...`
//! count as one), optionally followed by closing quotes or brackets, when
//! whitespace and the start of a new sentence (an uppercase letter or a
//! digit, possibly after opening quotes or brackets) follow. German
//! capitalises every noun, so an uppercase word alone proves little; a
//! period is therefore not a boundary after
//! - abbreviations that never end a sentence ("z.B.", "Dr.", "bzw.", "ca.",
//!   "vgl.", see [`NEVER_FINAL`]),
//! - single letters: initials ("J. R. R. Tolkien") and spaced abbreviations
//!   ("z. B.", "d. h.", "u. a."),
//!
//! and after a number (ordinals and dates: "am 13. Januar", "13. 1. 2022",
//! "im 19. Jahrhundert"), after abbreviations that may end a sentence
//! ("usw.", "etc.", "Mio.", "Jan.", see [`MAYBE_FINAL`]) and after an
//! ellipsis it is a boundary only when the next word is one that cannot
//! continue the phrase, such as an article or pronoun ("Der", "Sie",
//! "The", see [`SENTENCE_STARTERS`]). Periods inside a token (decimals
//! "3.5", URLs, e-mail addresses, "z.B.") are never boundaries since no
//! whitespace follows them. A bracketed ellipsis ("[…]", "(...)") marks an
//! omission, never an end.
//!
//! When in doubt the splitter does not split: a sentence left whole only
//! makes a longer model input, a sentence cut in two is translated badly.

use super::normalize_whitespace;
use super::segment::{segment, Format, Segment};

pub use super::sentence_words::{MAYBE_FINAL, NEVER_FINAL, SENTENCE_STARTERS};

fn is_terminator(c: char) -> bool {
    matches!(c, '.' | '!' | '?' | '…')
}

/// Quotes and brackets that may close a sentence after its terminator.
fn is_closer(c: char) -> bool {
    matches!(
        c,
        '"' | '\'' | '”' | '“' | '’' | '‘' | '»' | '«' | '›' | '‹' | ')' | ']'
    )
}

/// Quotes and brackets that may open a sentence.
fn is_opener(c: char) -> bool {
    matches!(
        c,
        '"' | '\''
            | '„'
            | '“'
            | '”'
            | '‚'
            | '‘'
            | '»'
            | '«'
            | '›'
            | '‹'
            | '('
            | '['
            | '¿'
            | '¡'
    )
}

/// Splits one paragraph into sentences. Line breaks and runs of whitespace
/// become single spaces (hard-wrapped lines join); sentences are trimmed and
/// never empty. The sentences joined with single spaces give the paragraph
/// with its whitespace normalized.
pub fn split_sentences(paragraph: &str) -> Vec<String> {
    let text = normalize_whitespace(paragraph);
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    let quoted = quotations(&chars);
    let mut sentences = Vec::new();
    let mut start = 0;
    let mut k = 0;
    while k < chars.len() {
        if !is_terminator(chars[k].1) {
            k += 1;
            continue;
        }
        let run_start = k;
        while k < chars.len() && is_terminator(chars[k].1) {
            k += 1;
        }
        let run_end = k;
        while k < chars.len() && is_closer(chars[k].1) {
            k += 1;
        }
        if k >= chars.len() || chars[k].1 != ' ' {
            continue;
        }
        if quoted.iter().any(|&(open, close)| open < k && k < close) {
            continue; // inside a quotation: »Es brennt. Lauft!« is one sentence
        }
        if is_boundary(&text, &chars, run_start, run_end, k + 1) {
            let space = chars[k].0;
            sentences.push(text[start..space].to_string());
            start = space + 1;
        }
    }
    if start < text.len() {
        sentences.push(text[start..].to_string());
    }
    sentences
}

/// Longest quotation, in characters, kept in one sentence: an opening
/// quote without its closing one nearby does not swallow the paragraph.
const MAX_QUOTATION: usize = 400;

/// Quotations (`»…«`, `«…»`, `„…“`, `„…”`, `“…”`) as (opening, closing)
/// character indices; a sentence does not end inside one.
fn quotations(chars: &[(usize, char)]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let closers: &[char] = match chars[i].1 {
            '»' => &['«'],
            '«' => &['»'],
            '„' => &['“', '”'],
            '“' => &['”'],
            _ => {
                i += 1;
                continue;
            }
        };
        let end = (i + MAX_QUOTATION).min(chars.len());
        match (i + 1..end).find(|&j| closers.contains(&chars[j].1)) {
            Some(j) => {
                out.push((i, j));
                i = j + 1;
            }
            None => i += 1,
        }
    }
    out
}

/// Every sentence of a plain-text document, paragraph by paragraph
/// (a sentence never spans a blank line).
pub fn sentences_in(text: &str) -> Vec<String> {
    segment(text, Format::Plain)
        .iter()
        .filter_map(|s| match s {
            Segment::Text(paragraph) => Some(split_sentences(paragraph)),
            Segment::Keep(_) => None,
        })
        .flatten()
        .collect()
}

/// The byte ranges of [`sentences_in`]'s sentences within `text` itself
/// (whitespace as written, not normalized): for cutting a text after its
/// n-th sentence without touching the rest.
pub fn sentence_spans(text: &str) -> Vec<std::ops::Range<usize>> {
    let mut spans = Vec::new();
    let mut offset = 0;
    for seg in segment(text, Format::Plain) {
        let (s, is_text) = match &seg {
            Segment::Text(p) => (p.as_str(), true),
            Segment::Keep(k) => (k.as_str(), false),
        };
        if is_text {
            let mut cursor = 0;
            for sentence in split_sentences(s) {
                let Some(range) = locate(s, cursor, &sentence) else {
                    break;
                };
                cursor = range.end;
                spans.push(offset + range.start..offset + range.end);
            }
        }
        offset += s.len();
    }
    spans
}

/// Where `sentence` (whitespace normalized) is written in `text` from byte
/// `from` on: leading whitespace skipped, each single space in `sentence`
/// matching a run of whitespace.
fn locate(text: &str, from: usize, sentence: &str) -> Option<std::ops::Range<usize>> {
    let rest = &text[from..];
    let start = from + (rest.len() - rest.trim_start().len());
    let mut it = text[start..].char_indices().peekable();
    let mut end = start;
    for c in sentence.chars() {
        if c == ' ' {
            let mut any = false;
            while let Some(&(i, w)) = it.peek() {
                if !w.is_whitespace() {
                    break;
                }
                any = true;
                end = start + i + w.len_utf8();
                it.next();
            }
            if !any {
                return None;
            }
        } else {
            match it.next() {
                Some((i, o)) if o == c => end = start + i + o.len_utf8(),
                _ => return None,
            }
        }
    }
    Some(start..end)
}

/// Whether `sentence` ends like a finished sentence: a terminator, maybe
/// followed by closing quotes or brackets.
pub fn ends_sentence(sentence: &str) -> bool {
    let s = sentence.trim_end().trim_end_matches(is_closer);
    s.ends_with(is_terminator)
}

/// Whether the terminator run `chars[run_start..run_end]`, followed by a
/// space, ends a sentence, given that the next sentence would begin at
/// `chars[next]`.
fn is_boundary(
    text: &str,
    chars: &[(usize, char)],
    run_start: usize,
    run_end: usize,
    next: usize,
) -> bool {
    // The next sentence must begin with an uppercase letter or a digit,
    // possibly behind opening quotes or brackets.
    let mut first = next;
    while first < chars.len() && is_opener(chars[first].1) {
        first += 1;
    }
    let Some(&(word_at, first_char)) = chars.get(first) else {
        return false;
    };
    if !(first_char.is_uppercase() || first_char.is_ascii_digit()) {
        return false;
    }
    let next_word: &str = {
        let rest = &text[word_at..];
        let end = rest
            .find(|c: char| !c.is_alphabetic())
            .unwrap_or(rest.len());
        &rest[..end]
    };
    let next_is_starter = SENTENCE_STARTERS.contains(&next_word);

    let run = &chars[run_start..run_end];
    if run.iter().any(|(_, c)| matches!(c, '!' | '?')) {
        return true;
    }
    if run.len() > 1 || run[0].1 == '…' {
        // An ellipsis: "[…]" omits words, " … " pauses inside a phrase.
        let bracketed = run_start > 0 && matches!(chars[run_start - 1].1, '[' | '(');
        return !bracketed && next_is_starter;
    }

    // A single period: look at the word it ends.
    let token_start = chars[..run_start]
        .iter()
        .rposition(|(_, c)| *c == ' ')
        .map_or(0, |p| p + 1);
    let token: String = chars[token_start..run_start]
        .iter()
        .map(|(_, c)| *c)
        .skip_while(|c| is_opener(*c))
        .collect();
    if token.is_empty() {
        return true;
    }
    if token.chars().all(|c| c.is_ascii_digit()) && token.len() == 4 {
        // A year: "… ausgerufen, im Januar 1871. Wilhelm I. wurde …"
        // (ordinals that high are rare: "am 13. Januar", "der 100. Geburtstag").
        return true;
    }
    if token.chars().all(|c| c.is_ascii_digit() || c == '.') {
        // "am 13. Januar", "13. 1. 2022", but "… stieg auf 42. Das war …".
        return next_is_starter;
    }
    if token.len() > 1 && token.chars().all(|c| "IVXLCDM".contains(c)) {
        // Regnal numerals: "Die Ermordung Heinrichs IV. Anfang Mai …", but
        // "… heiratete Heinrich VIII. Ihre Ehe …".
        return next_is_starter;
    }
    let lower = token.to_lowercase();
    if NEVER_FINAL.contains(&lower.as_str()) {
        return false;
    }
    if MAYBE_FINAL.contains(&lower.as_str()) {
        return next_is_starter;
    }
    let mut letters = token.chars();
    if letters.next().is_some_and(char::is_alphabetic) && letters.next().is_none() {
        return false; // an initial or one letter of "z. B."
    }
    if token.contains('.')
        && token.split('.').all(|part| {
            (1..=2).contains(&part.chars().count()) && part.chars().all(char::is_alphabetic)
        })
    {
        return next_is_starter; // dotted initialisms: "U.S.A.", "z.T."
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(text: &str) -> Vec<String> {
        split_sentences(text)
    }

    /// Asserts `text` is one sentence.
    fn whole(text: &str) {
        assert_eq!(split(text), vec![text.to_string()], "split {text:?}");
    }

    #[test]
    fn splits_at_terminators_before_a_capital() {
        assert_eq!(
            split("Es regnet. Wir bleiben drinnen! Kommst du? Ja… Das ist gut."),
            vec![
                "Es regnet.",
                "Wir bleiben drinnen!",
                "Kommst du?",
                "Ja…",
                "Das ist gut."
            ]
        );
    }

    #[test]
    fn does_not_split_before_lowercase() {
        whole("Er rief Hilfe! und lief davon. dann kam niemand.");
    }

    #[test]
    fn splits_before_a_digit_or_an_opening_quote() {
        assert_eq!(
            split("Das Jahr endete. 2022 war schwer. „Nie wieder“, sagte sie."),
            vec![
                "Das Jahr endete.",
                "2022 war schwer.",
                "„Nie wieder“, sagte sie."
            ]
        );
    }

    #[test]
    fn keeps_closing_quotes_and_brackets_with_their_sentence() {
        assert_eq!(
            split("„Wir kommen.“ Er ging. «Gut!» Sie blieb. \"Ja?\" (Das war alles.) Ende."),
            vec![
                "„Wir kommen.“",
                "Er ging.",
                "«Gut!»",
                "Sie blieb.",
                "\"Ja?\"",
                "(Das war alles.)",
                "Ende."
            ]
        );
    }

    #[test]
    fn quotations_stay_whole() {
        assert_eq!(
            split("Sie sagte: »Es brennt. Lauft schnell!« Dann war es still. »Wirklich?« »Ja!«"),
            vec![
                "Sie sagte: »Es brennt. Lauft schnell!«",
                "Dann war es still.",
                "»Wirklich?«",
                "»Ja!«"
            ]
        );
        // An opening quote that never closes does not hold sentences together.
        assert_eq!(split("„Es brennt. Lauft!"), vec!["„Es brennt.", "Lauft!"]);
    }

    #[test]
    fn question_inside_a_quote_before_a_comma_is_no_boundary() {
        whole("„Wo bist du?“, fragte er.");
    }

    #[test]
    fn joins_hard_wrapped_lines() {
        assert_eq!(
            split("Der erste Satz\ngeht hier weiter.\n  Der zweite\tauch."),
            vec!["Der erste Satz geht hier weiter.", "Der zweite auch."]
        );
    }

    #[test]
    fn abbreviations_do_not_end_sentences() {
        for text in [
            "Es gibt Obst, z. B. Äpfel und Birnen.",
            "Es gibt Obst, z.B. Äpfel und Birnen.",
            "Er ist krank, d. h. Er kommt nicht.",
            "Dabei waren u. a. Vertreter der Regierung.",
            "Das Rote bzw. Grüne Haus.",
            "Es kamen ca. Tausend Menschen.",
            "Dr. Müller und Prof. Schmidt sprachen.",
            "Sie wohnt in Nr. Fünf an der St. Georgs-Kirche.",
            "Der Schaden liegt bei 3 Mio. Euro und 2 Mrd. Dollar.",
            "Es begann am 3. Jan. Zweitausendzweiundzwanzig.",
            "Siehe dazu vgl. Kapitel drei.",
            "Mr. Smith met Mrs. Jones, e.g. Yesterday.",
        ] {
            whole(text);
        }
    }

    #[test]
    fn abbreviations_that_may_end_a_sentence() {
        assert_eq!(
            split("Es gab Äpfel, Birnen usw. Die Preise stiegen."),
            vec!["Es gab Äpfel, Birnen usw.", "Die Preise stiegen."]
        );
        assert_eq!(
            split("Wir kauften Brot, Milch etc. Danach gingen wir."),
            vec!["Wir kauften Brot, Milch etc.", "Danach gingen wir."]
        );
        whole("Äpfel, Birnen usw. Obst eben.");
    }

    #[test]
    fn ordinals_and_dates_do_not_end_sentences() {
        for text in [
            "Es geschah am 13. Januar in Almaty.",
            "Es geschah am 13. 1. 2022 in Almaty.",
            "Das war im 19. Jahrhundert so.",
            "Er wurde am 1.1.2000 geboren.",
            "Sie belegte den 3. Platz.",
        ] {
            whole(text);
        }
        assert_eq!(
            split("Das geschah 2022. Danach wurde es ruhig."),
            vec!["Das geschah 2022.", "Danach wurde es ruhig."]
        );
    }

    #[test]
    fn regnal_numerals_years_and_more_abbreviations() {
        whole("Die Ermordung Heinrichs IV. Anfang Mai 1610 erschütterte Europa.");
        whole("Ludwig XIV. regierte lange.");
        assert_eq!(
            split("Anna Boleyn heiratete 1533 Heinrich VIII. Ihre Ehe hielt nur drei Jahre."),
            vec![
                "Anna Boleyn heiratete 1533 Heinrich VIII.",
                "Ihre Ehe hielt nur drei Jahre."
            ]
        );
        assert_eq!(
            split("Das Reich wurde ausgerufen, im Januar 1871. Wilhelm I. wurde Kaiser."),
            vec![
                "Das Reich wurde ausgerufen, im Januar 1871.",
                "Wilhelm I. wurde Kaiser."
            ]
        );
        for text in [
            "Die Studie (vgl. Abb. 3) zeigt einen Trend.",
            "Sie erschien beim Verlag Gebr. Mann in Berlin.",
            "Der Dipl.-Ing. Klaus Weber leitet das Projekt.",
            "Wir trafen Dr. med. Meyer in der Stadt.",
            "Siehe S. 12 ff. und Tab. 4 im Anhang.",
        ] {
            whole(text);
        }
    }

    #[test]
    fn decimals_initials_urls_and_emails() {
        whole("Der Wert stieg um 3.5 Prozent.");
        whole("Der Autor J. R. R. Tolkien schrieb es.");
        whole("Mehr unter https://www.example.org/Seite.html und www.Example.com heute.");
        whole("Schreib an Max.Mustermann@Example.de bitte.");
        assert_eq!(
            split("Mehr steht auf www.example.org. Dort gibt es alles."),
            vec!["Mehr steht auf www.example.org.", "Dort gibt es alles."]
        );
        assert_eq!(
            split("Die Firma sitzt in den U.S.A. Die Zentrale ist klein."),
            vec!["Die Firma sitzt in den U.S.A.", "Die Zentrale ist klein."]
        );
    }

    #[test]
    fn ellipses_inside_a_sentence() {
        whole("Er sagte … und ging dann.");
        whole("Und dann... nichts mehr.");
        whole("Er sagte, dass […] Menschen gestorben seien.");
        whole("Er sagte, dass (...) Menschen gestorben seien.");
        whole("Wir warten … Menschen kommen.");
        assert_eq!(
            split("Wir warteten … Dann kam sie."),
            vec!["Wir warteten …", "Dann kam sie."]
        );
    }

    #[test]
    fn english_text_splits_too() {
        assert_eq!(
            split("The U.S. economy grew 2.5 percent. It was expected. Dr. Smith agreed."),
            vec![
                "The U.S. economy grew 2.5 percent.",
                "It was expected.",
                "Dr. Smith agreed."
            ]
        );
    }

    #[test]
    fn edge_cases() {
        assert!(split("").is_empty());
        assert!(split(" \n\t ").is_empty());
        assert_eq!(split("Ohne Punkt"), vec!["Ohne Punkt"]);
        assert_eq!(split("..."), vec!["..."]);
        assert_eq!(split(". A"), vec![".", "A"]);
        assert_eq!(split("Ende. "), vec!["Ende."]);
    }

    #[test]
    fn sentences_join_back_to_the_normalized_paragraph() {
        let text = include_str!("../../samples/de_article.txt");
        for paragraph in text.split("\n\n") {
            assert_eq!(split(paragraph).join(" "), normalize_whitespace(paragraph));
        }
    }

    #[test]
    fn the_sample_article_splits_sensibly() {
        let text = include_str!("../../samples/de_article.txt");
        let mut total = 0;
        for paragraph in segment(text, Format::Plain).iter().filter(|s| s.is_text()) {
            let paragraph = paragraph.as_str();
            let sentences = split(paragraph);
            total += sentences.len();
            for (n, sentence) in sentences.iter().enumerate() {
                let first = sentence.chars().next().unwrap();
                assert!(!first.is_lowercase(), "starts lowercase: {sentence:?}");
                let last = sentence.trim_end_matches(is_closer).chars().last().unwrap();
                // Only a paragraph's last sentence may lack a terminator, and
                // only if the paragraph itself does (the caption line).
                if n + 1 < sentences.len() || paragraph.ends_with(is_terminator) {
                    assert!(is_terminator(last), "no terminator: {sentence:?}");
                }
            }
        }
        // Independent count: the sample has no abbreviations, ordinals or
        // ellipses, so every terminator followed by whitespace or the end of
        // the text ends a sentence, plus the one caption line without one.
        let terminators = text
            .char_indices()
            .filter(|(i, c)| {
                is_terminator(*c)
                    && text[i + c.len_utf8()..]
                        .chars()
                        .next()
                        .is_none_or(char::is_whitespace)
            })
            .count();
        assert_eq!(total, terminators + 1);
        assert_eq!(total, 21); // counted by hand: 4 + 5 + 8 + 1 + 3
    }

    #[test]
    fn sentences_in_never_crosses_a_blank_line() {
        assert_eq!(
            sentences_in("Titel ohne Punkt\n\nDer Text beginnt. Er endet.\n"),
            vec!["Titel ohne Punkt", "Der Text beginnt.", "Er endet."]
        );
    }

    /// Deterministic xorshift generator for the property test.
    struct Rng(u64);

    impl Rng {
        fn below(&mut self, n: usize) -> usize {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 % n as u64) as usize
        }
    }

    #[test]
    fn any_paragraph_splits_without_losing_text() {
        const PIECES: &[&str] = &[
            "Wort", "Der", "und", "13", ".", "!", "?", "…", "...", " ", "\n", "„", "“", "\"", "(",
            ")", "[", "]", "«", "»", "z", "B", "usw", "Dr", "ä", "É", "3.5", "www.x.de", "'", "¿",
        ];
        let mut rng = Rng(0x5EED_0000_1111_2222);
        for _ in 0..3000 {
            let paragraph: String = (0..rng.below(30))
                .map(|_| PIECES[rng.below(PIECES.len())])
                .collect();
            let sentences = split(&paragraph);
            assert_eq!(sentences.join(" "), normalize_whitespace(&paragraph));
            assert!(sentences.iter().all(|s| !s.is_empty() && s.trim() == s));
        }
    }

    #[test]
    fn sentence_spans_point_into_the_text_as_written() {
        let text = "**Summary:**\n\nThe mayor  said\nnothing. Dr. Weber\tagreed!\n\n- A list item\n- Another one";
        let spans = sentence_spans(text);
        let got: Vec<&str> = spans.iter().map(|r| &text[r.clone()]).collect();
        let want: Vec<String> = sentences_in(text);
        assert_eq!(got.len(), want.len(), "{got:?} vs {want:?}");
        for (g, w) in got.iter().zip(&want) {
            assert_eq!(normalize_whitespace(g), *w);
        }
        assert_eq!(got[1], "The mayor  said\nnothing.");
        assert_eq!(got[2], "Dr. Weber\tagreed!");
        // Ranges are ordered and do not overlap.
        assert!(spans.windows(2).all(|w| w[0].end <= w[1].start));
    }

    #[test]
    fn finished_sentences_are_recognised() {
        assert!(ends_sentence("It rained."));
        assert!(ends_sentence("He said: \"Go!\" "));
        assert!(ends_sentence("(See above.)"));
        assert!(ends_sentence("Really…"));
        assert!(!ends_sentence("It was admitted to hospit"));
        assert!(!ends_sentence("Summary:"));
        assert!(!ends_sentence(""));
    }
}
