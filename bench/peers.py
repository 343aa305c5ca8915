#!/usr/bin/env python3
"""One benchmark process for a peer engine: transformers (torch CPU) or
CTranslate2 (float32 / int8). bench/run.sh starts one process per engine
and thread count and merges the JSON each prints on stdout.

The workload is the same as tolk's (examples/bench_translate.rs): the
sentences of inputs.json sorted longest first and cut into batches, each
output forced to exactly NEW_TOKENS new tokens (transformers:
min_new_tokens = max_new_tokens; CTranslate2: min_decoding_length =
max_decoding_length), greedy and beam search ("forced"); and the
"lengths" workload, where each sentence is forced to its own length
(inputs.json's target_lengths), which only transformers can run (a logits
processor per row; CTranslate2 takes one min/max decoding length per call).
"""
import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path


def evict(paths):
    """Drops the files from the page cache, so the next load reads the disk."""
    for path in paths:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def batches(rows, size):
    """Longest first (rows, or (row, target) pairs), cut into batches."""
    key = lambda r: len(r[0]) if isinstance(r, tuple) else len(r)
    order = sorted(range(len(rows)), key=lambda i: -key(rows[i]))
    return [[rows[i] for i in order[s:s + size]] for s in range(0, len(order), size)]


class Transformers:
    def __init__(self, model_dir, threads, device="cpu", half=False):
        import torch
        from transformers import MarianMTModel
        torch.set_num_threads(threads)
        self.torch = torch
        self.device = device
        model = MarianMTModel.from_pretrained(model_dir).eval()
        if half:
            model = model.half()
        self.model = model.to(device)
        self.pad = self.model.config.pad_token_id

    def files(model_dir):
        return [Path(model_dir) / "model.safetensors"]

    def generate(self, batch, beams, new_tokens, targets=None):
        """`targets`: each sentence's own length (EOS included), else every
        output is `new_tokens` long."""
        torch = self.torch
        width = max(len(r) for r in batch)
        ids = torch.tensor([r + [self.pad] * (width - len(r)) for r in batch], device=self.device)
        mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in batch],
                            device=self.device)
        kwargs = dict(min_new_tokens=new_tokens, max_new_tokens=new_tokens)
        if targets is not None:
            from transformers import LogitsProcessorList
            kwargs = dict(max_new_tokens=max(targets),
                          logits_processor=LogitsProcessorList([ForceLengths(targets, beams)]))
        with torch.inference_mode():
            out = self.model.generate(input_ids=ids, attention_mask=mask, num_beams=beams,
                                      do_sample=False, **kwargs)
        # Minus the decoder start token; up to the first EOS (then padding).
        lengths = []
        for row in out.tolist():
            row = row[1:]
            lengths.append(row.index(0) + 1 if 0 in row else len(row))
        return lengths


class ForceLengths:
    """EOS banned before each row's target length, forced at it (EOS = 0)."""

    def __init__(self, targets, beams):
        self.targets, self.beams = targets, beams

    def __call__(self, input_ids, scores):
        done = input_ids.shape[1] - 1  # tokens generated so far
        for row in range(scores.shape[0]):
            if done + 1 < self.targets[row // self.beams]:
                scores[row, 0] = float("-inf")
            else:
                scores[row, :] = float("-inf")
                scores[row, 0] = 0.0
        return scores


class CTranslate2:
    def __init__(self, model_dir, threads, compute_type, device="cpu"):
        import ctranslate2
        self.translator = ctranslate2.Translator(model_dir, device=device, compute_type=compute_type,
                                                 inter_threads=1, intra_threads=threads)

    def files(model_dir):
        return [Path(model_dir) / "model.bin"]

    def generate(self, batch, beams, new_tokens):
        results = self.translator.translate_batch(
            batch, beam_size=beams, max_batch_size=len(batch), min_decoding_length=new_tokens,
            max_decoding_length=new_tokens, return_end_token=True)
        return [len(r.hypotheses[0]) for r in results]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--engine", required=True,
                   choices=["transformers", "transformers-f16", "ct2-float32", "ct2-float16",
                            "ct2-int8"])
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--model-dir", required=True, help="bench model folder (make_model.py output)")
    p.add_argument("--threads", type=int, required=True)
    p.add_argument("--new-tokens", type=int, default=40)
    p.add_argument("--sentences", type=int, default=64)
    p.add_argument("--batch-sizes", default="1,16")
    p.add_argument("--beams", default="1,4")
    p.add_argument("--workloads", default="forced,lengths",
                   help="forced: every output NEW_TOKENS long; lengths: each its own length")
    p.add_argument("--lengths-batch-sizes", default="16,64")
    p.add_argument("--cold", action="store_true", help="evict the weights from the page cache first")
    args = p.parse_args()

    root = Path(args.model_dir)
    inputs = json.loads((root / "inputs.json").read_text(encoding="utf-8"))
    if args.engine.startswith("transformers"):
        half = args.engine.endswith("-f16")
        cls, model_dir = Transformers, root / "marian"
        make = lambda d: Transformers(str(d), args.threads, args.device, half)
        rows = inputs["ids"][:args.sentences]
    else:
        quant = args.engine.split("-")[1]
        # float16 runs the float32 conversion at half precision.
        folder = "float32" if quant == "float16" else quant
        cls, model_dir = CTranslate2, root / f"ct2-{folder}"
        make = lambda d: CTranslate2(str(d), args.threads, quant, args.device)
        rows = inputs["tokens"][:args.sentences]
    if args.cold:
        evict(cls.files(model_dir))
    t0 = time.perf_counter()
    engine = make(model_dir)
    load_s = time.perf_counter() - t0

    # Time to first token: one sentence, one new token (after a warm-up).
    engine.generate([rows[0]], 1, 1)
    reps = []
    for _ in range(5):
        t0 = time.perf_counter()
        engine.generate([rows[0]], 1, 1)
        reps.append(time.perf_counter() - t0)
    ttft_s = sorted(reps)[len(reps) // 2]

    runs = []
    targets = inputs["target_lengths"][:args.sentences]
    for workload in args.workloads.split(","):
        if workload == "lengths" and cls is not Transformers:
            print(f"peers.py: {args.engine} cannot force per-sentence lengths; skipped",
                  file=sys.stderr)
            continue
        sizes = args.batch_sizes if workload == "forced" else args.lengths_batch_sizes
        for beams in [int(b) for b in args.beams.split(",")]:
            for bs in [int(b) for b in sizes.split(",")]:
                chunks = batches(list(zip(rows, targets)), bs)
                engine.generate([chunks[0][0][0]], beams, 2)  # warm-up
                t0, cpu0 = time.perf_counter(), time.process_time()
                lengths = []
                for chunk in chunks:
                    src = [r for r, _ in chunk]
                    if workload == "forced":
                        lengths += engine.generate(src, beams, args.new_tokens)
                    else:
                        lengths += engine.generate(src, beams, 0, [t for _, t in chunk])
                elapsed = time.perf_counter() - t0
                runs.append({"workload": workload, "beams": beams, "batch_size": bs,
                             "seconds": elapsed, "cpu_seconds": time.process_time() - cpu0,
                             "sentences": len(rows), "tokens": sum(lengths),
                             "min_tokens": min(lengths), "max_tokens": max(lengths)})
    print(json.dumps({
        "engine": args.engine, "device": args.device, "threads": args.threads, "load_s": load_s, "cold": args.cold,
        "ttft_s": ttft_s, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "runs": runs,
    }))


if __name__ == "__main__":
    main()
