#!/usr/bin/env python3
"""Generate the tiny Marian test model and its reference outputs.

The fixture is a real MarianMT checkpoint in the exact file formats of the
Helsinki-NLP opus-mt repos (config.json, generation_config.json,
model.safetensors, source.spm, target.spm, vocab.json, tokenizer_config.json),
with random weights and real, tiny SentencePiece vocabularies trained here.
Reference outputs come from `transformers` (MarianTokenizer + generate), and
the Rust tests assert that tolk reproduces them token for token.

Hard to pass by accident:
- every LayerNorm gamma/beta, every bias and final_logits_bias are random and non-zero;
- vocab.json ids are a random permutation, unrelated to the spm ids;
- a few spm pieces are missing from vocab.json (they map to <unk>, as in MarianTokenizer);
- one test sentence has characters the spm does not know (emoji, CJK);
- some outputs stop at EOS, some run to max_length (checked below).

Regenerate (needs Python 3.11 and scripts/requirements.txt; no network beyond PyPI):
    python3 -m venv .venv && .venv/bin/pip install -r scripts/requirements.txt
    .venv/bin/python scripts/gen_marian_fixture.py
It rewrites tests/fixtures/marian-tiny/ and tests/fixtures/marian-tiny-reference.json.
Generation is deterministic for a given seed and library versions (recorded in
the reference file).
"""
import io
import json
import os
import random
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import sentencepiece as spm
import torch
import transformers
from transformers import GenerationConfig, MarianConfig, MarianMTModel, MarianTokenizer

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "fixtures" / "marian-tiny"
REF = ROOT / "tests" / "fixtures" / "marian-tiny-reference.json"
SEED = int(os.environ.get("TOLK_FIXTURE_SEED", "20261129"))
MAX_LENGTH = 20  # small, so that some outputs hit it
EOS_BOOST = float(os.environ.get("TOLK_FIXTURE_EOS_BOOST", "20.0"))

GERMAN_EXTRA = """Der Bundestag hat am Donnerstag ein neues Gesetz beschlossen.
Die Regierung will die Preise für Strom und Gas begrenzen.
Viele Menschen in der Stadt haben gegen die Entscheidung protestiert.
Das Wetter wird morgen sonnig, aber kalt.
Die Polizei meldete mehrere Verletzte nach dem Unfall auf der Autobahn.
Im Süden des Landes fällt heute viel Schnee.
Die Schüler schreiben am Freitag eine wichtige Prüfung.
Der Präsident besuchte gestern die Hauptstadt und sprach mit Journalisten.
Die Wirtschaft wächst in diesem Jahr langsamer als erwartet.
Über 1000 Menschen nahmen an der Demonstration teil.
Straße, Größe, Fuß und Maß schreibt man mit ß.
"""

ENGLISH = """In Kazakhstan, the anger of the people against the government broke out in recent days.
The protests began at the beginning of the week, when the price cap for gas was lifted and the price doubled.
The protests extend to many parts of the country, but the largest city, Almaty, became the center of the fighting.
According to the authorities, dozens of demonstrators and at least 13 security forces have been killed.
More than 1000 people were injured, of whom some 400 were taken to hospitals.
The president dismissed the government and declared a state of emergency for the whole country.
Russia announced that it would send so-called peacekeeping troops.
The parliament passed a new law on Thursday.
The government wants to limit the prices of electricity and gas.
Many people in the city protested against the decision.
The weather will be sunny tomorrow, but cold.
The police reported several injured after the accident on the motorway.
The economy is growing more slowly this year than expected.
The president visited the capital yesterday and spoke with journalists.
"""

TEST_SENTENCES = [
    "Die Regierung will die Preise begrenzen.",
    "In Kasachstan entbrannte in den vergangenen Tagen die Wut des Volkes gegen die Regierung.",
    "Über 1000 Menschen wurden verletzt, 13 Sicherheitskräfte getötet.",
    "Straße und Größe 😀 東京 ok!",
    "Ja.",
    "Nein, danke.",
    "Die Polizei meldete mehrere Verletzte.",
    "Der Präsidentenpalast wurde in Brand gesteckt und der Flughafen von Almaty wurde von den Demonstranten besetzt.",
]

TOKENIZER_CASES = TEST_SENTENCES + [
    "„Anführungszeichen“ und «Guillemets» sowie 'einfache' und \"gerade\" Zeichen.",
    "Zahlen: 3,14 und 1.000.000 sowie 13. Januar 2022 um 10:30 Uhr.",
    "Siehe https://example.org/pfad?x=1&y=2 oder schreib an info@example.de.",
    "Tab\tund  doppelte   Leerzeichen  ",
    "   führende Leerzeichen",
    "Emoji 👍🏽 und 🇩🇪 Flagge.",
    "ÄÖÜ äöü ß ẞ é è ñ ç",
    "Ｆｕｌｌｗｉｄｔｈ ｆｏｒｍｓ und ① ② ③ (NFKC).",
    "",
]


