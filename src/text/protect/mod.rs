//! Text that must come through translation byte for byte.
//!
//! Marian's vocabularies map many characters of URLs, e-mail addresses,
//! code, file paths and emoji to `<unk>` or split them into pieces the
//! model rewrites. [`mask`] replaces each such span with a placeholder
//! (`TOLK0`, `TOLK1`, … — short, alphanumeric, copied through by subword
//! models like a name), and [`Masked::unmask`] puts the original bytes back
//! into the translation. A placeholder the model dropped is inserted at the
//! same relative position (on a word boundary), one it repeated is kept
//! once, so every protected span appears in the output exactly once,
//! whatever the model does.
//!
//! Protected: URLs (`https://…`, `ftp://…`, `www.…`), e-mail addresses,
//! inline code in backticks, file paths (`/etc/hosts`, `~/x`, `./a/b`,
//! `C:\Temp\x.txt`, and file names with a common extension such as
//! `bericht.pdf`), numbers with a unit (`5 km`, `3,5 kg`, `20 °C`, `10 %`,
//! `100 €`, `$5`), and emoji (with their modifiers and joiners).

mod find;
pub use find::find_spans;

/// The placeholder of span `i`.
pub fn placeholder(i: usize) -> String {
    format!("{PREFIX}{i}")
}

const PREFIX: &str = "TOLK";

/// A text with its protected spans replaced by placeholders.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Masked {
    /// The text the model sees.
    pub text: String,
    /// The original bytes of placeholder `i`.
    pub spans: Vec<String>,
}

/// Replaces every protected span of `text` with a placeholder.
pub fn mask(text: &str) -> Masked {
    let mut out = Masked::default();
    let mut last = 0;
    let spans = find_spans(text);
    for (k, &(start, end)) in spans.iter().enumerate() {
        // A placeholder must not run into digits after it ("TOLK0" then
        // "13" would read as placeholder 13): such digits join the span.
        let next = spans.get(k + 1).map_or(text.len(), |s| s.0);
        let end = end
            + text[end..next]
                .bytes()
                .take_while(u8::is_ascii_digit)
                .count();
        out.text.push_str(&text[last..start]);
        out.text.push_str(&placeholder(out.spans.len()));
        out.spans.push(text[start..end].to_string());
        last = end;
    }
    out.text.push_str(&text[last..]);
    out
}

impl Masked {
    /// Whether the text has nothing to translate: only placeholders,
    /// digits, punctuation and spaces.
    pub fn is_inert(&self) -> bool {
        let mut rest = self.text.as_str();
        let mut letters = false;
        while let Some((i, _)) = rest.char_indices().find(|(_, c)| c.is_alphabetic()) {
            let tail = &rest[i..];
            match parse_placeholder(tail) {
                Some((_, len)) => rest = &tail[len..],
                None => {
                    letters = true;
                    break;
                }
            }
        }
        !letters
    }

    /// Puts the protected spans back into `translation`.
    pub fn unmask(&self, translation: &str) -> String {
        unmask(&self.text, &self.spans, translation)
    }
}

/// Puts `spans` (placeholder `i` stands for `spans[i]` in the `masked`
/// text the model saw) back into the model's `translation`.
pub fn unmask(masked: &str, spans: &[String], translation: &str) -> String {
    if spans.is_empty() {
        return translation.to_string();
    }
    fill(
        &fix_placeholders(masked, translation, spans.len(), 0),
        |i| spans.get(i).map(String::as_str),
    )
}

/// Rewrites the placeholders `first..first + count` of `translation` into
/// their canonical form, each exactly once: repeats are dropped, missing
/// ones inserted at the position they had in `source`, relative to its
/// length, on a word boundary. Other placeholder-like words are left alone.
pub fn fix_placeholders(source: &str, translation: &str, count: usize, first: usize) -> String {
    let mut seen = vec![false; count];
    let mut out = String::with_capacity(translation.len() + 8 * count);
    let mut rest = translation;
    while let Some(pos) = find_prefix(rest) {
        out.push_str(&rest[..pos]);
        let tail = &rest[pos..];
        match parse_placeholder(tail) {
            Some((i, len)) if (first..first + count).contains(&i) => {
                if !seen[i - first] {
                    seen[i - first] = true;
                    out.push_str(&placeholder(i));
                } else if out.ends_with(' ') && tail[len..].starts_with(' ') {
                    out.pop();
                }
                rest = &tail[len..];
            }
            _ => {
                out.push_str(&tail[..PREFIX.len()]);
                rest = &tail[PREFIX.len()..];
            }
        }
    }
    out.push_str(rest);
    for (k, _) in seen.iter().enumerate().filter(|(_, s)| !**s) {
        let i = first + k;
        let relative = find_canonical(source, i)
            .map(|p| p as f64 / source.len().max(1) as f64)
            .unwrap_or(1.0);
        out = insert_at_word_boundary(&out, relative, &placeholder(i));
    }
    out
}

