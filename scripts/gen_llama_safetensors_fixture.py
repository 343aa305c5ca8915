#!/usr/bin/env python3
"""Generate the tiny llama safetensors checkpoints and their reference outputs.

Two `LlamaForCausalLM` checkpoints with random weights, saved by
transformers' `save_pretrained` exactly as Hub repos hold them, sharing a
small byte-level BPE tokenizer trained here (SmolLM2's layout: digits split,
byte-level pre-tokenizer without prefix space, `<|endoftext|>`,
`<|im_start|>`, `<|im_end|>` as ids 0-2) and SmolLM2-Instruct's chat template:

- tests/fixtures/llama-tiny/: SmolLM2-style: tied embeddings, grouped-query
  attention (4 query heads, 2 KV heads), bf16 weights in one
  `model.safetensors`.
- tests/fixtures/llama3-tiny/: Llama-3-style: untied `lm_head`, `rope_scaling`
  of type llama3 (its smoothing band covers several frequencies), an explicit
  `head_dim` (24) that is not hidden/heads, f16 weights sharded into several
  files with `model.safetensors.index.json`, and a `generation_config.json`
  with a list of EOS ids.

Every RMSNorm weight is random and far from 1, so a norm mapped to the wrong
place changes the output. Reference outputs (tests/fixtures/llama-tiny-reference.json)
come from transformers in float32 on the *saved* (bf16/f16) weights read back
as float32: for each prompt (plain text, a chat-template rendering, a longer
text) the input ids, the logits of the last prompt position, and 12 greedy
tokens (argmax at each step, no EOS stop), plus the rendered chat prompt.

Regenerate (needs Python 3.11 and scripts/requirements.txt; no network):
    python3 -m venv .venv && .venv/bin/pip install -r scripts/requirements.txt
    .venv/bin/python scripts/gen_llama_safetensors_fixture.py
Output is deterministic for a given seed and library versions (recorded in
the reference file).
"""
import json
import shutil
import tempfile
from pathlib import Path

import tokenizers
import torch
import transformers
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"
REF = FIXTURES / "llama-tiny-reference.json"
SEED = 20261201
STEPS = 12
VOCAB = 384

# SmolLM2-135M-Instruct's chat template (its GGUF's tokenizer.chat_template).
CHAT_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}"
    "{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

CORPUS = """In Kazakhstan, the anger of the people against the government broke out in recent days.
The protests began at the beginning of the week, when the price cap for gas was lifted and the price doubled.
The city council approved the new budget on Monday. The budget raises spending on schools and public transport.
Critics said the budget ignores rising rents. The weather was sunny all week.
The mayor defended the budget as a plan for families and schools.
Summarize the following article in 2 sentences. Write the summary in English.
More than 1000 people were injured, of whom some 400 were taken to hospitals in 2022.
"""

PROMPTS = [
    "The city council approved the new budget on Monday.",
    None,  # the chat-template rendering, filled in below
    "The protests began at the beginning of the week, when the price cap for gas was lifted "
    "and the price doubled. More than 1000 people were injured, of whom some 400 were taken to "
    "hospitals. The mayor defended the budget as a plan for families and schools.",
]


def build_tokenizer() -> PreTrainedTokenizerFast:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB,
        special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(CORPUS.splitlines(), trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        unk_token="<|endoftext|>",
        pad_token="<|im_end|>",
        additional_special_tokens=["<|im_start|>", "<|im_end|>"],
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def randomize(model: LlamaForCausalLM, gen: torch.Generator) -> None:
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 1:  # RMSNorm weights: far from 1
                p.copy_(0.5 + torch.rand(p.shape, generator=gen) * 1.5)
            else:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.25)


def reference(folder: Path, prompts: list[list[int]]) -> list[dict]:
    model = LlamaForCausalLM.from_pretrained(folder, dtype=torch.float32)
    model.eval()
    out = []
    with torch.no_grad():
        for ids in prompts:
            seq = list(ids)
            logits = model(torch.tensor([seq])).logits[0, -1]
            first = logits.tolist()
            for _ in range(STEPS):
                nxt = int(model(torch.tensor([seq])).logits[0, -1].argmax())
                seq.append(nxt)
            out.append(
                {
                    "input_ids": ids,
                    "last_logits": [round(x, 6) for x in first],
                    "greedy_ids": seq[len(ids):],
                }
            )
    return out


def save(model: LlamaForCausalLM, tokenizer, folder: Path, dtype, **kwargs) -> None:
    if folder.exists():
        shutil.rmtree(folder)
    model.to(dtype).save_pretrained(folder, safe_serialization=True, **kwargs)
    tokenizer.save_pretrained(folder)
    # Files a Hub repo has but tolk does not read.
    for extra in ["special_tokens_map.json", "chat_template.jinja"]:
        (folder / extra).unlink(missing_ok=True)
    # Keep the template inside tokenizer_config.json, as Hub repos of this age do.
    cfg_path = folder / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["chat_template"] = CHAT_TEMPLATE
    cfg_path.write_text(json.dumps(cfg, indent=2, ensure_ascii=False) + "\n")


def main() -> None:
    torch.manual_seed(SEED)
    gen = torch.Generator().manual_seed(SEED)
    tokenizer = build_tokenizer()
    vocab = len(tokenizer)
    chat = tokenizer.apply_chat_template(
        [{"role": "user", "content": "Summarize: The city council approved the new budget on Monday."}],
        add_generation_prompt=True,
        tokenize=False,
    )
    prompts = [p if p is not None else chat for p in PROMPTS]
    prompt_ids = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]

    smol_cfg = LlamaConfig(
        vocab_size=vocab,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        rms_norm_eps=1e-5,
        rope_theta=10000.0,
        tie_word_embeddings=True,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=2,
    )
    smol = LlamaForCausalLM(smol_cfg)
    randomize(smol, gen)
    smol_dir = FIXTURES / "llama-tiny"
    save(smol, tokenizer, smol_dir, torch.bfloat16)

    l3_cfg = LlamaConfig(
        vocab_size=vocab,
        hidden_size=64,
        intermediate_size=96,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=24,
        max_position_embeddings=512,
        rms_norm_eps=1e-6,
        rope_theta=10000.0,
        rope_scaling={
            "rope_type": "llama3",
            "factor": 8.0,
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "original_max_position_embeddings": 64,
        },
        tie_word_embeddings=False,
        bos_token_id=1,
        eos_token_id=[2, 0],
    )
    l3 = LlamaForCausalLM(l3_cfg)
    randomize(l3, gen)
    l3.generation_config = GenerationConfig(bos_token_id=1, eos_token_id=[2, 0])
    l3_dir = FIXTURES / "llama3-tiny"
    save(l3, tokenizer, l3_dir, torch.float16, max_shard_size="100KB")

    ref = {
        "generator": "scripts/gen_llama_safetensors_fixture.py",
        "versions": {
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "tokenizers": tokenizers.__version__,
        },
        "steps": STEPS,
        "chat_prompt": chat,
        "prompts": prompts,
        "models": {
            "llama-tiny": reference(smol_dir, prompt_ids),
            "llama3-tiny": reference(l3_dir, prompt_ids),
        },
    }
    REF.write_text(json.dumps(ref, indent=1, ensure_ascii=False) + "\n")
    for d in [smol_dir, l3_dir]:
        print(d, sorted((p.name, p.stat().st_size) for p in d.iterdir()))
    print(REF, REF.stat().st_size)


if __name__ == "__main__":
    main()
