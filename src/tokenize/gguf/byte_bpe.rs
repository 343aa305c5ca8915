//! Byte-level BPE over a GGUF vocabulary (`tokenizer.ggml.model = gpt2`:
//! Qwen 2, Llama 3, SmolLM2, GPT-2), run as the `tokenizers` crate's BPE runs
//! it: the text split by the family's pre-tokenizer, each piece's bytes
//! spelled as GPT-2's byte characters, then the adjacent pair of lowest merge
//! rank merged first (ties: the leftmost); in Llama 3's family a word that
//! is a token whole is taken before any merge ([`ignores_merges`]).
//!
//! Why not the `tokenizers` crate's BPE: it wants an owned string for every
//! token and both halves of every merge, then builds its own maps from them,
//! which cost Qwen 2.5's vocabulary (151k tokens, 151k merges) 0.14-0.16 s of
//! every load. This holds the vocabulary as one string, its offsets, a hash
//! table of ids and the merges as id pairs. The pre-tokenizers stay the
//! crate's: their regexes are the ones the families' tokenizer.json files name.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use anyhow::{anyhow, bail, Context, Result};
use hashbrown::HashMap;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{
    OffsetReferential, OffsetType, PreTokenizedString, PreTokenizer, PreTokenizerWrapper,
    SplitDelimiterBehavior,
};

use super::pieces::{Duplicates, Pieces};
use super::SpecialMatcher;

/// GPT-2's split regex (the `tokenizers` ByteLevel pre-tokenizer's).
const GPT2_SPLIT_REGEX: &str =
    r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";
/// Split regexes of the Llama 3 and Qwen 2 tokenizer.json files (llama.cpp `pre` = llama-bpe, qwen2).
pub(super) const LLAMA3_SPLIT_REGEX: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
pub(super) const QWEN2_SPLIT_REGEX: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// GPT-2's byte characters: printable Latin-1 bytes stand for themselves, the
/// other 68 bytes for U+0100.. in byte order.
pub(super) fn byte_chars() -> [char; 256] {
    let printable = |b: u8| matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
    let mut chars = ['\0'; 256];
    let mut next = 256u32;
    for b in 0..=255u8 {
        chars[usize::from(b)] = if printable(b) {
            char::from(b)
        } else {
            next += 1;
            char::from_u32(next - 1).expect("U+0100..U+0143 are characters")
        };
    }
    chars
}

/// The pre-tokenizer llama.cpp's `tokenizer.ggml.pre` names, as in each
/// family's tokenizer.json (without the byte mapping, which [`ByteBpe`] does).
pub(super) fn pre_tokenizer(pre: Option<&str>) -> Result<PreTokenizerWrapper> {
    let split = |regex: &str| -> Result<PreTokenizerWrapper> {
        Ok(PreTokenizerWrapper::Split(
            Split::new(
                SplitPattern::Regex(regex.to_string()),
                SplitDelimiterBehavior::Isolated,
                false,
            )
            .map_err(|e| anyhow!("GGUF gpt2 tokenizer: pre-tokenizer regex: {e}"))?,
        ))
    };
    Ok(match pre.unwrap_or("default") {
        "default" | "gpt2" | "gpt-2" => split(GPT2_SPLIT_REGEX)?,
        "smollm" => PreTokenizerWrapper::Sequence(Sequence::new(vec![
            PreTokenizerWrapper::Digits(Digits::new(true)),
            split(GPT2_SPLIT_REGEX)?,
        ])),
        "llama3" | "llama-bpe" => split(LLAMA3_SPLIT_REGEX)?,
        "qwen2" => split(QWEN2_SPLIT_REGEX)?,
        other => bail!(
            "unsupported GGUF pre-tokenizer `{other}` for the gpt2 tokenizer \
             (supported: default, gpt2, smollm, llama-bpe, qwen2); use a tokenizer.json instead"
        ),
    })
}

/// Whether a family's tokenizer takes a pre-tokenized word that is itself
/// a token whole, before any merge (`ignore_merges` in Llama 3's
/// tokenizer.json; llama.cpp sets it for the same `tokenizer.ggml.pre`
/// names). Merges alone need not build such a token.
pub(super) fn ignores_merges(pre: Option<&str>) -> bool {
    matches!(
        pre,
        Some(
            "llama3"
                | "llama-v3"
                | "llama-bpe"
                | "falcon3"
                | "falcon-h1"
                | "pixtral"
                | "midm-2.0"
                | "lfm2"
        )
    )
}

