#!/usr/bin/env python3
"""llama.cpp's side of bench/summarize.sh, through llama-cpp-python: load the
GGUF file, build the prompt `tolk summarize --direct` builds for a German
article (the article, a blank line, then the instruction, in one user turn
of the file's own chat template), and decode greedily exactly as many tokens
as tolk's summary has (end-of-text does not stop it earlier, so both do the
same work). Prints one JSON object: load, prompt and generation times, the
token counts and the summary.

Usage: summarize_peer.py --model FILE --article FILE --threads N --tokens N [--sentences 2]"""
import argparse
import json
import resource
import time

T_START = time.perf_counter()

import numpy as np  # noqa: E402
from llama_cpp import Llama  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--article", required=True)
    ap.add_argument("--threads", type=int, required=True)
    ap.add_argument("--tokens", type=int, required=True, help="new tokens to generate")
    ap.add_argument("--sentences", type=int, default=2)
    args = ap.parse_args()
    article = open(args.article, encoding="utf-8").read().strip()
    # src/pipeline/summarize/llm/prompt.rs, Task::Summarize { lang: De }.
    n = args.sentences
    target = "in one sentence" if n == 1 else f"in {n} sentences"
    instruction = (f"The article above is written in German. Summarize it in English {target}. "
                   "Write only English.")
    content = f"{article}\n\n{instruction}"

    t0 = time.perf_counter()
    llm = Llama(model_path=args.model, n_ctx=4096, n_batch=256, n_ubatch=256,
                n_threads=args.threads, n_threads_batch=args.threads, verbose=False)
    load_s = time.perf_counter() - t0
    # The file's chat template, as tolk renders it (one user turn, generation prompt).
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter
    template = llm.metadata["tokenizer.chat_template"]
    eos = llm.detokenize([llm.token_eos()]).decode("utf-8", "replace")
    bos = llm.detokenize([llm.token_bos()]).decode("utf-8", "replace") if llm.token_bos() >= 0 else ""
    fmt = Jinja2ChatFormatter(template=template, eos_token=eos, bos_token=bos)
    prompt = fmt(messages=[{"role": "user", "content": content}]).prompt
    ids = llm.tokenize(prompt.encode("utf-8"), add_bos=False, special=True)

    t0 = time.perf_counter()
    llm.eval(ids)
    prefill_s = time.perf_counter() - t0
    logits = lambda: np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(llm.n_vocab(),))  # noqa: E731
    nxt = int(np.argmax(logits()))
    out = [nxt]
    t0 = time.perf_counter()
    while len(out) < args.tokens:
        llm.eval([nxt])
        nxt = int(np.argmax(logits()))
        out.append(nxt)
    gen_s = time.perf_counter() - t0
    text = llm.detokenize(out).decode("utf-8", "replace")
    print(json.dumps({
        "engine": "llama.cpp",
        "threads": args.threads,
        "load_s": load_s,
        "prompt_tokens": len(ids),
        "prefill_s": prefill_s,
        "gen_tokens": len(out),
        "gen_s": gen_s,
        "in_process_s": time.perf_counter() - T_START,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "summary": text,
    }))


if __name__ == "__main__":
    main()
