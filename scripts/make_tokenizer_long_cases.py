#!/usr/bin/env python3
"""make_tokenizer_long_cases.py — long texts encoded by HF tokenizers, for
the tokenizer fixtures that make_tokenizer_fixtures.py wrote.

Why: lorac merges a BPE word in pieces (split where no merge can ever join)
and keeps the candidate merges of a long piece in sorted runs
(data/bpe_queue.h). Both only come into play on long words: thousands of
symbols with no place to split, which the short reference cases never have.
A SentencePiece-style model without a pre-tokenizer (Llama 2) makes the
whole text one word; a byte-level one makes a long run of letters one word.
These texts are such words, in several kinds (runs of one character,
letters of many merges, CJK, byte-fallback characters, a mix), and HF's
ids for them are the reference.

Writes tests/fixtures/tokenizers/<name>/cases-long.jsonl, one line per text:
    {"kind": ..., "text": ..., "ids": [...]}   (add_special_tokens=False)

Usage: pip install tokenizers; scripts/make_tokenizer_long_cases.py
Fixture and test use only: lorac itself never runs Python.
"""
import gzip
import json
import os
import random

from tokenizers import Tokenizer

DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "tokenizers")
NAMES = ("llama-spm", "llama-bpe", "qwen2", "phi-3")

# English letter frequencies (per mille), so that random letters make many merges.
LETTERS = ("e", 127), ("t", 91), ("a", 82), ("o", 75), ("i", 70), ("n", 67), ("s", 63), \
          ("h", 61), ("r", 60), ("d", 43), ("l", 40), ("c", 28), ("u", 28), ("m", 24), \
          ("w", 24), ("f", 22), ("g", 20), ("y", 20), ("p", 19), ("b", 15), ("v", 10), \
          ("k", 8), ("j", 2), ("x", 2), ("q", 1), ("z", 1)
CJK = "日本語中文文本的一是不了人我在有他这为之大来以个中上们到说国和地也子时道出而要于就下得可你年生自会那后能对着事其里所去行过家十用发天如然作方成者多日都三小军二无同么经法当起与好看学进种将还分此心前面又定见只主没公从"
MIX = ["ab", "the", "ing", "tion", "\u2581", "  ", "\u65e5\u672c", "12345", "\u00e9", "e\u0301",
       "\U0001F44D", "\t", "\n", "<0x41>", "<unk>", "<s>", "'s", "...", "\u00a0", "\u200b", "Zz", "x"]


def texts():
    rng = random.Random(20261202)
    letters = [c for c, _ in LETTERS]
    weights = [w for _, w in LETTERS]
    yield "spaces", " " * 5000 + "x" + "  \n " * 300 + " "
    yield "repeats", "a" * 3000 + "ab" * 1500 + "aab" * 1000 + "\u2581" * 500
    yield "letters", "".join(rng.choices(letters, weights, k=8000))
    yield "Letters", "".join(c.upper() if rng.random() < 0.1 else c for c in rng.choices(letters, weights, k=6000))
    yield "cjk", "".join(rng.choice(CJK) for _ in range(4000))
    yield "emoji", "".join(rng.choice("\U0001F44D\U0001F600\u2764\ufe0f\U0001F1E9\U0001F1EA\u00e9") for _ in range(2000))
    yield "mix", "".join(rng.choice(MIX) for _ in range(3000))
    words = ["".join(rng.choices(letters, weights, k=rng.randint(1, 9))) for _ in range(300)]
    yield "prose", " ".join(rng.choice(words) for _ in range(2000)) + ".\n"


def main():
    for name in NAMES:
        d = os.path.join(DIR, name)
        with gzip.open(os.path.join(d, "tokenizer.json.gz"), "rt", encoding="utf-8") as f:
            tok = Tokenizer.from_str(f.read())
        n = 0
        with open(os.path.join(d, "cases-long.jsonl"), "w", encoding="utf-8") as f:
            for kind, text in texts():
                ids = tok.encode(text, add_special_tokens=False).ids
                f.write(json.dumps({"kind": kind, "text": text, "ids": ids}, ensure_ascii=False) + "\n")
                n += len(ids)
        print("%s: %d ids" % (name, n))


if __name__ == "__main__":
    main()