pub(super) struct ByteBpe {
    /// The vocabulary (byte characters); a token spelled twice keeps its
    /// first id, as the `tokenizers` vocabulary does.
    pieces: Pieces,
    /// `(left, right)` → `(rank, merged id)`; a pair listed twice keeps its
    /// last rank, as in `tokenizers`.
    merges: HashMap<(u32, u32), (u32, u32)>,
    /// The id of each byte's one-character token.
    byte_ids: [Option<u32>; 256],
    /// The character of each byte ([`byte_chars`]).
    byte_chars: [char; 256],
    /// Byte of each byte character (indexed by the character, below U+0144).
    char_bytes: [Option<u8>; 324],
    /// Control and unknown ids, which `decode(.., skip_special)` drops.
    special: Vec<bool>,
    /// User-defined tokens, matched whole in the raw text before anything else.
    user_defined: SpecialMatcher,
    pre: PreTokenizerWrapper,
    /// See [`ignores_merges`].
    ignore_merges: bool,
}

/// A byte, or a run of them merged so far.
#[derive(Clone, Copy)]
struct Symbol {
    id: u32,
    /// 0 once merged into the symbol on its left.
    len: u32,
    prev: i32,
    next: i32,
}

/// A candidate merge of the symbol at `pos` with its right neighbour.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Merge {
    rank: u32,
    pos: u32,
    new_id: u32,
}

impl Ord for Merge {
    /// The lowest rank first; on a tie the leftmost pair (a max-heap order).
    fn cmp(&self, other: &Self) -> Ordering {
        other
            .rank
            .cmp(&self.rank)
            .then_with(|| other.pos.cmp(&self.pos))
    }
}

impl PartialOrd for Merge {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl ByteBpe {
    /// `tokens` and `merges` are the GGUF arrays, `special` the ids of the
    /// control and unknown tokens, `user_defined` the user-defined ones.
    /// Fails on a merge whose halves or result are not tokens, as the
    /// `tokenizers` builder does.
    pub(super) fn new(
        tokens: &[&str],
        merges: &[&str],
        special: impl IntoIterator<Item = u32>,
        user_defined: SpecialMatcher,
        pre: PreTokenizerWrapper,
        ignore_merges: bool,
    ) -> Result<Self> {
        let mut bpe = Self {
            pieces: Pieces::new(tokens, Duplicates::KeepFirst)?,
            merges: HashMap::new(),
            byte_ids: [None; 256],
            byte_chars: byte_chars(),
            char_bytes: [None; 324],
            special: vec![false; tokens.len()],
            user_defined,
            pre,
            ignore_merges,
        };
        for (byte, c) in bpe.byte_chars.into_iter().enumerate() {
            bpe.byte_ids[byte] = bpe.find(c.encode_utf8(&mut [0; 4]));
            bpe.char_bytes[c as usize] = Some(byte as u8);
        }
        for id in special {
            if let Some(flag) = bpe.special.get_mut(id as usize) {
                *flag = true;
            }
        }
        let mut joined = String::new();
        let mut pairs = HashMap::with_capacity(merges.len());
        for (rank, merge) in merges.iter().enumerate() {
            let (left, right) = merge.split_once(' ').with_context(|| {
                format!(
                    "GGUF metadata `tokenizer.ggml.merges`[{rank}] = {merge:?} is not `left right`"
                )
            })?;
            joined.clear();
            joined.push_str(left);
            joined.push_str(right);
            let id = |piece: &str| {
                bpe.find(piece).with_context(|| {
                    format!(
                        "GGUF gpt2 tokenizer: merge {rank} ({merge:?}) needs {piece:?}, \
                         which is not in the vocabulary"
                    )
                })
            };
            pairs.insert((id(left)?, id(right)?), (rank as u32, id(&joined)?));
        }
        bpe.merges = pairs;
        Ok(bpe)
    }

    pub(super) fn vocab_size(&self) -> usize {
        self.special.len()
    }

    /// The token of `id` as the GGUF file spells it.
    pub(super) fn piece(&self, id: u32) -> Option<&str> {
        self.pieces.piece(id)
    }

    /// The id of a token as the GGUF file spells it (any kind).
    pub(super) fn find(&self, piece: &str) -> Option<u32> {
        self.pieces.find(piece)
    }

    /// Plain text to ids: user-defined tokens matched whole, the runs
    /// between them pre-tokenized and merged. No BOS, no special tokens.
    pub(super) fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let mut scratch = Scratch::default();
        self.user_defined
            .encode_around(text, |run, ids| self.encode_run(run, &mut scratch, ids))
    }

