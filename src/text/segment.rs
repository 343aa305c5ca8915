//! Cutting a document into prose to translate and markup to keep, losslessly.
//!
//! [`segment`] returns [`Segment`]s whose concatenation is exactly the input.
//! A translator replaces each [`Segment::Text`] with its translation and
//! copies each [`Segment::Keep`] as it is, so layout, code and links survive.
//!
//! Every segment is non-empty, neighbours always differ in kind, and a
//! `Text` never starts or ends with whitespace (surrounding whitespace is
//! `Keep`, so a translation cannot lose the line breaks around it).
//!
//! Markdown is read by [`super::markdown`] (what it recognises is listed there).

use std::path::Path;
use std::str::FromStr;

/// A piece of a document: prose to translate, or anything else to copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    /// Layout, markup or code: copied verbatim.
    Keep(String),
    /// Prose: translated.
    Text(String),
}

impl Segment {
    /// The segment's text, whatever its kind.
    pub fn as_str(&self) -> &str {
        match self {
            Segment::Keep(s) | Segment::Text(s) => s,
        }
    }

    pub fn is_text(&self) -> bool {
        matches!(self, Segment::Text(_))
    }
}

/// How a document is marked up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// Paragraphs separated by blank lines.
    #[default]
    Plain,
    /// Markdown (CommonMark with GFM tables), read pragmatically.
    Markdown,
    /// An HTML page (see [`crate::text::html`]); [`segment`] reads it as plain text.
    Html,
    /// SRT or WebVTT subtitles (see [`crate::text::subtitles`]); [`segment`]
    /// reads them as plain text.
    Subtitles,
}

impl Format {
    /// By extension, any case: `.md`/`.markdown` Markdown, `.html`/`.htm`/
    /// `.xhtml` HTML, `.srt`/`.vtt` subtitles, everything else Plain.
    pub fn from_path(path: &Path) -> Format {
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .unwrap_or_default()
            .to_ascii_lowercase();
        match ext.as_str() {
            "md" | "markdown" => Format::Markdown,
            "html" | "htm" | "xhtml" => Format::Html,
            "srt" | "vtt" => Format::Subtitles,
            _ => Format::Plain,
        }
    }

    /// The canonical name, as `--input-format` takes it.
    pub fn name(self) -> &'static str {
        match self {
            Format::Plain => "plain",
            Format::Markdown => "markdown",
            Format::Html => "html",
            Format::Subtitles => "subtitles",
        }
    }
}

impl FromStr for Format {
    type Err = String;

    /// `plain`/`text`/`txt`, `markdown`/`md`, `html`/`htm`, or
    /// `subtitles`/`srt`/`vtt`, any case.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_lowercase().as_str() {
            "plain" | "text" | "txt" => Ok(Format::Plain),
            "markdown" | "md" => Ok(Format::Markdown),
            "html" | "htm" => Ok(Format::Html),
            "subtitles" | "srt" | "vtt" => Ok(Format::Subtitles),
            _ => Err(format!(
                "unknown format {s:?}: expected plain, markdown, html or subtitles"
            )),
        }
    }
}

/// Cuts `text` into prose and markup; the segments concatenate to `text`.
pub fn segment(text: &str, format: Format) -> Vec<Segment> {
    let mut out = Builder::default();
    match format {
        Format::Plain | Format::Html | Format::Subtitles => segment_plain(text, &mut out),
        Format::Markdown => super::markdown::scan(text, &mut out),
    }
    out.segments
}

/// Appends segments, merging neighbours of one kind and moving whitespace
/// at the edges of prose into `Keep`.
#[derive(Default)]
pub(super) struct Builder {
    segments: Vec<Segment>,
}

impl Builder {
    pub(super) fn keep(&mut self, s: &str) {
        if s.is_empty() {
            return;
        }
        match self.segments.last_mut() {
            Some(Segment::Keep(k)) => k.push_str(s),
            _ => self.segments.push(Segment::Keep(s.to_string())),
        }
    }

    pub(super) fn text(&mut self, s: &str) {
        let start = s.len() - s.trim_start().len();
        let end = s.trim_end().len();
        if end <= start {
            self.keep(s);
            return;
        }
        self.keep(&s[..start]);
        match self.segments.last_mut() {
            Some(Segment::Text(t)) => t.push_str(&s[start..end]),
            _ => self.segments.push(Segment::Text(s[start..end].to_string())),
        }
        self.keep(&s[end..]);
    }
}

