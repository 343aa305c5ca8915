//! SentencePiece BPE over a GGUF vocabulary (`tokenizer.ggml.model = llama`),
//! run the way llama.cpp's `llm_tokenizer_spm` runs it: no merge list, the
//! adjacent pair whose concatenation is the best-scoring vocabulary piece is
//! merged first (ties: the leftmost), and characters left outside the
//! vocabulary fall back to byte tokens.
//!
//! Why not the `tokenizers` crate: it needs merges, and deriving them from the
//! scores (every split of every piece) cost gemma-3's 262k vocabulary 513k
//! merge strings, 0.6 s of load and ~70 MB held for the life of the model. This
//! holds the vocabulary as one string, its offsets, scores and kinds, and a
//! hash table of ids (~4 MB for gemma-3).

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use anyhow::{bail, Result};

use super::pieces::{Duplicates, Pieces};
use super::{SpecialMatcher, SPIECE_SPACE};
use crate::tokenize::spm::PieceType as Kind;

/// Control and unknown tokens never come out of plain text (llama.cpp would
/// merge into them too; that is how user text could forge `<end_of_turn>`).
fn reachable_from_text(kind: Kind) -> bool {
    !matches!(kind, Kind::Control | Kind::Unknown)
}

pub(super) struct SpmBpe {
    /// The vocabulary; a piece spelled twice keeps its last id, as in llama.cpp.
    pieces: Pieces,
    scores: Vec<f32>,
    kinds: Vec<Kind>,
    /// `<0xXX>` for each byte, for characters outside the vocabulary.
    byte_ids: [Option<u32>; 256],
    unk_id: Option<u32>,
    /// Put a space before every run of text (after the start or a token matched whole).
    add_space_prefix: bool,
    /// User-defined pieces (Gemma's "\n", runs of spaces and tabs): matched
    /// whole in the raw text before anything else, as llama.cpp and
    /// SentencePiece do.
    user_defined: SpecialMatcher,
}

/// A character, or a run of them merged so far.
#[derive(Clone, Copy)]
struct Symbol {
    start: u32,
    len: u32,
    prev: i32,
    next: i32,
}

/// A candidate merge of two neighbouring symbols.
#[derive(Clone, Copy)]
struct Bigram {
    score: f32,
    left: i32,
    right: i32,
    /// Byte length of the merged piece; a changed neighbour makes it stale.
    size: u32,
}

impl PartialEq for Bigram {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Bigram {}

impl Ord for Bigram {
    /// The best score first; on a tie the leftmost pair.
    fn cmp(&self, other: &Self) -> Ordering {
        self.score
            .total_cmp(&other.score)
            .then_with(|| other.left.cmp(&self.left))
    }
}

impl PartialOrd for Bigram {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl SpmBpe {
    /// `tokens`, `types` and `scores` are the GGUF arrays (scores default to 0,
    /// as in llama.cpp). Fails only on a vocabulary too large to index.
    pub(super) fn new(
        tokens: &[&str],
        types: &[i64],
        scores: Option<&[f32]>,
        unk_id: Option<u32>,
        add_space_prefix: bool,
    ) -> Result<Self> {
        let pieces = Pieces::new(tokens, Duplicates::KeepLast)?;
        // GGUF's token types are SentencePiece's numbers.
        let kinds: Vec<Kind> = types
            .iter()
            .map(|&t| Kind::from_proto(u64::try_from(t).unwrap_or(0)))
            .collect();
        let user_defined = SpecialMatcher::new(
            kinds
                .iter()
                .enumerate()
                .filter(|(_, &k)| k == Kind::UserDefined)
                .map(|(id, _)| {
                    (
                        pieces.piece(id as u32).unwrap_or_default().to_string(),
                        id as u32,
                    )
                }),
        );
        let mut spm = Self {
            pieces,
            scores: scores.map_or_else(|| vec![0.0; tokens.len()], <[f32]>::to_vec),
            kinds,
            byte_ids: [None; 256],
            unk_id,
            add_space_prefix,
            user_defined,
        };
        for byte in 0..=255u8 {
            // llama.cpp's byte_to_token: `<0xXX>`, else the byte itself as a piece.
            spm.byte_ids[usize::from(byte)] = spm
                .find(&format!("<0x{byte:02X}>"))
                .or_else(|| std::str::from_utf8(&[byte]).ok().and_then(|s| spm.find(s)));
        }
        Ok(spm)
    }

    pub(super) fn vocab_size(&self) -> usize {
        self.kinds.len()
    }

    /// The piece of `id` as the GGUF file spells it.
    pub(super) fn piece(&self, id: u32) -> Option<&str> {
        self.pieces.piece(id)
    }

    /// The id of a piece (any kind).
    pub(super) fn find(&self, piece: &str) -> Option<u32> {
        self.pieces.find(piece)
    }

