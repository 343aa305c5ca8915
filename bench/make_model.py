#!/usr/bin/env python3
"""Build the translation benchmark model and its inputs.

A MarianMT checkpoint with exactly the architecture and size of
Helsinki-NLP/opus-mt-de-en (vocab 58101, d_model 512, 6+6 layers, 8 heads,
FFN 2048, swish, sinusoidal positions, tied embeddings) and random weights,
in the file layout of the Hub repo, plus the CTranslate2 conversions of that
same checkpoint (float32 and int8) and 64 input sentences of ~30 token ids.

Speed does not depend on what the weights say, so random weights measure
what a real opus-mt model would cost; the outputs are forced to a fixed
length by the benchmark, so nobody stops early ("forced"), or each to its
own length, `target_lengths` in inputs.json ("lengths": real sentences end
at very different lengths; random weights never pick EOS on their own,
they repeat one token).

Usage (bench/run.sh calls it): python bench/make_model.py OUT_DIR
Writes OUT_DIR/marian (HF checkpoint), OUT_DIR/ct2-float32, OUT_DIR/ct2-int8,
OUT_DIR/inputs.json. Deterministic for a given seed and library versions.
Never commit OUT_DIR: the checkpoint is ~300 MB.
"""
import json
import random
import shutil
import subprocess
import sys
from pathlib import Path

import torch
from transformers import GenerationConfig, MarianConfig, MarianMTModel

ROOT = Path(__file__).resolve().parent.parent
FIXTURE = ROOT / "tests" / "fixtures" / "marian-tiny"
SEED = 20261130
VOCAB = 58101
SENTENCES = 64
# Source lengths in tokens, EOS included: "~30 tokens".
MIN_LEN, MAX_LEN = 26, 34
# Output lengths of the "lengths" workload (new tokens, EOS included):
# uniform, 40 on average as the forced workload.
MIN_OUT, MAX_OUT = 10, 70


def build_vocab() -> dict:
    """opus-mt layout: </s>=0, <unk>=1, pieces, <pad> last. The fixture's
    SentencePiece pieces come first so its spm files tokenize into this
    vocab; the rest are placeholders (the benchmark feeds token ids)."""
    fixture_vocab = json.loads((FIXTURE / "vocab.json").read_text(encoding="utf-8"))
    vocab = {"</s>": 0, "<unk>": 1}
    for piece in fixture_vocab:
        if piece not in vocab and piece != "<pad>":
            vocab[piece] = len(vocab)
    i = 0
    while len(vocab) < VOCAB - 1:
        vocab[f"▁tok{i}"] = len(vocab)
        i += 1
    vocab["<pad>"] = len(vocab)
    assert len(vocab) == VOCAB and vocab["<pad>"] == VOCAB - 1
    return vocab


def main() -> None:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "target" / "bench-model"
    hf_dir = out / "marian"
    if hf_dir.exists():
        shutil.rmtree(hf_dir)
    hf_dir.mkdir(parents=True)
    torch.manual_seed(SEED)
    rng = random.Random(SEED)

    vocab = build_vocab()
    pad = vocab["<pad>"]
    (hf_dir / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    for name in ("source.spm", "target.spm"):
        shutil.copy(FIXTURE / name, hf_dir / name)
    tok_cfg = {"source_lang": "de", "target_lang": "en", "model_max_length": 512,
               "separate_vocabs": False}
    (hf_dir / "tokenizer_config.json").write_text(json.dumps(tok_cfg, indent=1))

    # The values of Helsinki-NLP/opus-mt-de-en's config.json.
    config = MarianConfig(
        vocab_size=VOCAB, decoder_vocab_size=VOCAB, d_model=512,
        encoder_layers=6, decoder_layers=6,
        encoder_attention_heads=8, decoder_attention_heads=8,
        encoder_ffn_dim=2048, decoder_ffn_dim=2048,
        max_position_embeddings=512, activation_function="swish",
        scale_embedding=True, static_position_embeddings=True,
        pad_token_id=pad, eos_token_id=0, decoder_start_token_id=pad,
        forced_eos_token_id=0, share_encoder_decoder_embeddings=True,
        tie_word_embeddings=True, dropout=0.1, attention_dropout=0.0,
        activation_dropout=0.0, normalize_embedding=False, normalize_before=False,
    )
    model = MarianMTModel(config).eval()  # transformers' own random init
    model.generation_config = GenerationConfig(
        bad_words_ids=[[pad]], decoder_start_token_id=pad, eos_token_id=0,
        forced_eos_token_id=0, max_length=512, num_beams=4, pad_token_id=pad,
    )
    model.save_pretrained(str(hf_dir), safe_serialization=True)

    id_to_token = {i: t for t, i in vocab.items()}
    ids = []
    for _ in range(SENTENCES):
        n = rng.randint(MIN_LEN, MAX_LEN)
        ids.append([rng.randrange(2, pad) for _ in range(n - 1)] + [0])
    inputs = {
        "ids": ids,
        "target_lengths": [rng.randint(MIN_OUT, MAX_OUT) for _ in ids],
        # CTranslate2 takes token strings, without the final </s> (it adds it).
        "tokens": [[id_to_token[i] for i in row[:-1]] for row in ids],
    }
    (out / "inputs.json").write_text(json.dumps(inputs, ensure_ascii=False))

    converter = Path(sys.executable).parent / "ct2-transformers-converter"
    for quant in ("float32", "int8"):
        target = out / f"ct2-{quant}"
        subprocess.run([str(converter), "--model", str(hf_dir), "--output_dir", str(target),
                        "--quantization", quant, "--force"], check=True)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
