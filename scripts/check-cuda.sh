#!/usr/bin/env bash
# Compile check of the CUDA build, no GPU needed: installs the CUDA toolkit
# pieces from PyPI once (scripts/cuda-toolkit.sh), then builds and lints
# `--features cuda` and runs the tests that need no GPU plus the CUDA
# parity tests, which print `SKIPPED: no CUDA device` without one.
#
#   scripts/check-cuda.sh                       # full mode (default): build + clippy + tests
#   CHECK_CUDA_TESTS=0 scripts/check-cuda.sh    # build + clippy only
#   CHECK_CUDA_MODE=check scripts/check-cuda.sh # kernels without device optimisation
#
# Two modes (README "GPU (CUDA)" has the measured times of both):
#
#   full (default)  candle's own nvcc flags, what `cargo install --path .
#       --features cuda` does, into target-cuda/.
#   check  compiles candle's CUDA kernels with the device optimisers off
#       (NVCC_APPEND_FLAGS="-Xcicc -O0 -Xptxas -O0", which nvcc itself
#       appends to every call), into target-cuda-check/. Meant for machines
#       where nvcc's optimiser is too slow for a check; measured here it
#       saved little (about a minute per kernel file either way, one nvcc at
#       a time). Its kernels are unoptimised: the binaries of this mode are
#       for the check only, never for use, and they live in their own target
#       folder (cargo does not track NVCC_APPEND_FLAGS, so sharing a folder
#       with a real build would leave check-mode kernels in it).
#
# CUDA_COMPUTE_CAP (default 90) picks the GPU architecture, see
# scripts/cuda-toolkit.sh. CUDAFORGE_THREADS (or RAYON_NUM_THREADS) caps how
# many nvcc processes candle-kernels' build script runs at once (default: half
# the cores); CARGO_BUILD_JOBS caps cargo as usual.
#
# Not in .ci/run: from a cold target folder it takes longer than CI's budget
# on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
eval "$(scripts/cuda-toolkit.sh)"

mode=${CHECK_CUDA_MODE:-full}
case "$mode" in
    check)
        export NVCC_APPEND_FLAGS="${NVCC_APPEND_FLAGS:+$NVCC_APPEND_FLAGS }-Xcicc -O0 -Xptxas -O0"
        export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target-cuda-check}
        echo "check-cuda: check mode (kernels without device optimisation, for checking only) in $CARGO_TARGET_DIR" >&2
        ;;
    full)
        if [ -n "${NVCC_APPEND_FLAGS:-}" ]; then
            echo "check-cuda: unset NVCC_APPEND_FLAGS for a full build (it is '$NVCC_APPEND_FLAGS')" >&2
            exit 1
        fi
        export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target-cuda}
        echo "check-cuda: full build with candle's nvcc flags in $CARGO_TARGET_DIR" >&2
        ;;
    *)
        echo "check-cuda: CHECK_CUDA_MODE is check or full, not '$mode'" >&2
        exit 1
        ;;
esac

step() {
    echo "check-cuda: $*" >&2
    local start=$SECONDS
    "$@"
    echo "check-cuda: $((SECONDS - start)) s: $*" >&2
}

step cargo build --features cuda
step cargo clippy --features cuda --all-targets -- -D warnings
if [ "${CHECK_CUDA_TESTS:-1}" != 0 ]; then
    # The binaries link libcuda.so.1, which only an NVIDIA driver installs.
    # Without one, the stub that cuda-toolkit.sh generated stands in (every
    # call fails as on a machine without a GPU), so the tests start and the
    # CUDA ones print `SKIPPED: no CUDA device`.
    if ! ldconfig -p 2>/dev/null | grep -q 'libcuda\.so\.1'; then
        export LD_LIBRARY_PATH="$CUDA_ROOT/lib/stubs:$LD_LIBRARY_PATH"
    fi
    step cargo test --features cuda --lib device::
    step cargo test --features cuda --lib generation
    step cargo test --features cuda --test marian_parity --test t5_parity \
        --test llm_safetensors --test llm_tiny_models -- on_cuda --nocapture
    step cargo test --features cuda --test cli_translate -- cuda --nocapture
fi
