#!/usr/bin/env python3
"""Writes the small seed inputs of the fuzz targets into fuzz/seeds/ (no
dependencies beyond Python 3). The large seeds (the fixtures' safetensors
and SentencePiece files, the real GGUF headers) are taken by
scripts/fuzz.sh straight from tests/fixtures and models/downloaded.

    python3 scripts/gen_fuzz_seeds.py
"""
import json
import os
import struct

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SEEDS = os.path.join(ROOT, "fuzz", "seeds")


def out(target, name, data):
    os.makedirs(os.path.join(SEEDS, target), exist_ok=True)
    with open(os.path.join(SEEDS, target, name), "wb") as f:
        f.write(data)


# --- GGUF -------------------------------------------------------------------
U32, I32, F32, BOOL, STRING, ARRAY = 4, 5, 6, 7, 8, 9


def gstr(s):
    b = s.encode()
    return struct.pack("<Q", len(b)) + b


def gval(kind, v):
    if kind == U32:
        return struct.pack("<I", v)
    if kind == I32:
        return struct.pack("<i", v)
    if kind == F32:
        return struct.pack("<f", v)
    if kind == BOOL:
        return struct.pack("<B", v)
    if kind == STRING:
        return gstr(v)
    raise ValueError(kind)


def gguf(meta, tensors):
    """meta: [(key, kind, value)] (arrays: (key, ARRAY, (kind, [values])));
    tensors: [(name, shape, [floats])], all F32."""
    body = b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(meta))
    for key, kind, value in meta:
        body += gstr(key) + struct.pack("<I", kind)
        if kind == ARRAY:
            inner, values = value
            body += struct.pack("<IQ", inner, len(values))
            body += b"".join(gval(inner, v) for v in values)
        else:
            body += gval(kind, value)
    offset = 0
    data = b""
    for name, shape, values in tensors:
        body += gstr(name) + struct.pack("<I", len(shape))
        body += b"".join(struct.pack("<Q", d) for d in reversed(shape))
        body += struct.pack("<IQ", 0, offset)
        blob = struct.pack("<%df" % len(values), *values)
        blob += b"\0" * (-len(blob) % 32)
        data += blob
        offset += len(blob)
    body += b"\0" * (-len(body) % 32)
    return body + data


def weights(rows, cols, seed):
    return [((i * 7 + seed * 13) % 17 - 8) / 32.0 for i in range(rows * cols)]


def tiny_model(arch, tokenizer):
    hidden, heads, kv, head_dim, ffn, vocab = 8, 2, 1, 4, 16, 32
    meta = [
        ("general.architecture", STRING, arch),
        (f"{arch}.context_length", U32, 64),
        (f"{arch}.embedding_length", U32, hidden),
        (f"{arch}.block_count", U32, 1),
        (f"{arch}.feed_forward_length", U32, ffn),
        (f"{arch}.attention.head_count", U32, heads),
        (f"{arch}.attention.head_count_kv", U32, kv),
        (f"{arch}.attention.key_length", U32, head_dim),
        (f"{arch}.attention.value_length", U32, head_dim),
        (f"{arch}.rope.freq_base", F32, 10000.0),
        (f"{arch}.attention.layer_norm_rms_epsilon", F32, 1e-6),
    ]
    if arch == "gemma3":
        meta.append((f"{arch}.attention.sliding_window", U32, 16))
    if tokenizer == "gpt2":
        tokens = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "Ġ"] + [
            chr(c) for c in range(ord("a"), ord("a") + 24)
        ] + ["ab", "Ġa", "abc", "Ġab"]
        types = [3, 3, 3] + [1] * (len(tokens) - 3)
        meta += [
            ("tokenizer.ggml.model", STRING, "gpt2"),
            ("tokenizer.ggml.pre", STRING, "smollm"),
            ("tokenizer.ggml.tokens", ARRAY, (STRING, tokens[:vocab])),
            ("tokenizer.ggml.token_type", ARRAY, (I32, types[:vocab])),
            ("tokenizer.ggml.merges", ARRAY, (STRING, ["a b", "Ġ a", "ab c", "Ġ ab"])),
            ("tokenizer.ggml.bos_token_id", U32, 1),
            ("tokenizer.ggml.eos_token_id", U32, 2),
            ("tokenizer.chat_template", STRING,
             "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"),
        ]
    else:
        tokens = ["<unk>", "<s>", "</s>", "<end_of_turn>", "\n\n", "  ", "<0xC3>", "<0xA4>", "▁"] + [
            chr(c) for c in range(ord("a"), ord("a") + 19)
        ] + ["▁a", "ab", "▁ab", "bc"]
        types = [2, 3, 3, 3, 4, 4, 6, 6] + [1] * (len(tokens) - 8)
        meta += [
            ("tokenizer.ggml.model", STRING, "llama"),
            ("tokenizer.ggml.tokens", ARRAY, (STRING, tokens[:vocab])),
            ("tokenizer.ggml.token_type", ARRAY, (I32, types[:vocab])),
            ("tokenizer.ggml.scores", ARRAY, (F32, [-float(i) for i in range(vocab)])),
            ("tokenizer.ggml.unknown_token_id", U32, 0),
            ("tokenizer.ggml.bos_token_id", U32, 1),
            ("tokenizer.ggml.eos_token_id", U32, 2),
            ("tokenizer.ggml.add_bos_token", BOOL, 1),
        ]
    q, k = heads * head_dim, kv * head_dim
    tensors = [
        ("token_embd.weight", [vocab, hidden], weights(vocab, hidden, 1)),
        ("output_norm.weight", [hidden], [1.0] * hidden),
        ("blk.0.attn_norm.weight", [hidden], [1.0] * hidden),
        ("blk.0.attn_q.weight", [q, hidden], weights(q, hidden, 2)),
        ("blk.0.attn_k.weight", [k, hidden], weights(k, hidden, 3)),
        ("blk.0.attn_v.weight", [k, hidden], weights(k, hidden, 4)),
        ("blk.0.attn_output.weight", [hidden, q], weights(hidden, q, 5)),
        ("blk.0.ffn_norm.weight", [hidden], [1.0] * hidden),
        ("blk.0.ffn_gate.weight", [ffn, hidden], weights(ffn, hidden, 6)),
        ("blk.0.ffn_up.weight", [ffn, hidden], weights(ffn, hidden, 7)),
        ("blk.0.ffn_down.weight", [hidden, ffn], weights(hidden, ffn, 8)),
    ]
    if arch == "gemma3":
        tensors += [
            ("blk.0.attn_q_norm.weight", [head_dim], [1.0] * head_dim),
            ("blk.0.attn_k_norm.weight", [head_dim], [1.0] * head_dim),
            ("blk.0.post_attention_norm.weight", [hidden], [1.0] * hidden),
            ("blk.0.post_ffw_norm.weight", [hidden], [1.0] * hidden),
        ]
    return gguf(meta, tensors)


