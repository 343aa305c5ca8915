//! The T5 tokenizer, from a repo's `tokenizer.json` (T5TokenizerFast) or,
//! when a repo ships none, from its `spiece.model` (converted in Rust with
//! [`super::spm`], as `T5Tokenizer` with `legacy=True` segments text).
//!
//! Encoding appends `</s>` as `transformers` does. Special tokens spelled
//! out in the text (`</s>`, `<pad>`, `<extra_id_0>`) are dropped from the
//! ids, so an article cannot end its input early or smuggle in a span
//! sentinel; `transformers` would keep them. Spelling them out as characters
//! is no option: T5's unigram vocabulary holds the special pieces, so
//! segmentation would find them again.

use super::spm::{PieceType, SpmModel};
use anyhow::{anyhow, Result};
use std::collections::HashSet;
use tokenizers::{AddedToken, Tokenizer};

/// T5's fixed special ids: `<pad>` (also the decoder start), `</s>`, `<unk>`.
pub const PAD_ID: u32 = 0;
pub const EOS_ID: u32 = 1;

#[derive(Clone)]
pub struct T5Tokenizer {
    inner: Tokenizer,
    eos_id: u32,
    /// Special ids that never come from text (all but `<unk>`).
    control_ids: HashSet<u32>,
}

impl std::fmt::Debug for T5Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("T5Tokenizer")
            .field("vocab_size", &self.inner.get_vocab_size(true))
            .field("eos_id", &self.eos_id)
            .finish()
    }
}

impl T5Tokenizer {
    /// Reads a `tokenizer.json` (the T5TokenizerFast format).
    pub fn from_tokenizer_json(json: &[u8]) -> Result<Self> {
        let inner =
            Tokenizer::from_bytes(json).map_err(|e| anyhow!("tokenizer.json is broken: {e}"))?;
        Self::new(inner)
    }

    /// Converts a SentencePiece `spiece.model`: control pieces (`<pad>`,
    /// `</s>`) and `<unk>` become special tokens, as `transformers`'
    /// converter makes them.
    pub fn from_spm(bytes: &[u8]) -> Result<Self> {
        let model = SpmModel::from_bytes(bytes).map_err(|e| anyhow!("spiece.model: {e}"))?;
        let mut inner = model
            .to_tokenizer()
            .map_err(|e| anyhow!("spiece.model: {e}"))?;
        let specials: Vec<AddedToken> = model
            .pieces
            .iter()
            .filter(|p| matches!(p.kind, PieceType::Control | PieceType::Unknown))
            .map(|p| AddedToken::from(p.piece.clone(), true))
            .collect();
        inner
            .add_special_tokens(specials)
            .map_err(|e| anyhow!("spiece.model: {e}"))?;
        Self::new(inner)
    }

    fn new(inner: Tokenizer) -> Result<Self> {
        let eos_id = inner.token_to_id("</s>").ok_or_else(|| {
            anyhow!("the tokenizer has no </s> token, so it is not a T5 tokenizer")
        })?;
        let unk_id = inner.token_to_id("<unk>");
        let control_ids = inner
            .get_added_tokens_decoder()
            .into_iter()
            .filter(|(id, token)| token.special && Some(*id) != unk_id)
            .map(|(id, _)| id)
            .collect();
        Ok(Self {
            inner,
            eos_id,
            control_ids,
        })
    }

    pub fn eos_id(&self) -> u32 {
        self.eos_id
    }

    /// Model input ids for `text`, ending with `</s>`.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let enc = self
            .inner
            .encode(text, false)
            .map_err(|e| anyhow!("tokenizing failed: {e}"))?;
        let mut ids: Vec<u32> = enc
            .get_ids()
            .iter()
            .copied()
            .filter(|id| !self.control_ids.contains(id))
            .collect();
        ids.push(self.eos_id);
        Ok(ids)
    }

    /// Number of model tokens `text` takes, `</s>` included.
    pub fn token_count(&self, text: &str) -> Result<usize> {
        Ok(self.encode(text)?.len())
    }

    /// Text for output ids, as `decode(ids, skip_special_tokens=True)`:
    /// special tokens and ids the vocabulary lacks (the embedding table of
    /// T5 checkpoints is larger than the tokenizer) are skipped.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.inner
            .decode(ids, true)
            .map_err(|e| anyhow!("decoding failed: {e}"))
    }
}
