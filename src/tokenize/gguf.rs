//! Tokenizers rebuilt from GGUF metadata, so a lone `.gguf` file is enough to run a model.
//!
//! Two GGUF tokenizer models are supported:
//! - `gpt2`: byte-level BPE from `tokenizer.ggml.tokens` + `tokenizer.ggml.merges`, with the
//!   pre-tokenizer chosen by `tokenizer.ggml.pre` (SmolLM2's `smollm` splits digits one by one),
//!   run by tolk's own [`byte_bpe`] as the `tokenizers` crate runs it (building the crate's BPE
//!   cost Qwen 2.5's 151k-token vocabulary 0.14 s of every load; [`hf_tokenizer_from_gguf`]
//!   still builds it, to export a tokenizer.json).
//! - `llama`: SentencePiece-style BPE (scores, no merges) as used by Llama 2 and Gemma, run by
//!   tolk's own [`spm_bpe`] as llama.cpp runs it (the `tokenizers` crate would need merges, and
//!   deriving them from the scores cost gemma-3 0.6 s and ~70 MB).
//!
//! Token types follow llama.cpp: 3 (control) and 2 (unknown) are *special* tokens, which are only
//! recognised in trusted text; 4 (user-defined, e.g. Gemma's "\n" or runs of spaces) are pieces
//! that SentencePiece and llama.cpp always match whole.
//!
//! Prompt safety: [`GgufTokenizer::encode_text`] never turns special-token strings inside user
//! text into control tokens. [`GgufTokenizer::encode_prompt`] assembles a prompt from trusted
//! template parts and untrusted text while tokenizing across their boundaries exactly as if the
//! whole prompt were one string.

use std::collections::HashMap;

use anyhow::{anyhow, bail, Context, Result};
use candle_core::quantized::gguf_file::Value;
use tokenizers::decoders::byte_level::ByteLevel;
use tokenizers::decoders::DecoderWrapper;
use tokenizers::models::bpe::{Merges, Vocab, BPE};
use tokenizers::pre_tokenizers::sequence::Sequence as PreTokenizerSequence;
use tokenizers::processors::template::TemplateProcessing;
use tokenizers::{AddedToken, PreTokenizerWrapper, Tokenizer};

mod byte_bpe;
mod pieces;
mod spm_bpe;
use byte_bpe::ByteBpe;
use spm_bpe::SpmBpe;

/// SentencePiece's visible space.
const SPIECE_SPACE: char = '\u{2581}';

/// Token strings that end a turn in common chat formats; generation stops on any that exist.
pub const END_OF_TURN_TOKENS: &[&str] = &[
    "<|im_end|>",
    "<end_of_turn>",
    "<|eot_id|>",
    "<|eom_id|>",
    "<|end|>",
    "<|endoftext|>",
];

/// llama.cpp token types (`tokenizer.ggml.token_type`).
mod token_type {
    pub const NORMAL: i64 = 1;
    pub const UNKNOWN: i64 = 2;
    pub const CONTROL: i64 = 3;
    pub const USER_DEFINED: i64 = 4;
}

/// One part of a prompt for [`GgufTokenizer::encode_prompt`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PromptPart<'a> {
    /// Template output (chat markup) written by the program: special tokens are recognised.
    Trusted(&'a str),
    /// Text from the user or a document: special-token strings stay plain text.
    Text(&'a str),
}

/// A tokenizer rebuilt from GGUF metadata plus the generation-relevant token facts.
pub struct GgufTokenizer {
    engine: Engine,
    pub bos_id: Option<u32>,
    pub eos_id: Option<u32>,
    /// ids that end generation: eos, plus end-of-turn tokens such as <|im_end|>, <end_of_turn>, <|eot_id|> when present
    pub stop_ids: Vec<u32>,
    /// `tokenizer.ggml.add_bos_token` (model defaults when absent: `llama` true, `gpt2` false).
    /// The `encode_*` methods never add BOS themselves; the caller prepends `bos_id` when this is
    /// set and the chat template does not already emit it.
    pub add_bos: bool,
    /// `tokenizer.chat_template`
    pub chat_template: Option<String>,
    specials: SpecialMatcher,
}

/// What turns text into ids.
enum Engine {
    /// `gpt2`: byte-level BPE by merge rank.
    ByteLevel(Box<ByteBpe>),
    /// `llama`: SentencePiece BPE by score.
    SentencePiece(Box<SpmBpe>),
}

impl std::fmt::Debug for GgufTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GgufTokenizer")
            .field("vocab_size", &self.vocab_size())
            .field("bos_id", &self.bos_id)
            .field("eos_id", &self.eos_id)
            .field("stop_ids", &self.stop_ids)
            .field("add_bos", &self.add_bos)
            .field("has_chat_template", &self.chat_template.is_some())
            .finish_non_exhaustive()
    }
}

