#!/usr/bin/env bash
# Fuzzes every parser of untrusted bytes (fuzz/fuzz_targets/) with libFuzzer.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]
#
# SECONDS per target (default 180); all targets unless some are named.
# FUZZ_JOBS=2 runs two targets at once (default 1). Needs a nightly toolchain
# and cargo-fuzz (`cargo install cargo-fuzz`). Seeds come from fuzz/seeds/,
# the committed test fixtures and, when fetched, the real GGUF models'
# headers; the growing corpus stays in fuzz/corpus/ (git-ignored), logs in
# fuzz/logs/. Exits non-zero on any crash, panic, timeout (a slow input
# counts: -timeout) or memory blow-up (-rss_limit_mb / -malloc_limit_mb);
# libFuzzer leaves the input in fuzz/artifacts/TARGET/ — turn it into a
# regression test in the normal suite once fixed.
set -euo pipefail

cd "$(dirname "$0")/.."
SECS="${1:-180}"
shift || true
ALL=(safetensors pytorch gguf gguf_tokenizer spm config text html subtitles manifest)
TARGETS=("$@")
[ ${#TARGETS[@]} -eq 0 ] && TARGETS=("${ALL[@]}")
JOBS="${FUZZ_JOBS:-1}"

if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    echo "fuzz.sh: needs a nightly toolchain and cargo-fuzz: rustup toolchain install nightly && cargo install cargo-fuzz" >&2
    exit 1
fi

# Rust is memory-safe outside `unsafe`, so no AddressSanitizer (much faster
# to build and run); debug assertions on, so integer overflow is a finding as
# in `cargo test`.
BUILD_FLAGS=(--sanitizer none --debug-assertions)
echo "fuzz.sh: building the targets (release, debug assertions)" >&2
cargo +nightly fuzz build "${BUILD_FLAGS[@]}"

seed() { # target, files...
    local dir="fuzz/corpus/$1"
    shift
    mkdir -p "$dir"
    local f
    for f in "$@"; do
        [ -f "$f" ] && cp -n "$f" "$dir/seed-$(basename "$(dirname "$f")")-$(basename "$f")" 2>/dev/null || true
    done
}

prepare() {
    local t="$1"
    mkdir -p "fuzz/corpus/$t" fuzz/logs "fuzz/artifacts/$t"
    [ -d "fuzz/seeds/$t" ] && seed "$t" fuzz/seeds/"$t"/*
    case "$t" in
        safetensors) seed "$t" tests/fixtures/*/*.safetensors ;;
        spm) seed "$t" tests/fixtures/*/*.spm tests/fixtures/*/spiece.model ;;
        pytorch) seed "$t" tests/fixtures/pytorch/*.pt tests/fixtures/pytorch/*.bin ;;
        html) seed "$t" tests/fixtures/pages/*.html ;;
        gguf)
            # The real files' headers: the first 256 KiB (metadata, cut
            # inside the vocabulary) of each fetched model.
            local g
            for g in models/downloaded/*.gguf; do
                [ -f "$g" ] || continue
                head -c 262144 "$g" >"fuzz/corpus/$t/seed-header-$(basename "$g")"
            done
            ;;
    esac
}

max_len() {
    case "$1" in
        safetensors | spm | pytorch) echo 300000 ;;
        gguf) echo 300000 ;;
        config) echo 4096 ;;
        *) echo 16384 ;;
    esac
}

dict() {
    case "$1" in
        safetensors) echo fuzz/dict/safetensors.dict ;;
        gguf) echo fuzz/dict/gguf.dict ;;
        config) echo fuzz/dict/json-config.dict ;;
        text) echo fuzz/dict/text.dict ;;
        manifest) echo fuzz/dict/manifest.dict ;;
        html) echo fuzz/dict/html.dict ;;
        subtitles) echo fuzz/dict/subtitles.dict ;;
        *) echo "" ;;
    esac
}

run_one() {
    local t="$1"
    prepare "$t"
    local d
    d="$(dict "$t")"
    local args=(
        -max_total_time="$SECS"
        -timeout=10
        -rss_limit_mb=2048
        -malloc_limit_mb=2048
        -max_len="$(max_len "$t")"
        -print_final_stats=1
        -artifact_prefix="fuzz/artifacts/$t/"
    )
    [ -n "$d" ] && args+=(-dict="$d")
    local log="fuzz/logs/$t.log"
    if cargo +nightly fuzz run "${BUILD_FLAGS[@]}" "$t" "fuzz/corpus/$t" -- "${args[@]}" >"$log" 2>&1; then
        local execs
        execs="$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo '?')"
        echo "fuzz.sh: $t: clean, $execs inputs in ${SECS}s (log: $log)"
    else
        echo "fuzz.sh: $t: FINDING (see $log and fuzz/artifacts/$t/):" >&2
        grep -E 'panicked|ERROR: libFuzzer|SUMMARY|Test unit written' "$log" | head -n 5 >&2
        return 1
    fi
}

failed=0
pids=()
names=()
for t in "${TARGETS[@]}"; do
    if [ "$JOBS" -le 1 ]; then
        run_one "$t" || failed=1
        continue
    fi
    run_one "$t" &
    pids+=($!)
    names+=("$t")
    if [ ${#pids[@]} -ge "$JOBS" ]; then
        wait "${pids[0]}" || failed=1
        pids=("${pids[@]:1}")
        names=("${names[@]:1}")
    fi
done
for p in "${pids[@]}"; do
    wait "$p" || failed=1
done
exit "$failed"
