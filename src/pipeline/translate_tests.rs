//! Unit tests of the document driver with stand-in translators.
use super::*;
use crate::text::Format;

/// Upper-cases each sentence: enough to check that the driver puts
/// every translation back in its place.
struct Upper;
impl Translator for Upper {
    fn model_id(&self) -> String {
        "upper".into()
    }
    fn encode(&self, text: &str) -> Result<Vec<u32>> {
        Ok(text.split_whitespace().map(|w| w.len() as u32).collect())
    }
    fn translate_encoded(&mut self, units: &[&Unit]) -> Result<Vec<String>> {
        Ok(units.iter().map(|u| u.text.to_uppercase()).collect())
    }
    fn max_input_tokens(&self) -> usize {
        8
    }
    fn batch_size(&self) -> usize {
        2
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

/// Mangles everything a Marian vocabulary would: every character that
/// is not a letter, digit or space becomes `?`, and scores by length.
struct Mangler;
impl Mangler {
    fn mangle(x: &str) -> String {
        x.chars()
            .map(|c| {
                if c.is_alphanumeric() || c == ' ' {
                    c
                } else {
                    '?'
                }
            })
            .collect()
    }
}
impl Translator for Mangler {
    fn model_id(&self) -> String {
        "mangler".into()
    }
    fn encode(&self, text: &str) -> Result<Vec<u32>> {
        Ok(vec![0; text.split_whitespace().count()])
    }
    fn translate_encoded(&mut self, units: &[&Unit]) -> Result<Vec<String>> {
        Ok(units.iter().map(|u| Self::mangle(&u.text)).collect())
    }
    fn translate_scored(&mut self, units: &[&Unit]) -> Result<Vec<Translation>> {
        Ok(self
            .translate_encoded(units)?
            .into_iter()
            .map(|text| Translation {
                score: Some(-(text.len() as f32)),
                hit_max_length: text.len() > 40,
                text,
            })
            .collect())
    }
    fn max_input_tokens(&self) -> usize {
        12
    }
    fn batch_size(&self) -> usize {
        4
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
    // Bare sentences are the model's own business: nothing is masked.
    assert_eq!(
        Mangler.translate_batch(&["Lies https://x.de/a"]).unwrap(),
        vec!["Lies https???x?de?a"]
    );
}

/// Fails if the model is asked for anything.
struct Refuses;
impl Translator for Refuses {
    fn model_id(&self) -> String {
        "refuses".into()
    }
    fn encode(&self, text: &str) -> Result<Vec<u32>> {
        Ok(vec![0; text.split_whitespace().count()])
    }
    fn translate_encoded(&mut self, units: &[&Unit]) -> Result<Vec<String>> {
        bail!("asked to translate {:?}", units[0].text)
    }
    fn max_input_tokens(&self) -> usize {
        64
    }
    fn batch_size(&self) -> usize {
        4
    }
}

#[test]
fn units_of_protected_spans_alone_skip_the_model() {
    let text = "https://x.de/a\n\n(5 km) – 😀\n";
    let out = translate_document(
        &mut Refuses,
        text,
        Format::Plain,
        &mut |_, _| {},
        &mut |_| {},
    )
    .unwrap();
    assert_eq!(out, text);
    assert!(translate_document(
        &mut Refuses,
        "Siehe https://x.de",
        Format::Plain,
        &mut |_, _| {},
        &mut |_| {}
    )
    .is_err());
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

/// Records the batches it is given.
struct Recorder(Vec<Vec<String>>, usize);
impl Translator for Recorder {
    fn model_id(&self) -> String {
        "recorder".into()
    }
    fn encode(&self, text: &str) -> Result<Vec<u32>> {
        Ok(vec![0; text.split_whitespace().count()])
    }
    fn translate_encoded(&mut self, units: &[&Unit]) -> Result<Vec<String>> {
        self.0.push(units.iter().map(|u| u.text.clone()).collect());
        Ok(units.iter().map(|u| u.text.clone()).collect())
    }
    fn max_input_tokens(&self) -> usize {
        512
    }
    fn batch_size(&self) -> usize {
        self.1
    }
}

#[test]
fn batches_follow_the_batch_size_at_any_size_longest_first() {
    let sentences: Vec<String> = (1..=100).map(|n| vec!["w"; n].join(" ") + ".").collect();
    let refs: Vec<&str> = sentences.iter().map(String::as_str).collect();
    for size in [1, 7, 64, 65, 100, 1000] {
        let mut t = Recorder(Vec::new(), size);
        let out = t.translate_batch(&refs).unwrap();
        assert_eq!(out, sentences, "results in input order");
        let sizes: Vec<usize> = t.0.iter().map(Vec::len).collect();
        assert_eq!(sizes.len(), 100usize.div_ceil(size), "{size}: {sizes:?}");
        assert!(sizes.iter().all(|&n| n <= size), "{size}: {sizes:?}");
        // Longest first: the first batch holds the longest sentence.
        assert_eq!(t.0[0][0], sentences[99]);
    }
}
