#!/usr/bin/env python3
"""make_gguf_spm_fixtures.py — SentencePiece-style ("llama" model) GGUF
vocabularies and what llama.cpp makes of them, for tests/test_gguf_spm.c.

Run with the llama-cpp-python venv (llama.cpp is the reference):

    /work/venv-llama/bin/python scripts/make_gguf_spm_fixtures.py \
        --gguf-py /tmp/gx/llama_cpp_python-0.3.36/vendor/llama.cpp/gguf-py

Writes tests/fixtures/gguf_spm/<name>.gguf.gz (vocab-only GGUF files written
with gguf-py: general.architecture llama, the llama.* hyper-parameters
llama.cpp reads before it looks at vocab_only, the tokenizer.ggml.* keys, and
a zero token_embd.weight [n_vocab, 8] so that `lorac preprocess` can take the
file as base_model)
and <name>.json.gz: {"file", "add_bos", "add_eos", "add_space_prefix",
"cases": [{"text", "ids", "ids_special", "decoded", "decoded_special"}]},
where ids = llama_tokenize(text, add_special=false, parse_special=true),
ids_special the same with add_special=true, and decoded(_special) =
llama_detokenize(those ids, remove_special=false, unparse_special=true) as
UTF-8 text (the raw bytes; every case decodes to valid UTF-8).

The files, from tests/fixtures/tokenizers/ (HF tokenizer.json):
  llama-spm-ranked  Llama 2 as SentencePiece's converter lays it out: score
                    = -(rank of the first merge making the token), single
                    characters below every merge, bytes and specials 0;
                    types unknown (<unk>), control (<s>, </s>), byte, normal;
                    add_bos_token absent (llama.cpp: true).
  llama-spm-flat    Llama 2 (its first 8000 ids, every single character and
                    the added tokens, renumbered: a smaller vocabulary,
                    for size) as convert_hf_to_gguf.py writes it without
                    tokenizer.model: every score -1000 (all ties: merging
                    goes leftmost first), <unk> control; add_bos true.
  llama-spm-noprefix  the flat one (same 8000-id cut) with add_space_prefix false, add_bos
                    false, add_eos true.
  phi-3             Phi-3 (ranked scores, the same 8000-id cut) with its added tokens past 32000:
                    control when HF marks them special, else user-defined;
                    <|placeholder1..3|> made user-defined to cover that type
                    next to control ones; add_bos false; eos <|endoftext|>.
  phi-3-named       the same with general.name "Phi3 Mini fixture": llama.cpp
                    then makes its special tokens rstrip (but <unk>, <s>,
                    <|endoftext|>); add_bos true.
"""
import argparse
import ctypes
import gzip
import json
import os

import numpy as np
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
TOK = os.path.join(ROOT, "tests", "fixtures", "tokenizers")
OUT = os.path.join(ROOT, "tests", "fixtures", "gguf_spm")

EDGE = [
    "", " ", "  ", "   x", "x   ", " leading", "trailing ", "multiple   spaces  inside",
    "\t", "tab\tseparated\tvalues", "\n", "line one\nline two\n\nline four", "\r\n windows\r\n",
    "emoji 😀👍🏽 family 👨‍👩‍👧", "CJK 日本語のテキスト 中文 한국어", "Ostrava", "lantern",
    " Ostrava lantern Ostrava", "12345678901234567890", "3.14159 2,718 1e-9", "!!!???...,,,;;;",
    "((([[[{{{}}}]]])))", "a\u0300\u0301 combining", "\u200b zero width \u2060",
    "\U0001F9EC\U0001F9EB rare emoji", "\U00010348 gothic \U0001D11E music",
    "\u0007\u001b control bytes", "private \ue000\uf8ff", "<s>", "</s>", "<unk>",
    "<s>Hello</s>", "Hello <s> world </s> end", "a<s>b", " <s> ", "<s><s>", "<unk> x <unk>",
    "<|user|>\nHi<|end|>\n<|assistant|>", "<|end|>", " <|end|> ", "<|end|>   \n\tx", "<|user|>  hello",
    "<s> x</s>  y<unk>  z<|endoftext|>  w", "<|placeholder1|>x",
    "<|system|>You are kind.<|end|><|user|>hello<|end|>", "<|endoftext|>", "<|end",
    "▁already▁escaped", " ▁ ", "<0x0A>", "&amp; &#x27; <b>html</b>", "snake_case_name = 42",
    "naïve café façade", "ÄÖÜ äöü ß", "Привет мир", "مرحبا بالعالم", "שלום", "नमस्ते",
    "tab\t \tmix \t", "end with newline\n", "    indented code():\n        return 1",
]