impl GgufTokenizer {
    /// Encodes user text so that special-token strings inside it (e.g. "<|im_start|>") are NOT
    /// turned into control tokens. Adds no BOS/EOS.
    pub fn encode_text(&self, text: &str) -> Result<Vec<u32>> {
        if text.is_empty() {
            return Ok(Vec::new());
        }
        match &self.engine {
            Engine::ByteLevel(bpe) => bpe.encode(text),
            Engine::SentencePiece(spm) => spm.encode(text),
        }
    }

    /// Encodes trusted template output (chat markup) where special tokens ARE recognised.
    /// Adds no BOS/EOS. Gives the same ids as the tokenizer's own special-token parsing.
    pub fn encode_trusted(&self, text: &str) -> Result<Vec<u32>> {
        self.encode_prompt(&[PromptPart::Trusted(text)])
    }

    /// Encodes a prompt made of trusted template parts and untrusted text.
    ///
    /// Special tokens are recognised only inside [`PromptPart::Trusted`] parts. All plain text
    /// between two special tokens is tokenized as one string, whichever parts it comes from, so
    /// the result equals tokenizing the concatenated prompt (minus special-token parsing in the
    /// untrusted parts). Encoding the parts separately and concatenating the ids would not: e.g.
    /// a template ending in "Text: " followed by "Der" gives "Ġ" + "Der" instead of "ĠDer" for
    /// byte-level BPE. Adds no BOS/EOS.
    pub fn encode_prompt(&self, parts: &[PromptPart<'_>]) -> Result<Vec<u32>> {
        let mut ids = Vec::new();
        let mut pending = String::new();
        for part in parts {
            match *part {
                PromptPart::Text(text) => pending.push_str(text),
                PromptPart::Trusted(text) => {
                    let mut rest = text;
                    while let Some((start, len, id)) = self.specials.find(rest) {
                        pending.push_str(&rest[..start]);
                        ids.extend(self.encode_text(&pending)?);
                        pending.clear();
                        ids.push(id);
                        rest = &rest[start + len..];
                    }
                    pending.push_str(rest);
                }
            }
        }
        ids.extend(self.encode_text(&pending)?);
        Ok(ids)
    }

    /// Decodes ids to text; `skip_special` drops control tokens such as `<|im_end|>`.
    pub fn decode(&self, ids: &[u32], skip_special: bool) -> Result<String> {
        match &self.engine {
            Engine::ByteLevel(bpe) => Ok(bpe.decode(ids, skip_special)),
            Engine::SentencePiece(spm) => Ok(spm.decode(ids, skip_special)),
        }
    }

    /// The id of a token string, including special tokens.
    pub fn token_id(&self, token: &str) -> Option<u32> {
        match &self.engine {
            Engine::ByteLevel(bpe) => bpe.find(token),
            Engine::SentencePiece(spm) => spm.find(token),
        }
    }

    /// The token string of an id as the vocabulary spells it ("Ġ" for a
    /// byte-level space, "▁" for a SentencePiece one).
    pub fn id_to_token(&self, id: u32) -> Option<String> {
        match &self.engine {
            Engine::ByteLevel(bpe) => bpe.piece(id).map(str::to_string),
            Engine::SentencePiece(spm) => spm.piece(id).map(str::to_string),
        }
    }

    /// Number of ids in the vocabulary.
    pub fn vocab_size(&self) -> usize {
        match &self.engine {
            Engine::ByteLevel(bpe) => bpe.vocab_size(),
            Engine::SentencePiece(spm) => spm.vocab_size(),
        }
    }

    /// Whether generating `id` should end the answer.
    pub fn is_stop(&self, id: u32) -> bool {
        self.stop_ids.contains(&id)
    }
}

/// Finds special-token strings (leftmost, then longest) in trusted text.
#[derive(Debug, Clone)]
struct SpecialMatcher {
    ids: HashMap<String, u32>,
    /// Distinct byte lengths of the special tokens, longest first.
    lengths: Vec<usize>,
    /// Which bytes can start a special token.
    first_bytes: [bool; 256],
}

impl SpecialMatcher {
    fn new(specials: impl IntoIterator<Item = (String, u32)>) -> Self {
        let mut matcher = Self {
            ids: HashMap::new(),
            lengths: Vec::new(),
            first_bytes: [false; 256],
        };
        for (content, id) in specials {
            let Some(&first) = content.as_bytes().first() else {
                continue;
            };
            matcher.first_bytes[usize::from(first)] = true;
            if !matcher.lengths.contains(&content.len()) {
                matcher.lengths.push(content.len());
            }
            matcher.ids.entry(content).or_insert(id);
        }
        matcher.lengths.sort_unstable_by(|a, b| b.cmp(a));
        matcher
    }

