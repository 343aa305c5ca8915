#!/usr/bin/env bash
# GPU benchmark and CUDA checks, one script, on a machine with an NVIDIA GPU.
# Not part of `cargo test`. Time: the runs themselves are sized for ~8
# minutes; the first build compiles candle's CUDA kernels with nvcc -O3,
# which on 2 cores takes hours (README "GPU (CUDA)") and on a 16-core box
# has not been measured: build first (`cargo build --features cuda
# --examples && cargo test --features cuda --no-run`) where time is cheap,
# or keep CARGO_TARGET_DIR warm between runs. Writes one JSON file (default
# bench/results/gpu.json):
#
#   gpu        name, driver, memory, compute capability (nvidia-smi)
#   tests      the CUDA variants of the parity tests (marian_parity,
#              t5_parity, llm_safetensors, llm_tiny_models: `on_cuda::*`)
#   translation  tolk f32 and f16 against transformers (f32, f16) and
#              CTranslate2 (float32, float16) on CUDA: opus-mt-de-en-sized
#              Marian with random weights (bench/make_model.py), 64 sentences,
#              40 new tokens each, batch 1/16/64, greedy and beam 4
#   llm        tolk against llama.cpp built with CUDA (if it builds within
#              BENCH_LLAMA_BUILD_S) on the GGUF test models, all layers on the GPU
#
#   bench/gpu.sh
#   BENCH_GPU_PARTS="tests translation" bench/gpu.sh   # a subset
#
# Environment:
#   BENCH_GPU_PARTS       "tests translation llm" (default) or a subset
#   BENCH_SENTENCES       sentences per translation workload (default 64)
#   BENCH_LLAMA_BUILD_S   seconds allowed for building llama-cpp-python with
#                         CUDA, in the background while tolk builds (default 420)
#   BENCH_GPU_OUT         result file (default bench/results/gpu.json)
#   CUDA_COMPUTE_CAP      GPU architecture to compile for (default: nvidia-smi's)
#
# What it installs, all from PyPI, once: the CUDA toolkit pieces
# (scripts/cuda-toolkit.sh) unless nvcc is already on PATH, and the peers
# (torch, transformers, ctranslate2, llama-cpp-python) in target/bench-gpu-venv.
# A part that cannot run (no PyPI access, a failed build) is recorded in the
# JSON with its reason; the script never reports a number it did not measure.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PARTS=" ${BENCH_GPU_PARTS:-tests translation llm} "
SENTENCES=${BENCH_SENTENCES:-64}
LLAMA_BUILD_S=${BENCH_LLAMA_BUILD_S:-420}
OUT=${BENCH_GPU_OUT:-$ROOT/bench/results/gpu.json}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target-cuda}
# Numbers only from candle's own kernels: never from the unoptimised ones of
# scripts/check-cuda.sh's check mode (cargo does not track this variable).
if [ -n "${NVCC_APPEND_FLAGS:-}" ]; then
    echo "gpu.sh: NVCC_APPEND_FLAGS is set ('$NVCC_APPEND_FLAGS'); unset it, a benchmark needs candle's own nvcc flags" >&2
    exit 1
fi
case "$CARGO_TARGET_DIR" in
    *target-cuda-check*) echo "gpu.sh: $CARGO_TARGET_DIR holds check-mode kernels; use another CARGO_TARGET_DIR" >&2; exit 1 ;;
esac
RUN_DIR=$(mktemp -d "${TMPDIR:-/tmp}/tolk-gpu-bench.XXXXXX")
VENV=$ROOT/target/bench-gpu-venv
START=$(date +%s)
log() { echo "gpu.sh [$(($(date +%s) - START))s]: $*" >&2; }
note() { # note PART MESSAGE: why a part did not run, for the JSON
    printf '%s\n' "$2" > "$RUN_DIR/$1.skipped"
    log "$1 skipped: $2"
}

# 0. The GPU.
if ! nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap --format=csv,noheader \
    > "$RUN_DIR/gpu.csv" 2>"$RUN_DIR/gpu.err"; then
    echo "gpu.sh: no NVIDIA GPU answers nvidia-smi: $(head -n 1 "$RUN_DIR/gpu.err")" >&2
    exit 1