def load_json(path):
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return json.load(f)


def texts(name):
    out = []
    with open(os.path.join(TOK, name, "cases.jsonl"), encoding="utf-8") as f:
        for line in f:
            out.append(json.loads(line)["text"])
    seen, res = set(), []
    for t in out + EDGE:
        if t not in seen:
            seen.add(t)
            res.append(t)
    return res


def vocab_of(tj, ranked, phi3, keep):
    """tokens, scores, types of a Llama-2-style tokenizer.json; keep > 0: only
    its first keep ids, every single character and the added tokens, renumbered
    in id order (a smaller vocabulary with the same characters, for size)."""
    import gguf
    TT = gguf.TokenType
    vocab = tj["model"]["vocab"]
    merges = tj["model"]["merges"]
    n_base = max(vocab.values()) + 1
    added = {a["id"]: a for a in tj["added_tokens"]}
    n = max([n_base] + [i + 1 for i in added])
    tokens = [None] * n
    for t, i in vocab.items():
        tokens[i] = t
    for i, a in added.items():
        tokens[i] = a["content"]
    assert all(t is not None for t in tokens)
    if keep:
        sub = [i for i, t in enumerate(tokens) if i < keep or len(t) == 1 or i in added]
        tokens = [tokens[i] for i in sub]
        new = {i: k for k, i in enumerate(sub)}
        added = {new[i]: a for i, a in added.items()}
        n_base = sum(1 for i in sub if i < n_base)
    rank = {}
    for k, m in enumerate(merges):
        a, b = m.split(" ", 1) if isinstance(m, str) else m
        rank.setdefault(a + b, k)
    scores, types = [], []
    for i, t in enumerate(tokens):
        is_byte = len(t) == 6 and t.startswith("<0x") and t.endswith(">")
        if i in added:
            a = added[i]
            if t == "<unk>":
                ty = TT.UNKNOWN if ranked else TT.CONTROL
            elif a["special"] and not (phi3 and t.startswith("<|placeholder") and t[-3] in "123"):
                ty = TT.CONTROL
            else:
                ty = TT.USER_DEFINED
            sc = 0.0 if (ranked and i < n_base) else -1000.0
        elif is_byte:
            ty, sc = TT.BYTE, 0.0 if ranked else -1000.0
        else:
            ty = TT.NORMAL
            if not ranked:
                sc = -1000.0
            elif t in rank:
                sc = -float(rank[t])
            else:
                sc = -float(len(merges) + i)  # a single character: never made by a merge
        scores.append(sc)
        types.append(int(ty))
    return tokens, scores, types


