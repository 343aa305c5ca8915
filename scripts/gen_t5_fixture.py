#!/usr/bin/env python3
"""Generate the tiny T5 test models and their reference outputs.

Two real T5 checkpoints with random weights, in the file formats of the
Hugging Face T5 repos, and a real (tiny) SentencePiece vocabulary trained here
on English and German text:

- tests/fixtures/t5-tiny/: Flan-T5 style (`feed_forward_proj: "gated-gelu"`,
  untied `lm_head`), with `tokenizer.json` (T5TokenizerFast), `config.json`,
  `generation_config.json`, `model.safetensors`, `tokenizer_config.json`,
  `special_tokens_map.json`.
- tests/fixtures/t5-tiny-relu/: original T5 style (`feed_forward_proj:
  "relu"`, output projection tied to the embeddings, so the decoder output is
  scaled by d_model^-0.5), with `spiece.model` only (no tokenizer.json), so the
  SentencePiece fallback of the loader is exercised.

Reference outputs come from `transformers` (T5TokenizerFast + generate, greedy,
`max_new_tokens` = MAX_NEW_TOKENS) for several "summarize: " inputs: input ids,
generated ids, decoded text, per-step log-probabilities, and the same inputs
generated as one padded batch. They go to tests/fixtures/t5-tiny-reference.json.

Hard to pass by accident:
- every layer-norm weight is random and far from 1; relative attention biases
  are random and large, so wrong position buckets change the output (the
  decoder needs unidirectional buckets, the encoder bidirectional ones, and
  the inputs and outputs are long enough to reach the logarithmic buckets);
- config.json's vocab_size is larger than the tokenizer's (as in real T5);
- one input holds characters the vocabulary lacks (<unk>), one is German;
- some outputs stop at EOS and some run to the limit (the seed and a scale
  of the EOS output row are searched for that, deterministically, starting
  at TOLK_FIXTURE_SEED).

Regenerate (needs Python 3.11 and scripts/requirements.txt; no network beyond PyPI):
    python3 -m venv .venv && .venv/bin/pip install -r scripts/requirements.txt
    .venv/bin/python scripts/gen_t5_fixture.py
It rewrites both fixture folders and tests/fixtures/t5-tiny-reference.json.
Output is deterministic for a given seed and library versions (recorded in
the reference file).
"""
import io
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import sentencepiece as spm
import tokenizers
import torch
import transformers
from transformers import GenerationConfig, T5Config, T5ForConditionalGeneration, T5Tokenizer, T5TokenizerFast

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"
REF = FIXTURES / "t5-tiny-reference.json"
SEED = int(os.environ.get("TOLK_FIXTURE_SEED", "20261130"))
MAX_NEW_TOKENS = 24
EXTRA_IDS = 8
PREFIX = "summarize: "
EOS_SCALES = [1.0, 1.5, 2.0, 2.5, 3.0, 4.0]

ENGLISH = """In Kazakhstan, the anger of the people against the government broke out in recent days.
The protests began at the beginning of the week, when the price cap for gas was lifted and the price doubled.
The protests spread to many parts of the country, but the largest city, Almaty, became the center of the fighting.
According to the authorities, dozens of demonstrators and at least 13 security forces have been killed.
More than 1000 people were injured, of whom some 400 were taken to hospitals.
The president dismissed the government and declared a state of emergency for the whole country.
Russia announced that it would send so-called peacekeeping troops.
The parliament passed a new law on Thursday.
The government wants to limit the prices of electricity and gas.
Many people in the city protested against the decision.
The weather will be sunny tomorrow, but cold.
The police reported several injured after the accident on the motorway.
The economy is growing more slowly this year than expected.
The president visited the capital yesterday and spoke with journalists.
Summarize the following article in a few sentences.
Scientists have discovered a new species of frog in the rain forest of Brazil.
The company reported record profits for the third quarter and raised its forecast.
The football club won the championship after a dramatic final match on Sunday.
"""