fi
log "GPU: $(head -n 1 "$RUN_DIR/gpu.csv")"
CAP=$(head -n 1 "$RUN_DIR/gpu.csv" | awk -F', ' '{print $4}' | tr -d '.')
export CUDA_COMPUTE_CAP=${CUDA_COMPUTE_CAP:-$CAP}

# 1. The toolkit: the machine's own nvcc, or the PyPI wheels.
if ! command -v nvcc >/dev/null; then
    if [ -x /usr/local/cuda/bin/nvcc ]; then
        export PATH=/usr/local/cuda/bin:$PATH CUDA_ROOT=/usr/local/cuda
    else
        eval "$(scripts/cuda-toolkit.sh)" || { echo "gpu.sh: no CUDA toolkit" >&2; exit 1; }
    fi
fi
log "nvcc: $(nvcc --version | grep release)"

# 2. Peers, in the background while tolk builds (llama.cpp in a venv of its
#    own, so the two pip runs never touch the same packages).
LLAMA_VENV=$ROOT/target/bench-gpu-llama-venv
peers_pid=
if [[ $PARTS == *" translation "* ]]; then
    (
        [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
        "$VENV/bin/pip" install -q torch "transformers==4.57.1" ctranslate2 sentencepiece \
            safetensors > "$RUN_DIR/pip-peers.log" 2>&1
    ) &
    peers_pid=$!
fi
if [[ $PARTS == *" llm "* ]] && ! "$LLAMA_VENV/bin/python" -c 'import llama_cpp' 2>/dev/null; then
    (
        [ -x "$LLAMA_VENV/bin/python" ] || python3 -m venv "$LLAMA_VENV"
        CMAKE_ARGS="-DGGML_CUDA=on -DCMAKE_CUDA_ARCHITECTURES=$CUDA_COMPUTE_CAP" \
            timeout "$LLAMA_BUILD_S" "$LLAMA_VENV/bin/pip" install -q --no-cache-dir \
            "llama-cpp-python==0.3.36" numpy > "$RUN_DIR/pip-llama.log" 2>&1
    ) &
    llama_pid=$!
fi

# 3. tolk with --features cuda: tests and examples, one (dev, optimised) profile.
log "building tolk --features cuda into $CARGO_TARGET_DIR"
if ! cargo build --features cuda --examples > "$RUN_DIR/build.log" 2>&1 \
    || ! cargo test --features cuda --no-run >> "$RUN_DIR/build.log" 2>&1; then
    tail -n 30 "$RUN_DIR/build.log" >&2
    echo "gpu.sh: the CUDA build failed (log above)" >&2
    exit 1
fi
EX=$CARGO_TARGET_DIR/debug/examples

# 4. The CUDA parity tests.
if [[ $PARTS == *" tests "* ]]; then
    [ -f models/downloaded/SmolLM2-135M-Instruct.Q4_1.gguf ] || scripts/fetch-test-models.sh >&2 || true
    for t in marian_parity t5_parity llm_safetensors llm_tiny_models; do
        log "test $t (on_cuda)"
        if cargo test --features cuda --test "$t" on_cuda -- --test-threads 1 \
            > "$RUN_DIR/test-$t.log" 2>&1; then
            echo pass > "$RUN_DIR/test-$t.result"
        else
            echo fail > "$RUN_DIR/test-$t.result"
            tail -n 20 "$RUN_DIR/test-$t.log" >&2
        fi
    done
fi

peers_ok=0
if [ -n "$peers_pid" ]; then
    wait "$peers_pid" && peers_ok=1
    [ $peers_ok = 1 ] || note peers "pip install of torch/transformers/ctranslate2 failed: $(tail -n 1 "$RUN_DIR/pip-peers.log" 2>/dev/null)"
fi
if [ -n "${llama_pid:-}" ]; then
    wait "$llama_pid" || true
fi

# 5. Translation on CUDA.
if [[ $PARTS == *" translation "* ]]; then
    MODEL=$ROOT/target/bench-model
    if [ $peers_ok = 1 ] && { [ -f "$MODEL/inputs.json" ] || "$VENV/bin/python" bench/make_model.py "$MODEL" >&2; }; then
        mkdir -p "$RUN_DIR/translation"
        for engine in tolk tolk-f16 transformers transformers-f16 ct2-float32 ct2-float16; do
            log "translation: $engine"
            out=$RUN_DIR/translation/$engine.json
            case $engine in
                tolk|tolk-f16)
                    quant=none; [ $engine = tolk-f16 ] && quant=f16
                    "$EX/bench_translate" --model-dir "$MODEL" --device cuda --threads 1 \
                        --quantize $quant --sentences "$SENTENCES" --batch-sizes 1,16,64 \
                        --beams 1,4 > "$out" 2> "$out.err" ;;
                *)
                    "$VENV/bin/python" bench/peers.py --engine "$engine" --device cuda \
                        --model-dir "$MODEL" --threads 1 --sentences "$SENTENCES" \
                        --batch-sizes 1,16,64 --beams 1,4 > "$out" 2> "$out.err" ;;
            esac || { log "$engine failed: $(tail -n 1 "$out.err")"; rm -f "$out"; }
        done
    else
        note translation "no bench model: the peers or bench/make_model.py could not be installed/run"
    fi