out("gguf", "llama-gpt2-tiny.gguf", tiny_model("llama", "gpt2"))
out("gguf", "gemma3-spm-tiny.gguf", tiny_model("gemma3", "llama"))
out("gguf", "qwen2-gpt2-tiny.gguf", tiny_model("qwen2", "gpt2"))

# --- config: family byte, config.json, 0xFF, generation_config.json ----------
FIX = os.path.join(ROOT, "tests", "fixtures")
for family, fixture in [(0, "marian-tiny"), (1, "t5-tiny"), (2, "llama-tiny")]:
    with open(os.path.join(FIX, fixture, "config.json"), "rb") as f:
        config = f.read()
    with open(os.path.join(FIX, fixture, "generation_config.json"), "rb") as f:
        generation = f.read()
    out("config", f"{fixture}", bytes([family]) + config + b"\xff" + generation)
    out("config", f"{fixture}-no-generation", bytes([family]) + config)
with open(os.path.join(FIX, "llama3-tiny", "config.json"), "rb") as f:
    out("config", "llama3-tiny", bytes([2]) + f.read())

# --- manifest: what follows two finished records ------------------------------
record = {"path": "e.txt", "status": "done", "key": "k", "sha256": "s", "bytes": 3,
          "outputs": [{"path": "e.txt.en.txt", "sha256": "h"}], "finished_unix_ms": 9}
line = json.dumps(record).encode()
out("manifest", "torn-line", line[:25])
out("manifest", "torn-utf8", line + b"\n" + '{"path":"ä'.encode()[:-1])
out("manifest", "garbage-line", b"\x00\x00\x00\x00\n" + line + b"\n")
out("manifest", "full-record", line + b"\n")
out("manifest", "failed-record",
    json.dumps({"path": "a.txt", "status": "failed", "error": "x"}).encode() + b"\r\n")

# --- text: options byte, document ----------------------------------------------
with open(os.path.join(ROOT, "samples", "de_article.txt"), "rb") as f:
    article = f.read()
out("text", "de_article", b"\x10" + article[:4000])
out("text", "markdown", b"\x11" + """---
title: Test
---
# Überschrift ##

Ein Absatz mit `Code`, einem [Link](https://example.org "Titel") und
einer zweiten Zeile. Dr. Müller kam am 13. Januar. Dann ging er!

- [ ] Aufgabe eins
1. Erster Punkt
   weiter

> Zitat. Noch ein Satz.

| a | b |
|---|:-:|
| Zelle | Zelle 2 |

```rust
fn main() {}
```

    eingerückter Code

<div>
HTML
</div>

[ref]: https://example.org
Text mit Fußnote[^1] und <https://auto.link> und ![Bild](a.png).
***
Setext
======
""".encode())
out("text", "plain-gaps", b"\x04\n  Erster Absatz,\nzweite Zeile.\n\n\nZweiter Absatz.  \n")
