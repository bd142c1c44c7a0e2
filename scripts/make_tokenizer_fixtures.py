#!/usr/bin/env python3
"""make_tokenizer_fixtures.py — tokenizer.json fixtures from llama.cpp's test vocabularies.

Why: lorac's tokenizer (data/tokenizer.c) must give the same ids as Hugging
Face `tokenizers` for the model families it supports. llama.cpp ships small
GGUF files that hold only the vocabulary of real models (llama-bpe = Llama 3,
qwen2, llama-spm = Llama 2, phi-3) and reference cases (.inp texts, .out ids
made with HF). This script rebuilds a tokenizer.json + tokenizer_config.json
for each, in the layout the HF originals use for that family, checks in Python
that HF tokenizers reproduces every .out case, and writes what
tests/test_tokenizer.c needs:

  tests/fixtures/tokenizers/<name>/tokenizer.json.gz   (gzip: the vocabularies are large)
  tests/fixtures/tokenizers/<name>/tokenizer_config.json
  tests/fixtures/tokenizers/<name>/cases.jsonl   one line per case:
      {"source": "ref"|"hard", "text": ..., "ids": [...]   (add_special_tokens=False),
       "ids_special": [...] (add_special_tokens=True), "decoded": ... (HF decode of ids)}
      source "random": strings drawn from a pool of troublesome pieces (seeded)
  tests/fixtures/tokenizers/<name>/variant-<v>.json + cases-<v>.jsonl
      the same vocabulary with other top-level parts (the JSON object's keys
      replace those of tokenizer.json): the constructs other families use
      (Metaspace, GPT-2's ByteLevel regex, add_prefix_space, added-token flags),
      so they are checked against HF without another copy of a vocabulary.

Usage:
  pip download --no-deps --no-binary :all: llama-cpp-python==0.3.36
  tar xzf llama_cpp_python-0.3.36.tar.gz
  pip install gguf tokenizers
  scripts/make_tokenizer_fixtures.py llama_cpp_python-0.3.36/vendor/llama.cpp/models

Fixture and test use only: lorac itself never runs Python.
"""
import gzip
import json
import os
import random
import sys

import gguf
from tokenizers import Tokenizer

OUT_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "tokenizers")

# Pre-tokenizer regexes as the HF tokenizer.json of each family has them.
LLAMA3_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|"
                r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}|"
               r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")

# GGUF token types
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6

# Hard cases of our own (on top of llama.cpp's .inp cases). Special-token
# strings of every family are mixed in: each tokenizer matches only its own.
HARD_CASES = [
    "",
    "日本語のテキストと中文文本，还有한국어 텍스트。",
    "👨‍👩‍👧‍👦 family, 🏳️‍🌈 flag, 👍🏽 thumbs, 🇩🇪🇫🇷 flags",
    "e\u0301 a\u0308 o\u0302\u0323 Cafe\u0301 vs Café, Å vs A\u030a, \u1e9b\u0323",
    "def f(x):\n\tif x:\n\t\treturn [i for i in range(10)]\n\t# comment\n",
    "int main(void) {\n        return 0;                                    \n}\n",
    " " * 100 + "x" + "\t" * 40 + "y" + "\n" * 30 + "z",
    "1234567890 12345678901234567890 3.14159 1,000,000 0x1F 2024-01-01",
    "I'm they'll we've she'd it's DON'T You'RE isn't y'all O'Neil",
    "Hello<|endoftext|>world <|im_start|>user\nhi<|im_end|>\n",
    "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>",
    "<s>[INST] hello [/INST] reply</s> <s> x </s>",
    "<|user|>\nWhat is 2+2?<|end|>\n<|assistant|>\n4<|end|>\n<|endoftext|>",
    "<|assistant|>   spaced  <|end|>  after",
    "\u00a0non-breaking\u00a0space\u2009thin\u3000ideographic\u200bzero-width",
    "\U0001F600\U0001F601 \U0001D4B3 \U00010348 \uFFFD \uFEFFbom",
    "mixed\r\nline\rendings\n\n\n\n",
    "ÀÉÎÕÜ àéîõü ßẞ ǅ ﬁ ﬀ Ⅻ ① ＡＢＣ",
    "\u0645\u0631\u062d\u0628\u0627 \u05e9\u05dc\u05d5\u05dd \u0928\u092e\u0938\u094d\u0924\u0947 \u0e2a\u0e27\u0e31\u0e2a\u0e14\u0e35",
    "a" * 300,
    "The quick brown fox jumps over the lazy dog. " * 5,
    "   leading and trailing   ",
    "\u2581already\u2581has\u2581metaspace",
    "tabs\tand\u000bvertical\u000cform\u0085next",
    "😀" * 20,
    "x\U000E0100 \U000E0041",
    "ĠĠ Ċ bytes-looking ÃĤ",
    "  <|im_start|>  x  <|im_end|>  y<|im_end|>z <|endoftext|> ",
    "Café Cafe\u0301 Cafés fox foxes the fox. _fox",
    "\u2581\u2581 leading metaspace and  double  spaces",
    "a\u180e*D \u180e\u180e x\u0085y",
]


