//! A document of any supported format as paragraphs to translate and a way
//! to put their translations back: plain text and Markdown through
//! [`segment`](super::segment()), HTML through [`super::html`], subtitles
//! through [`super::subtitles`].

use super::html::HtmlPage;
use super::subtitles::Subtitles;
use super::{segment, Format, Segment};
use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};

/// The structure of a document, without its translatable text.
#[derive(Clone)]
pub enum Document {
    Segments(Vec<Segment>),
    Html(HtmlPage),
    Subtitles(Subtitles),
}

/// A paragraph to translate.
#[derive(Debug, Clone)]
pub struct Paragraph {
    pub text: String,
    /// Part of the reader's text, reported in aligned output (false for
    /// helper texts such as an HTML link's words, translated only to place
    /// its tags).
    pub aligned: bool,
}

impl std::fmt::Debug for Document {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Document::Segments(_) => "Document::Segments",
            Document::Html(_) => "Document::Html",
            Document::Subtitles(_) => "Document::Subtitles",
        })
    }
}

impl Document {
    /// Reads `text` as `format`. Only subtitles can fail (a file that is not
    /// SRT/VTT, with the line number); HTML is repaired as browsers do.
    pub fn parse(text: &str, format: Format) -> Result<(Document, Vec<Paragraph>)> {
        Ok(match format {
            Format::Plain | Format::Markdown => {
                let segments = segment(text, format);
                let paragraphs = segments
                    .iter()
                    .filter_map(|s| match s {
                        Segment::Text(t) => Some(Paragraph {
                            text: t.clone(),
                            aligned: true,
                        }),
                        Segment::Keep(_) => None,
                    })
                    .collect();
                (Document::Segments(segments), paragraphs)
            }
            Format::Html => {
                let page = HtmlPage::parse(text)?;
                let paragraphs = page
                    .paragraphs()
                    .iter()
                    .map(|p| Paragraph {
                        text: p.text.clone(),
                        aligned: p.aligned,
                    })
                    .collect();
                (Document::Html(page), paragraphs)
            }
            Format::Subtitles => {
                let subs = Subtitles::parse(text)?;
                let paragraphs = subs
                    .paragraphs()
                    .into_iter()
                    .map(|text| Paragraph {
                        text,
                        aligned: true,
                    })
                    .collect();
                (Document::Subtitles(subs), paragraphs)
            }
        })
    }

    /// The document with paragraph `i` replaced by `translations[i]`.
    pub fn assemble(&self, translations: &[String]) -> Result<String> {
        match self {
            Document::Segments(segments) => {
                let texts = segments.iter().filter(|s| s.is_text()).count();
                if texts != translations.len() {
                    bail!(
                        "internal error: {} translations for {texts} paragraphs",
                        translations.len()
                    );
                }
                let mut out = String::new();
                let mut next = translations.iter();
                for seg in segments {
                    match seg {
                        Segment::Keep(s) => out.push_str(s),
                        Segment::Text(_) => out.push_str(next.next().map_or("", String::as_str)),
                    }
                }
                Ok(out)
            }
            Document::Html(page) => page.assemble(translations),
            Document::Subtitles(subs) => subs.assemble(translations),
        }
    }
}

/// What a reader reads of a document, as plain paragraphs (for summaries):
/// an HTML page's main text (see [`super::readable`]), a subtitle file's
/// cue text without numbers and timings, other formats as they are.
pub fn reading_text(text: &str, format: Format) -> String {
    match format {
        Format::Html => super::readable::main_text(text),
        Format::Subtitles => match Subtitles::parse(text) {
            Ok(subs) => subs.paragraphs().join("\n\n"),
            Err(_) => text.to_string(),
        },
        Format::Plain | Format::Markdown => text.to_string(),
    }
}

/// One sentence and its translation, for `--format jsonl|tsv`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlignedSentence {
    /// Index of the paragraph (text block, HTML paragraph or attribute,
    /// subtitle sentence group) in the document, from 0.
    pub paragraph: usize,
    /// Index of the sentence in its paragraph, from 0.
    pub sentence: usize,
    pub source: String,
    pub translation: String,
    /// Mean log-probability per generated token (closer to 0 is surer);
    /// for a sentence translated in parts, the parts' mean.
    pub score: Option<f32>,
    /// The translation reached `--max-length` and may be cut short.
    pub hit_max_length: bool,
    /// The sentence was longer than the model's limit and translated in parts.
    pub split: bool,
}

