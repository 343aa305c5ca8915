#!/usr/bin/env python3
"""The CTranslate2 side of bench/batch.sh: translate every .txt file of a
folder the way argos-translate does (split into sentences, SentencePiece,
`Translator.translate_batch`, detokenize), writing OUT/<name>.en.txt.

Usage: batch_peer.py CORPUS OUT --model CT2_DIR --spm-dir MARIAN_DIR
                     --threads N --beams B --max-length L --batch-size S
Prints one JSON line: sentences, output words, wall seconds inside Python
(the shell times the whole process, model load included).
"""
import argparse
import json
import re
import sys
import time
from pathlib import Path

import ctranslate2
import sentencepiece as spm

# Sentence ends: . ! ? (and closing quotes) before whitespace and a capital,
# as a plain regex splitter would; argos-translate uses stanza, which is
# slower, so this favours the peer.
SPLIT = re.compile(r"(?<=[.!?])[\"'»“”]?\s+(?=[A-ZÄÖÜ0-9\"„«])")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("corpus")
    p.add_argument("out")
    p.add_argument("--model", required=True)
    p.add_argument("--spm-dir", required=True)
    p.add_argument("--threads", type=int, required=True)
    p.add_argument("--beams", type=int, default=4)
    p.add_argument("--max-length", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=16)
    a = p.parse_args()
    t0 = time.perf_counter()
    src = spm.SentencePieceProcessor(model_file=str(Path(a.spm_dir) / "source.spm"))
    translator = ctranslate2.Translator(a.model, device="cpu", inter_threads=1, intra_threads=a.threads)
    files = sorted(Path(a.corpus).glob("*.txt"))
    # Every sentence of every file, remembered by (file, paragraph).
    units = []
    for f in files:
        for pi, para in enumerate(re.split(r"\n\s*\n", f.read_text(encoding="utf-8"))):
            for s in SPLIT.split(para.strip()):
                if s.strip():
                    units.append((f, pi, s.strip()))
    tokens = [src.encode(s, out_type=str) + ["</s>"] for _, _, s in units]
    results = translator.translate_batch(
        tokens,
        max_batch_size=a.batch_size,
        batch_type="examples",
        beam_size=a.beams,
        max_decoding_length=a.max_length,
    )
    # Pieces joined as SentencePiece does ("▁" starts a word): the bench
    # model's placeholder pieces are not in target.spm, whose decoder would
    # drop them. A real model's output decodes the same either way.
    hyps = [[t for t in r.hypotheses[0] if t != "</s>"] for r in results]
    texts = ["".join(h).replace("\u2581", " ").strip() for h in hyps]
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    by_file = {}
    for (f, pi, _), text in zip(units, texts):
        by_file.setdefault(f, {}).setdefault(pi, []).append(text)
    words = 0
    for f in files:
        paras = [" ".join(v) for _, v in sorted(by_file.get(f, {}).items())]
        body = "\n\n".join(paras) + "\n"
        words += len(body.split())
        (out / (f.stem + ".en.txt")).write_text(body, encoding="utf-8")
    print(json.dumps({"sentences": len(units), "output_words": words,
                      "output_tokens": sum(len(h) for h in hyps),
                      "seconds": time.perf_counter() - t0}))


if __name__ == "__main__":
    sys.exit(main())
