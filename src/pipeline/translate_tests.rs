//! Unit tests of the document driver with stand-in translators.
use super::*;

/// Upper-cases each sentence: enough to check that the driver puts
/// every translation back in its place.
struct Upper;
impl Translator for Upper {
    fn model_id(&self) -> String {
        "upper".into()
    }
    fn translate_batch(&mut self, s: &[&str]) -> Result<Vec<String>> {
        Ok(s.iter().map(|x| x.to_uppercase()).collect())
    }
    fn token_count(&self, text: &str) -> Result<usize> {
        Ok(text.split_whitespace().count())
    }
    fn max_input_tokens(&self) -> usize {
        8
    }
}

#[test]
fn document_layout_survives_translation() {
    let text = "Erster Satz. Zweiter Satz!\n\n\nDritter Absatz.\n";
    let out =
        translate_document(&mut Upper, text, Format::Plain, &mut |_, _| {}, &mut |_| {}).unwrap();
    assert_eq!(out, "ERSTER SATZ. ZWEITER SATZ!\n\n\nDRITTER ABSATZ.\n");
}

#[test]
fn long_sentences_are_split_with_a_warning_and_nothing_is_lost() {
    let text = "eins zwei drei vier fünf sechs sieben acht neun zehn elf zwölf dreizehn.";
    let mut warnings = Vec::new();
    let out = translate_document(&mut Upper, text, Format::Plain, &mut |_, _| {}, &mut |w| {
        warnings.push(w.to_string())
    })
    .unwrap();
    assert_eq!(out, text.to_uppercase());
    assert_eq!(warnings.len(), 1, "{warnings:?}");
}

/// Mangles everything a Marian vocabulary would: every character that
/// is not a letter, digit or space becomes `?`, and scores by length.
struct Mangler;
impl Translator for Mangler {
    fn model_id(&self) -> String {
        "mangler".into()
    }
    fn translate_batch(&mut self, s: &[&str]) -> Result<Vec<String>> {
        Ok(s.iter()
            .map(|x| {
                x.chars()
                    .map(|c| {
                        if c.is_alphanumeric() || c == ' ' {
                            c
                        } else {
                            '?'
                        }
                    })
                    .collect()
            })
            .collect())
    }
    fn translate_scored(&mut self, s: &[&str]) -> Result<Vec<Translation>> {
        Ok(self
            .translate_batch(s)?
            .into_iter()
            .map(|text| Translation {
                score: Some(-(text.len() as f32)),
                hit_max_length: text.len() > 40,
                text,
            })
            .collect())
    }
    fn token_count(&self, text: &str) -> Result<usize> {
        Ok(text.split_whitespace().count())
    }
    fn max_input_tokens(&self) -> usize {
        12
    }
}

#[test]
fn protected_spans_survive_a_model_that_mangles_them() {
    let text = "Lies https://x.de/a?b=1 und `a.b()`. Schreib an a@b.de 😀!\n";
    let out = translate_document(
        &mut Mangler,
        text,
        Format::Plain,
        &mut |_, _| {},
        &mut |_| {},
    )
    .unwrap();
    assert_eq!(
        out,
        "Lies https://x.de/a?b=1 und `a.b()`? Schreib an a@b.de 😀?\n"
    );
}

#[test]
fn aligned_records_follow_paragraphs_sentences_and_split_parts() {
    let text = "Eins ist gut. Zwei ist besser.\n\n\
        eins zwei drei vier fünf sechs sieben acht neun zehn elf zwölf dreizehn vierzehn.\n";
    let records = translate_aligned(
        &mut Mangler,
        text,
        Format::Plain,
        &mut |_, _| {},
        &mut |_| {},
    )
    .unwrap();
    let keys: Vec<(usize, usize, bool)> = records
        .iter()
        .map(|r| (r.paragraph, r.sentence, r.split))
        .collect();
    assert_eq!(keys, vec![(0, 0, false), (0, 1, false), (1, 0, true)]);
    assert_eq!(records[0].source, "Eins ist gut.");
    assert_eq!(records[0].translation, "Eins ist gut?");
    assert_eq!(records[0].score, Some(-13.0));
    // The split sentence is one record: both parts, joined.
    assert!(records[2].source.starts_with("eins zwei") && records[2].source.ends_with("vierzehn."));
    assert!(records[2].translation.ends_with("vierzehn?"));
    assert!(records[2].hit_max_length);
}

#[test]
fn prepared_documents_may_cross_threads() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<PreparedDocument>();
}

#[test]
fn progress_reaches_the_total() {
    let mut last = (0, 0);
    translate_document(
        &mut Upper,
        "Eins ist gut. Zwei ist besser. Der Rest ist still.",
        Format::Plain,
        &mut |d, t| last = (d, t),
        &mut |_| {},
    )
    .unwrap();
    assert_eq!(last, (3, 3));
}
