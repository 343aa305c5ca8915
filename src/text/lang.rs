//! Language codes and a cheap German-or-English guess.

use super::Lang;
use std::fmt;
use std::str::FromStr;
use thiserror::Error;

/// A language name that is neither German nor English.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("unknown language {given:?}: expected \"de\" (German) or \"en\" (English)")]
pub struct ParseLangError {
    pub given: String,
}

impl Lang {
    /// The ISO 639-1 code: `"de"` or `"en"`.
    pub fn code(self) -> &'static str {
        match self {
            Lang::De => "de",
            Lang::En => "en",
        }
    }

    /// The English name, for messages.
    pub fn name(self) -> &'static str {
        match self {
            Lang::De => "German",
            Lang::En => "English",
        }
    }
}

impl fmt::Display for Lang {
    /// Writes the code, so that `Display` and `FromStr` round-trip.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl FromStr for Lang {
    type Err = ParseLangError;

    /// Accepts the codes `de`/`en` and the names `german`/`english`/`deutsch`,
    /// in any case, with surrounding whitespace ignored.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_lowercase().as_str() {
            "de" | "german" | "deutsch" => Ok(Lang::De),
            "en" | "english" | "englisch" => Ok(Lang::En),
            _ => Err(ParseLangError {
                given: s.to_string(),
            }),
        }
    }
}

/// Frequent German function words. Words that are just as common in English
/// ("in", "so", "was", "will", "also", "an", "am", "man", "war") are left out
/// of both lists because they would vote for either language.
const GERMAN_WORDS: &[&str] = &[
    "der", "die", "das", "und", "ist", "nicht", "ein", "eine", "einen", "einem", "einer", "eines",
    "den", "dem", "des", "mit", "sich", "auf", "für", "von", "zu", "zum", "zur", "im", "auch",
    "es", "sie", "wir", "ich", "du", "er", "ihr", "wird", "werden", "wurde", "wurden", "sind",
    "sein", "hat", "haben", "hatte", "nach", "bei", "aus", "wie", "oder", "aber", "noch", "nur",
    "dass", "daß", "durch", "über", "vor", "wenn", "kann", "können", "schon", "sehr", "diese",
    "dieser", "dieses", "mehr", "gegen", "um", "zwischen", "kein", "keine", "seit", "unter",
    "weil", "sowie", "jedoch", "dann", "dort", "hier", "wieder", "immer", "jetzt", "heute", "ohne",
    "bis", "als", "soll", "sollen", "muss", "müssen", "uns", "ihm", "ihn", "ihnen", "bin", "bist",
    "doch",
];

/// Frequent English function words (see [`GERMAN_WORDS`] for what is left out).
const ENGLISH_WORDS: &[&str] = &[
    "the", "and", "of", "to", "is", "are", "were", "be", "been", "being", "that", "this", "it",
    "with", "for", "on", "as", "by", "at", "from", "have", "has", "had", "not", "or", "but",
    "which", "who", "they", "their", "there", "what", "when", "would", "could", "should", "can",
    "a", "his", "her", "its", "we", "you", "our", "than", "then", "into", "about", "after",
    "these", "those", "only", "other", "some", "such", "if", "because", "while", "he", "she",
    "them", "do", "does", "did", "said", "all", "any", "how", "where", "why", "my", "your",
];

/// Guesses whether `text` is German or English.
///
/// Each word that is a German function word, and each word spelled with an
/// umlaut or ß, scores a point for German; each English function word scores
/// a point for English. The higher score wins. **German wins ties**, including
/// text with no clues at all (empty, numbers, names): tolk's main job is
/// German input, and treating an unclear text as German at worst costs a
/// translation pass that leaves English words mostly as they were, while
/// treating German as English would skip the translation entirely.
pub fn detect_language(text: &str) -> Lang {
    let mut german = 0usize;
    let mut english = 0usize;
    for word in text
        .split(|c: char| !c.is_alphabetic())
        .filter(|w| !w.is_empty())
    {
        let lower = word.to_lowercase();
        if GERMAN_WORDS.contains(&lower.as_str()) {
            german += 1;
        }
        if ENGLISH_WORDS.contains(&lower.as_str()) {
            english += 1;
        }
        if lower.contains(['ä', 'ö', 'ü', 'ß']) {
            german += 1;
        }
    }
    if english > german {
        Lang::En
    } else {
        Lang::De
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_codes_and_names_in_any_case() {
        for (s, want) in [
            ("de", Lang::De),
            ("DE", Lang::De),
            (" En ", Lang::En),
            ("english", Lang::En),
            ("German", Lang::De),
        ] {
            assert_eq!(s.parse::<Lang>().unwrap(), want, "{s:?}");
        }
    }

    #[test]
    fn rejects_other_languages_with_a_clear_message() {
        let err = "fr".parse::<Lang>().unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("\"fr\""), "{msg}");
        assert!(msg.contains("\"de\"") && msg.contains("\"en\""), "{msg}");
        assert!(!msg.contains('\n'));
        assert!("".parse::<Lang>().is_err());
    }

    #[test]
    fn display_round_trips_through_from_str() {
        for lang in [Lang::De, Lang::En] {
            assert_eq!(lang.to_string().parse::<Lang>().unwrap(), lang);
            assert_eq!(lang.to_string(), lang.code());
        }
        assert_eq!(Lang::De.code(), "de");
        assert_eq!(Lang::En.code(), "en");
    }

    #[test]
    fn detects_the_german_sample_article() {
        let text = include_str!("../../samples/de_article.txt");
        assert_eq!(detect_language(text), Lang::De);
    }

    #[test]
    fn detects_german_without_umlauts() {
        assert_eq!(
            detect_language("Das ist ein Test und es wird nicht lange dauern."),
            Lang::De
        );
    }

    #[test]
    fn detects_english() {
        let text = "The protests began at the start of the week, when the cap on gas \
                    prices was lifted and the price doubled. Russia said it would send troops.";
        assert_eq!(detect_language(text), Lang::En);
    }

    #[test]
    fn english_text_with_a_german_place_name_stays_english() {
        assert_eq!(
            detect_language("The meeting in Zürich was held on Monday and it went well."),
            Lang::En
        );
    }

    #[test]
    fn mixed_text_follows_the_majority() {
        let mostly_german = "Die Regierung hat das Gesetz gestern beschlossen, \
                             und die Opposition ist dagegen. The end.";
        assert_eq!(detect_language(mostly_german), Lang::De);
        let mostly_english = "Der Spiegel reported that the government had passed \
                              the law and that the opposition was against it.";
        assert_eq!(detect_language(mostly_english), Lang::En);
    }

    #[test]
    fn ties_and_clueless_text_count_as_german() {
        assert_eq!(detect_language(""), Lang::De);
        assert_eq!(detect_language("12345 --- 3.14"), Lang::De);
        assert_eq!(detect_language("Almaty Tokajew"), Lang::De);
        // One clue each way: "der" vs "the".
        assert_eq!(detect_language("der the"), Lang::De);
        // A single English clue is enough when there is nothing German.
        assert_eq!(detect_language("Hello, this works"), Lang::En);
    }
}