GERMAN_EXTRA = """Der Bundestag hat am Donnerstag ein neues Gesetz beschlossen.
Die Regierung will die Preise für Strom und Gas begrenzen.
Viele Menschen in der Stadt haben gegen die Entscheidung protestiert.
Das Wetter wird morgen sonnig, aber kalt.
"""

INPUTS = [
    "The government wants to limit the prices of electricity and gas.",
    "In Kazakhstan, the anger of the people against the government broke out in recent days. "
    "The protests began at the beginning of the week, when the price cap for gas was lifted. "
    "More than 1000 people were injured, of whom some 400 were taken to hospitals.",
    "The weather will be sunny tomorrow, but cold.",
    "Die Regierung will die Preise für Strom und Gas begrenzen.",
    "Scientists 😀 discovered a new frog in Brazil (東京) yesterday!",
    "Rain.",
]

TOKENIZER_CASES = [
    "summarize: Tab\tand  double   spaces  ",
    "„Quotes“ and «guillemets» plus 'single' and \"straight\" ones.",
    "Numbers: 3,14 and 1.000.000 on 13 January 2022 at 10:30.",
    "ÄÖÜ äöü ß é è ñ ç Ｆｕｌｌｗｉｄｔｈ ①",
    "A literal </s> and <extra_id_0> in the text.",
    "",
]


def train_spm(text: str, vocab_size: int) -> bytes:
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(text.splitlines()),
        model_writer=model,
        vocab_size=vocab_size,
        model_type="unigram",
        character_coverage=0.9995,
        normalization_rule_name="nmt_nfkc",
        # T5's spiece.model: <pad>=0, </s>=1, <unk>=2, no <s>.
        pad_id=0,
        eos_id=1,
        unk_id=2,
        bos_id=-1,
        hard_vocab_limit=False,
        seed_sentencepiece_size=100000,
        num_threads=1,
        minloglevel=2,
    )
    return model.getvalue()


def make_config(vocab_size: int, gated: bool) -> T5Config:
    return T5Config(
        vocab_size=vocab_size,
        d_model=32,
        d_kv=8,
        d_ff=48,
        num_layers=2,
        num_decoder_layers=2,
        num_heads=4,
        relative_attention_num_buckets=32,
        relative_attention_max_distance=128,
        dropout_rate=0.0,
        layer_norm_epsilon=1e-6,
        feed_forward_proj="gated-gelu" if gated else "relu",
        tie_word_embeddings=not gated,
        is_encoder_decoder=True,
        pad_token_id=0,
        eos_token_id=1,
        decoder_start_token_id=0,
    )


def randomize(model: T5ForConditionalGeneration, rng: torch.Generator, eos_scale: float) -> None:
    """Random, large-ish weights so the greedy choices have clear margins.

    T5 has no output bias to make EOS likely; scaling the EOS row of the
    output projection makes it win more often where it points the right way.
    """
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "layer_norm" in name:
                p.copy_(1.0 + 0.5 * torch.randn(p.shape, generator=rng))
            elif "relative_attention_bias" in name:
                p.copy_(2.0 * torch.randn(p.shape, generator=rng))
            elif "shared" in name or "embed_tokens" in name or "lm_head" in name:
                p.copy_(1.5 * torch.randn(p.shape, generator=rng))
            else:
                p.copy_(0.3 * torch.randn(p.shape, generator=rng))
        model.get_output_embeddings().weight[1] *= eos_scale


def generate(model, tokenizer, texts, no_repeat_ngram_size=0, num_beams=1):
    batch = tokenizer(texts, return_tensors="pt", padding=True)
    with torch.no_grad():
        out = model.generate(**batch, max_new_tokens=MAX_NEW_TOKENS, num_beams=num_beams, do_sample=False,
                             no_repeat_ngram_size=no_repeat_ngram_size,
                             output_scores=True, return_dict_in_generate=True)
    ids = [[int(t) for t in row] for row in out.sequences]
    if num_beams > 1:
        return ids, [float(x) for x in out.sequences_scores]
    logp = [torch.log_softmax(s.float(), dim=-1) for s in out.scores]
    scores = [[float(logp[step][row, ids[row][step + 1]]) for step in range(len(logp))
               if step + 1 < len(ids[row])] for row in range(len(ids))]
    return ids, scores


