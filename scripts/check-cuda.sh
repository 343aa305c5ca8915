#!/usr/bin/env bash
# Compile check of the CUDA build, no GPU needed: installs the CUDA toolkit
# pieces from PyPI once (scripts/cuda-toolkit.sh), then builds and lints
# `--features cuda` into its own target folder (target-cuda/, so the CPU
# build in target/ stays warm), and runs the tests that need no GPU plus
# the CUDA parity tests, which print `SKIPPED: no CUDA device` without one.
#
#   scripts/check-cuda.sh          # build + clippy + tests (first run: long, see README)
#   CHECK_CUDA_TESTS=0 scripts/check-cuda.sh   # build + clippy only
#
# Not in .ci/run: a cold run takes longer than CI's budget on 2 cores
# (README "GPU (CUDA)" has the measured times).
set -euo pipefail
cd "$(dirname "$0")/.."
eval "$(scripts/cuda-toolkit.sh)"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target-cuda}

cargo build --features cuda
cargo clippy --features cuda --all-targets -- -D warnings
if [ "${CHECK_CUDA_TESTS:-1}" != 0 ]; then
    # The driver library is the stub that cuda-toolkit.sh generated (every
    # call fails as on a machine without a GPU), unless a real driver is
    # installed: the binaries need some libcuda.so.1 to start at all.
    if ! ldconfig -p 2>/dev/null | grep -q 'libcuda\.so\.1'; then
        export LD_LIBRARY_PATH="$CUDA_ROOT/lib/stubs:$LD_LIBRARY_PATH"
    fi
    cargo test --features cuda --lib device::
    cargo test --features cuda --test marian_parity --test t5_parity \
        --test llm_safetensors --test llm_tiny_models on_cuda
    cargo test --features cuda --test cli_translate cuda
fi
