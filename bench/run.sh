#!/usr/bin/env bash
# The benchmarks, one command: translation here, then the LLM half
# (bench/llm.sh). See README "Performance". Not part of `cargo test`.
#
# Translation: tolk (f32 and --quantize q8) against transformers (torch CPU)
# and CTranslate2 (float32 and int8), same model, same inputs, same thread
# counts; every output forced to exactly 40 new tokens ("forced"), and each
# sentence forced to its own length ("lengths", 10-70 tokens, 40 on
# average; bench/make_model.py), where tolk's continuous batching keeps its
# rows full (tolk also runs it batch by batch, "lengths-fixed", to show the
# difference; CTranslate2 cannot force per-sentence lengths).
#
#   bench/run.sh            # both suites (~30 min on 2 cores, plus one-time peer installs)
#   BENCH_SUITES=translation BENCH_SENTENCES=16 BENCH_THREADS=2 bench/run.sh   # quick look
#
# Environment:
#   BENCH_SUITES      "translation llm" (default) or either one
#   BENCH_THREADS     thread counts to measure (default: "1 <all cores>")
#   BENCH_SENTENCES   sentences per workload (default 64)
#   BENCH_BATCH_SIZES batch sizes to measure (default 1,16,64)
#   BENCH_WORKLOADS   forced,lengths (default) or either one
#   BENCH_LENGTHS_BATCH_SIZES  batch sizes of the lengths workload (default 16,64)
#   BENCH_ENGINES     subset of: tolk tolk-q8 transformers ct2-float32 ct2-int8
#   BENCH_BASE_VENV   an existing venv whose packages (e.g. torch) the bench
#                     venv may reuse instead of downloading them again
#   BENCH_OUT         result file (default bench/results/translation.json)
#   BENCH_BATCH       0 skips step 5, `tolk batch` against a CTranslate2
#                     pipeline on a folder of articles (bench/batch.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
SUITES=" ${BENCH_SUITES:-translation llm} "
if [[ $SUITES != *" translation "* ]]; then
    [[ $SUITES == *" llm "* ]] && exec bench/llm.sh
    exit 0
fi
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
VENV=$ROOT/target/bench-venv
MODEL=$ROOT/target/bench-model
CORES=$(nproc)
THREADS=${BENCH_THREADS:-"1 $CORES"}
SENTENCES=${BENCH_SENTENCES:-64}
BATCH_SIZES=${BENCH_BATCH_SIZES:-1,16,64}
WORKLOADS=${BENCH_WORKLOADS:-forced,lengths}
LENGTHS_BATCH_SIZES=${BENCH_LENGTHS_BATCH_SIZES:-16,64}
ENGINES=${BENCH_ENGINES:-"tolk tolk-q8 transformers ct2-float32 ct2-int8"}
OUT=${BENCH_OUT:-$ROOT/bench/results/translation.json}

# 1. Peers, from PyPI, in a venv of their own.
if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV"
    if [ -n "${BENCH_BASE_VENV:-}" ]; then
        base_site=$("$BENCH_BASE_VENV/bin/python" -c 'import site; print(site.getsitepackages()[0])')
        site=$("$VENV/bin/python" -c 'import site; print(site.getsitepackages()[0])')
        echo "$base_site" > "$site/zz-bench-base.pth"
    fi
fi
"$VENV/bin/pip" install -q torch "transformers==4.57.1" ctranslate2 sentencepiece safetensors

# 2. The model (random weights, opus-mt-de-en's shape) and its CTranslate2 conversions.
if ! grep -q target_lengths "$MODEL/inputs.json" 2>/dev/null || [ ! -f "$MODEL/ct2-int8/model.bin" ]; then
    "$VENV/bin/python" bench/make_model.py "$MODEL"
fi

# 3. tolk's side of the workload, release build.
cargo build --release --example bench_translate
BIN=$TARGET/release/examples/bench_translate

evict() { "$VENV/bin/python" -c 'import os, sys
for p in sys.argv[1:]:
    fd = os.open(p, os.O_RDONLY); os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED); os.close(fd)' "$@"; }

RUN_DIR=$(mktemp -d "${TMPDIR:-/tmp}/tolk-bench.XXXXXX")
first=1
for threads in $THREADS; do
    for engine in $ENGINES; do
        # The first thread count loads from a cold page cache, the next ones warm.
        cold=()
        if [ $first = 1 ]; then cold=(--cold); fi
        echo "== $engine, $threads threads ${cold[*]}" >&2
        export RAYON_NUM_THREADS=$threads OMP_NUM_THREADS=$threads MKL_NUM_THREADS=$threads
        case $engine in
            tolk|tolk-q8)
                quant=none; [ $engine = tolk-q8 ] && quant=q8
                [ $first = 1 ] && evict "$MODEL/marian/model.safetensors"
                "$BIN" --model-dir "$MODEL" --threads "$threads" --quantize $quant \
                    --sentences "$SENTENCES" --batch-sizes "$BATCH_SIZES" --workloads "$WORKLOADS" --lengths-batch-sizes "$LENGTHS_BATCH_SIZES" \
                    "${cold[@]}" > "$RUN_DIR/$engine-$threads.json" ;;
            *)
                "$VENV/bin/python" bench/peers.py --engine "$engine" --model-dir "$MODEL" \
                    --threads "$threads" --sentences "$SENTENCES" --batch-sizes "$BATCH_SIZES" \
                    --workloads "$WORKLOADS" --lengths-batch-sizes "$LENGTHS_BATCH_SIZES" "${cold[@]}" > "$RUN_DIR/$engine-$threads.json" ;;
        esac
    done
    first=0
done

# 4. Quality cost of --quantize q8: token agreement with f32.
mkdir -p "$RUN_DIR/extra"
"$BIN" --model-dir "$MODEL" --threads "$CORES" --agreement-model tests/fixtures/marian-tiny \
    --agreement-inputs tests/fixtures/marian-tiny-reference.json \
    > "$RUN_DIR/extra/q8_token_agreement.json"

"$VENV/bin/python" bench/report.py "$RUN_DIR" "$OUT"

# 5. What users run: `tolk batch` over a folder against a CTranslate2 pipeline.
if [ "${BENCH_BATCH:-1}" != 0 ]; then
    BENCH_THREADS="$THREADS" bench/batch.sh
fi

if [[ $SUITES == *" llm "* ]]; then
    bench/llm.sh
fi
