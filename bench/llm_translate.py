#!/usr/bin/env python3
"""Translation quality of `tolk translate --engine llm` on real weights.

Not a test: it measures. For each GGUF model and each test set it runs the
tolk binary once (greedy, so one run is the result), times it, and scores
the output against human references with sacrebleu (chrF and BLEU, corpus
level, default settings). Speed is German sentences per second of wall
time, model loading included; compare numbers only within one run (the
build machine is shared and noisy).

Test sets:
  article   samples/de_article.txt against samples/en_article.txt, scored
            paragraph by paragraph (the two files have the same layout).
  parallel  a de->en parallel text with references, as files DE and EN with
            one sentence per line (--parallel DE EN); each line is fed as
            its own paragraph and scored line by line.

Usage (see bench/llm_translate.sh, which sets up sacrebleu and the build):
  bench/llm_translate.py --tolk target/debug/tolk --model M.gguf [--model ...]
      [--parallel de.txt en.txt] [--limit N] [--out bench/results/llm_translate.json]
"""

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time

import sacrebleu

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def paragraphs(text):
    return [p.strip() for p in re.split(r"\n\s*\n", text.strip()) if p.strip()]


def german_sentences(text):
    # A rough count for the speed column: a sentence end followed by a capital.
    return len(re.findall(r"[.!?][\"\u201c\u201d]?(?:\s+(?=[A-Z\u00c4\u00d6\u00dc])|\s*$)", text.strip()))


def run_tolk(tolk, model, text, extra):
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "in.txt")
        out = os.path.join(tmp, "out.txt")
        with open(src, "w", encoding="utf-8") as f:
            f.write(text)
        cmd = [tolk, "translate", src, "-o", out, "--engine", "llm", "--model-file", model, "--quiet"]
        cmd += extra
        start = time.monotonic()
        proc = subprocess.run(cmd, capture_output=True, text=True)
        secs = time.monotonic() - start
        if proc.returncode != 0:
            sys.exit(f"tolk failed on {model}: {proc.stderr.strip()}")
        with open(out, encoding="utf-8") as f:
            return f.read(), secs, proc.stderr


def score(hyps, refs):
    return {
        "chrf": round(sacrebleu.corpus_chrf(hyps, [refs]).score, 1),
        "bleu": round(sacrebleu.corpus_bleu(hyps, [refs]).score, 1),
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tolk", default=os.path.join(ROOT, "target/debug/tolk"))
    ap.add_argument("--model", action="append", required=True)
    ap.add_argument("--parallel", nargs=2, metavar=("DE", "EN"))
    ap.add_argument("--parallel-name", default="parallel")
    ap.add_argument("--limit", type=int, default=100, help="first N lines of the parallel text")
    ap.add_argument("--extra", default="", help="more tolk flags, space-separated")
    ap.add_argument("--out", default=os.path.join(ROOT, "bench/results/llm_translate.json"))
    args = ap.parse_args()
    extra = args.extra.split()

    sets = []
    de = open(os.path.join(ROOT, "samples/de_article.txt"), encoding="utf-8").read()
    en = open(os.path.join(ROOT, "samples/en_article.txt"), encoding="utf-8").read()
    sets.append(("article", de, paragraphs(en), german_sentences(de), paragraphs))
    if args.parallel:
        src = open(args.parallel[0], encoding="utf-8").read().splitlines()[: args.limit]
        ref = open(args.parallel[1], encoding="utf-8").read().splitlines()[: args.limit]
        assert len(src) == len(ref), "the parallel files differ in length"
        sets.append((args.parallel_name, "\n\n".join(src) + "\n", ref, len(src), paragraphs))

    rows = []
    for model in args.model:
        for name, text, refs, n_sent, split in sets:
            out, secs, stderr = run_tolk(args.tolk, model, text, extra)
            hyps = split(out)
            if len(hyps) != len(refs):
                sys.exit(f"{name}: {len(hyps)} output paragraphs for {len(refs)} references")
            row = {
                "model": os.path.basename(model),
                "set": name,
                "segments": len(refs),
                "sentences": n_sent,
                "seconds": round(secs, 1),
                "sentences_per_s": round(n_sent / secs, 2),
                "warnings": stderr.count("warning"),
                **score(hyps, refs),
            }
            rows.append(row)
            print(json.dumps(row), flush=True)
            os.makedirs(os.path.dirname(args.out), exist_ok=True)
            with open(args.out + f".{row['model']}.{name}.txt", "w", encoding="utf-8") as f:
                f.write(out)
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump({"sacrebleu": sacrebleu.__version__, "extra": extra, "rows": rows}, f, indent=1)
    print("\n| model | test set | segments | chrF | BLEU | sentences/s |")
    print("| --- | --- | ---: | ---: | ---: | ---: |")
    for r in rows:
        print(
            f"| {r['model']} | {r['set']} | {r['segments']} | {r['chrf']} | {r['bleu']} | {r['sentences_per_s']} |"
        )


if __name__ == "__main__":
    main()