def random_cases(n=150, seed=13):
    """Random strings from a pool of troublesome pieces (every kind of
    space, combining marks, contractions in odd case, digits of other
    scripts, emoji sequences, special-token fragments, byte-looking and
    metaspace characters): what a differential fuzz run found bugs with."""
    rng = random.Random(seed)
    pool = (list(" \t\n\r\x0b\x0c") + ["\u0085", "\u00a0", "\u1680", "\u2000", "\u200b", "\u2028",
                                          "\u3000", "\u180e", "\ufeff"]
            + list("aAzZ'sStTmMlLdDrReEvV09_-.,!?\"()[]{}<>|/\\#@$%^&*+=~`;:")
            + ["'s", "'S", "'ll", "'LL", "'ve", "\u017f", "\u212a", "\u0130", "\u00df"]
            + ["\u0301", "\u0308", "\u0323", "\u093f", "\u0e31"] + list("日本語中文한국어ขอบคุณ")
            + ["😀", "👨‍👩‍👧", "🏳️‍🌈", "👍🏽", "\U0001F1E9\U0001F1EA", "\U000E0100"]
            + list("0123456789") + ["١٢٣", "½", "Ⅻ", "²", "①"]
            + ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|begin_of_text|>", "<|eot_id|>", "<s>",
               "</s>", "<unk>", "<|assistant|>", "<|end|>", "<|", "|>", "<0x0A>", "\u2581", "\u2581\u2581",
               "\u0120", "\u010a"]
            + ["hello", "world", "The", " the", "token", "ization", "  ", "    ", "\t\t", "\n\n"])
    return ["".join(rng.choice(pool) for _ in range(rng.randint(0, 40))) for _ in range(n)]


def field(reader, key):
    f = reader.fields.get(key)
    if f is None:
        return None
    if f.types[0] == gguf.GGUFValueType.ARRAY:
        if f.types[1] == gguf.GGUFValueType.STRING:
            return [bytes(f.parts[i]).decode("utf-8") for i in f.data]
        return [f.parts[i].tolist()[0] for i in f.data]
    if f.types[0] == gguf.GGUFValueType.STRING:
        return bytes(f.parts[f.data[0]]).decode("utf-8")
    return f.parts[f.data[0]].tolist()[0]


def added(tid, content, special=True, rstrip=False, lstrip=False):
    return {"id": tid, "content": content, "single_word": False, "lstrip": lstrip,
            "rstrip": rstrip, "normalized": False, "special": special}


def template(bos):
    return {"type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": bos[0], "type_id": 0}},
                       {"Sequence": {"id": "A", "type_id": 0}}],
            "pair": [{"SpecialToken": {"id": bos[0], "type_id": 0}},
                     {"Sequence": {"id": "A", "type_id": 0}},
                     {"SpecialToken": {"id": bos[0], "type_id": 1}},
                     {"Sequence": {"id": "B", "type_id": 1}}],
            "special_tokens": {bos[0]: {"id": bos[0], "ids": [bos[1]], "tokens": [bos[0]]}}}


def byte_level_json(reader, name):
    tokens = field(reader, "tokenizer.ggml.tokens")
    types = field(reader, "tokenizer.ggml.token_type")
    merges = field(reader, "tokenizer.ggml.merges")
    vocab, added_tokens = {}, []
    for i, (t, ty) in enumerate(zip(tokens, types)):
        if ty == NORMAL:
            vocab[t] = i
        elif ty == CONTROL:
            added_tokens.append(added(i, t))
        # USER_DEFINED in qwen2 are "[PADnnn]" fillers of the GGUF: left out
    llama3 = name == "llama-bpe"
    regex = LLAMA3_REGEX if llama3 else QWEN2_REGEX
    bos = ("<|begin_of_text|>", 128000)
    post_bl = {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False, "use_regex": True}
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added_tokens,
        "normalizer": None if llama3 else {"type": "NFC"},
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": regex}, "behavior": "Isolated", "invert": False},
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}]},
        "post_processor": ({"type": "Sequence", "processors": [post_bl, template(bos)]} if llama3
                           else {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False,
                                 "use_regex": False}),
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False,
                  "ignore_merges": llama3, "vocab": vocab,
                  # llama 3 in the newer [a, b] form, qwen2 in the older "a b" form: lorac reads both
                  "merges": [m.split(" ", 1) for m in merges] if llama3 else merges},
    }


