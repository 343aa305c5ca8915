//! Documents: cut into units (each sentence encoded once, protected spans
//! masked), translated through [`translate_units`], put back together as
//! the document or as one record per sentence.

use super::{preview, report_warnings, translate_units, Translation, Translator, Unit};
use crate::text::document::{AlignedSentence, Document, Paragraph};
use crate::text::{self, protect, Format};
use anyhow::{bail, Result};

/// A document cut into translation units, ready to be put back together.
///
/// Markup and layout are kept (see [`text::document`]); each paragraph
/// becomes its sentences (over-long ones split at safe points), each
/// encoded once, translated one by one and joined with spaces.
#[derive(Debug, Clone)]
pub struct PreparedDocument {
    document: Document,
    paragraphs: Vec<Paragraph>,
    /// For each paragraph, its units.
    units: Vec<Vec<Part>>,
    /// Notes for the user, e.g. about split sentences.
    pub warnings: Vec<String>,
}

/// A unit and the sentence it belongs to.
#[derive(Debug, Clone)]
struct Part {
    /// Index of the sentence in its paragraph.
    sentence: usize,
    /// One of the parts of an over-long sentence.
    split: bool,
    unit: Unit,
}

impl PreparedDocument {
    /// Cuts `text` into units of at most the translator's input limit.
    /// Fails on a subtitle file that is not valid, or when the tokenizer
    /// fails.
    pub fn new(text: &str, format: Format, translator: &dyn Translator) -> Result<Self> {
        let max_tokens = translator.max_input_tokens();
        let (document, paragraphs) = Document::parse(text, format)?;
        let mut units = Vec::with_capacity(paragraphs.len());
        let mut warnings = Vec::new();
        for paragraph in &paragraphs {
            let mut parts = Vec::new();
            for (n, sentence) in text::split_sentences(&paragraph.text)
                .into_iter()
                .enumerate()
            {
                let unit = Unit::encode_protected(&sentence, translator)?;
                let tokens = unit.ids.len();
                if tokens <= max_tokens {
                    parts.push(Part {
                        sentence: n,
                        split: false,
                        unit,
                    });
                    continue;
                }
                let count = |s: &str| {
                    translator
                        .encode(&protect::mask(s).text)
                        .map_or(usize::MAX, |ids| ids.len())
                };
                let pieces = text::split_long(&sentence, max_tokens, &count);
                warnings.push(format!(
                    "a sentence of {tokens} tokens is longer than the model's limit of {max_tokens}; translated in {} parts: {:?}",
                    pieces.len(),
                    preview(&sentence)
                ));
                let split = pieces.len() > 1;
                for piece in pieces {
                    parts.push(Part {
                        sentence: n,
                        split,
                        unit: Unit::encode_protected(&piece, translator)?,
                    });
                }
            }
            units.push(parts);
        }
        Ok(Self {
            document,
            paragraphs,
            units,
            warnings,
        })
    }

    /// All units in document order.
    pub fn units(&self) -> impl Iterator<Item = &Unit> {
        self.units.iter().flatten().map(|p| &p.unit)
    }

    pub fn unit_count(&self) -> usize {
        self.units.iter().map(Vec::len).sum()
    }

    fn check(&self, n: usize) -> Result<()> {
        if n != self.unit_count() {
            bail!(
                "internal error: {n} translations for {} sentences",
                self.unit_count()
            );
        }
        Ok(())
    }

    /// Rebuilds the document with `translations` (one per unit, in order).
    pub fn assemble(&self, translations: &[String]) -> Result<String> {
        self.check(translations.len())?;
        let mut next = translations.iter();
        let joined: Vec<String> = self
            .units
            .iter()
            .map(|u| {
                let parts: Vec<&str> = next.by_ref().take(u.len()).map(String::as_str).collect();
                parts.join(" ")
            })
            .collect();
        self.document.assemble(&joined)
    }

    /// One record per sentence of the reader's text (parts of a split
    /// sentence joined), for `--format jsonl|tsv`.
    pub fn aligned(&self, translations: &[Translation]) -> Result<Vec<AlignedSentence>> {
        self.check(translations.len())?;
        let mut out: Vec<AlignedSentence> = Vec::new();
        let mut next = translations.iter();
        let mut index = 0;
        for (paragraph, parts) in self.paragraphs.iter().zip(&self.units) {
            let done: Vec<&Translation> = next.by_ref().take(parts.len()).collect();
            if !paragraph.aligned {
                continue;
            }
            let first = out.len();
            for (part, t) in parts.iter().zip(done) {
                let continues = out.len() > first;
                match out.last_mut() {
                    Some(last) if continues && last.sentence == part.sentence && part.split => {
                        last.source = format!("{} {}", last.source, part.unit.source);
                        last.translation = format!("{} {}", last.translation, t.text);
                        last.hit_max_length |= t.hit_max_length;
                        last.score = match (last.score, t.score) {
                            (Some(a), Some(b)) => Some((a + b) / 2.0),
                            _ => None,
                        };
                    }
                    _ => out.push(AlignedSentence {
                        paragraph: index,
                        sentence: part.sentence,
                        source: part.unit.source.clone(),
                        translation: t.text.clone(),
                        score: t.score,
                        hit_max_length: t.hit_max_length,
                        split: part.split,
                    }),
                }
            }
            index += 1;
        }
        Ok(out)
    }
}

/// Translates a whole document. `progress(done, total)` is called as
/// sentences complete; warnings (split sentences, cut outputs) go to `warn`.
pub fn translate_document(
    translator: &mut dyn Translator,
    text: &str,
    format: Format,
    progress: &mut dyn FnMut(usize, usize),
    warn: &mut dyn FnMut(&str),
) -> Result<String> {
    let (doc, translations) = translate_prepared(translator, text, format, progress, warn)?;
    let texts: Vec<String> = translations.into_iter().map(|t| t.text).collect();
    doc.assemble(&texts)
}

/// As [`translate_document`], giving one record per sentence instead of
/// the document.
pub fn translate_aligned(
    translator: &mut dyn Translator,
    text: &str,
    format: Format,
    progress: &mut dyn FnMut(usize, usize),
    warn: &mut dyn FnMut(&str),
) -> Result<Vec<AlignedSentence>> {
    let (doc, translations) = translate_prepared(translator, text, format, progress, warn)?;
    doc.aligned(&translations)
}

fn translate_prepared(
    translator: &mut dyn Translator,
    text: &str,
    format: Format,
    progress: &mut dyn FnMut(usize, usize),
    warn: &mut dyn FnMut(&str),
) -> Result<(PreparedDocument, Vec<Translation>)> {
    let doc = PreparedDocument::new(text, format, translator)?;
    for w in &doc.warnings {
        warn(w);
    }
    let units: Vec<&Unit> = doc.units().collect();
    let translations = translate_units(translator, &units, progress)?;
    report_warnings(translator.take_warnings(), warn);
    Ok((doc, translations))
}
