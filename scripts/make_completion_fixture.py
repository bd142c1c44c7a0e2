#!/usr/bin/env python3
"""make_completion_fixture.py — expected rows of a `type: completion` dataset.

Why: lorac tokenizes completion datasets itself (data/completion.h); its rows
must be the ones Axolotl trains on. This script takes the llama-bpe (Llama 3)
tokenizer fixture of tests/fixtures/tokenizers/, loads it with transformers'
AutoTokenizer and applies Axolotl's completion strategy to a few texts:
tokenizer(text, truncation=True, max_length=64 * sequence_len), EOS appended
unless the ids end in EOS or reached max_length (prompt_tokenizers._tokenize),
then split into sequence_len chunks (prompt_strategies/completion.py).
It writes, for tests/test_completion.c:

  tests/fixtures/completion/train.jsonl        rows {"body": text}
  tests/fixtures/completion/expected-<L>.jsonl rows {"input_ids": [...]} in order,
                                               for sequence_len L (labels = input_ids)

Usage: scripts/make_completion_fixture.py   (needs transformers)
"""
import gzip
import json
import os
import shutil
import tempfile

from transformers import AutoTokenizer

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures")
SRC = os.path.join(ROOT, "tokenizers", "llama-bpe")
OUT = os.path.join(ROOT, "completion")
SEQ_LENS = (8, 2, 4096)  # chunks; 64×2 = 128 truncates the long row; no split

TEXTS = [
    "Hello world",
    "The quick brown fox jumps over the lazy dog. Again, and again!",
    "Ünïcödé — ½ months, 日本語のテキスト and emoji 🙂",
    "  leading spaces and a tab\there\nand a newline",
    "ends with the EOS token<|end_of_text|>",
    " ".join(f"word{i}" for i in range(150)),  # > 128 tokens
]


def main():
    tmp = tempfile.mkdtemp()
    try:
        with gzip.open(os.path.join(SRC, "tokenizer.json.gz"), "rb") as f:
            open(os.path.join(tmp, "tokenizer.json"), "wb").write(f.read())
        shutil.copy(os.path.join(SRC, "tokenizer_config.json"), tmp)
        tok = AutoTokenizer.from_pretrained(tmp)
        os.makedirs(OUT, exist_ok=True)
        with open(os.path.join(OUT, "train.jsonl"), "w", encoding="utf-8") as f:
            for t in TEXTS:
                f.write(json.dumps({"body": t}, ensure_ascii=False) + "\n")
        for L in SEQ_LENS:
            max_length = 64 * L
            with open(os.path.join(OUT, f"expected-{L}.jsonl"), "w") as f:
                for t in TEXTS:
                    ids = tok(t, truncation=True, max_length=max_length)["input_ids"]
                    if ids[-1] != tok.eos_token_id and len(ids) < max_length:
                        ids.append(tok.eos_token_id)
                    for i in range(0, len(ids), L):
                        f.write(json.dumps({"input_ids": ids[i:i + L]}) + "\n")
    finally:
        shutil.rmtree(tmp)


if __name__ == "__main__":
    main()