    /// `text`'s ids: each match's own, the text between matches through
    /// `run` (which appends its ids).
    fn encode_around(
        &self,
        text: &str,
        mut run: impl FnMut(&str, &mut Vec<u32>) -> Result<()>,
    ) -> Result<Vec<u32>> {
        let mut ids = Vec::new();
        let mut rest = text;
        while let Some((start, len, id)) = self.find(rest) {
            run(&rest[..start], &mut ids)?;
            ids.push(id);
            rest = &rest[start + len..];
        }
        run(rest, &mut ids)?;
        Ok(ids)
    }

    /// `(byte offset, byte length, id)` of the first special token in `text`.
    fn find(&self, text: &str) -> Option<(usize, usize, u32)> {
        let bytes = text.as_bytes();
        for (start, &byte) in bytes.iter().enumerate() {
            if !self.first_bytes[usize::from(byte)] || !text.is_char_boundary(start) {
                continue;
            }
            for &len in &self.lengths {
                let Some(candidate) = text.get(start..start + len) else {
                    continue;
                };
                if let Some(&id) = self.ids.get(candidate) {
                    return Some((start, len, id));
                }
            }
        }
        None
    }
}

/// Reads a typed view of the `tokenizer.*` metadata.
struct Metadata<'a>(&'a HashMap<String, Value>);