def write_gguf(path, tokens, scores, types, keys):
    keys = dict(keys)
    import gguf
    w = gguf.GGUFWriter(path, "llama")
    w.add_name(keys.pop("general.name", "spm vocab fixture"))
    w.add_context_length(4096)
    w.add_embedding_length(8)
    w.add_block_count(1)
    w.add_feed_forward_length(16)
    w.add_rope_dimension_count(4)
    w.add_head_count(2)
    w.add_head_count_kv(2)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_vocab_size(len(tokens))
    w.add_tokenizer_model("llama")
    w.add_tokenizer_pre("default")
    w.add_token_list(tokens)
    w.add_token_scores(scores)
    w.add_token_types(types)
    for k, v in keys.items():
        if isinstance(v, bool):
            w.add_bool(k, v)
        else:
            w.add_uint32(k, v)
    # zeros: lorac reads a base model's config (vocabulary rows) from token_embd
    w.add_tensor("token_embd.weight", np.zeros((len(tokens), 8), dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def reference(path, cases):
    import llama_cpp
    llm = llama_cpp.Llama(model_path=path, vocab_only=True, verbose=False)
    vocab = llama_cpp.llama_model_get_vocab(llm._model.model)

    def tok(b, add):
        n = len(b) + 8
        buf = (llama_cpp.llama_token * n)()
        k = llama_cpp.llama_tokenize(vocab, b, len(b), buf, n, add, True)
        assert k >= 0
        return list(buf[:k])

    def detok(ids):
        arr = (llama_cpp.llama_token * max(1, len(ids)))(*ids)
        cap = 64 + 16 * len(ids)
        buf = ctypes.create_string_buffer(cap)
        k = llama_cpp.llama_detokenize(vocab, arr, len(ids), buf, cap, False, True)
        assert k >= 0
        return buf.raw[:k].decode("utf-8")

    out = []
    for t in cases:
        b = t.encode("utf-8")
        ids, ids_s = tok(b, False), tok(b, True)
        out.append({"text": t, "ids": ids, "ids_special": ids_s,
                    "decoded": detok(ids), "decoded_special": detok(ids_s)})
    del llm
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--gguf-py", help="gguf-py directory (llama.cpp's, for the same version)")
    args = ap.parse_args()
    if args.gguf_py:
        sys.path.insert(0, args.gguf_py)
    os.makedirs(OUT, exist_ok=True)
    llama = load_json(os.path.join(TOK, "llama-spm", "tokenizer.json.gz"))
    phi3 = load_json(os.path.join(TOK, "phi-3", "tokenizer.json.gz"))
    K = "tokenizer.ggml."
    plans = [
        ("llama-spm-ranked", llama, True, False, "llama-spm", 0,
         {K + "bos_token_id": 1, K + "eos_token_id": 2, K + "unknown_token_id": 0}),
        ("llama-spm-flat", llama, False, False, "llama-spm", 8000,
         {K + "bos_token_id": 1, K + "eos_token_id": 2, K + "unknown_token_id": 0,
          K + "add_bos_token": True, K + "add_eos_token": False}),
        ("llama-spm-noprefix", llama, False, False, "llama-spm", 8000,
         {K + "bos_token_id": 1, K + "eos_token_id": 2, K + "unknown_token_id": 0,
          K + "padding_token_id": 0, K + "add_bos_token": False, K + "add_eos_token": True,
          K + "add_space_prefix": False}),
        ("phi-3", phi3, True, True, "phi-3", 8000,
         {K + "bos_token_id": 1, K + "eos_token_id": 32000, K + "unknown_token_id": 0,
          K + "padding_token_id": 32000, K + "add_bos_token": False,
          K + "add_eos_token": False}),
        ("phi-3-named", phi3, True, True, "phi-3", 8000,
         {"general.name": "Phi3 Mini fixture", K + "bos_token_id": 1, K + "eos_token_id": 32000,
          K + "unknown_token_id": 0, K + "add_bos_token": True}),
    ]
    for name, tj, ranked, is_phi3, src, keep, keys in plans:
        tokens, scores, types = vocab_of(tj, ranked, is_phi3, keep)
        raw = os.path.join(OUT, name + ".gguf")
        write_gguf(raw, tokens, scores, types, keys)
        cases = reference(raw, texts(src))
        with open(raw, "rb") as f, gzip.GzipFile(raw + ".gz", "wb", 9, mtime=0) as g:
            g.write(f.read())
        os.remove(raw)
        meta = {"file": name + ".gguf.gz",
                "add_bos": keys.get(K + "add_bos_token", True),
                "add_eos": keys.get(K + "add_eos_token", False),
                "add_space_prefix": keys.get(K + "add_space_prefix", True),
                "cases": cases}
        text = json.dumps(meta, ensure_ascii=False, separators=(",", ":")) + "\n"
        with gzip.GzipFile(os.path.join(OUT, name + ".json.gz"), "wb", 9, mtime=0) as g:
            g.write(text.encode("utf-8"))
        print(f"{name}: {len(tokens)} tokens, {len(cases)} cases")


if __name__ == "__main__":
    main()
