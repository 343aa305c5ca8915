//! Property tests of the text pipeline's invariants (the same checks as the
//! `text` fuzz target, `tests/support/text_invariants.rs`) on random
//! documents built from fragments that matter to the segmenter and the
//! sentence splitter (Markdown markup, abbreviations, quotes, odd
//! whitespace) plus arbitrary characters.
//!
//! The generator is a small seeded xorshift rather than `proptest`: adding
//! proptest as a dev-dependency changes the features of dependencies shared
//! with candle, so every test build rebuilds the whole candle stack. A plain
//! run uses a fixed seed; `TOLK_PROPERTY_RANDOM=1` checks new documents on
//! every run (`TOLK_PROPERTY_SEED` replays a run, printed on failure with the
//! document); `TOLK_PROPERTY_CASES` (default 300 per property) asks for more.

#[path = "support/text_invariants.rs"]
mod invariants;

use std::panic::{catch_unwind, AssertUnwindSafe};
use tolk::text::Format;

const FRAGMENTS: &[&str] = &[
    "Der",
    "Zug",
    "kam",
    "spät",
    "an",
    "Sie",
    "The",
    "end",
    "z. B.",
    "Dr.",
    "usw.",
    "U.S.A.",
    "13.",
    "Januar",
    "3.5",
    ".",
    "!",
    "?",
    "…",
    "...",
    "?!",
    ",",
    ";",
    " – ",
    " ",
    " ",
    " ",
    "  ",
    "\n",
    "\n",
    "\n\n",
    "\t",
    "\r\n",
    "\u{a0}",
    "\u{2028}",
    "„",
    "“",
    "»",
    "«",
    "'",
    "\"",
    "(",
    ")",
    "[",
    "]",
    "[…]",
    "```",
    "~~~",
    "`",
    "``",
    "# ",
    "## ",
    "- ",
    "* ",
    "1. ",
    "- [ ] ",
    "> ",
    "| ",
    " |",
    "|---|",
    "---",
    "===",
    "***",
    "    ",
    "](https://x.org)",
    "](a.md \"Titel\")",
    "][ref]",
    "[ref]: https://x.org",
    "[^1]",
    "![Bild](b.png)",
    "<https://x.y>",
    "<div>",
    "</div>",
    "<!--",
    "-->",
    "<br>",
    "ä",
    "ß",
    "日本",
];

/// xorshift64*: small, fast, and reproducible from its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn document(&mut self) -> String {
        let parts = self.below(80);
        let mut doc = String::new();
        for _ in 0..parts {
            if self.below(5) == 0 {
                // Any character, weighted towards ASCII and Latin-1.
                let limit = [0x80, 0x100, 0x3000, 0x11_0000][self.below(4)];
                doc.extend(char::from_u32(self.below(limit) as u32));
            } else {
                doc.push_str(FRAGMENTS[self.below(FRAGMENTS.len())]);
            }
        }
        doc
    }
}

fn env_number(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

/// Runs `check` on many random documents; on failure, names the seed and
/// the document.
/// The seed of a plain `cargo test`: fixed, so CI is repeatable. Set
/// `TOLK_PROPERTY_SEED` to replay a seed, or `TOLK_PROPERTY_RANDOM=1` to
/// explore new documents on every run.
const DEFAULT_SEED: u64 = 0x2026_1202;

fn for_random_documents(name: &str, check: impl Fn(&str, usize)) {
    let seed = env_number("TOLK_PROPERTY_SEED").unwrap_or_else(|| {
        if std::env::var_os("TOLK_PROPERTY_RANDOM").is_some() {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
        } else {
            DEFAULT_SEED
        }
    });
    for_documents_of_seed(name, seed, check);
}

fn for_documents_of_seed(name: &str, seed: u64, check: impl Fn(&str, usize)) {
    let seed = seed | 1;
    let cases = env_number("TOLK_PROPERTY_CASES").unwrap_or(300);
    let mut rng = Rng(seed);
    for _ in 0..cases {
        let doc = rng.document();
        let budget = 1 + rng.below(12);
        if catch_unwind(AssertUnwindSafe(|| check(&doc, budget))).is_err() {
            panic!(
                "{name}: invariant broken (replay with TOLK_PROPERTY_SEED={seed}) for {doc:?}, budget {budget}"
            );
        }
    }
}

#[test]
fn plain_documents_keep_every_invariant() {
    for_random_documents("plain", |doc, budget| {
        invariants::check_document(doc, Format::Plain, budget)
    });
}

#[test]
fn markdown_documents_keep_every_invariant() {
    for_random_documents("markdown", |doc, budget| {
        invariants::check_document(doc, Format::Markdown, budget)
    });
}

#[test]
fn sentences_of_any_paragraph_are_whole() {
    for_random_documents("sentences", |doc, _| {
        invariants::check_sentences(doc);
    });
}

/// A finding of a random run, fixed: a line starting with `[` and holding
/// `]:` further on (`[…] Text … [ref]: https://x.org" Satz`) was read as a
/// link reference definition once a translation joined the paragraph's
/// lines, so the Markdown skeleton changed.
#[test]
fn markdown_reference_definitions_inside_a_paragraph_keep_the_skeleton() {
    for_documents_of_seed("markdown", 1796201277507084313, |doc, budget| {
        invariants::check_document(doc, Format::Markdown, budget)
    });
}
