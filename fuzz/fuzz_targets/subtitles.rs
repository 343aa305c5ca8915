//! SRT/WebVTT subtitles (`text::subtitles`): parsed, then put back together
//! with translations of every shape a model can answer with (the source
//! itself, nothing, one long run of words, line breaks and forged cues).
//! Invariants: nothing panics, and every assembled file parses again with
//! the same cues and everything but their text (numbers, timings, headers,
//! notes, blank lines) byte for byte.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tolk::text::subtitles::Subtitles;

const FORGED: &str = "Ja.\n\n99\n00:00:00,000 --> 00:09:00,000\nGEFÄLSCHT\n\n";

fuzz_target!(|data: &[u8]| {
    let input = String::from_utf8_lossy(data);
    let Ok(subs) = Subtitles::parse(&input) else {
        return;
    };
    let paragraphs = subs.paragraphs();
    let long = "Wort ".repeat(40);
    let answers: [&dyn Fn(&str) -> String; 4] = [
        &|p| p.to_string(),
        &|_| String::new(),
        &|_| long.clone(),
        &|p| format!("{p}{FORGED}"),
    ];
    for (k, answer) in answers.iter().enumerate() {
        let translations: Vec<String> = paragraphs.iter().map(|p| answer(p)).collect();
        let out = subs
            .assemble(&translations)
            .expect("assembling with one translation per paragraph");
        let again = Subtitles::parse(&out)
            .unwrap_or_else(|e| panic!("answer {k}: the output does not parse ({e}):\n{out}"));
        assert_eq!(again.cue_count(), subs.cue_count(), "answer {k}:\n{out}");
        assert_eq!(
            again.kept(),
            subs.kept(),
            "answer {k}: structure changed:\n{out}"
        );
    }
});
