#!/usr/bin/env python3
"""make_bnb4_fixture.py — a real bitsandbytes "-bnb-4bit" checkpoint of tests/fixtures/tiny-llama.

Loads tiny-llama/model with transformers + BitsAndBytesConfig(load_in_4bit, nf4, double quant)
on the CPU (bitsandbytes >= 0.45 quantizes there), saves it with save_pretrained (the layout the
Hub's "-bnb-4bit" models have), and records the loss PEFT computes with adapter_init on rows 0-1 of
train.jsonl, so lorac's reader of such checkpoints is checked against the real thing.

    python scripts/make_bnb4_fixture.py [--fixture tests/fixtures/tiny-llama] [--out tests/fixtures/tiny-llama-bnb4]
Needs torch, transformers, peft, bitsandbytes.
"""
import argparse
import json
import os

import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM, BitsAndBytesConfig


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    here = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures")
    ap.add_argument("--fixture", default=os.path.join(here, "tiny-llama"))
    ap.add_argument("--out", default=os.path.join(here, "tiny-llama-bnb4"))
    a = ap.parse_args()
    q = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                           bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype=torch.float32)
    m = AutoModelForCausalLM.from_pretrained(os.path.join(a.fixture, "model"), quantization_config=q,
                                             device_map="cpu", dtype=torch.float32)
    os.makedirs(a.out, exist_ok=True)
    m.save_pretrained(os.path.join(a.out, "model"))
    rows = [json.loads(l) for l in open(os.path.join(a.fixture, "train.jsonl"))][:2]
    ids = torch.tensor([r["input_ids"] for r in rows])
    labels = torch.tensor([r["labels"] for r in rows])
    pm = PeftModel.from_pretrained(m, os.path.join(a.fixture, "adapter_init"))
    with torch.no_grad():
        logits = pm(input_ids=ids).logits.float()
    shift = logits[:, :-1].reshape(-1, logits.shape[-1])
    tgt = labels[:, 1:].reshape(-1)
    loss = torch.nn.functional.cross_entropy(shift.double(), tgt, ignore_index=-100).item()
    meta = {"source": "tiny-llama/model quantized by bitsandbytes (nf4, blocksize 64, double quant)",
            "adapter": "tiny-llama/adapter_init", "rows": [0, 1], "loss": loss,
            "made_with": {"torch": torch.__version__,
                          "bitsandbytes": __import__("bitsandbytes").__version__,
                          "transformers": __import__("transformers").__version__,
                          "peft": __import__("peft").__version__}}
    with open(os.path.join(a.out, "meta.json"), "w") as f:
        json.dump(meta, f, indent=1)
    print(json.dumps(meta))


if __name__ == "__main__":
    main()