    /// The id of a piece that plain text may produce.
    fn find_from_text(&self, piece: &str) -> Option<u32> {
        self.find(piece)
            .filter(|&id| reachable_from_text(self.kinds[id as usize]))
    }

    /// Plain text to ids: user-defined pieces matched whole, the runs between
    /// them merged by score. No BOS, no special-token parsing.
    pub(super) fn encode(&self, text: &str) -> Result<Vec<u32>> {
        self.user_defined
            .encode_around(text, |run, ids| self.encode_run(run, ids))
    }

    /// One run of text without user-defined pieces.
    fn encode_run(&self, run: &str, ids: &mut Vec<u32>) -> Result<()> {
        if run.is_empty() {
            return Ok(());
        }
        let mut text = String::with_capacity(run.len() + 3);
        if self.add_space_prefix {
            text.push(SPIECE_SPACE);
        }
        text.extend(run.chars().map(|c| if c == ' ' { SPIECE_SPACE } else { c }));

        let mut symbols: Vec<Symbol> = Vec::with_capacity(text.len());
        for (i, (start, c)) in text.char_indices().enumerate() {
            let len = c.len_utf8();
            symbols.push(Symbol {
                start: start as u32,
                len: len as u32,
                prev: i as i32 - 1,
                next: if start + len == text.len() {
                    -1
                } else {
                    i as i32 + 1
                },
            });
        }
        let mut queue = BinaryHeap::with_capacity(symbols.len());
        let push = |queue: &mut BinaryHeap<Bigram>, symbols: &[Symbol], left: i32, right: i32| {
            if left < 0 || right < 0 {
                return;
            }
            let (l, r) = (symbols[left as usize], symbols[right as usize]);
            let merged = &text[l.start as usize..(l.start + l.len + r.len) as usize];
            if let Some(id) = self.find_from_text(merged) {
                queue.push(Bigram {
                    score: self.scores[id as usize],
                    left,
                    right,
                    size: merged.len() as u32,
                });
            }
        };
        for right in 1..symbols.len() as i32 {
            push(&mut queue, &symbols, right - 1, right);
        }
        while let Some(bigram) = queue.pop() {
            let (left, right) = (bigram.left as usize, bigram.right as usize);
            let (l, r) = (symbols[left], symbols[right]);
            if l.len == 0 || r.len == 0 || l.len + r.len != bigram.size {
                continue; // one side was merged since this pair was queued
            }
            symbols[left].len += r.len;
            symbols[left].next = r.next;
            symbols[right].len = 0;
            if r.next >= 0 {
                symbols[r.next as usize].prev = bigram.left;
            }
            push(&mut queue, &symbols, l.prev, bigram.left);
            push(&mut queue, &symbols, bigram.left, r.next);
        }

        let mut at = 0i32;
        while at >= 0 {
            let s = symbols[at as usize];
            let piece = &text[s.start as usize..(s.start + s.len) as usize];
            match self.find_from_text(piece) {
                Some(id) => ids.push(id),
                None => {
                    for &byte in piece.as_bytes() {
                        match self.byte_ids[usize::from(byte)].or(self.unk_id) {
                            Some(id) => ids.push(id),
                            None => bail!(
                                "cannot tokenize {piece:?}: the vocabulary has no byte \
                                 token <0x{byte:02X}> and no unknown token"
                            ),
                        }
                    }
                }
            }
            at = s.next;
        }
        Ok(())
    }

    /// Ids to text as llama.cpp prints them: "▁" as a space in normal pieces,
    /// byte tokens as bytes, user-defined pieces as they are, control and
    /// unknown tokens only when `skip_special` is off; unused pieces and ids
    /// outside the vocabulary print nothing. With a space prefix, the first
    /// piece loses one leading space.
    pub(super) fn decode(&self, ids: &[u32], skip_special: bool) -> String {
        let mut out: Vec<u8> = Vec::new();
        for (i, &id) in ids.iter().enumerate() {
            let (Some(piece), Some(&kind)) = (self.piece(id), self.kinds.get(id as usize)) else {
                continue;
            };
            let from = out.len();
            match kind {
                Kind::Normal => {
                    for c in piece.chars() {
                        let c = if c == SPIECE_SPACE { ' ' } else { c };
                        out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes());
                    }
                }
                Kind::UserDefined => out.extend_from_slice(piece.as_bytes()),
                Kind::Control | Kind::Unknown if !skip_special => {
                    out.extend_from_slice(piece.as_bytes())
                }
                Kind::Byte => {
                    if let Some(byte) = piece
                        .strip_prefix("<0x")
                        .and_then(|hex| hex.strip_suffix('>'))
                        .and_then(|hex| u8::from_str_radix(hex, 16).ok())
                    {
                        out.push(byte);
                    }
                }
                _ => {}
            }
            if i == 0 && self.add_space_prefix && out.get(from) == Some(&b' ') {
                out.remove(from);
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    }
}