    /// One run of text without user-defined tokens.
    fn encode_run(&self, run: &str, scratch: &mut Scratch, ids: &mut Vec<u32>) -> Result<()> {
        if run.is_empty() {
            return Ok(());
        }
        let mut pieces = PreTokenizedString::from(run);
        self.pre
            .pre_tokenize(&mut pieces)
            .map_err(|e| anyhow!("pre-tokenizing text failed: {e}"))?;
        for (piece, _, _) in pieces.get_splits(OffsetReferential::Original, OffsetType::None) {
            self.encode_word(piece.as_bytes(), scratch, ids)?;
        }
        Ok(())
    }

    /// One pre-tokenized word: its bytes' tokens, merged by rank.
    fn encode_word(&self, word: &[u8], scratch: &mut Scratch, ids: &mut Vec<u32>) -> Result<()> {
        let Scratch {
            symbols,
            queue,
            chars,
        } = scratch;
        if self.ignore_merges {
            chars.clear();
            chars.extend(word.iter().map(|&b| self.byte_chars[usize::from(b)]));
            if let Some(id) = self.find(chars) {
                ids.push(id);
                return Ok(());
            }
        }
        symbols.clear();
        queue.clear();
        for (i, &byte) in word.iter().enumerate() {
            let id = self.byte_ids[usize::from(byte)].with_context(|| {
                format!("cannot tokenize byte 0x{byte:02X}: the vocabulary has no token for it")
            })?;
            symbols.push(Symbol {
                id,
                len: 1,
                prev: i as i32 - 1,
                next: if i + 1 == word.len() {
                    -1
                } else {
                    i as i32 + 1
                },
            });
        }
        let rank = |left: u32, right: u32| self.merges.get(&(left, right)).copied();
        for pos in 1..symbols.len() {
            if let Some((rank, new_id)) = rank(symbols[pos - 1].id, symbols[pos].id) {
                queue.push(Merge {
                    rank,
                    pos: pos as u32 - 1,
                    new_id,
                });
            }
        }
        while let Some(top) = queue.pop() {
            let pos = top.pos as usize;
            let current = symbols[pos];
            if current.len == 0 || current.next < 0 {
                continue;
            }
            let next = current.next as usize;
            let right = symbols[next];
            // A stale entry: one side has been merged since it was queued.
            if rank(current.id, right.id).is_none_or(|(_, id)| id != top.new_id) {
                continue;
            }
            symbols[pos].id = top.new_id;
            symbols[pos].len += right.len;
            symbols[pos].next = right.next;
            symbols[next].len = 0;
            if right.next >= 0 {
                symbols[right.next as usize].prev = pos as i32;
            }
            let current = symbols[pos];
            if current.prev >= 0 {
                let prev = current.prev as usize;
                if let Some((rank, new_id)) = rank(symbols[prev].id, current.id) {
                    queue.push(Merge {
                        rank,
                        pos: prev as u32,
                        new_id,
                    });
                }
            }
            if current.next >= 0 {
                if let Some((rank, new_id)) = rank(current.id, symbols[current.next as usize].id) {
                    queue.push(Merge {
                        rank,
                        pos: top.pos,
                        new_id,
                    });
                }
            }
        }
        ids.extend(symbols.iter().filter(|s| s.len > 0).map(|s| s.id));
        Ok(())
    }

    /// Ids to text: each token's byte characters back to bytes (a token with
    /// other characters as its UTF-8), control and unknown tokens dropped
    /// when `skip_special`, ids outside the vocabulary print nothing; bytes
    /// that are not UTF-8 become U+FFFD.
    pub(super) fn decode(&self, ids: &[u32], skip_special: bool) -> String {
        let mut out: Vec<u8> = Vec::new();
        for &id in ids {
            let Some(piece) = self.piece(id) else {
                continue;
            };
            if skip_special && self.special[id as usize] {
                continue;
            }
            let from = out.len();
            for c in piece.chars() {
                match self.char_bytes.get(c as usize).copied().flatten() {
                    Some(byte) => out.push(byte),
                    None => {
                        out.truncate(from);
                        out.extend_from_slice(piece.as_bytes());
                        break;
                    }
                }
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    }
}

/// Buffers reused across the words of one text.
#[derive(Default)]
struct Scratch {
    symbols: Vec<Symbol>,
    queue: BinaryHeap<Merge>,
    /// A word in byte characters, for [`ignores_merges`].
    chars: String,
}
