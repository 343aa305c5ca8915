//! The MarianMT tokenizer, as `transformers.MarianTokenizer` does it:
//! SentencePiece segments the source text (`source.spm`), the pieces map to
//! model ids through `vocab.json` (unknown pieces → `<unk>`), `</s>` ends the
//! input; output ids map back to pieces through the same vocabulary and are
//! joined as `target.spm` would.
//!
//! Helsinki-NLP repos ship no `tokenizer.json`, so the SentencePiece files
//! are converted in Rust ([`super::spm`]); when a repo does ship a
//! `tokenizer.json`, [`MarianTokenizer::from_tokenizer_json`] uses it.

use super::spm::{PieceType, SpmModel, SPIECE_UNDERLINE};
use anyhow::{anyhow, Context, Result};
use std::collections::{HashMap, HashSet};
use tokenizers::Tokenizer;

pub struct MarianTokenizer {
    source: Tokenizer,
    /// `vocab.json`: piece → model id. `None` when `tokenizer.json` maps ids itself.
    vocab: Option<HashMap<String, u32>>,
    /// Model id → piece, for decoding.
    pieces: HashMap<u32, String>,
    /// Pieces that `target.spm` decodes to nothing (its control symbols).
    target_control: HashSet<String>,
    /// Ids dropped when decoding (`skip_special_tokens=True`).
    special_ids: HashSet<u32>,
    pub eos_id: u32,
    pub unk_id: u32,
    pub pad_id: u32,
}

impl MarianTokenizer {
    /// Builds the tokenizer from the three files of an opus-mt repo.
    pub fn from_spm(source_spm: &[u8], target_spm: &[u8], vocab_json: &str) -> Result<Self> {
        let source = SpmModel::from_bytes(source_spm)
            .context("source.spm")?
            .to_tokenizer()
            .context("source.spm")?;
        let target = SpmModel::from_bytes(target_spm).context("target.spm")?;
        let target_control = target
            .pieces
            .iter()
            .filter(|p| p.kind == PieceType::Control)
            .map(|p| p.piece.clone())
            .collect();
        let vocab: HashMap<String, u32> = serde_json::from_str(vocab_json)
            .context("vocab.json is not a JSON object of piece → id")?;
        let find = |token: &str| {
            vocab
                .get(token)
                .copied()
                .ok_or_else(|| anyhow!("vocab.json has no {token} token"))
        };
        let (eos_id, unk_id, pad_id) = (find("</s>")?, find("<unk>")?, find("<pad>")?);
        let pieces = vocab.iter().map(|(p, &id)| (id, p.clone())).collect();
        Ok(Self {
            source,
            vocab: Some(vocab),
            pieces,
            target_control,
            special_ids: [eos_id, unk_id, pad_id].into_iter().collect(),
            eos_id,
            unk_id,
            pad_id,
        })
    }

    /// Uses a complete `tokenizer.json` (ids included) instead of spm + vocab.
    pub fn from_tokenizer_json(json: &[u8]) -> Result<Self> {
        let source = Tokenizer::from_bytes(json).map_err(|e| anyhow!("tokenizer.json: {e}"))?;
        let find = |token: &str| {
            source
                .token_to_id(token)
                .ok_or_else(|| anyhow!("tokenizer.json has no {token} token"))
        };
        let (eos_id, unk_id, pad_id) = (find("</s>")?, find("<unk>")?, find("<pad>")?);
        let pieces = source
            .get_vocab(true)
            .into_iter()
            .map(|(p, id)| (id, p))
            .collect();
        Ok(Self {
            source,
            vocab: None,
            pieces,
            target_control: HashSet::new(),
            special_ids: [eos_id, unk_id, pad_id].into_iter().collect(),
            eos_id,
            unk_id,
            pad_id,
        })
    }

    /// The SentencePiece pieces of `text` (without language code or `</s>`).
    pub fn pieces(&self, text: &str) -> Result<Vec<String>> {
        let enc = self
            .source
            .encode(text, false)
            .map_err(|e| anyhow!("tokenizing failed: {e}"))?;
        Ok(enc.get_tokens().to_vec())
    }

    /// Model input ids for `text`, ending with `</s>`.
    ///
    /// A leading language code such as `>>deu<<` (multilingual models) is
    /// kept as one token, as `MarianTokenizer` does.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let (code, rest) = split_language_code(text);
        let mut ids = Vec::new();
        match &self.vocab {
            Some(vocab) => {
                let lookup = |piece: &str| vocab.get(piece).copied().unwrap_or(self.unk_id);
                if let Some(code) = code {
                    ids.push(lookup(code));
                }
                ids.extend(self.pieces(rest)?.iter().map(|p| lookup(p)));
            }
            None => {
                let enc = self
                    .source
                    .encode(text, false)
                    .map_err(|e| anyhow!("tokenizing failed: {e}"))?;
                ids.extend_from_slice(enc.get_ids());
            }
        }
        ids.push(self.eos_id);
        Ok(ids)
    }

    /// Text for output ids, skipping special tokens, as
    /// `MarianTokenizer.decode(ids, skip_special_tokens=True)`.
    pub fn decode(&self, ids: &[u32]) -> String {
        let mut out = String::new();
        for id in ids {
            if self.special_ids.contains(id) {
                continue;
            }
            // Unknown ids decode to <unk>, which is special: nothing.
            let Some(piece) = self.pieces.get(id) else {
                continue;
            };
            if self.target_control.contains(piece) {
                continue;
            }
            out.push_str(piece);
        }
        out.replace(SPIECE_UNDERLINE, " ").trim().to_string()
    }

    /// Number of model tokens `text` takes, `</s>` included.
    pub fn token_count(&self, text: &str) -> Result<usize> {
        Ok(self.encode(text)?.len())
    }
}

/// Splits a leading `>>xx<<` target-language code off the text.
fn split_language_code(text: &str) -> (Option<&str>, &str) {
    if let Some(rest) = text.strip_prefix(">>") {
        if let Some(end) = rest.find("<<") {
            let split = 2 + end + 2;
            return (Some(&text[..split]), &text[split..]);
        }
    }
    (None, text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn language_codes_split_off() {
        assert_eq!(
            split_language_code(">>deu<< Hallo"),
            (Some(">>deu<<"), " Hallo")
        );
        assert_eq!(split_language_code("Hallo >>x<<"), (None, "Hallo >>x<<"));
        assert_eq!(split_language_code(">>kein Ende"), (None, ">>kein Ende"));
    }
}
