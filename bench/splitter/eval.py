"""Scores German sentence splitters: tolk, pySBD, sentencex and SoMaJo.

Two test sets:
- the Pragmatic Segmenter German golden rules, as shipped in the test data
  of the `sentencex` source package on PyPI (tests/de.txt; cases that file
  comments out are skipped), read from the path given with --golden;
- bench/splitter/de_handchecked.txt, German news and history text whose
  boundaries were checked by hand (one sentence per line).

A case counts as right when the splitter finds exactly the expected
boundaries (compared on the text without whitespace, so splitters that
re-space or tokenize are not penalised). For the hand-checked text the
boundary precision, recall and F1 are reported too.

Usage: python eval.py --golden de.txt --tolk path/to/split_sentences [--json out.json]
"""

import argparse
import json
import re
import subprocess
import sys


def read_golden(path):
    cases = []
    for block in open(path, encoding="utf-8").read().split("\n==="):
        block = block.strip("\n")
        if not block.strip() or "\n---" not in block:
            continue
        source, expected = block.split("\n---", 1)
        lines = [l for l in (source + "\n" + expected).splitlines() if l.strip()]
        if any(l.lstrip().startswith("#") for l in lines):
            continue  # commented out in the data
        cases.append(
            (source.strip(), [l.strip() for l in expected.strip("\n").splitlines() if l.strip()])
        )
    return cases


def read_handchecked(path):
    cases, current = [], []
    for line in open(path, encoding="utf-8"):
        line = line.rstrip("\n")
        if line.startswith("#"):
            continue
        if not line.strip():
            if current:
                cases.append((" ".join(current), current))
                current = []
            continue
        current.append(line.strip())
    if current:
        cases.append((" ".join(current), current))
    return cases


def boundaries(sentences):
    """Offsets, in non-whitespace characters, where sentences end."""
    out, total = set(), 0
    for s in sentences:
        total += len(re.sub(r"\s+", "", s))
        out.add(total)
    out.discard(total)  # the end of the text is no decision
    return out


def tolk_splitter(binary):
    def split_all(texts):
        data = "".join(json.dumps(t) + "\n" for t in texts)
        res = subprocess.run([binary], input=data, capture_output=True, text=True, check=True)
        return [json.loads(l) for l in res.stdout.splitlines()]

    return split_all


def pysbd_splitter():
    import pysbd

    seg = pysbd.Segmenter(language="de", clean=False)
    return lambda texts: [seg.segment(t) for t in texts]


def sentencex_splitter():
    from sentencex import segment

    return lambda texts: [list(segment("de", t)) for t in texts]


def somajo_splitter():
    from somajo import SoMaJo

    tok = SoMaJo("de_CMC", split_camel_case=False)

    def split_all(texts):
        out = []
        for t in texts:
            sentences = []
            for sentence in tok.tokenize_text([t]):
                sentences.append(
                    "".join(tok_.text + (" " if tok_.space_after else "") for tok_ in sentence)
                )
            out.append(sentences)
        return out

    return split_all


def score(split_all, cases):
    got = split_all([c[0] for c in cases])
    right, tp, fp, fn, wrong = 0, 0, 0, 0, []
    for (text, expected), sentences in zip(cases, got):
        want, have = boundaries(expected), boundaries(sentences)
        if want == have:
            right += 1
        else:
            wrong.append({"text": text, "expected": expected, "got": sentences})
        tp += len(want & have)
        fp += len(have - want)
        fn += len(want - have)
    p = tp / (tp + fp) if tp + fp else 1.0
    r = tp / (tp + fn) if tp + fn else 1.0
    f1 = 2 * p * r / (p + r) if p + r else 0.0
    return {"right": right, "cases": len(cases), "precision": p, "recall": r, "f1": f1, "wrong": wrong}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--golden", required=True)
    ap.add_argument("--handchecked", default="bench/splitter/de_handchecked.txt")
    ap.add_argument("--tolk", required=True)
    ap.add_argument("--json")
    args = ap.parse_args()
    sets = {
        "golden rules (de)": read_golden(args.golden),
        "hand-checked text": read_handchecked(args.handchecked),
    }
    # Hand-checked paragraphs are also scored sentence by sentence.
    splitters = {"tolk": lambda: tolk_splitter(args.tolk)}
    splitters["pySBD"] = pysbd_splitter
    splitters["sentencex"] = sentencex_splitter
    splitters["SoMaJo"] = somajo_splitter
    results = {}
    for name, make in splitters.items():
        try:
            split_all = make()
        except Exception as e:  # not installed
            print(f"SKIPPED: {name}: {e}", file=sys.stderr)
            continue
        results[name] = {set_name: score(split_all, cases) for set_name, cases in sets.items()}
    print("| splitter | golden rules (de): cases right | hand-checked: paragraphs right | hand-checked: boundary P / R / F1 |")
    print("|---|---|---|---|")
    for name, r in results.items():
        g, h = r["golden rules (de)"], r["hand-checked text"]
        print(
            f"| {name} | {g['right']}/{g['cases']} ({100 * g['right'] / g['cases']:.0f} %) "
            f"| {h['right']}/{h['cases']} "
            f"| {h['precision']:.3f} / {h['recall']:.3f} / {h['f1']:.3f} |"
        )
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(results, f, ensure_ascii=False, indent=1)


if __name__ == "__main__":
    main()