/// Output format of `tolk translate`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OutputFormat {
    /// The translated document.
    #[default]
    Text,
    /// One JSON object per sentence.
    Jsonl,
    /// A header line, then one tab-separated line per sentence.
    Tsv,
}

impl std::str::FromStr for OutputFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "text" | "document" => Ok(Self::Text),
            "jsonl" | "json" => Ok(Self::Jsonl),
            "tsv" => Ok(Self::Tsv),
            _ => Err(format!(
                "unknown output format {s:?}: expected text, jsonl or tsv"
            )),
        }
    }
}

/// Column names of the TSV output, in order.
pub const TSV_HEADER: &str =
    "paragraph\tsentence\tscore\thit_max_length\tsplit\tsource\ttranslation";

/// Escapes a TSV field: backslash, tab, newline and carriage return.
fn tsv_field(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('\t', "\\t")
        .replace('\n', "\\n")
        .replace('\r', "\\r")
}

/// Writes the records as JSON lines or TSV (with a header line).
pub fn format_aligned(records: &[AlignedSentence], format: OutputFormat) -> String {
    let mut out = String::new();
    match format {
        OutputFormat::Text | OutputFormat::Jsonl => {
            for r in records {
                // Serializing plain strings and numbers cannot fail.
                out.push_str(&serde_json::to_string(r).unwrap_or_default());
                out.push('\n');
            }
        }
        OutputFormat::Tsv => {
            out.push_str(TSV_HEADER);
            out.push('\n');
            for r in records {
                out.push_str(&format!(
                    "{}\t{}\t{}\t{}\t{}\t{}\t{}\n",
                    r.paragraph,
                    r.sentence,
                    r.score.map(|s| format!("{s:.4}")).unwrap_or_default(),
                    r.hit_max_length,
                    r.split,
                    tsv_field(&r.source),
                    tsv_field(&r.translation)
                ));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(source: &str) -> AlignedSentence {
        AlignedSentence {
            paragraph: 1,
            sentence: 2,
            source: source.into(),
            translation: "A\tb".into(),
            score: Some(-0.25),
            hit_max_length: false,
            split: true,
        }
    }

    #[test]
    fn tsv_escapes_and_has_a_header() {
        let out = format_aligned(&[record("x\\y\nz")], OutputFormat::Tsv);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], TSV_HEADER);
        assert_eq!(lines[1], "1\t2\t-0.2500\tfalse\ttrue\tx\\\\y\\nz\tA\\tb");
        assert_eq!(lines.len(), 2);
    }

    #[test]
    fn jsonl_has_every_field() {
        let out = format_aligned(&[record("Hallo")], OutputFormat::Jsonl);
        let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
        assert_eq!(v["paragraph"], 1);
        assert_eq!(v["sentence"], 2);
        assert_eq!(v["source"], "Hallo");
        assert_eq!(v["translation"], "A\tb");
        assert_eq!(v["score"], -0.25);
        assert_eq!(v["hit_max_length"], false);
        assert_eq!(v["split"], true);
    }

    #[test]
    fn reading_text_drops_markup_and_timings() {
        assert_eq!(
            reading_text(
                "<nav>Menü</nav><p>Der Text steht hier, lang genug.</p>",
                Format::Html
            ),
            "Der Text steht hier, lang genug."
        );
        let srt =
            "1\n00:00:01,000 --> 00:00:02,000\nEins.\n\n2\n00:00:03,000 --> 00:00:04,000\nZwei.\n";
        assert_eq!(reading_text(srt, Format::Subtitles), "Eins.\n\nZwei.");
        assert_eq!(reading_text("# A\n", Format::Markdown), "# A\n");
    }

    #[test]
    fn plain_documents_reassemble() {
        let text = "Eins.\n\nZwei drei.\n";
        let (doc, paragraphs) = Document::parse(text, Format::Plain).unwrap();
        assert_eq!(paragraphs.len(), 2);
        let same: Vec<String> = paragraphs.iter().map(|p| p.text.clone()).collect();
        assert_eq!(doc.assemble(&same).unwrap(), text);
    }
}