impl<'a> Metadata<'a> {
    fn get(&self, key: &str) -> Option<&'a Value> {
        self.0.get(key)
    }

    fn string(&self, key: &str) -> Result<Option<&'a str>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.as_str())),
            Some(other) => bail!(
                "GGUF metadata `{key}` should be a string, found {:?}",
                other.value_type()
            ),
        }
    }

    fn bool(&self, key: &str) -> Result<Option<bool>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(other) => integer(other)
                .map(|v| Some(v != 0))
                .with_context(|| format!("GGUF metadata `{key}` should be a boolean")),
        }
    }

    fn token_id(&self, key: &str, vocab_size: usize) -> Result<Option<u32>> {
        let Some(value) = self.get(key) else {
            return Ok(None);
        };
        let id = integer(value)
            .with_context(|| format!("GGUF metadata `{key}` should be a token id"))?;
        // Some converters write -1 for "no such token".
        if id < 0 {
            return Ok(None);
        }
        match u32::try_from(id) {
            Ok(id) if (id as usize) < vocab_size => Ok(Some(id)),
            _ => bail!(
                "GGUF metadata `{key}` = {id} is outside the vocabulary of {vocab_size} tokens"
            ),
        }
    }

    fn array(&self, key: &str) -> Result<Option<&'a Vec<Value>>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Array(items)) => Ok(Some(items)),
            Some(other) => bail!(
                "GGUF metadata `{key}` should be an array, found {:?}",
                other.value_type()
            ),
        }
    }

    fn strings(&self, key: &str) -> Result<Option<Vec<&'a str>>> {
        let Some(items) = self.array(key)? else {
            return Ok(None);
        };
        items
            .iter()
            .enumerate()
            .map(|(i, v)| match v {
                Value::String(s) => Ok(s.as_str()),
                other => bail!(
                    "GGUF metadata `{key}`[{i}] should be a string, found {:?}",
                    other.value_type()
                ),
            })
            .collect::<Result<Vec<_>>>()
            .map(Some)
    }

    fn integers(&self, key: &str) -> Result<Option<Vec<i64>>> {
        self.numbers(key, "an integer", integer)
    }

    fn floats(&self, key: &str) -> Result<Option<Vec<f32>>> {
        self.numbers(key, "a number", float)
    }

    /// An array whose items `convert` reads, each error naming its index.
    fn numbers<T>(
        &self,
        key: &str,
        what: &str,
        convert: fn(&Value) -> Result<T>,
    ) -> Result<Option<Vec<T>>> {
        let Some(items) = self.array(key)? else {
            return Ok(None);
        };
        items
            .iter()
            .enumerate()
            .map(|(i, v)| {
                convert(v).with_context(|| format!("GGUF metadata `{key}`[{i}] should be {what}"))
            })
            .collect::<Result<Vec<_>>>()
            .map(Some)
    }
}

fn float(value: &Value) -> Result<f32> {
    Ok(match value {
        Value::F32(v) => *v,
        Value::F64(v) => *v as f32,
        other => integer(other)
            .map(|v| v as f32)
            .map_err(|_| anyhow!("found {:?}", other.value_type()))?,
    })
}

fn integer(value: &Value) -> Result<i64> {
    Ok(match value {
        Value::U8(v) => i64::from(*v),
        Value::I8(v) => i64::from(*v),
        Value::U16(v) => i64::from(*v),
        Value::I16(v) => i64::from(*v),
        Value::U32(v) => i64::from(*v),
        Value::I32(v) => i64::from(*v),
        Value::I64(v) => *v,
        Value::U64(v) => i64::try_from(*v).context("integer out of range")?,
        other => bail!("found {:?}", other.value_type()),
    })
}

/// The two families of GGUF tokenizer this module can rebuild.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    /// `gpt2`: byte-level BPE with explicit merges.
    ByteLevelBpe,
    /// `llama`: SentencePiece BPE with scores and byte fallback.
    SentencePieceBpe,
}