def strip_after_eos(ids):
    # generate() pads rows of a batch that finished early with pad (= 0) after EOS.
    out = list(ids)
    if 1 in out[1:]:
        out = out[: out.index(1, 1) + 1]
    return out


def build(seed: int, eos_scale: float, gated: bool, tokenizer, vocab_size: int):
    rng = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = T5ForConditionalGeneration(make_config(vocab_size, gated)).eval()
    randomize(model, rng, eos_scale)
    model.generation_config = GenerationConfig(decoder_start_token_id=0, eos_token_id=1, pad_token_id=0)
    cases = []
    for text in INPUTS:
        full = PREFIX + text
        (ids,), (scores,) = generate(model, tokenizer, [full])
        (nr3_ids,), _ = generate(model, tokenizer, [full], no_repeat_ngram_size=3)
        (beam_ids,), (beam_score,) = generate(model, tokenizer, [full], num_beams=4)
        cases.append({
            "text": full,
            "input_ids": tokenizer(full)["input_ids"],
            "greedy_ids": ids,
            "greedy_text": tokenizer.decode(ids, skip_special_tokens=True),
            "greedy_logprobs": scores,
            # Greedy with no_repeat_ngram_size=3, the engine's default.
            "greedy_nr3_ids": nr3_ids,
            "beam4_ids": beam_ids,
            "beam4_text": tokenizer.decode(beam_ids, skip_special_tokens=True),
            "beam4_score": beam_score,
        })
    batch_ids, _ = generate(model, tokenizer, [c["text"] for c in cases])
    batch = [strip_after_eos(r) for r in batch_ids]
    for c, b in zip(cases, batch):
        if b != c["greedy_ids"]:
            return None, f"batch/single mismatch for {c['text']!r}"
    stops = [c["greedy_ids"][-1] == 1 and len(c["greedy_ids"]) < MAX_NEW_TOKENS + 1 for c in cases]
    full = [len(c["greedy_ids"]) == MAX_NEW_TOKENS + 1 for c in cases]
    # Parity at long distances needs outputs long enough to reach the decoder's
    # logarithmic buckets (distance >= 16).
    if sum(stops) < 2 or sum(full) < 2:
        return None, f"need >= 2 outputs stopping at EOS and >= 2 at the limit (eos={stops}, full={full})"
    if all(c["greedy_nr3_ids"] == c["greedy_ids"] for c in cases):
        return None, "no_repeat_ngram_size=3 changes no output"
    return (model, cases), None


