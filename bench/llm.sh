#!/usr/bin/env bash
# LLM benchmark: tolk against llama.cpp (llama-cpp-python) on the same GGUF
# files, the same ~600-token prompt (the very same token ids), the same
# thread counts, exactly the same number of greedy new tokens. Engines take
# turns, several rounds, and the table shows medians: this machine's speed
# drifts by ±20% within minutes, and turns keep the drift out of the ratios.
# See README "Performance". Not part of `cargo test`.
#
#   bench/llm.sh                        # ~10 min on 2 cores, plus a one-time llama.cpp build
#   BENCH_THREADS=2 BENCH_ROUNDS=1 bench/llm.sh   # quick look
#
# Environment:
#   BENCH_THREADS      thread counts (default: "1 <all cores>")
#   BENCH_ROUNDS       rounds of turns (default 3)
#   BENCH_MODELS       GGUF files (default: the two that scripts/fetch-test-models.sh fetches)
#   BENCH_NEW_TOKENS   new tokens per run (default 128)
#   BENCH_LLAMA_VENV   an existing venv with llama-cpp-python (skips the build)
#   BENCH_LLM_OUT      result file (default bench/results/llm.json)
#   BENCH_CARGO_PROFILE  cargo profile of tolk's side (default release; dev skips the LTO build)
#
# The Qwen2.5-Coder 1.5B (TOLK_FETCH_LARGE=1 scripts/fetch-test-models.sh):
#   BENCH_MODELS="models/downloaded/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf models/downloaded/gemma-3-270m-q4_k_m.gguf models/downloaded/SmolLM2-135M-Instruct.Q4_1.gguf" bench/llm.sh
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
CORES=$(nproc)
THREADS=${BENCH_THREADS:-"1 $CORES"}
ROUNDS=${BENCH_ROUNDS:-3}
NEW_TOKENS=${BENCH_NEW_TOKENS:-128}
OUT=${BENCH_LLM_OUT:-$ROOT/bench/results/llm.json}
MODELS=${BENCH_MODELS:-"models/downloaded/SmolLM2-135M-Instruct.Q4_1.gguf models/downloaded/gemma-3-270m-q4_k_m.gguf"}

# 1. The peer, from PyPI (llama-cpp-python compiles llama.cpp for this CPU: ~10 min once).
VENV=${BENCH_LLAMA_VENV:-$ROOT/target/bench-llm-venv}
if ! "$VENV/bin/python" -c 'import llama_cpp, numpy' 2>/dev/null; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q "llama-cpp-python==0.3.36" numpy
fi

# 2. The models.
for m in $MODELS; do
    case "$m" in
        *qwen2.5-coder*) [ -f "$m" ] || TOLK_FETCH_LARGE=1 scripts/fetch-test-models.sh ;;
        *) [ -f "$m" ] || scripts/fetch-test-models.sh ;;
    esac
done

# 3. tolk's side, release build (BENCH_CARGO_PROFILE=dev reuses the test build:
#    every crate is optimised there too, without LTO).
PROFILE=${BENCH_CARGO_PROFILE:-release}
cargo build --profile "$PROFILE" --example bench_llm
PROFILE_DIR=$PROFILE
[ "$PROFILE" = dev ] && PROFILE_DIR=debug
BIN=$TARGET/$PROFILE_DIR/examples/bench_llm

evict() { "$VENV/bin/python" -c 'import os, sys
fd = os.open(sys.argv[1], os.O_RDONLY); os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED); os.close(fd)' "$1"; }

RUN_DIR=$(mktemp -d "${TMPDIR:-/tmp}/tolk-llm-bench.XXXXXX")
for m in $MODELS; do
    name=$(basename "$m" .gguf)
    mkdir -p "$RUN_DIR/ids"
    ids=$RUN_DIR/ids/$name.json
    for round in $(seq 1 "$ROUNDS"); do
        for threads in $THREADS; do
            for engine in tolk llama.cpp; do
                # The first run of each engine on a model loads it from a cold page cache.
                cold=()
                if [ "$round" = 1 ] && [ "$threads" = "${THREADS%% *}" ]; then
                    evict "$m"
                    cold=(--cold)
                fi
                echo "== $name, $engine, $threads threads, round $round ${cold[*]}" >&2
                out=$RUN_DIR/$name.$engine.$threads.$round.json
                if [ $engine = tolk ]; then
                    "$BIN" --model "$m" --threads "$threads" --new-tokens "$NEW_TOKENS" \
                        --ids-out "$ids" "${cold[@]}" > "$out"
                else
                    "$VENV/bin/python" bench/llm_peer.py --model "$m" --ids "$ids" \
                        --threads "$threads" --new-tokens "$NEW_TOKENS" "${cold[@]}" > "$out" \
                        2> >(grep -v "^llama_kv_cache_iswa" >&2)
                fi
            done
        done
    done
done

"$VENV/bin/python" bench/llm_report.py "$RUN_DIR" "$OUT"
