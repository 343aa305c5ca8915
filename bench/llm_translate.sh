#!/usr/bin/env bash
# Translation quality and speed of `tolk translate --engine llm` on the real
# Qwen2.5-Coder 1.5B and 0.5B Instruct GGUF files: chrF and BLEU (sacrebleu)
# against human references, sentences/s beside. See README "Translate with
# an LLM". Not part of `cargo test`; ~15 min on 2 busy cores.
#
#   TOLK_FETCH_LARGE=1 scripts/fetch-test-models.sh   # once: the two GGUF files, 1.6 GB
#   bench/llm_translate.sh
#
# Environment:
#   TOLK_TEST_MODELS   folder with the two GGUF files (default models/downloaded)
#   BENCH_MODELS       GGUF files (default: the 1.5B and 0.5B in that folder)
#   BENCH_PARALLEL     "DE_FILE EN_FILE": a de->en parallel text, one sentence a line
#                      (default: Alice in Wonderland ch. 1-3 from the PyPI sdist
#                      preprocess-corpora 0.1.1, see bench/parallel_alice.py;
#                      "none" to skip)
#   BENCH_LIMIT        lines of it to translate (default 100)
#   BENCH_VENV         a venv with sacrebleu (default target/bench-mt-venv)
#   BENCH_PROFILE      cargo profile of the tolk binary (default dev, which is optimised)
set -euo pipefail
cd "$(dirname "$0")/.."
DIR=${TOLK_TEST_MODELS:-models/downloaded}
MODELS=${BENCH_MODELS:-"$DIR/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf $DIR/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"}
VENV=${BENCH_VENV:-target/bench-mt-venv}
if ! "$VENV/bin/python" -c 'import sacrebleu' 2>/dev/null; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q "sacrebleu==2.6.0"
fi
# The dev profile is optimised (opt-level 3 for tolk and every dependency);
# BENCH_PROFILE=release adds thin LTO at the cost of a second full build.
PROFILE=${BENCH_PROFILE:-dev}
cargo build --profile "$PROFILE"
BIN_DIR=$([ "$PROFILE" = dev ] && echo debug || echo "$PROFILE")
args=()
for m in $MODELS; do
    [ -f "$m" ] || { echo "bench: $m not found (TOLK_FETCH_LARGE=1 scripts/fetch-test-models.sh; see README)" >&2; exit 1; }
    args+=(--model "$m")
done
PARALLEL=${BENCH_PARALLEL:-}
if [ -z "$PARALLEL" ]; then
    "$VENV/bin/python" bench/parallel_alice.py target/bench-alice
    PARALLEL="target/bench-alice/de.txt target/bench-alice/en.txt"
    args+=(--parallel-name alice)
fi
if [ "$PARALLEL" != none ]; then
    # shellcheck disable=SC2086
    args+=(--parallel $PARALLEL --limit "${BENCH_LIMIT:-100}")
fi
"$VENV/bin/python" bench/llm_translate.py --tolk "${CARGO_TARGET_DIR:-target}/$BIN_DIR/tolk" "${args[@]}"
