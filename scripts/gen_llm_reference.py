#!/usr/bin/env python3
"""Record reference greedy generations of the GGUF test models with transformers.

The Rust parity tests (tests/llm_summarize.rs) feed the recorded `input_ids`
straight into tolk's quantized models and compare the greedy continuation and
the first step's top-5 logits with what transformers produced here.

transformers dequantizes the GGUF weights to fp32, while tolk multiplies with
the quantized blocks, so logits differ slightly: the tests check only the first
few greedy tokens and the first step's top-1 token, not every logit.

Regenerate (needs the models from scripts/fetch-test-models.sh):

    /work/pyenv/bin/python scripts/gen_llm_reference.py

Writes tests/fixtures/llm-reference/<model>.json. Python is never run by CI.
"""
import json
import pathlib
import sys

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

ROOT = pathlib.Path(__file__).resolve().parent.parent
MODELS = ROOT / "models" / "downloaded"
OUT = ROOT / "tests" / "fixtures" / "llm-reference"
NEW_TOKENS = 32

ARTICLE = (ROOT / "samples" / "de_article.txt").read_text(encoding="utf-8")

CASES = {
    "SmolLM2-135M-Instruct.Q4_1.gguf": {
        "chat": True,
        "prompts": [
            "What is the capital of France?",
            "Summarize in one sentence: The city council voted on Monday to build "
            "a new bridge over the river. Construction starts next spring and "
            "should take two years. The bridge will cost 40 million euros.",
        ],
    },
    "gemma-3-270m-q4_k_m.gguf": {
        "chat": False,
        "prompts": [
            "The capital of Germany is",
            # Over 512 tokens: exercises the sliding window of the local layers.
            ARTICLE + "\n\nEnglish summary:",
        ],
    },
}


def main() -> int:
    torch.manual_seed(0)
    OUT.mkdir(parents=True, exist_ok=True)
    for name, case in CASES.items():
        path = MODELS / name
        if not path.exists():
            print(f"missing {path}; run scripts/fetch-test-models.sh", file=sys.stderr)
            return 1
        tok = AutoTokenizer.from_pretrained(str(MODELS), gguf_file=name)
        model = AutoModelForCausalLM.from_pretrained(
            str(MODELS), gguf_file=name, dtype=torch.float32, attn_implementation="eager"
        )
        model.eval()
        records = []
        for prompt in case["prompts"]:
            if case["chat"]:
                ids = tok.apply_chat_template(
                    [{"role": "user", "content": prompt}], add_generation_prompt=True
                )
            else:
                ids = tok(prompt)["input_ids"]
            input_ids = torch.tensor([ids])
            with torch.no_grad():
                first = model(input_ids).logits[0, -1]
                top = torch.topk(first, 5)
                out = model.generate(
                    input_ids,
                    max_new_tokens=NEW_TOKENS,
                    do_sample=False,
                    num_beams=1,
                    repetition_penalty=1.0,
                    eos_token_id=None,  # record all NEW_TOKENS even past EOS
                    pad_token_id=tok.pad_token_id if tok.pad_token_id is not None else 0,
                )
            greedy = out[0, len(ids):].tolist()
            records.append(
                {
                    "prompt": prompt,
                    "chat": case["chat"],
                    "input_ids": list(map(int, ids)),
                    "greedy_ids": greedy,
                    "greedy_text": tok.decode(greedy),
                    "top5_ids": top.indices.tolist(),
                    "top5_logits": [round(float(x), 4) for x in top.values],
                }
            )
            print(name, len(ids), "prompt tokens ->", repr(tok.decode(greedy))[:120])
        stem = name.removesuffix(".gguf")
        (OUT / f"{stem}.json").write_text(
            json.dumps({"model": name, "transformers": __import__("transformers").__version__,
                        "new_tokens": NEW_TOKENS, "cases": records}, indent=1) + "\n",
            encoding="utf-8",
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
