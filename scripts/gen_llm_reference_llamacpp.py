#!/usr/bin/env python3
"""Record llama.cpp's greedy continuations of the reference prompts.

llama.cpp multiplies with the same quantized blocks as candle (activations
quantized to 8 bits), so it is a closer reference for tolk's quantized path
than transformers, which dequantizes to fp32. Reads the prompts (token ids)
from tests/fixtures/llm-reference/<model>.json (see gen_llm_reference.py)
and writes tests/fixtures/llm-reference/<model>.llama-cpp.json.

Needs llama-cpp-python (`pip install llama-cpp-python`; it builds llama.cpp
from source, about 10 minutes on 2 cores) and the models from
scripts/fetch-test-models.sh:

    python scripts/gen_llm_reference_llamacpp.py
"""
import json
import pathlib
import sys

from llama_cpp import Llama, __version__

ROOT = pathlib.Path(__file__).resolve().parent.parent
MODELS = ROOT / "models" / "downloaded"
FIXTURES = ROOT / "tests" / "fixtures" / "llm-reference"
NAMES = ["SmolLM2-135M-Instruct.Q4_1.gguf", "gemma-3-270m-q4_k_m.gguf"]


def main() -> int:
    for name in NAMES:
        stem = name.removesuffix(".gguf")
        ref = json.loads((FIXTURES / f"{stem}.json").read_text(encoding="utf-8"))
        llm = Llama(model_path=str(MODELS / name), n_ctx=2048, n_threads=2, verbose=False, seed=0)
        cases = []
        for case in ref["cases"]:
            llm.reset()
            out = []
            for tok in llm.generate(case["input_ids"], temp=0.0, top_k=1, repeat_penalty=1.0, reset=True):
                out.append(int(tok))
                if len(out) == ref["new_tokens"]:
                    break
            cases.append({"input_ids": case["input_ids"], "greedy_ids": out})
            print(name, "->", out[:12])
        (FIXTURES / f"{stem}.llama-cpp.json").write_text(
            json.dumps({"model": name, "llama_cpp_python": __version__, "cases": cases}, indent=1) + "\n",
            encoding="utf-8",
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
