#!/usr/bin/env python3
"""llama.cpp's side of bench/llm.sh, through llama-cpp-python: the same GGUF
file, the same prompt token ids (written by examples/bench_llm.rs), the same
thread count, exactly as many greedy new tokens (end-of-text does not stop
it). Prints one JSON object in the format of examples/bench_llm.rs.

Usage: llm_peer.py --model FILE --ids IDS.json --threads N [--new-tokens 128] [--cold]"""
import argparse
import json
import resource
import time

import numpy as np
from llama_cpp import Llama


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--ids", required=True)
    ap.add_argument("--threads", type=int, required=True)
    ap.add_argument("--new-tokens", type=int, default=128)
    ap.add_argument("--cold", action="store_true")
    ap.add_argument("--gpu-layers", type=int, default=0,
                    help="layers offloaded to the GPU (-1: all; needs a CUDA build of llama.cpp)")
    args = ap.parse_args()
    prompt = json.load(open(args.ids))

    t0 = time.perf_counter()
    # n_batch 256 = tolk's prefill chunk; mmap is llama.cpp's default, as for tolk.
    llm = Llama(model_path=args.model, n_ctx=2048, n_batch=256, n_ubatch=256,
                n_threads=args.threads, n_threads_batch=args.threads,
                n_gpu_layers=args.gpu_layers, verbose=False)
    load_s = time.perf_counter() - t0

    def last_logits():
        return np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(llm.n_vocab(),))

    # Warm-up on a few tokens, as for tolk.
    llm.reset()
    llm._ctx.kv_cache_clear()
    llm.eval(prompt[:8])

    llm.reset()
    llm._ctx.kv_cache_clear()
    t0 = time.perf_counter()
    llm.eval(prompt)
    prefill_s = time.perf_counter() - t0
    nxt = int(np.argmax(last_logits()))
    ttft_s = time.perf_counter() - t0

    generated = [nxt]
    t0 = time.perf_counter()
    while len(generated) < args.new_tokens:
        llm.eval([nxt])
        nxt = int(np.argmax(last_logits()))
        generated.append(nxt)
    gen_s = time.perf_counter() - t0
    steps = len(generated) - 1

    print(json.dumps({
        "engine": "llama.cpp", "model": args.model.rsplit("/", 1)[-1], "threads": args.threads,
        "cold": args.cold, "load_s": load_s, "prompt_tokens": len(prompt), "prefill_s": prefill_s,
        "prefill_tok_s": len(prompt) / prefill_s, "ttft_s": ttft_s, "gen_tokens": steps,
        "gen_s": gen_s, "gen_tok_s": steps / gen_s,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "generated_ids": generated,
    }))


if __name__ == "__main__":
    main()
