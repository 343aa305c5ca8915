//! Splits paragraphs with tolk's German sentence splitter, for
//! `bench/splitter`: reads one JSON string per line on standard input and
//! writes one JSON array of sentences per line.
//!
//! `cargo run --release --example split_sentences < paragraphs.jsonl`

use std::io::{BufRead, Write};

fn main() -> anyhow::Result<()> {
    let stdin = std::io::stdin();
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for line in stdin.lock().lines() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let paragraph: String = serde_json::from_str(&line)?;
        let sentences = tolk::text::split_sentences(&paragraph);
        writeln!(out, "{}", serde_json::to_string(&sentences)?)?;
    }
    Ok(())
}