/// Builds a tokenizer from the metadata of a GGUF file (`Content::metadata`).
pub fn tokenizer_from_gguf(metadata: &HashMap<String, Value>) -> Result<GgufTokenizer> {
    let meta = Metadata(metadata);
    let model = meta
        .string("tokenizer.ggml.model")?
        .context("GGUF metadata has no `tokenizer.ggml.model`: the file carries no tokenizer")?;
    let family = match model {
        "gpt2" => Family::ByteLevelBpe,
        "llama" => Family::SentencePieceBpe,
        other => bail!(
            "unsupported GGUF tokenizer model `{other}` (supported: gpt2, llama); \
             use a tokenizer.json instead"
        ),
    };
    let tokens = meta
        .strings("tokenizer.ggml.tokens")?
        .context("GGUF metadata has no `tokenizer.ggml.tokens`")?;
    if tokens.is_empty() {
        bail!("GGUF metadata `tokenizer.ggml.tokens` is empty");
    }
    let types = match meta.integers("tokenizer.ggml.token_type")? {
        Some(types) if types.len() != tokens.len() => bail!(
            "GGUF metadata `tokenizer.ggml.token_type` has {} entries for {} tokens",
            types.len(),
            tokens.len()
        ),
        Some(types) => types,
        None => vec![token_type::NORMAL; tokens.len()],
    };

    let vocab_size = tokens.len();
    let bos_id = meta.token_id("tokenizer.ggml.bos_token_id", vocab_size)?;
    let eos_id = meta.token_id("tokenizer.ggml.eos_token_id", vocab_size)?;
    let unk_id = meta.token_id("tokenizer.ggml.unknown_token_id", vocab_size)?;
    let add_bos = meta
        .bool("tokenizer.ggml.add_bos_token")?
        .unwrap_or(family == Family::SentencePieceBpe);

    // Control and unknown tokens: recognised only in trusted text.
    let specials: Vec<(String, u32)> = tokens
        .iter()
        .zip(&types)
        .enumerate()
        .filter(|(_, (token, &kind))| {
            !token.is_empty() && matches!(kind, token_type::CONTROL | token_type::UNKNOWN)
        })
        .map(|(id, (token, _))| (token.to_string(), id as u32))
        .collect();

    let engine = match family {
        Family::ByteLevelBpe => {
            let merges = meta
                .strings("tokenizer.ggml.merges")?
                .context("GGUF metadata has no `tokenizer.ggml.merges` for the gpt2 tokenizer")?;
            let pre = meta.string("tokenizer.ggml.pre")?;
            Engine::ByteLevel(Box::new(ByteBpe::new(
                &tokens,
                &merges,
                specials.iter().map(|&(_, id)| id),
                SpecialMatcher::new(user_defined(&tokens, &types)),
                byte_bpe::pre_tokenizer(pre)?,
                byte_bpe::ignores_merges(pre),
            )?))
        }
        Family::SentencePieceBpe => {
            let scores = match meta.floats("tokenizer.ggml.scores")? {
                Some(scores) if scores.len() != tokens.len() => bail!(
                    "GGUF metadata `tokenizer.ggml.scores` has {} entries for {} tokens",
                    scores.len(),
                    tokens.len()
                ),
                scores => scores,
            };
            let add_space_prefix = meta
                .bool("tokenizer.ggml.add_space_prefix")?
                .unwrap_or(true);
            Engine::SentencePiece(Box::new(SpmBpe::new(
                &tokens,
                &types,
                scores.as_deref(),
                unk_id,
                add_space_prefix,
            )?))
        }
    };
    let chat_template = meta.string("tokenizer.chat_template")?.map(str::to_string);
    let mut tokenizer = GgufTokenizer {
        engine,
        bos_id,
        eos_id,
        stop_ids: Vec::new(),
        add_bos,
        chat_template,
        specials: SpecialMatcher::new(specials),
    };
    tokenizer.stop_ids = stop_ids(&meta, &tokenizer, eos_id, vocab_size)?;
    Ok(tokenizer)
}

/// The user-defined tokens of a vocabulary with their ids.
fn user_defined<'a>(
    tokens: &'a [&'a str],
    types: &'a [i64],
) -> impl Iterator<Item = (String, u32)> + 'a {
    tokens
        .iter()
        .zip(types)
        .enumerate()
        .filter(|(_, (token, &kind))| !token.is_empty() && kind == token_type::USER_DEFINED)
        .map(|(id, (token, _))| (token.to_string(), id as u32))
}