def spm_merges(tokens, types, scores):
    """Merges of a SentencePiece BPE vocabulary the way HF's converter derives
    them: every split of a piece into two pieces of the vocabulary, ordered by
    the score of the merged piece (higher first), then by the ids of the parts."""
    vocab = {t: i for i, (t, ty) in enumerate(zip(tokens, types)) if ty == NORMAL}
    merges = []
    for piece, pid in vocab.items():
        local = []
        for k in range(1, len(piece)):
            left, right = piece[:k], piece[k:]
            if left in vocab and right in vocab:
                local.append((left, right, scores[pid]))
        local.sort(key=lambda m: (vocab[m[0]], vocab[m[1]]))
        merges.extend(local)
    merges.sort(key=lambda m: m[2], reverse=True)
    return [[m[0], m[1]] for m in merges]


def spm_json(reader, name):
    tokens = field(reader, "tokenizer.ggml.tokens")
    types = field(reader, "tokenizer.ggml.token_type")
    scores = field(reader, "tokenizer.ggml.scores")
    phi3 = name == "phi-3"
    vocab, added_tokens = {}, []
    for i, (t, ty) in enumerate(zip(tokens, types)):
        if ty == UNKNOWN and t.startswith("[PAD"):
            continue  # phi-3's GGUF fillers
        if i < 32000:
            vocab[t] = i
        if ty in (UNKNOWN, CONTROL, USER_DEFINED) and not t.startswith("[PAD"):
            # Phi-3's chat tokens and </s> eat the whitespace after them (rstrip)
            rstrip = phi3 and (t == "</s>" or (i > 32000))
            added_tokens.append(added(i, t, special=(ty != USER_DEFINED), rstrip=rstrip))
    merges = spm_merges(tokens, types, scores)
    # the Prepend/Replace normalizer form of Llama 2, Mistral v0.1 and Phi-3 (the
    # Metaspace pre-tokenizer form does not prepend to " Hello" and misses the .out cases)
    normalizer = {"type": "Sequence", "normalizers": [
        {"type": "Prepend", "prepend": "\u2581"},
        {"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"}]}
    pre = None
    decoder = {"type": "Sequence", "decoders": [
        {"type": "Replace", "pattern": {"String": "\u2581"}, "content": " "},
        {"type": "ByteFallback"}, {"type": "Fuse"},
        {"type": "Strip", "content": " ", "start": 1, "stop": 0}]}
    return {
        "version": "1.0", "truncation": None, "padding": None,
        "added_tokens": added_tokens,
        "normalizer": normalizer,
        "pre_tokenizer": pre,
        "post_processor": template(("<s>", 1)),
        "decoder": decoder,
        "model": {"type": "BPE", "dropout": None, "unk_token": "<unk>", "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "fuse_unk": True, "byte_fallback": True,
                  "ignore_merges": False, "vocab": vocab,
                  "merges": merges if phi3 else [" ".join(m) for m in merges]},
    }


VARIANTS = {
    "llama-spm": {
        # Mistral v0.3 / newer Llama-style files: Metaspace pre-tokenizer, no normalizer
        "metaspace": {"normalizer": None,
                      "pre_tokenizer": {"type": "Metaspace", "replacement": "\u2581",
                                        "prepend_scheme": "first", "split": False},
                      "decoder": {"type": "Metaspace", "replacement": "\u2581",
                                  "prepend_scheme": "first", "split": False}},
        "metaspace-split": {"normalizer": None,
                            "pre_tokenizer": {"type": "Metaspace", "replacement": "\u2581",
                                              "add_prefix_space": True}},
    },
    "qwen2": {
        # GPT-2 style: ByteLevel splits with its own regex, no normalizer
        "gpt2-bytelevel": {"normalizer": None,
                           "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False,
                                             "trim_offsets": True, "use_regex": True}},
        "prefix-space": {"pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": True,
                                           "trim_offsets": True, "use_regex": True}},
        # added-token flags: lstrip, rstrip, single_word, and a non-special token
        # matched after NFC ("normalized": true)
        "added-flags": {"added_tokens": [
            {"id": 151643, "content": "<|endoftext|>", "single_word": False, "lstrip": True,
             "rstrip": False, "normalized": False, "special": True},
            {"id": 151644, "content": "<|im_start|>", "single_word": False, "lstrip": False,
             "rstrip": True, "normalized": False, "special": True},
            {"id": 151645, "content": "<|im_end|>", "single_word": True, "lstrip": True,
             "rstrip": True, "normalized": False, "special": True},
            {"id": 151646, "content": "Caf\u00e9", "single_word": False, "lstrip": False,
             "rstrip": False, "normalized": True, "special": False},
            {"id": 151647, "content": "fox", "single_word": True, "lstrip": False,
             "rstrip": False, "normalized": True, "special": False}]},
    },
}