fi

# 6. LLM on CUDA.
if [[ $PARTS == *" llm "* ]]; then
    mkdir -p "$RUN_DIR/llm"
    for m in models/downloaded/SmolLM2-135M-Instruct.Q4_1.gguf models/downloaded/gemma-3-270m-q4_k_m.gguf; do
        [ -f "$m" ] || { note llm "test models missing (scripts/fetch-test-models.sh failed)"; break; }
        name=$(basename "$m" .gguf)
        ids=$RUN_DIR/llm/$name.ids.json
        log "llm: tolk, $name"
        "$EX/bench_llm" --model "$m" --device cuda --threads 1 --ids-out "$ids" \
            > "$RUN_DIR/llm/$name.tolk.json" 2> "$RUN_DIR/llm/$name.tolk.err" \
            || { log "tolk failed: $(tail -n 1 "$RUN_DIR/llm/$name.tolk.err")"; rm -f "$RUN_DIR/llm/$name.tolk.json"; }
        if "$LLAMA_VENV/bin/python" -c 'import llama_cpp' 2>/dev/null; then
            log "llm: llama.cpp, $name"
            "$LLAMA_VENV/bin/python" bench/llm_peer.py --model "$m" --ids "$ids" --threads 1 \
                --gpu-layers -1 > "$RUN_DIR/llm/$name.llama.json" 2> "$RUN_DIR/llm/$name.llama.err" \
                || rm -f "$RUN_DIR/llm/$name.llama.json"
        else
            note llama "llama-cpp-python with CUDA did not build within ${LLAMA_BUILD_S}s"
        fi
    done
fi

# 7. One JSON.
mkdir -p "$(dirname "$OUT")"
python3 - "$RUN_DIR" "$OUT" "$(nvcc --version | grep -o 'release [0-9.]*')" "$CUDA_COMPUTE_CAP" <<'EOF'
import json, sys
from pathlib import Path
run, out, nvcc, cap = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3], sys.argv[4]
name, driver, memory, compute_cap = [x.strip() for x in (run / "gpu.csv").read_text().splitlines()[0].split(",")]
def load_all(folder):
    rows = []
    for f in sorted((run / folder).glob("*.json")) if (run / folder).is_dir() else []:
        if f.name.endswith(".ids.json"):
            continue
        try:
            rows.append(json.loads(f.read_text()))
        except ValueError:
            pass
    return rows
result = {
    "gpu": {"name": name, "driver": driver, "memory": memory, "compute_cap": compute_cap},
    "cuda": {"nvcc": nvcc, "compiled_for": cap},
    "tests": {f.stem[len("test-"):]: f.read_text().strip() for f in sorted(run.glob("test-*.result"))},
    "translation": load_all("translation"),
    "llm": load_all("llm"),
    "skipped": {f.stem: f.read_text().strip() for f in sorted(run.glob("*.skipped"))},
}
out.write_text(json.dumps(result, indent=1) + "\n")
print(f"wrote {out}", file=sys.stderr)
EOF
log "done; logs in $RUN_DIR"
