#!/usr/bin/env bash
# Scores tolk's German sentence splitter beside pySBD, sentencex and SoMaJo
# on the Pragmatic Segmenter German golden rules and on hand-checked text.
#
# The golden rules are not copied into this repository: they are read from
# the test data that Wikimedia's sentencex publishes with its package (the
# PyPI source package and the crates.io crate carry the same tests/de.txt;
# cargo fetches the crate at run time, since pip cannot download that source
# package without building it). pySBD's own PyPI package ships only its
# English golden rules.
#
# Usage: bench/splitter/run.sh   (needs python3 with venv, and PyPI access)
# Writes bench/results/splitter.md (the README table) and splitter.json
# (every case a splitter got wrong).
set -euo pipefail
cd "$(dirname "$0")/../.."
VENV=${VENV:-.venv/splitter}
SENTENCEX=0.1.33
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
"$VENV/bin/pip" install -q pysbd==0.3.4 sentencex==1.0.32 somajo==2.5.0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# The data travels in the sentencex crate too: cargo fetches it like any
# dependency (into the cargo registry cache), and cargo metadata says where.
mkdir -p "$tmp/fetch/src" && touch "$tmp/fetch/src/lib.rs"
cat > "$tmp/fetch/Cargo.toml" <<TOML
[package]
name = "fetch-golden-rules"
version = "0.0.0"
edition = "2021"
[dependencies]
sentencex = "=$SENTENCEX"
TOML
golden=$(cd "$tmp/fetch" && cargo metadata -q --format-version 1 | python3 -c '
import json, os, sys
m = json.load(sys.stdin)
p = next(p for p in m["packages"] if p["name"] == "sentencex")
print(os.path.join(os.path.dirname(p["manifest_path"]), "tests", "de.txt"))')
cargo build -q --example split_sentences
mkdir -p bench/results
"$VENV/bin/python" bench/splitter/eval.py \
  --golden "$golden" \
  --tolk target/debug/examples/split_sentences \
  --json bench/results/splitter.json | tee bench/results/splitter.md