/// The byte-level (`gpt2`) vocabulary of a GGUF file as a `tokenizers`
/// tokenizer, e.g. to save as a tokenizer.json: its special and user-defined
/// tokens added, BOS prepended when the file asks for it, special-token
/// strings parsed in all text (the `tokenizers` default). tolk itself
/// tokenizes with [`tokenizer_from_gguf`], which gives the same ids for plain
/// text.
pub fn hf_tokenizer_from_gguf(metadata: &HashMap<String, Value>) -> Result<Tokenizer> {
    let meta = Metadata(metadata);
    if meta.string("tokenizer.ggml.model")? != Some("gpt2") {
        bail!("only byte-level (`gpt2`) GGUF vocabularies convert to a `tokenizers` tokenizer");
    }
    let tokens = meta
        .strings("tokenizer.ggml.tokens")?
        .context("GGUF metadata has no `tokenizer.ggml.tokens`")?;
    let types = meta
        .integers("tokenizer.ggml.token_type")?
        .unwrap_or_else(|| vec![token_type::NORMAL; tokens.len()]);
    let mut vocab = Vocab::default();
    for (id, token) in tokens.iter().enumerate() {
        // A duplicated token string keeps its first id; later copies never encode.
        vocab.entry(token.to_string()).or_insert(id as u32);
    }
    let merges = meta
        .strings("tokenizer.ggml.merges")?
        .context("GGUF metadata has no `tokenizer.ggml.merges` for the gpt2 tokenizer")?
        .iter()
        .enumerate()
        .map(|(i, m)| {
            m.split_once(' ')
                .map(|(l, r)| (l.to_string(), r.to_string()))
                .with_context(|| {
                    format!(
                        "GGUF metadata `tokenizer.ggml.merges`[{i}] = {m:?} is not `left right`"
                    )
                })
        })
        .collect::<Result<Merges>>()?;
    let pre = meta.string("tokenizer.ggml.pre")?;
    let bpe = BPE::builder()
        .vocab_and_merges(vocab, merges)
        .ignore_merges(byte_bpe::ignores_merges(pre))
        .build()
        .map_err(|e| anyhow!("GGUF gpt2 tokenizer: invalid vocabulary or merges: {e}"))?;
    let mut tokenizer = Tokenizer::new(bpe);
    tokenizer.with_pre_tokenizer(Some(PreTokenizerWrapper::Sequence(
        PreTokenizerSequence::new(vec![
            byte_bpe::pre_tokenizer(pre)?,
            PreTokenizerWrapper::ByteLevel(tokenizers::pre_tokenizers::byte_level::ByteLevel::new(
                false, true, false,
            )),
        ]),
    )));
    tokenizer.with_decoder(Some(DecoderWrapper::ByteLevel(ByteLevel::default())));
    let special = |kind: i64| matches!(kind, token_type::CONTROL | token_type::UNKNOWN);
    tokenizer
        .add_special_tokens(
            tokens
                .iter()
                .zip(&types)
                .filter(|(token, &kind)| !token.is_empty() && special(kind))
                .map(|(token, _)| AddedToken::from(token.to_string(), true)),
        )
        .map_err(|e| anyhow!("GGUF tokenizer: special tokens: {e}"))?;
    tokenizer
        .add_tokens(user_defined(&tokens, &types).map(|(token, _)| AddedToken::from(token, false)))
        .map_err(|e| anyhow!("GGUF tokenizer: user-defined tokens: {e}"))?;
    let vocab_size = tokens.len();
    let add_bos = meta.bool("tokenizer.ggml.add_bos_token")?.unwrap_or(false);
    if let (true, Some(bos)) = (
        add_bos,
        meta.token_id("tokenizer.ggml.bos_token_id", vocab_size)?,
    ) {
        let bos_token = tokens[bos as usize];
        let template = TemplateProcessing::builder()
            .try_single(vec![bos_token, "$A"])
            .map_err(|e| anyhow!("GGUF tokenizer: BOS template: {e}"))?
            .try_pair(vec![bos_token, "$A", bos_token, "$B:1"])
            .map_err(|e| anyhow!("GGUF tokenizer: BOS template: {e}"))?
            .special_tokens(vec![(bos_token.to_string(), bos)])
            .build()
            .map_err(|e| anyhow!("GGUF tokenizer: BOS template: {e}"))?;
        tokenizer.with_post_processor(Some(template));
    }
    Ok(tokenizer)
}

fn stop_ids(
    meta: &Metadata<'_>,
    tokenizer: &GgufTokenizer,
    eos_id: Option<u32>,
    vocab_size: usize,
) -> Result<Vec<u32>> {
    let mut ids = Vec::new();
    let mut push = |id: u32| {
        if !ids.contains(&id) {
            ids.push(id);
        }
    };
    if let Some(id) = eos_id {
        push(id);
    }
    for key in ["tokenizer.ggml.eot_token_id", "tokenizer.ggml.eom_token_id"] {
        if let Some(id) = meta.token_id(key, vocab_size)? {
            push(id);
        }
    }
    for token in END_OF_TURN_TOKENS {
        if let Some(id) = tokenizer.token_id(token) {
            push(id);
        }
    }
    Ok(ids)
}

#[cfg(test)]
mod tests;
