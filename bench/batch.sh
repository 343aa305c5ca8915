#!/usr/bin/env bash
# What users run: `tolk batch` over a folder of German articles against a
# CTranslate2 pipeline doing the same job the way argos-translate does
# (sentence split, SentencePiece, `translate_batch`, detokenize, write one
# file per input; bench/batch_peer.py). Wall time and peak RSS of the whole
# process, model load included. Same model (bench/make_model.py's
# opus-mt-sized Marian, random weights), same beams and length limit.
# bench/run.sh calls this after the translation workloads; alone:
#
#   bench/batch.sh                 # after bench/run.sh made the venv and the model
#
# Environment: BENCH_THREADS (default "1 <all cores>"), BENCH_BATCH_FILES
# (articles, default 90: ~20k words), BENCH_BATCH_ENGINES (default
# "q8 int8": tolk --quantize q8 and CTranslate2 int8; add "none float32"
# for the f32 pair), BENCH_BATCH_BEAMS (default 4, the opus-mt default of
# both tools), BENCH_BATCH_MAX_LENGTH (new tokens per sentence, default 48,
# about what real translations of these sentences take; random weights
# rarely stop on their own, so most sentences run to it in both tools),
# BENCH_OUT_BATCH (default bench/results/batch.json).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
VENV=$ROOT/target/bench-venv
MODEL=$ROOT/target/bench-model
THREADS=${BENCH_THREADS:-"1 $(nproc)"}
FILES=${BENCH_BATCH_FILES:-90}
ENGINES=${BENCH_BATCH_ENGINES:-"q8 int8"}
BEAMS=${BENCH_BATCH_BEAMS:-4}
MAXLEN=${BENCH_BATCH_MAX_LENGTH:-48}
OUT=${BENCH_OUT_BATCH:-$ROOT/bench/results/batch.json}
[ -x "$VENV/bin/python" ] && [ -f "$MODEL/ct2-int8/model.bin" ] \
    || { echo "bench/batch.sh: run bench/run.sh first (venv and model)" >&2; exit 1; }

cargo build --release --bin tolk
TOLK=$TARGET/release/tolk
WORK=$(mktemp -d "${TMPDIR:-/tmp}/tolk-batch.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

# The corpus: the German sample article and the hand-checked splitter text,
# their plain sentences rotated into FILES articles of four paragraphs each.
"$VENV/bin/python" - "$WORK/corpus" "$FILES" <<'EOF'
import re, sys
from pathlib import Path
out, files = Path(sys.argv[1]), int(sys.argv[2])
text = Path("samples/de_article.txt").read_text(encoding="utf-8")
sents = [s for s in re.split(r"(?<=[.!?])\s+", " ".join(text.split())) if len(s.split()) > 2]
sents += [l.strip() for l in Path("bench/splitter/de_handchecked.txt").read_text(encoding="utf-8").splitlines()
          if l.strip() and not l.startswith("#")]
# Only sentences that any splitter cuts the same way (one end mark, no
# abbreviation or ordinal inside), so that both tools translate the same
# sentences and the time compares like with like.
sents = [s for s in sents if re.fullmatch(r"[^.!?:;]*[^\d\s.!?:;][.!?]", s)]
out.mkdir(parents=True)
per = 16
for i in range(files):
    pick = [sents[(i * 7 + j) % len(sents)] for j in range(per)]
    paras = [" ".join(pick[p:p + 4]) for p in range(0, per, 4)]
    (out / f"article{i:03}.txt").write_text("\n\n".join(paras) + "\n", encoding="utf-8")
EOF
words=$(cat "$WORK"/corpus/*.txt | wc -w)

measure() { # label threads command...
    local label=$1 threads=$2; shift 2
    rm -rf "$WORK/out"
    export RAYON_NUM_THREADS=$threads OMP_NUM_THREADS=$threads CANDLE_NUM_THREADS=$threads
    /usr/bin/time -f "%e %M" -o "$WORK/time" "$@" > "$WORK/stdout" 2> "$WORK/stderr" \
        || { cat "$WORK/stderr" >&2; exit 1; }
    read -r wall rss_kb < "$WORK/time"
    local out_words
    out_words=$(cat "$WORK"/out/*.en.txt 2>/dev/null | wc -w)
    printf '{"engine":"%s","threads":%s,"wall_s":%s,"peak_rss_mb":%s,"input_words":%s,"output_words":%s}\n' \
        "$label" "$threads" "$wall" "$((rss_kb / 1024))" "$words" "$out_words" | tee -a "$WORK/results.jsonl"
}

for threads in $THREADS; do
    for engine in $ENGINES; do
        case $engine in
            q8|none)
                measure "tolk batch --quantize $engine" "$threads" "$TOLK" batch "$WORK/corpus" \
                    -o "$WORK/out" --model-dir "$MODEL/marian" --quantize "$engine" --beams "$BEAMS" \
                    --max-length $((MAXLEN + 2)) --source de --threads "$threads" --force -q ;;
            int8|float32)
                measure "CTranslate2 $engine pipeline" "$threads" "$VENV/bin/python" bench/batch_peer.py \
                    "$WORK/corpus" "$WORK/out" --model "$MODEL/ct2-$engine" --spm-dir "$MODEL/marian" \
                    --threads "$threads" --beams "$BEAMS" --max-length "$MAXLEN" --batch-size 16 ;;
            *) echo "bench/batch.sh: unknown engine $engine" >&2; exit 1 ;;
        esac
    done
done

"$VENV/bin/python" - "$WORK/results.jsonl" "$OUT" <<'EOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
json.dump(rows, open(sys.argv[2], "w"), indent=1)
print("\n| engine | threads | wall s | words/s | peak RSS MB | output words |")
print("|---|---|---|---|---|---|")
for r in rows:
    print(f"| {r['engine']} | {r['threads']} | {r['wall_s']:.1f} | {r['input_words'] / r['wall_s']:.0f} "
          f"| {r['peak_rss_mb']} | {r['output_words']} |")
EOF