fn segment_plain(text: &str, out: &mut Builder) {
    let mut paragraph_start = None;
    let mut pos = 0;
    for line in text.split_inclusive('\n') {
        if line.trim().is_empty() {
            if let Some(start) = paragraph_start.take() {
                out.text(&text[start..pos]);
            }
            out.keep(line);
        } else if paragraph_start.is_none() {
            paragraph_start = Some(pos);
        }
        pos += line.len();
    }
    if let Some(start) = paragraph_start {
        out.text(&text[start..]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn concat(segments: &[Segment]) -> String {
        segments.iter().map(Segment::as_str).collect()
    }

    fn texts(segments: &[Segment]) -> Vec<&str> {
        segments
            .iter()
            .filter(|s| s.is_text())
            .map(Segment::as_str)
            .collect()
    }

    fn keeps(segments: &[Segment]) -> Vec<&str> {
        segments
            .iter()
            .filter(|s| !s.is_text())
            .map(Segment::as_str)
            .collect()
    }

    /// The invariants every segmentation must keep.
    fn check_invariants(input: &str, format: Format) -> Vec<Segment> {
        let segments = segment(input, format);
        assert_eq!(concat(&segments), input, "not lossless for {input:?}");
        for pair in segments.windows(2) {
            assert_ne!(
                pair[0].is_text(),
                pair[1].is_text(),
                "neighbours of one kind in {input:?}: {segments:?}"
            );
        }
        for s in &segments {
            assert!(!s.as_str().is_empty(), "empty segment for {input:?}");
            if let Segment::Text(t) = s {
                assert_eq!(t.trim(), t, "text with edge whitespace in {input:?}");
            }
        }
        segments
    }

    #[test]
    fn format_from_path() {
        assert_eq!(Format::from_path(Path::new("a/b.md")), Format::Markdown);
        assert_eq!(Format::from_path(Path::new("b.MARKDOWN")), Format::Markdown);
        assert_eq!(Format::from_path(Path::new("b.txt")), Format::Plain);
        assert_eq!(Format::from_path(Path::new("md")), Format::Plain);
        assert_eq!("Markdown".parse::<Format>(), Ok(Format::Markdown));
        assert!("rst".parse::<Format>().is_err());
    }

    #[test]
    fn plain_paragraphs_are_text_and_gaps_are_kept() {
        let input = "\n  Erster Absatz,\nzweite Zeile.\n\n\nZweiter Absatz.  \n";
        let segments = check_invariants(input, Format::Plain);
        assert_eq!(
            segments,
            vec![
                Segment::Keep("\n  ".into()),
                Segment::Text("Erster Absatz,\nzweite Zeile.".into()),
                Segment::Keep("\n\n\n".into()),
                Segment::Text("Zweiter Absatz.".into()),
                Segment::Keep("  \n".into()),
            ]
        );
    }

    #[test]
    fn plain_edge_cases() {
        assert!(check_invariants("", Format::Plain).is_empty());
        assert_eq!(
            check_invariants(" \n\t\n", Format::Plain),
            vec![Segment::Keep(" \n\t\n".into())]
        );
        assert_eq!(
            check_invariants("Satz", Format::Plain),
            vec![Segment::Text("Satz".into())]
        );
        // Windows line endings and whitespace-only lines separate paragraphs.
        let segments = check_invariants("A.\r\n \r\nB.\r\n", Format::Plain);
        assert_eq!(texts(&segments), vec!["A.", "B."]);
    }

    #[test]
    fn the_sample_article_has_five_paragraphs() {
        let text = include_str!("../../samples/de_article.txt");
        let segments = check_invariants(text, Format::Plain);
        let paragraphs = texts(&segments);
        assert_eq!(paragraphs.len(), 5);
        assert!(paragraphs[0].starts_with("In Kasachstan"));
        assert_eq!(paragraphs[3], "KasachstanProtesteJanuar2022 2");
    }

    #[test]
    fn markdown_headings_lists_and_quotes() {
        let input = "# Titel der Seite #\n\nEin Absatz,\numbrochen.\n\n- Punkt eins\n  geht weiter\n- [x] erledigt\n1. Erstens\n\n> Zitat hier\n> > tiefer\n";
        let segments = check_invariants(input, Format::Markdown);
        assert_eq!(
            texts(&segments),
            vec![
                "Titel der Seite",
                "Ein Absatz,\numbrochen.",
                "Punkt eins\n  geht weiter",
                "erledigt",
                "Erstens",
                "Zitat hier",
                "tiefer",
            ]
        );
        let kept = keeps(&segments);
        assert_eq!(kept[0], "# ");
        assert!(kept.contains(&" #\n\n"));
        assert!(kept.contains(&"\n- [x] "));
        assert!(kept.contains(&"\n> > "));
    }

    #[test]
    fn markdown_code_blocks_are_kept() {
        let input = "Vorher.\n\n```rust\nlet x = \"Text\";\n\nmehr Code\n```\nNachher.\n\n    eingerückter Code\n    noch mehr\n\n~~~\nnie geschlossen\n";
        let segments = check_invariants(input, Format::Markdown);
        assert_eq!(texts(&segments), vec!["Vorher.", "Nachher."]);
        let all_kept: String = keeps(&segments).concat();
        assert!(all_kept.contains("let x = \"Text\";\n\nmehr Code\n```\n"));
        assert!(all_kept.contains("    eingerückter Code\n    noch mehr\n"));
        assert!(all_kept.ends_with("~~~\nnie geschlossen\n"));
    }

    #[test]
    fn markdown_indented_line_continues_a_paragraph() {
        let segments = check_invariants("Absatz\n    weiter\n", Format::Markdown);
        assert_eq!(texts(&segments), vec!["Absatz\n    weiter"]);
    }

    #[test]
    fn markdown_inline_links_code_and_tags() {
        let input = "Siehe [die Doku](https://example.org/a_(b) \"Titel\") und `cargo test`, <br> <https://x.y> ![ein Bild](bild.png) [^1] [Ref][r].";
        let segments = check_invariants(input, Format::Markdown);
        assert_eq!(
            texts(&segments),
            vec!["Siehe", "die Doku", "und", ",", "ein Bild", "Ref", "."]
        );
        let kept = keeps(&segments);
        assert!(kept.contains(&"](https://example.org/a_(b) \"Titel\") "));
        assert!(kept.contains(&" `cargo test`"));
        assert!(kept.contains(&" <br> <https://x.y> ![")); // tag, autolink, image opener
        assert!(kept.contains(&"](bild.png) [^1] ["));
        assert!(kept.contains(&"][r]"));
    }

    #[test]
    fn markdown_escapes_and_unclosed_markup_stay_prose() {
        let input = "Preis \\[netto\\](x) und ``nicht zu` und a < b, [offen";
        let segments = check_invariants(input, Format::Markdown);
        assert_eq!(texts(&segments), vec![input]);
    }

    #[test]
    fn markdown_tables_keep_pipes_and_delimiters() {
        let input =
            "| Name | Wert |\n|:-----|-----:|\n| Apfel | `1` |\n| Birne | zwei |\n\nDanach.\n";
        let segments = check_invariants(input, Format::Markdown);
        assert_eq!(
            texts(&segments),
            vec!["Name", "Wert", "Apfel", "Birne", "zwei", "Danach."]
        );
        assert!(keeps(&segments).contains(&" |\n|:-----|-----:|\n| "));
    }

    #[test]
    fn markdown_html_front_matter_rules_and_setext() {
        let input = "---\ntitle: Hallo\n---\n<div class=\"x\">\nInhalt im HTML\n</div>\n\n<!-- Kommentar\nzwei Zeilen -->\nÜberschrift\n===========\n\n***\n[r]: https://example.org\nText.\n";
        let segments = check_invariants(input, Format::Markdown);
        assert_eq!(texts(&segments), vec!["Überschrift", "Text."]);
        assert!(keeps(&segments)[0].starts_with("---\ntitle: Hallo\n---\n<div"));
    }

    #[test]
    fn markdown_reference_definitions_are_kept_whole_and_only_at_a_paragraph_start() {
        // Broken over lines as CommonMark allows: label, destination, title.
        let input = "[a]:\n  https://x.org\n  \"Titel\"\n[b\nc]: <d e> 'T'\nText.\n";
        let segments = check_invariants(input, Format::Markdown);
        assert_eq!(texts(&segments), vec!["Text."]);
        // Not definitions: junk after the title, a bracket in the label, no
        // destination, and any line inside a paragraph (found by the property
        // tests: "[…] Text" followed by "[ref]: https://x.org\" Satz" was
        // read as one definition once the lines were joined).
        for prose in [
            "[a]: https://x.org \"Titel\" und mehr",
            "[[a]]: https://x.org",
            "[a]:",
            "[…] Text\n[ref]: https://x.org\" Satz",
            "Satz.\n[r]: https://x.org",
        ] {
            let segments = check_invariants(prose, Format::Markdown);
            assert!(
                !keeps(&segments).iter().any(|k| k.contains("]:")),
                "{prose:?}: {segments:?}"
            );
        }
        // A broken title leaves the definition on the destination's line.
        let segments = check_invariants("[a]: /url\n\"Titel\" ok\n", Format::Markdown);
        assert_eq!(texts(&segments), vec!["\"Titel\" ok"]);
    }

    #[test]
    fn markdown_inline_tags_read_the_same_with_any_whitespace() {
        // A fuzzing finding: `<a\rb>` was prose but its translation, with
        // whitespace collapsed, `<a b>`, a tag.
        for input in [
            "Text <span\rclass=\"x\"> mehr",
            "Text <span\u{a0}class=\"x\"> mehr",
        ] {
            let segments = check_invariants(input, Format::Markdown);
            assert_eq!(texts(&segments), vec!["Text", "mehr"], "{input:?}");
        }
    }

    #[test]
    fn markdown_footnote_definitions_keep_the_marker_and_translate_the_text() {
        let segments = check_invariants("[^1]: Der Zug kam spät.\n", Format::Markdown);
        assert_eq!(texts(&segments), vec!["Der Zug kam spät."]);
        assert_eq!(keeps(&segments)[0], "[^1]: ");
    }

    #[test]
    fn markdown_ordered_item_other_than_one_does_not_interrupt_a_paragraph() {
        let segments = check_invariants("Es war am\n13. Januar.\n", Format::Markdown);
        assert_eq!(texts(&segments), vec!["Es war am\n13. Januar."]);
    }

    #[test]
    fn markdown_quote_with_fence_keeps_the_code() {
        let input = "> Satz.\n> ```\n> code hier\n> ```\n> Noch ein Satz.\n";
        let segments = check_invariants(input, Format::Markdown);
        assert_eq!(texts(&segments), vec!["Satz.", "Noch ein Satz."]);
    }

    /// A tiny deterministic generator (xorshift) so the property test needs
    /// no extra crate and every failure is reproducible.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    /// Fragments that exercise every rule, including broken markup.
    const FRAGMENTS: &[&str] = &[
        "Wort",
        "Satz.",
        " ",
        "  ",
        "\t",
        "\n",
        "\n\n",
        "\r\n",
        "    ",
        "# ",
        "###",
        "- ",
        "* ",
        "+ ",
        "1. ",
        "2) ",
        "> ",
        ">",
        "```",
        "~~~",
        "`",
        "``",
        "|",
        "|---|",
        ":-:",
        "[",
        "]",
        "(",
        ")",
        "](",
        "![",
        "[^",
        "<",
        ">",
        "<div>",
        "</div>",
        "<!--",
        "-->",
        "<?",
        "?>",
        "<br/>",
        "<https://a.b>",
        "\\",
        "---",
        "***",
        "===",
        "[ ] ",
        "[x] ",
        "ä",
        "ß",
        "„",
        "“",
        "…",
        "é",
        "\u{a0}",
        "€",
        "z. B.",
        "[r]: ",
        "http://x.y/z",
        "---\n",
    ];

    #[test]
    fn concatenating_segments_reproduces_any_input() {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        for _ in 0..3000 {
            let n = rng.below(40);
            let input: String = (0..n)
                .map(|_| FRAGMENTS[rng.below(FRAGMENTS.len())])
                .collect();
            check_invariants(&input, Format::Plain);
            check_invariants(&input, Format::Markdown);
        }
    }
}
