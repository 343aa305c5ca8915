//! A GGUF vocabulary held as one string, its offsets and a hash table of
//! ids (no `String` per token): what both of tolk's GGUF tokenizers look
//! pieces up in.

use std::hash::BuildHasher;

use anyhow::{bail, Result};
use hashbrown::{DefaultHashBuilder, HashTable};

/// Which id a piece spelled twice keeps.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Duplicates {
    /// The first, as the `tokenizers` vocabulary does.
    KeepFirst,
    /// The last, as llama.cpp's `token_to_id[word] = i` does.
    KeepLast,
}

pub(super) struct Pieces {
    /// Every piece, in id order, as the GGUF file spells it.
    text: String,
    /// Piece `i` is `text[offsets[i]..offsets[i + 1]]`.
    offsets: Vec<u32>,
    /// Ids, hashed by their piece (empty pieces are not indexed).
    index: HashTable<u32>,
    hasher: DefaultHashBuilder,
}

impl Pieces {
    /// Fails only on a vocabulary too large to index.
    pub(super) fn new(tokens: &[&str], duplicates: Duplicates) -> Result<Self> {
        let total: usize = tokens.iter().map(|t| t.len()).sum();
        if total > u32::MAX as usize || tokens.len() > i32::MAX as usize {
            bail!(
                "GGUF vocabulary too large ({} pieces, {total} bytes)",
                tokens.len()
            );
        }
        let mut text = String::with_capacity(total);
        let mut offsets = Vec::with_capacity(tokens.len() + 1);
        offsets.push(0);
        for token in tokens {
            text.push_str(token);
            offsets.push(text.len() as u32);
        }
        let mut pieces = Self {
            text,
            offsets,
            index: HashTable::with_capacity(tokens.len()),
            hasher: DefaultHashBuilder::default(),
        };
        let Self {
            text,
            offsets,
            index,
            hasher,
        } = &mut pieces;
        let piece =
            |id: u32| &text[offsets[id as usize] as usize..offsets[id as usize + 1] as usize];
        for id in 0..tokens.len() as u32 {
            let p = piece(id);
            if p.is_empty() {
                continue;
            }
            let hash = hasher.hash_one(p);
            match index.find_mut(hash, |&other| piece(other) == p) {
                Some(slot) if duplicates == Duplicates::KeepLast => *slot = id,
                Some(_) => {}
                None => {
                    index.insert_unique(hash, id, |&other| hasher.hash_one(piece(other)));
                }
            }
        }
        Ok(pieces)
    }

    /// The piece of `id` as the GGUF file spells it.
    pub(super) fn piece(&self, id: u32) -> Option<&str> {
        let i = id as usize;
        let (start, end) = (*self.offsets.get(i)?, *self.offsets.get(i + 1)?);
        Some(&self.text[start as usize..end as usize])
    }

    /// The id of a piece.
    pub(super) fn find(&self, piece: &str) -> Option<u32> {
        let hash = self.hasher.hash_one(piece);
        self.index
            .find(hash, |&id| self.piece(id) == Some(piece))
            .copied()
    }
}