def main() -> None:
    german = (ROOT / "samples" / "de_article.txt").read_text(encoding="utf-8") + GERMAN_EXTRA
    corpus = ENGLISH * 2 + german
    spm_bytes = train_spm(corpus, 300)

    tmp = Path(tempfile.mkdtemp())
    (tmp / "spiece.model").write_bytes(spm_bytes)
    # add_prefix_space=True: the "▁" dummy prefix of real T5 tokenizers
    # (left unset, transformers 4.57 converts with prepend_scheme "never").
    tokenizer = T5TokenizerFast(vocab_file=str(tmp / "spiece.model"), extra_ids=EXTRA_IDS,
                                model_max_length=512, add_prefix_space=True)
    slow = T5Tokenizer(vocab_file=str(tmp / "spiece.model"), extra_ids=EXTRA_IDS, legacy=True)
    tok_dir = tmp / "tok"
    tokenizer.save_pretrained(str(tok_dir))
    # As in real T5 repos: tokenizer.json is the tokenizer, without spiece.model
    # and without `add_prefix_space` in tokenizer_config.json (which would make
    # transformers rebuild it from spiece.model). The reference tokenizer is
    # loaded exactly as a user of the fixture folder would load it.
    (tok_dir / "spiece.model").unlink()
    tok_cfg = json.loads((tok_dir / "tokenizer_config.json").read_text())
    tok_cfg.pop("add_prefix_space", None)
    (tok_dir / "tokenizer_config.json").write_text(json.dumps(tok_cfg, indent=2) + "\n")
    tokenizer = T5TokenizerFast.from_pretrained(str(tok_dir))
    # As in real T5 checkpoints, the embedding table is padded beyond the
    # tokenizer's size to a multiple of 64.
    vocab_size = (len(tokenizer) + 63) // 64 * 64 + 64
    if not any(2 in tokenizer(PREFIX + t)["input_ids"] for t in INPUTS):
        sys.exit("no input maps to <unk>")

    variants = {}
    for name, gated in [("t5-tiny", True), ("t5-tiny-relu", False)]:
        tries = [(seed, scale) for scale in EOS_SCALES for seed in range(SEED, SEED + 10)]
        for seed, scale in tries:
            built, why = build(seed, scale, gated, tokenizer, vocab_size)
            if built is not None:
                variants[name] = (seed, scale, *built)
                break
            print(f"{name}: seed {seed}, eos scale {scale} rejected: {why}")
        else:
            sys.exit(f"{name}: no usable seed in {len(tries)} tries")

    reference = {
        "generated_by": "scripts/gen_t5_fixture.py",
        "versions": {"transformers": transformers.__version__, "torch": torch.__version__,
                     "tokenizers": tokenizers.__version__, "sentencepiece": spm.__version__},
        "max_new_tokens": MAX_NEW_TOKENS,
        "prefix": PREFIX,
        "models": {},
        "tokenizer_cases": [],
    }
    # Position buckets straight from transformers, for every distance the
    # tests can reach and beyond max_distance.
    from transformers.models.t5.modeling_t5 import T5Attention
    positions = torch.arange(-300, 301)
    reference["buckets"] = {
        "relative_positions": [int(p) for p in positions],
        "bidirectional": [int(b) for b in T5Attention._relative_position_bucket(positions, True, 32, 128)],
        "unidirectional": [int(b) for b in T5Attention._relative_position_bucket(positions, False, 32, 128)],
    }
    for text in TOKENIZER_CASES + [PREFIX + t for t in INPUTS]:
        ids = tokenizer(text)["input_ids"]
        # The SentencePiece tokenizer itself, which the t5-tiny-relu fixture
        # (spiece.model only) must reproduce.
        slow_ids = slow(text)["input_ids"]
        reference["tokenizer_cases"].append({
            "text": text, "ids": ids, "slow_ids": slow_ids,
            "decoded": tokenizer.decode(ids, skip_special_tokens=True)})

    for name, (seed, scale, model, cases) in variants.items():
        out = FIXTURES / name
        if out.exists():
            shutil.rmtree(out)
        model_dir = tmp / name
        model.save_pretrained(str(model_dir), safe_serialization=True)
        out.mkdir(parents=True)
        for f in ["config.json", "generation_config.json", "model.safetensors"]:
            shutil.copy(model_dir / f, out / f)
        if name == "t5-tiny":
            for f in ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"]:
                shutil.copy(tok_dir / f, out / f)
        else:
            shutil.copy(tmp / "spiece.model", out / "spiece.model")
        reference["models"][name] = {"seed": seed, "eos_scale": scale, "cases": cases}
        print(f"{name}: seed {seed}")
        for c in cases:
            print("  ", len(c["greedy_ids"]), repr(c["greedy_text"])[:70])

    REF.write_text(json.dumps(reference, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    shutil.rmtree(tmp)
    print(f"wrote {REF}")


if __name__ == "__main__":
    main()