def train_spm(text: str, vocab_size: int) -> bytes:
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(text.splitlines()),
        model_writer=model,
        vocab_size=vocab_size,
        model_type="unigram",
        character_coverage=1.0,
        normalization_rule_name="nmt_nfkc",
        # Marian's spm models have no bos/eos/pad in the spm itself; the ids live in vocab.json.
        unk_id=0,
        bos_id=-1,
        eos_id=-1,
        pad_id=-1,
        hard_vocab_limit=False,
        seed_sentencepiece_size=100000,
        num_threads=1,
        minloglevel=2,
    )
    return model.getvalue()


def pieces_of(model_bytes: bytes) -> list:
    sp = spm.SentencePieceProcessor(model_proto=model_bytes)
    return [sp.id_to_piece(i) for i in range(sp.get_piece_size())]


def randomize(model: MarianMTModel, rng: torch.Generator) -> None:
    """Random, large-ish weights so the greedy choices have clear margins."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "embed_positions" in name:
                continue
            if name.endswith("layer_norm.weight"):
                p.copy_(1.0 + 0.3 * torch.randn(p.shape, generator=rng))
            elif name.endswith(".bias"):
                p.copy_(0.2 * torch.randn(p.shape, generator=rng))
            elif "shared" in name or "embed_tokens" in name:
                # Large embeddings let the input tokens steer the output.
                p.copy_(1.5 * torch.randn(p.shape, generator=rng))
            else:
                p.copy_(0.3 * torch.randn(p.shape, generator=rng))
        bias = 0.5 * torch.randn(model.final_logits_bias.shape, generator=rng)
        # Make EOS likely enough that some outputs stop before max_length.
        bias[0, 0] += EOS_BOOST
        model.final_logits_bias.copy_(bias)


def main() -> None:
    random.seed(SEED)
    torch.manual_seed(SEED)
    rng = torch.Generator().manual_seed(SEED)

    german = (ROOT / "samples" / "de_article.txt").read_text(encoding="utf-8") + GERMAN_EXTRA
    source_model = train_spm(german, 220)
    target_model = train_spm(ENGLISH, 180)

    # Joint vocab as in opus-mt: </s>=0, <unk>=1, shuffled pieces, <pad> last.
    pieces = []
    for p in pieces_of(source_model) + pieces_of(target_model):
        if p not in pieces and p not in ("<unk>", "<s>", "</s>", "<pad>"):
            pieces.append(p)
    # A few source pieces are left out: MarianTokenizer maps them to <unk>.
    dropped = [p for p in pieces_of(source_model)[5:] if len(p) > 2][:3]
    pieces = [p for p in pieces if p not in dropped]
    random.shuffle(pieces)
    vocab = {"</s>": 0, "<unk>": 1}
    for p in pieces:
        vocab[p] = len(vocab)
    vocab["<pad>"] = len(vocab)
    vocab_size = len(vocab)
    pad_id = vocab["<pad>"]

    tmp = Path(tempfile.mkdtemp())
    (tmp / "source.spm").write_bytes(source_model)
    (tmp / "target.spm").write_bytes(target_model)
    (tmp / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False, indent=1), encoding="utf-8")
    tok_cfg = {"source_lang": "de", "target_lang": "en", "model_max_length": 512, "separate_vocabs": False}
    (tmp / "tokenizer_config.json").write_text(json.dumps(tok_cfg, indent=1))
    tokenizer = MarianTokenizer.from_pretrained(str(tmp))

    config = MarianConfig(
        vocab_size=vocab_size,
        decoder_vocab_size=vocab_size,
        d_model=32,
        encoder_layers=2,
        decoder_layers=2,
        encoder_attention_heads=4,
        decoder_attention_heads=4,
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
        max_position_embeddings=128,
        activation_function="swish",
        scale_embedding=True,
        pad_token_id=pad_id,
        eos_token_id=0,
        decoder_start_token_id=pad_id,
        forced_eos_token_id=0,
        share_encoder_decoder_embeddings=True,
        tie_word_embeddings=True,
        dropout=0.0,
        attention_dropout=0.0,
        activation_dropout=0.0,
    )
    model = MarianMTModel(config).eval()
    randomize(model, rng)
    gen = GenerationConfig(
        bad_words_ids=[[pad_id]],
        decoder_start_token_id=pad_id,
        eos_token_id=0,
        forced_eos_token_id=0,
        max_length=MAX_LENGTH,
        num_beams=4,
        pad_token_id=pad_id,
    )
    model.generation_config = gen
    model.save_pretrained(str(tmp), safe_serialization=True)

    def generate(texts, num_beams):
        batch = tokenizer(texts, return_tensors="pt", padding=True)
        with torch.no_grad():
            out = model.generate(**batch, num_beams=num_beams, max_length=MAX_LENGTH, do_sample=False,
                                 output_scores=True, return_dict_in_generate=True)
        ids = [[int(t) for t in row] for row in out.sequences]
        if num_beams == 1:
            # Log-probability of each chosen token (after the logits processors),
            # so the tests check the numbers, not only the argmax.
            logp = [torch.log_softmax(s.float(), dim=-1) for s in out.scores]
            scores = [[float(logp[step][row, ids[row][step + 1]]) for step in range(len(logp))
                       if step + 1 < len(ids[row])] for row in range(len(ids))]
        else:
            scores = [float(x) for x in out.sequences_scores]
        return ids, scores

    def strip_pad(ids):
        # generate() pads shorter rows of a batch with pad_token_id after EOS.
        out = list(ids)
        while out and out[-1] == pad_id:
            out.pop()
        return out

    cases = []
    for text in TEST_SENTENCES:
        enc = tokenizer(text)
        (greedy,), (greedy_scores,) = generate([text], 1)
        (beam,), (beam_score,) = generate([text], 4)
        cases.append({
            "text": text,
            "input_ids": enc["input_ids"],
            "greedy_ids": greedy,
            "greedy_text": tokenizer.decode(greedy, skip_special_tokens=True),
            "greedy_logprobs": greedy_scores,
            "beam4_ids": beam,
            "beam4_text": tokenizer.decode(beam, skip_special_tokens=True),
            "beam4_score": beam_score,
        })
    batch_greedy = [strip_pad(r) for r in generate(TEST_SENTENCES, 1)[0]]
    batch_beam = [strip_pad(r) for r in generate(TEST_SENTENCES, 4)[0]]
    # A padded batch must give what each sentence gives alone; if transformers
    # itself disagrees (numerics), the fixture is not usable: try another seed.
    for c, g, b in zip(cases, batch_greedy, batch_beam):
        if g != c["greedy_ids"] or b != c["beam4_ids"]:
            sys.exit(f"batch/single mismatch for {c['text']!r}: change TOLK_FIXTURE_SEED")

    ends = [c["greedy_ids"][-1] == 0 and len(c["greedy_ids"]) < MAX_LENGTH for c in cases]
    full = [len(c["greedy_ids"]) == MAX_LENGTH for c in cases]
    beam_ends = [len(c["beam4_ids"]) < MAX_LENGTH for c in cases]
    if not (any(ends) and any(full) and any(beam_ends)):
        sys.exit(f"need outputs that stop at EOS and that run to max_length (greedy eos={ends}, "
                 f"full={full}, beam eos={beam_ends}): change TOLK_FIXTURE_SEED")
    unk_id = vocab["<unk>"]
    if not any(unk_id in c["input_ids"] for c in cases):
        sys.exit("no test sentence maps to <unk>")

    # The whole German sample and each of its paragraphs, as users feed them.
    sample = (ROOT / "samples" / "de_article.txt").read_text(encoding="utf-8")
    sample_cases = [sample] + [p.strip() for p in sample.split("\n\n") if p.strip()]
    tok_cases = []
    for text in TOKENIZER_CASES + sample_cases:
        pieces = tokenizer.spm_source.encode(text, out_type=str)
        ids = tokenizer(text)["input_ids"]
        tok_cases.append({"text": text, "pieces": pieces, "ids": ids,
                          "decoded": tokenizer.decode(ids, skip_special_tokens=True)})

    reference = {
        "generated_by": "scripts/gen_marian_fixture.py",
        "versions": {"transformers": transformers.__version__, "torch": torch.__version__,
                     "sentencepiece": spm.__version__},
        "seed": SEED,
        "max_length": MAX_LENGTH,
        "pad_id": pad_id,
        "dropped_from_vocab": dropped,
        "cases": cases,
        "tokenizer_cases": tok_cases,
    }

    if OUT.exists():
        shutil.rmtree(OUT)
    OUT.mkdir(parents=True)
    for name in ["config.json", "generation_config.json", "model.safetensors", "source.spm",
                 "target.spm", "vocab.json", "tokenizer_config.json"]:
        shutil.copy(tmp / name, OUT / name)
    REF.write_text(json.dumps(reference, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    shutil.rmtree(tmp)
    print(f"wrote {OUT} and {REF}")
    for c in cases:
        print(len(c["greedy_ids"]), len(c["beam4_ids"]), repr(c["greedy_text"])[:80])


if __name__ == "__main__":
    main()
