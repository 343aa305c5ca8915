#!/usr/bin/env python3
"""Merges the per-process results of bench/llm.sh into one JSON file and
prints the table (medians over rounds) and the ratios tolk ÷ llama.cpp.
Usage: llm_report.py RUN_DIR OUT_JSON"""
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from report import machine  # noqa: E402

ENGINES = ["tolk", "llama.cpp"]


def main():
    run_dir, out = Path(sys.argv[1]), Path(sys.argv[2])
    runs = [json.loads(p.read_text()) for p in sorted(run_dir.glob("*.json"))]
    groups = {}
    for r in runs:
        groups.setdefault((r["model"], r["threads"], r["engine"].replace("tolk-native", "tolk")), []).append(r)

    def med(rs, key):
        return statistics.median(r[key] for r in rs)

    rows = []
    for (model, threads, engine), rs in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1], ENGINES.index(kv[0][2]))):
        warm = [r for r in rs if not r["cold"]] or rs
        cold = [r for r in rs if r["cold"]]
        rows.append({
            "model": model, "threads": threads, "engine": engine, "rounds": len(rs),
            "prefill_tok_s": med(rs, "prefill_tok_s"), "gen_tok_s": med(rs, "gen_tok_s"),
            "ttft_s": med(rs, "ttft_s"), "load_warm_s": med(warm, "load_s"),
            "load_cold_s": cold[0]["load_s"] if cold else None,
            "peak_rss_mb": max(r["peak_rss_mb"] for r in rs),
            "prompt_tokens": rs[0]["prompt_tokens"], "gen_tokens": rs[0]["gen_tokens"],
            "generated_ids": rs[0]["generated_ids"],
        })

    head = ("| model | threads | engine | prompt tok/s | generated tok/s | first token ms "
            "| load s warm (cold) | peak RSS MB |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        cold = f" ({r['load_cold_s']:.2f})" if r["load_cold_s"] is not None else ""
        lines.append(f"| {r['model']} | {r['threads']} | {r['engine']} | {r['prefill_tok_s']:.0f} "
                     f"| {r['gen_tok_s']:.1f} | {r['ttft_s'] * 1000:.0f} | {r['load_warm_s']:.2f}{cold} "
                     f"| {r['peak_rss_mb']:.0f} |")

    ratio_head = ("| model | threads | prompt tok/s | generated tok/s | first token (lower is better) "
                  "| same greedy tokens |")
    ratios = [ratio_head, "|" + "---|" * (ratio_head.count("|") - 1)]
    ratio_json = []
    for r in rows:
        if r["engine"] != "tolk":
            continue
        peer = next((p for p in rows if p["engine"] == "llama.cpp" and p["model"] == r["model"]
                     and p["threads"] == r["threads"]), None)
        if not peer:
            continue
        same = 0
        for a, b in zip(r["generated_ids"], peer["generated_ids"]):
            if a != b:
                break
            same += 1
        item = {"model": r["model"], "threads": r["threads"],
                "prefill_ratio": r["prefill_tok_s"] / peer["prefill_tok_s"],
                "gen_ratio": r["gen_tok_s"] / peer["gen_tok_s"],
                "ttft_ratio": r["ttft_s"] / peer["ttft_s"],
                "same_leading_tokens": same, "tokens": len(r["generated_ids"])}
        ratio_json.append(item)
        ratios.append(f"| {r['model']} | {r['threads']} | {item['prefill_ratio']:.2f}× "
                      f"| {item['gen_ratio']:.2f}× | {item['ttft_ratio']:.2f}× "
                      f"| {same} of {item['tokens']} |")

    table = "\n".join(lines) + "\n\ntolk ÷ llama.cpp (medians):\n\n" + "\n".join(ratios)
    print(f"Machine: {machine()}\n")
    print(table)
    out.parent.mkdir(parents=True, exist_ok=True)
    for r in rows:
        r.pop("generated_ids")
    out.write_text(json.dumps({"machine": machine(), "results": rows, "ratios": ratio_json,
                               "runs": len(runs), "table_markdown": table}, indent=1) + "\n")
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