/// Replaces canonical placeholders by `original(i)`; placeholders without
/// an original stay as they are.
pub fn fill<'a>(text: &str, original: impl Fn(usize) -> Option<&'a str>) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = rest.find(PREFIX) {
        out.push_str(&rest[..pos]);
        let tail = &rest[pos..];
        match parse_canonical(tail).and_then(|(i, len)| original(i).map(|o| (o, len))) {
            Some((o, len)) => {
                out.push_str(o);
                rest = &tail[len..];
            }
            None => {
                out.push_str(PREFIX);
                rest = &tail[PREFIX.len()..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// Cuts a text with canonical placeholders into text pieces and
/// placeholder indices, in order.
pub fn split_placeholders(text: &str) -> Vec<Piece<'_>> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(pos) = rest.find(PREFIX) {
        let tail = &rest[pos..];
        match parse_canonical(tail) {
            Some((i, len)) => {
                if pos > 0 {
                    out.push(Piece::Text(&rest[..pos]));
                }
                out.push(Piece::Placeholder(i));
                rest = &tail[len..];
            }
            None => {
                // Not a placeholder: keep it with the text that follows.
                let next = rest[pos + PREFIX.len()..]
                    .find(PREFIX)
                    .map_or(rest.len(), |n| pos + PREFIX.len() + n);
                out.push(Piece::Text(&rest[..next]));
                rest = &rest[next..];
            }
        }
    }
    if !rest.is_empty() {
        out.push(Piece::Text(rest));
    }
    out
}

/// A piece of a text with placeholders.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Piece<'a> {
    Text(&'a str),
    Placeholder(usize),
}

/// Byte offset of canonical placeholder `i` in `text`.
fn find_canonical(text: &str, i: usize) -> Option<usize> {
    let p = placeholder(i);
    text.match_indices(&p)
        .find(|(pos, _)| !text[pos + p.len()..].starts_with(|c: char| c.is_ascii_digit()))
        .map(|(pos, _)| pos)
}

/// Where the placeholder prefix starts, in any case.
fn find_prefix(text: &str) -> Option<usize> {
    let bytes = text.as_bytes();
    (0..bytes.len().saturating_sub(PREFIX.len() - 1))
        .find(|&i| bytes[i..i + PREFIX.len()].eq_ignore_ascii_case(PREFIX.as_bytes()))
}

/// A placeholder as a model may write it: any case, spaces before the
/// digits (`TOLK 3`, `tolk3`). Returns its index and byte length.
fn parse_placeholder(text: &str) -> Option<(usize, usize)> {
    let head = text.get(..PREFIX.len())?;
    if !head.eq_ignore_ascii_case(PREFIX) {
        return None;
    }
    let after = &text[PREFIX.len()..];
    let spaces = after.len() - after.trim_start_matches(' ').len();
    let digits = after[spaces..]
        .bytes()
        .take_while(u8::is_ascii_digit)
        .count();
    if digits == 0 || digits > 6 {
        return None;
    }
    let index = after[spaces..spaces + digits].parse().ok()?;
    Some((index, PREFIX.len() + spaces + digits))
}

fn parse_canonical(text: &str) -> Option<(usize, usize)> {
    let after = text.strip_prefix(PREFIX)?;
    let digits = after.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 || digits > 6 {
        return None;
    }
    Some((after[..digits].parse().ok()?, PREFIX.len() + digits))
}

/// Inserts `word` into `text` at the word boundary nearest to `relative`
/// (0 = start, 1 = end) of its length.
pub fn insert_at_word_boundary(text: &str, relative: f64, word: &str) -> String {
    if text.is_empty() {
        return word.to_string();
    }
    let target = (relative.clamp(0.0, 1.0) * text.len() as f64).round() as usize;
    // Candidate boundaries: the start, every space, the end (before final
    // punctuation, so "… end TOLK0." rather than "… end. TOLK0").
    let body_end = text.trim_end_matches(['.', '!', '?', '…']).len();
    let mut best = (usize::MAX, 0);
    let mut consider = |pos: usize| {
        let d = pos.abs_diff(target);
        if d < best.0 {
            best = (d, pos);
        }
    };
    consider(0);
    for (i, c) in text.char_indices() {
        if c == ' ' {
            consider(i);
        }
    }
    consider(body_end);
    let pos = best.1;
    let (before, after) = text.split_at(pos);
    let mut out = String::with_capacity(text.len() + word.len() + 2);
    out.push_str(before);
    if !before.is_empty() && !before.ends_with(' ') {
        out.push(' ');
    }
    out.push_str(word);
    if pos == 0 && !after.is_empty() && !after.starts_with(' ') {
        out.push(' ');
    }
    out.push_str(after);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn protected(text: &str) -> Vec<&str> {
        find_spans(text)
            .into_iter()
            .map(|(s, e)| &text[s..e])
            .collect()
    }

    #[test]
    fn finds_urls_emails_code_paths_units_and_emoji() {
        assert_eq!(
            protected("Siehe https://de.wikipedia.org/wiki/Köln_(Stadt). Oder (www.tolk.de)!"),
            vec!["https://de.wikipedia.org/wiki/Köln_(Stadt)", "www.tolk.de"]
        );
        assert_eq!(
            protected("Schreib an max.muster@beispiel.de, bitte."),
            vec!["max.muster@beispiel.de"]
        );
        assert_eq!(
            protected("Starte `cargo build --release` und dann ``a ` b``."),
            vec!["`cargo build --release`", "``a ` b``"]
        );
        assert_eq!(
            protected("Die Datei /etc/hosts, ~/notes.txt, C:\\Temp\\x.log und bericht.pdf."),
            vec![
                "/etc/hosts",
                "~/notes.txt",
                "C:\\Temp\\x.log",
                "bericht.pdf"
            ]
        );
        assert_eq!(
            protected("Es sind 5 km, 3,5 kg, 20 °C, 10 % und 1.000 € bei $5 und 7,5%."),
            vec!["5 km", "3,5 kg", "20 °C", "10 %", "1.000 €", "$5", "7,5%"]
        );
        assert_eq!(
            protected("Toll 😀! Familie 👨‍👩‍👧 und 👍🏽 in 🇩🇪."),
            vec!["😀", "👨‍👩‍👧", "👍🏽", "🇩🇪"]
        );
    }

    #[test]
    fn leaves_ordinary_german_alone() {
        for text in [
            "Am 13. Januar 2022 kamen 300 Menschen, z.B. aus Köln.",
            "Er sagte: „Das ist gut.“ Dann ging er (um 8 Uhr) nach Hause.",
            "Die U.S.A. und die EU verhandeln seit 3 Jahren.",
            "Das Verhältnis liegt bei 3:1 und/oder 50/50.",
        ] {
            assert!(protected(text).is_empty(), "{text}: {:?}", protected(text));
        }
    }

    #[test]
    fn masks_and_restores_byte_for_byte() {
        let text = "Lies https://x.de/a?b=1 und schreib an a@b.de 🙂.";
        let m = mask(text);
        assert_eq!(m.text, "Lies TOLK0 und schreib an TOLK1 TOLK2.");
        assert_eq!(m.unmask(&m.text), text);
        // A model that kept the placeholders but reordered and re-cased them.
        assert_eq!(
            m.unmask("Write to tolk 1 and read TOLK0 TOLK2."),
            "Write to a@b.de and read https://x.de/a?b=1 🙂."
        );
    }

    #[test]
    fn digits_after_a_span_never_extend_its_placeholder() {
        // Found by tests/text_properties.rs: "✫" then "13" masked as
        // "TOLK013", which reads back as placeholder 13.
        for text in [
            "- ✫13.U.S.A. usw.",
            "😀2024 und 🇩🇪7",
            "a@b.de1 ok",
            "😀12 km",
        ] {
            let m = mask(text);
            assert_eq!(m.unmask(&m.text), text, "{:?}", m);
        }
        assert_eq!(mask("- ✫13.U.S.A.").text, "- TOLK0.U.S.A.");
    }

    #[test]
    fn dropped_and_repeated_placeholders_are_repaired() {
        let m = mask("Lies https://x.de/a bitte heute und dann a@b.de sofort.");
        assert_eq!(m.spans.len(), 2);
        // Both dropped: inserted where they were, relatively.
        let out = m.unmask("Read please today and then immediately.");
        assert_eq!(out.matches("https://x.de/a").count(), 1, "{out}");
        assert_eq!(out.matches("a@b.de").count(), 1, "{out}");
        assert!(
            out.find("https").unwrap() < out.find("a@b").unwrap(),
            "{out}"
        );
        // Repeated: kept once.
        let out = m.unmask("Read TOLK0 TOLK0 TOLK0 and TOLK1.");
        assert_eq!(out, "Read https://x.de/a and a@b.de.");
        // Noise around: unrelated indices stay.
        assert!(m.unmask("TOLK7 x").contains("TOLK7"));
    }

    #[test]
    fn inert_texts_need_no_model() {
        assert!(mask("https://x.de").is_inert());
        assert!(mask("(5 km) – 😀").is_inert());
        assert!(!mask("Siehe https://x.de").is_inert());
    }

    #[test]
    fn insertion_respects_word_boundaries() {
        assert_eq!(insert_at_word_boundary("a bc de.", 1.0, "X"), "a bc de X.");
        assert_eq!(insert_at_word_boundary("abc def", 0.0, "X"), "X abc def");
        assert_eq!(insert_at_word_boundary("", 0.5, "X"), "X");
        assert_eq!(insert_at_word_boundary("abc def", 0.5, "X"), "abc X def");
    }

    #[test]
    fn split_placeholders_cuts_text_and_indices() {
        assert_eq!(
            split_placeholders("a TOLK1 b TOLKx TOLK22"),
            vec![
                Piece::Text("a "),
                Piece::Placeholder(1),
                Piece::Text(" b TOLKx "),
                Piece::Placeholder(22)
            ]
        );
    }
}