CONFIGS = {
    "llama-bpe": {"bos_token": "<|begin_of_text|>", "eos_token": "<|end_of_text|>",
                  "tokenizer_class": "PreTrainedTokenizerFast"},
    "qwen2": {"bos_token": None, "eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>",
              "add_bos_token": False, "tokenizer_class": "Qwen2Tokenizer"},
    "llama-spm": {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>",
                  "add_bos_token": True, "add_eos_token": False, "legacy": True,
                  "tokenizer_class": "LlamaTokenizer"},
    "phi-3": {"bos_token": "<s>", "eos_token": "<|endoftext|>", "unk_token": "<unk>",
              "add_bos_token": False, "add_eos_token": False, "legacy": False,
              "tokenizer_class": "LlamaTokenizer"},
}


def read_reference(models, name):
    base = os.path.join(models, "ggml-vocab-%s.gguf" % name)
    with open(base + ".inp", encoding="utf-8", newline="") as f:
        texts = f.read().split("\n__ggml_vocab_test__\n")[:-1]
    with open(base + ".out", encoding="utf-8") as f:
        outs = [[int(x) for x in line.split()] for line in f.read().split("\n")][:len(texts)]
    assert len(texts) == len(outs), name
    return texts, outs


def write_cases(path, tok, ref_texts):
    with open(path, "w", encoding="utf-8") as f:
        for source, items in (("ref", ref_texts), ("hard", HARD_CASES), ("random", random_cases())):
            for t in items:
                ids = tok.encode(t, add_special_tokens=False).ids
                row = {"source": source, "text": t, "ids": ids,
                       "ids_special": tok.encode(t, add_special_tokens=True).ids,
                       "decoded": tok.decode(ids, skip_special_tokens=False)}
                f.write(json.dumps(row, ensure_ascii=False) + "\n")


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: make_tokenizer_fixtures.py LLAMA_CPP_MODELS_DIR")
    models = sys.argv[1]
    for name in ("llama-bpe", "qwen2", "llama-spm", "phi-3"):
        reader = gguf.GGUFReader(os.path.join(models, "ggml-vocab-%s.gguf" % name))
        tj = byte_level_json(reader, name) if name in ("llama-bpe", "qwen2") else spm_json(reader, name)
        text = json.dumps(tj, ensure_ascii=False, separators=(",", ":"))
        tok = Tokenizer.from_str(text)
        texts, outs = read_reference(models, name)
        bad = 0
        for t, want in zip(texts, outs):
            got = tok.encode(t, add_special_tokens=False).ids
            if got != want:
                bad += 1
                print("%s: mismatch on %r\n  want %s\n  got  %s" % (name, t, want, got))
        if bad:
            sys.exit("%s: %d of %d reference cases differ" % (name, bad, len(texts)))
        d = os.path.join(OUT_DIR, name)
        os.makedirs(d, exist_ok=True)
        with gzip.GzipFile(os.path.join(d, "tokenizer.json.gz"), "wb", mtime=0) as f:
            f.write(text.encode("utf-8"))
        with open(os.path.join(d, "tokenizer_config.json"), "w", encoding="utf-8") as f:
            json.dump(CONFIGS[name], f, indent=2)
            f.write("\n")
        write_cases(os.path.join(d, "cases.jsonl"), tok, texts)
        for v, patch in VARIANTS.get(name, {}).items():
            vt = dict(tj)
            vt.update(patch)
            vtok = Tokenizer.from_str(json.dumps(vt, ensure_ascii=False))
            with open(os.path.join(d, "variant-%s.json" % v), "w", encoding="utf-8") as f:
                json.dump(patch, f, ensure_ascii=False, indent=1)
                f.write("\n")
            write_cases(os.path.join(d, "cases-%s.jsonl" % v), vtok, texts)
        print("%s: %d reference cases match, %d hard cases written" % (name, len(texts), len(HARD_CASES)))


if __name__ == "__main__":
    main()
