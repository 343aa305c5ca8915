#!/usr/bin/env python3
"""Generate the PyTorch checkpoint fixtures (tests/fixtures/pytorch/).

Written by real `torch.save`, in both of its layouts:
- zip (torch >= 1.6, the default) and
- legacy (`_use_new_zipfile_serialization=False`, the layout of the 2020
  Helsinki-NLP opus-mt `pytorch_model.bin` files).

Files:
- tensors-zip.pt, tensors-legacy.pt: a state dict exercising the reader:
  shared storages (tied weights, views at an offset), non-contiguous views
  (a transpose, a step slice), f16/bf16/f64/i64/bool, a 0-d tensor, an empty
  tensor, an nn.Parameter; tensors.json holds what `torch.load` returns
  (values as float lists) for the Rust tests to compare.
- marian-tiny-legacy.bin: tests/fixtures/marian-tiny as a 2020 opus-mt
  checkpoint (legacy layout, the 2020 key set: `model.*` with the sinusoidal
  `embed_positions` tables stored, `final_logits_bias`, the embeddings tied to
  `model.shared.weight` in one storage, no `lm_head`). transformers loads it
  and reproduces tests/fixtures/marian-tiny-reference.json (checked below).
- t5-tiny.bin (zip) and llama-tiny-legacy.bin (legacy): the T5 and llama
  fixtures' weights as PyTorch checkpoints.
- malicious-zip.pt, malicious-legacy.pt (GLOBAL posix.system + REDUCE) and
  malicious-eval.pt (builtins.eval): pickles that run `touch <marker>` when
  loaded by Python's pickle; proven below (with torch.load(weights_only=False)
  in a scratch folder) so the Rust test that they are refused means something.
  The marker is MALICIOUS_MARKER, an absolute path in /tmp.

Regenerate (Python 3.11, scripts/requirements.txt):
    .venv/bin/python scripts/gen_pytorch_fixtures.py
"""
import json
import os
import tempfile
from pathlib import Path

import torch
from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parent.parent
FIX = ROOT / "tests" / "fixtures"
OUT = FIX / "pytorch"
MALICIOUS_MARKER = "/tmp/tolk-malicious-pickle-ran"


def save(obj, path, legacy):
    torch.save(obj, path, _use_new_zipfile_serialization=not legacy)


def tensors():
    g = torch.Generator().manual_seed(7)
    base = torch.randn(4, 6, generator=g)
    flat = torch.arange(10, dtype=torch.float32) * 0.5
    sd = {
        "f32": base,
        "tied": base,  # the same tensor twice: one storage
        "transposed": base.t(),  # non-contiguous view of the same storage
        "step": base[:, ::2],  # strided view
        "row_view": base[2],  # view at an offset
        "offset_1d": flat[3:8],  # view at an offset of another storage
        "f16": torch.randn(3, 5, generator=g).to(torch.float16),
        "bf16": torch.randn(2, 7, generator=g).to(torch.bfloat16),
        "f64": torch.randn(3, generator=g, dtype=torch.float64),
        "i64": torch.tensor([[1, -2, 3], [4, 5, -6]], dtype=torch.int64),
        "bool": torch.tensor([True, False, True]),
        "scalar": torch.tensor(3.25),
        "empty": torch.zeros(0, 4),
        "param": torch.nn.Parameter(torch.randn(2, 2, generator=g)),
    }
    reference = {
        name: {
            "shape": list(t.shape),
            "dtype": str(t.dtype).replace("torch.", ""),
            "values": t.detach().double().flatten().tolist(),
        }
        for name, t in sd.items()
    }
    return sd, reference


def marian_legacy_state_dict():
    """The tiny Marian weights under the 2020 opus-mt key set."""
    from transformers import MarianMTModel

    model = MarianMTModel.from_pretrained(str(FIX / "marian-tiny")).eval()
    sd = model.state_dict()
    shared = sd["model.shared.weight"]
    out = {}
    for name, t in sd.items():
        if name == "lm_head.weight":
            continue  # 2020 checkpoints have no lm_head: it is tied to shared
        if name.endswith("embed_tokens.weight"):
            out[name] = shared  # the same storage, saved once
        else:
            out[name] = t
    for side in ("encoder", "decoder"):
        key = f"model.{side}.embed_positions.weight"
        assert key in out, f"{key} missing from the state dict"
    assert "final_logits_bias" in out
    return out


def check_marian(path):
    """transformers loads the legacy file and reproduces the reference ids."""
    import shutil

    from transformers import MarianMTModel, MarianTokenizer

    ref = json.loads((FIX / "marian-tiny-reference.json").read_text())
    with tempfile.TemporaryDirectory() as tmp:
        for f in (FIX / "marian-tiny").iterdir():
            if f.name != "model.safetensors":
                shutil.copy(f, tmp)
        shutil.copy(path, Path(tmp) / "pytorch_model.bin")
        model = MarianMTModel.from_pretrained(tmp, use_safetensors=False).eval()
        tok = MarianTokenizer.from_pretrained(tmp)
        for case in ref["cases"]:
            batch = tok([case["text"]], return_tensors="pt")
            with torch.no_grad():
                greedy = model.generate(**batch, num_beams=1, do_sample=False,
                                        max_length=ref["max_length"])
                beam = model.generate(**batch, num_beams=4, do_sample=False,
                                      max_length=ref["max_length"])
            assert greedy[0].tolist() == case["greedy_ids"], case["text"]
            assert beam[0].tolist() == case["beam4_ids"], case["text"]


class _System:
    def __reduce__(self):
        return (os.system, (f"touch {MALICIOUS_MARKER}",))


class _Eval:
    def __reduce__(self):
        return (eval, (f"__import__('os').system('touch {MALICIOUS_MARKER}')",))


def write_malicious(path, payload, legacy):
    save({"weight": torch.zeros(2), "evil": payload}, path, legacy)
    # Prove the payload runs under Python's pickle.
    if os.path.exists(MALICIOUS_MARKER):
        os.remove(MALICIOUS_MARKER)
    torch.load(path, weights_only=False)
    assert os.path.exists(MALICIOUS_MARKER), f"{path} did not run its payload"
    os.remove(MALICIOUS_MARKER)


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    sd, reference = tensors()
    save(sd, OUT / "tensors-zip.pt", legacy=False)
    save(sd, OUT / "tensors-legacy.pt", legacy=True)
    for name in ("tensors-zip.pt", "tensors-legacy.pt"):
        loaded = torch.load(OUT / name, weights_only=True)
        for key, want in reference.items():
            got = loaded[key]
            assert list(got.shape) == want["shape"], (name, key)
            assert got.detach().double().flatten().tolist() == want["values"], (name, key)
        assert loaded["tied"].data_ptr() == loaded["f32"].data_ptr(), "tied storage lost"
    (OUT / "tensors.json").write_text(json.dumps(reference, indent=1) + "\n")

    marian = OUT / "marian-tiny-legacy.bin"
    save(marian_legacy_state_dict(), marian, legacy=True)
    check_marian(marian)

    save(load_file(FIX / "t5-tiny" / "model.safetensors"), OUT / "t5-tiny.bin", legacy=False)
    save(load_file(FIX / "llama-tiny" / "model.safetensors"), OUT / "llama-tiny-legacy.bin",
         legacy=True)

    write_malicious(OUT / "malicious-zip.pt", _System(), legacy=False)
    write_malicious(OUT / "malicious-legacy.pt", _System(), legacy=True)
    write_malicious(OUT / "malicious-eval.pt", _Eval(), legacy=False)
    print(f"wrote {OUT} (torch {torch.__version__})")


if __name__ == "__main__":
    main()
