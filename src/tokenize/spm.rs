//! SentencePiece model files (`*.spm`, `*.model`) read in Rust, turned into a
//! `tokenizers` Unigram tokenizer, so that no Python is needed at run time.
//!
//! The file is a protobuf `ModelProto`. We read only the fields tokenization
//! needs, with a minimal wire-format reader: pulling in a protobuf code
//! generator for five fields would cost more than it saves.

use anyhow::{bail, Context, Result};
use tokenizers::decoders::metaspace::Metaspace as MetaspaceDecoder;
use tokenizers::models::unigram::Unigram;
use tokenizers::normalizers::{Precompiled, Replace, Sequence, Strip};
use tokenizers::pre_tokenizers::metaspace::{Metaspace, PrependScheme};
use tokenizers::{NormalizerWrapper, Tokenizer};

/// The SentencePiece word-boundary marker (U+2581).
pub const SPIECE_UNDERLINE: char = '▁';

/// `SentencePiece.Type` in sentencepiece_model.proto.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PieceType {
    Normal,
    Unknown,
    Control,
    UserDefined,
    Unused,
    Byte,
}

impl PieceType {
    /// The proto's type number (GGUF's `tokenizer.ggml.token_type` uses the same
    /// numbers); an unknown number is a normal piece, as in SentencePiece.
    pub(crate) fn from_proto(v: u64) -> Self {
        match v {
            2 => Self::Unknown,
            3 => Self::Control,
            4 => Self::UserDefined,
            5 => Self::Unused,
            6 => Self::Byte,
            _ => Self::Normal,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Piece {
    pub piece: String,
    pub score: f32,
    pub kind: PieceType,
}

/// The parts of a SentencePiece model that tokenization needs.
#[derive(Debug, Clone)]
pub struct SpmModel {
    pub pieces: Vec<Piece>,
    /// `TrainerSpec.model_type`: 1 unigram, 2 bpe, 3 word, 4 char.
    pub model_type: u64,
    pub byte_fallback: bool,
    pub precompiled_charsmap: Vec<u8>,
    pub add_dummy_prefix: bool,
    pub remove_extra_whitespaces: bool,
}

impl SpmModel {
    /// Parses a serialized `ModelProto`.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let mut model = SpmModel {
            pieces: Vec::new(),
            model_type: 1,
            byte_fallback: false,
            precompiled_charsmap: Vec::new(),
            add_dummy_prefix: true,
            remove_extra_whitespaces: true,
        };
        let mut r = Reader::new(bytes);
        while let Some((field, value)) = r.next_field()? {
            match (field, value) {
                (1, Value::Bytes(b)) => model.pieces.push(parse_piece(b)?),
                (2, Value::Bytes(b)) => {
                    let mut t = Reader::new(b);
                    while let Some((f, v)) = t.next_field()? {
                        match (f, v) {
                            (3, Value::Varint(v)) => model.model_type = v,
                            (35, Value::Varint(v)) => model.byte_fallback = v != 0,
                            _ => {}
                        }
                    }
                }
                (3, Value::Bytes(b)) => {
                    let mut n = Reader::new(b);
                    while let Some((f, v)) = n.next_field()? {
                        match (f, v) {
                            (2, Value::Bytes(b)) => model.precompiled_charsmap = b.to_vec(),
                            (3, Value::Varint(v)) => model.add_dummy_prefix = v != 0,
                            (4, Value::Varint(v)) => model.remove_extra_whitespaces = v != 0,
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }
        if model.pieces.is_empty() {
            bail!("not a SentencePiece model (no pieces found)");
        }
        Ok(model)
    }

    pub fn unk_id(&self) -> Option<usize> {
        self.pieces
            .iter()
            .position(|p| p.kind == PieceType::Unknown)
    }

    /// Builds a `tokenizers` pipeline that segments text exactly as
    /// `sentencepiece` does for unigram models: the precompiled NFKC-style
    /// character map, whitespace clean-up, the "▁" dummy prefix, Viterbi.
    pub fn to_tokenizer(&self) -> Result<Tokenizer> {
        if self.model_type != 1 {
            bail!(
                "SentencePiece model type {} is not supported (only unigram, as used by Marian)",
                self.model_type
            );
        }
        let vocab = self
            .pieces
            .iter()
            .map(|p| (p.piece.clone(), p.score as f64))
            .collect();
        let model = Unigram::from(vocab, self.unk_id(), self.byte_fallback)
            .map_err(|e| anyhow::anyhow!("invalid SentencePiece vocabulary: {e}"))?;
        let mut tokenizer = Tokenizer::new(model);

        let mut normalizers: Vec<NormalizerWrapper> = Vec::new();
        if !self.precompiled_charsmap.is_empty() {
            check_charsmap(&self.precompiled_charsmap)
                .map_err(|e| anyhow::anyhow!("invalid precompiled charsmap: {e}"))?;
            let charsmap = Precompiled::from(&self.precompiled_charsmap)
                .map_err(|e| anyhow::anyhow!("invalid precompiled charsmap: {e}"))?;
            normalizers.push(charsmap.into());
        }
        if self.remove_extra_whitespaces {
            // sentencepiece drops leading/trailing spaces and collapses runs.
            normalizers.push(Strip::new(true, true).into());
            normalizers.push(
                Replace::new(
                    tokenizers::normalizers::replace::ReplacePattern::Regex(" {2,}".into()),
                    " ",
                )
                .map_err(|e| anyhow::anyhow!("{e}"))?
                .into(),
            );
        }
        tokenizer
            .with_normalizer(Some(Sequence::new(normalizers)))
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let scheme = if self.add_dummy_prefix {
            PrependScheme::Always
        } else {
            PrependScheme::Never
        };
        tokenizer.with_pre_tokenizer(Some(Metaspace::new(SPIECE_UNDERLINE, scheme, true)));
        tokenizer.with_decoder(Some(MetaspaceDecoder::new(SPIECE_UNDERLINE, scheme, true)));
        Ok(tokenizer)
    }
}

fn parse_piece(bytes: &[u8]) -> Result<Piece> {
    let mut piece = Piece {
        piece: String::new(),
        score: 0.0,
        kind: PieceType::Normal,
    };
    let mut r = Reader::new(bytes);
    while let Some((field, value)) = r.next_field()? {
        match (field, value) {
            (1, Value::Bytes(b)) => {
                piece.piece = String::from_utf8(b.to_vec()).context("a piece is not UTF-8")?
            }
            (2, Value::Fixed32(v)) => piece.score = f32::from_bits(v),
            (3, Value::Varint(v)) => piece.kind = PieceType::from_proto(v),
            _ => {}
        }
    }
    Ok(piece)
}

/// One protobuf field value, by wire type.
enum Value<'a> {
    Varint(u64),
    Fixed64,
    Bytes(&'a [u8]),
    Fixed32(u32),
}

/// A protobuf wire-format reader over a byte slice.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    fn varint(&mut self) -> Result<u64> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let Some(&byte) = self.buf.get(self.pos) else {
                bail!(
                    "truncated SentencePiece model (varint at byte {})",
                    self.pos
                );
            };
            self.pos += 1;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        bail!(
            "corrupt SentencePiece model (varint too long at byte {})",
            self.pos
        )
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.buf.len());
        let Some(end) = end else {
            bail!(
                "truncated SentencePiece model (field of {n} bytes at byte {})",
                self.pos
            );
        };
        let out = &self.buf[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    fn next_field(&mut self) -> Result<Option<(u64, Value<'a>)>> {
        if self.pos >= self.buf.len() {
            return Ok(None);
        }
        let key = self.varint()?;
        let value = match key & 7 {
            0 => Value::Varint(self.varint()?),
            1 => {
                self.take(8)?;
                Value::Fixed64
            }
            2 => {
                let len = self.varint()? as usize;
                Value::Bytes(self.take(len)?)
            }
            5 => {
                let b = self.take(4)?;
                Value::Fixed32(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            }
            other => bail!(
                "corrupt SentencePiece model (wire type {other} at byte {})",
                self.pos
            ),
        };
        Ok(Some((key >> 3, value)))
    }
}

/// Checks a precompiled charsmap (a darts-clone double-array trie over the
/// UTF-8 bytes of a character, then the normalized strings) the way
/// `spm_precompiled` will walk it: that crate indexes the trie and the
/// strings with the file's numbers unchecked, so a corrupt or hostile model
/// would panic on the first text it normalizes (a fuzzing finding). Every
/// node a lookup can reach must keep all 256 of its child slots inside the
/// trie, and every leaf must point at a character boundary of the strings.
fn check_charsmap(bytes: &[u8]) -> Result<()> {
    let u32_at = |i: usize| {
        bytes
            .get(i..i + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
    };
    let trie_bytes = u32_at(0).ok_or_else(|| anyhow::anyhow!("too short"))?;
    let units = trie_bytes / 4;
    if units == 0 || 4 + units * 4 > bytes.len() {
        anyhow::bail!("its trie runs past its end");
    }
    let unit = |i: usize| u32_at(4 + 4 * i).unwrap_or(0);
    let normalized = std::str::from_utf8(&bytes[4 + units * 4..])
        .map_err(|_| anyhow::anyhow!("its strings are not UTF-8"))?;
    // darts-clone's unit fields, as spm_precompiled reads them.
    let offset = |u: usize| (u >> 10) << ((u & (1 << 9)) >> 6);
    let label = |u: usize| u & ((1 << 31) | 0xFF);
    let has_leaf = |u: usize| (u >> 8) & 1 == 1;
    let value = |u: usize| u & ((1 << 31) - 1);
    let mut seen = vec![false; units];
    let mut stack = vec![0usize];
    seen[0] = true;
    while let Some(node) = stack.pop() {
        let base = node ^ offset(unit(node));
        if base | 0xFF >= units {
            anyhow::bail!("a trie node points outside the trie");
        }
        for c in 1..=255usize {
            let child = base ^ c;
            let u = unit(child);
            if label(u) != c {
                continue;
            }
            if has_leaf(u) {
                let leaf = child ^ offset(u);
                let at = (leaf < units).then(|| value(unit(leaf)));
                if !at.is_some_and(|at| normalized.is_char_boundary(at)) {
                    anyhow::bail!("a trie leaf points outside the normalized strings");
                }
            }
            if !seen[child] {
                seen[child] = true;
                stack.push(child);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(SpmModel::from_bytes(b"").is_err());
        assert!(SpmModel::from_bytes(&[0x0a, 0xff, 0xff, 0xff]).is_err());
        assert!(SpmModel::from_bytes(b"{\"not\": \"protobuf\"}").is_err());
    }

    /// A fuzzing finding: a charsmap whose trie points outside itself made
    /// spm_precompiled index out of bounds on the first text it normalized.
    #[test]
    fn a_charsmap_pointing_outside_its_trie_is_an_error_not_a_panic() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/marian-tiny/source.spm"
        );
        let mut model = SpmModel::from_bytes(&std::fs::read(path).unwrap()).unwrap();
        assert!(
            !model.precompiled_charsmap.is_empty(),
            "the fixture has a charsmap"
        );
        check_charsmap(&model.precompiled_charsmap).unwrap();
        let tokenizer = model.to_tokenizer().unwrap();
        assert!(tokenizer.encode("Größe ½ ﬁ", false).is_ok());
        // The root unit's offset pointed far past the trie.
        model.precompiled_charsmap[4..8].copy_from_slice(&0xFFFF_FC00u32.to_le_bytes());
        let err = model.to_tokenizer().unwrap_err().to_string();
        assert!(err.contains("invalid precompiled charsmap"), "{err}");
        // A leaf pointing past the strings, and a trie longer than the data.
        let mut short = model.precompiled_charsmap.clone();
        short[0..4].copy_from_slice(&(u32::MAX - 3).to_le_bytes());
        assert!(check_charsmap(&short).is_err());
        assert!(check_charsmap(&[1, 2]).is_err());
    }
}
