#!/usr/bin/env python3
"""Merges the per-process results of bench/run.sh into one JSON file and
prints the table (throughput, load, first token, peak RSS) and the ratios
tolk ÷ peer. Usage: report.py RUN_DIR OUT_JSON"""
import json
import platform
import subprocess
import sys
from pathlib import Path

PEERS = [("tolk", "transformers"), ("tolk", "ct2-float32"), ("tolk-q8", "ct2-int8"),
         ("tolk-q8", "ct2-float32")]
ORDER = ["tolk", "tolk-q8", "transformers", "ct2-float32", "ct2-int8"]


def machine():
    cpu = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    cores = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip()
    mem = Path("/proc/meminfo").read_text().splitlines()[0].split()[1]
    return f"{cpu}, {cores} cores, {int(mem) // 1024 // 1024} GB RAM, {platform.system()} {platform.release()}"


def main():
    run_dir, out = Path(sys.argv[1]), Path(sys.argv[2])
    results = [json.loads(p.read_text()) for p in sorted(run_dir.glob("*.json"))]
    extra = {}
    if (run_dir / "extra").is_dir():
        for p in sorted((run_dir / "extra").glob("*.json")):
            extra[p.stem] = json.loads(p.read_text())
    for r in results:
        for run in r["runs"]:
            run["tokens_per_s"] = run["tokens"] / run["seconds"]
            run["sentences_per_s"] = run["sentences"] / run["seconds"]
    results.sort(key=lambda r: (r["threads"], ORDER.index(r["engine"])))

    def find(engine, threads):
        return next((r for r in results if r["engine"] == engine and r["threads"] == threads), None)

    for r in results:
        for x in r["runs"]:
            x.setdefault("workload", "forced")
    # Forced-length cells first, then the per-sentence lengths ("len"), then
    # tolk's per-sentence run in fixed batches, without refilling ("len fixed").
    workloads = {"forced": "", "lengths": "len ", "lengths-fixed": "len fixed "}
    keys = sorted({(list(workloads).index(x["workload"]), x["beams"], x["batch_size"])
                   for r in results for x in r["runs"]})

    def label(key):
        w, b, s = key
        return f"{list(workloads.values())[w]}{'greedy' if b == 1 else f'beam {b}'} bs {s}"

    def pick(r, key):
        w, b, s = key
        return next((x for x in r["runs"] if x["workload"] == list(workloads)[w]
                     and x["beams"] == b and x["batch_size"] == s), None)

    head = "| engine | threads | " + " | ".join(f"{label(k)} tok/s (sent/s)" for k in keys) + \
        " | load s | first token ms | peak RSS MB |"
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in results:
        cells = []
        for key in keys:
            run = pick(r, key)
            cells.append(f"{run['tokens_per_s']:.0f} ({run['sentences_per_s']:.1f})" if run else "-")
        load = f"{r['load_s']:.2f} {'cold' if r['cold'] else 'warm'}"
        lines.append(f"| {r['engine']} | {r['threads']} | " + " | ".join(cells) +
                     f" | {load} | {r['ttft_s'] * 1000:.0f} | {r['peak_rss_mb']:.0f} |")

    ratio_head = "| ratio | threads | " + " | ".join(label(k) for k in keys) + " | peak RSS |"
    ratios = [ratio_head, "|" + "---|" * (ratio_head.count("|") - 1)]
    ratio_json = []
    for ours, peer in PEERS:
        for threads in sorted({r["threads"] for r in results}):
            a, b = find(ours, threads), find(peer, threads)
            if not a or not b:
                continue
            cells = []
            for key in keys:
                ra, rb = pick(a, key), pick(b, key)
                if ra and rb:
                    v = ra["tokens_per_s"] / rb["tokens_per_s"]
                    cells.append(f"{v:.2f}×")
                    ratio_json.append({"ours": ours, "peer": peer, "threads": threads,
                                       "workload": ra["workload"], "beams": key[1],
                                       "batch_size": key[2], "throughput_ratio": v})
                else:
                    cells.append("-")
            rss = a["peak_rss_mb"] / b["peak_rss_mb"]
            ratios.append(f"| {ours} ÷ {peer} | {threads} | " + " | ".join(cells) + f" | {rss:.2f}× |")

    table = "\n".join(lines) + "\n\n" + "\n".join(ratios)
    print(f"Machine: {machine()}\n")
    print(table)
    for name, value in extra.items():
        print(f"\n{name}: {json.dumps(value)}")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": machine(), "results": results, "ratios": ratio_json,
                               "extra": extra, "table_markdown": table}, indent=1) + "\n")
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
