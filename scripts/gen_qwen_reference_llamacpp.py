#!/usr/bin/env python3
"""Record llama.cpp's greedy continuations on the real Qwen2.5-Coder 1.5B file.

For the opt-in agreement test `qwen2_5_1_5b_tracks_llama_cpp`
(tests/llm_qwen.rs). Two chat prompts in the model's own ChatML format (a
short English question, and a summary request for samples/de_article.txt)
are tokenized by llama.cpp itself (special tokens parsed), and 128 greedy
tokens are generated (no repetition penalty). Writes
tests/fixtures/llm-reference/qwen2.5-coder-1.5b-instruct-q4_k_m.llama-cpp.json
with the prompt texts, their ids and the continuations.

Needs llama-cpp-python (`pip install llama-cpp-python==0.3.36`; it builds
llama.cpp from source, about 10 minutes on 2 cores) and the model from
`TOLK_FETCH_LARGE=1 scripts/fetch-test-models.sh`:

    python scripts/gen_qwen_reference_llamacpp.py [MODEL_DIR]
"""
import json
import pathlib
import sys

from llama_cpp import Llama, __version__

ROOT = pathlib.Path(__file__).resolve().parent.parent
NAME = "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"
FIXTURES = ROOT / "tests" / "fixtures" / "llm-reference"
NEW_TOKENS = 128
SYSTEM = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."


def chat(user: str) -> str:
    return (
        f"<|im_start|>system\n{SYSTEM}<|im_end|>\n"
        f"<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n"
    )


def main() -> int:
    models = pathlib.Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "models" / "downloaded"
    article = (ROOT / "samples" / "de_article.txt").read_text(encoding="utf-8").strip()
    prompts = [
        chat("Explain in three sentences why the sky is blue."),
        chat(
            f"{article}\n\nThe article above is written in German. "
            "Summarize it in English in 2 sentences. Write only English."
        ),
    ]
    llm = Llama(model_path=str(models / NAME), n_ctx=2048, n_threads=2, verbose=False, seed=0)
    cases = []
    for text in prompts:
        ids = llm.tokenize(text.encode("utf-8"), add_bos=False, special=True)
        llm.reset()
        out = []
        for tok in llm.generate(ids, temp=0.0, top_k=1, repeat_penalty=1.0, reset=True):
            out.append(int(tok))
            if len(out) == NEW_TOKENS:
                break
        cases.append({"text": text, "input_ids": ids, "greedy_ids": out})
        print(len(ids), "prompt tokens ->", llm.detokenize(out).decode("utf-8", "replace")[:200])
    stem = NAME.removesuffix(".gguf")
    (FIXTURES / f"{stem}.llama-cpp.json").write_text(
        json.dumps({"model": NAME, "llama_cpp_python": __version__, "cases": cases}, indent=1) + "\n",
        encoding="utf-8",
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
