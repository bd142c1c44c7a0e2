#!/usr/bin/env python3
"""make_gguf_export_fixtures.py - what llama.cpp's own converter writes for the tiny fixtures,
for tests/test_gguf_export.c to compare `lorac export-gguf` with.

Runs convert_hf_to_gguf.py (llama.cpp vendored by the llama-cpp-python 0.3.36 sdist:
`pip download --no-deps --no-binary llama-cpp-python llama-cpp-python==0.3.36`, unpacked; pass
its vendor/llama.cpp as --llama-cpp) in this process on each case below, and writes
tests/fixtures/gguf_export/<case>.json:
  {"case", "outtype", "kv": [[key, type, value], ...] (type as gguf-py names it; arrays as
   [ "ARRAY", elemtype ] with their length and the FNV-1a 64 of their values' bytes),
   "tensors": [[name, [ne0, ne1, ...], type, fnv1a64 of the data bytes as hex], ...]}
The tiny models have no tokenizer: set_vocab is replaced by a no-op for them (the converter
cannot run without one otherwise). Case `chat` is configs/quickstart_chat/model (llama, a
1024-token byte-level BPE built like Qwen2.5): its pre-tokenizer hash is unknown to the
converter, so get_vocab_base_pre is made to return "qwen2" (the name lorac gives its regex); with no tokenizer.model
the converter falls through to its gpt2 vocab (_set_vocab_sentencepiece is made to raise the
FileNotFoundError it raises there, without needing sentencepiece installed).
Cases lora-<arch>: convert_lora_to_gguf.py on tiny-<arch>/adapter_step3 (--base the tiny
model). Cases vocab-<tok>: --vocab-only on tiny-llama's config (vocab_size of the tokenizer) with
tests/fixtures/tokenizers/<tok> (real Llama 3, Qwen2, Llama 2, Phi-3 tokenizers; spm-bpe, a
small SentencePiece model with its tokenizer.model, read by the converter's real
_set_vocab_sentencepiece, spm-bpe-pad, the same with vocab_size 3 past it, and spm-bpe-json,
the same without tokenizer.model and without
tokenizer_config.json's add_prefix_space, which transformers cannot load without it): the tokenizer.*
keys only. Variants llama3rope / linrope are tiny-llama with rope_scaling llama3 / linear in config.json.

Usage: /work/venv-torch/bin/python scripts/make_gguf_export_fixtures.py --llama-cpp DIR
Needs torch, transformers, numpy, sentencepiece, protobuf (the converter's own needs).
"""
import argparse, json, os, shutil, sys, tempfile, runpy, importlib, pkgutil

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIX = os.path.join(ROOT, "tests", "fixtures")


def fnv(b: bytes) -> str:
    h = 0xcbf29ce484222325
    for x in b:
        h ^= x
        h = (h * 0x100000001b3) & 0xffffffffffffffff
    return "%016x" % h


def describe(path, case, outtype):
    import gguf
    r = gguf.GGUFReader(path)
    kv = []
    for k, f in r.fields.items():
        if k.startswith("GGUF."):
            continue
        t = f.types[0]
        if t == gguf.GGUFValueType.ARRAY:
            et = f.types[-1] if len(f.types) > 1 else t
            vals = f.contents()
            if et == gguf.GGUFValueType.STRING:
                raw = b"".join(len(v.encode()).to_bytes(8, "little") + v.encode() for v in vals)
            else:
                raw = b"".join(bytes(f.parts[i]) for i in f.data)
            kv.append([k, ["ARRAY", et.name], {"n": len(vals), "fnv": fnv(raw)}])
        else:
            kv.append([k, t.name, f.contents()])
    tensors = [[t.name, [int(x) for x in t.shape], t.tensor_type.name, fnv(bytes(t.data.tobytes()))]
               for t in r.tensors]
    return {"case": case, "outtype": outtype, "kv": kv, "tensors": tensors}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--llama-cpp", required=True)
    ap.add_argument("--out", default=os.path.join(FIX, "gguf_export"))
    a = ap.parse_args()
    conv = os.path.abspath(a.llama_cpp)
    sys.path.insert(0, conv)
    sys.path.insert(1, os.path.join(conv, "gguf-py"))
    import conversion
    import conversion.base as base
    for m in pkgutil.iter_modules(conversion.__path__):
        try:
            importlib.import_module("conversion." + m.name)
        except Exception:
            pass

    def walk(c):
        yield c
        for s in c.__subclasses__():
            yield from walk(s)
    orig = {c: c.__dict__["set_vocab"] for c in walk(base.TextModel) if "set_vocab" in c.__dict__}
    orig_pre = base.TextModel.get_vocab_base_pre

    real_spm = base.TextModel._set_vocab_sentencepiece

    def no_spm(self):  # what it does without tokenizer.model, with sentencepiece not installed
        raise FileNotFoundError("tokenizer.model")
    base.TextModel._set_vocab_sentencepiece = no_spm

    def no_vocab(on):
        for c, f in orig.items():
            c.set_vocab = (lambda self: None) if on else f

    tmp = tempfile.mkdtemp()
    os.makedirs(a.out, exist_ok=True)
    cases = []
    for arch in ("llama", "mistral", "qwen2", "qwen3"):
        cases.append((arch, os.path.join(FIX, "tiny-" + arch, "model"), True))
    for name, rs in (("llama3rope", {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                     "high_freq_factor": 4.0,
                                     "original_max_position_embeddings": 32}),
                     ("linrope", {"rope_type": "linear", "factor": 2.0})):
        d = os.path.join(tmp, name)
        os.makedirs(d)
        src = os.path.join(FIX, "tiny-llama", "model")
        cfg = json.load(open(os.path.join(src, "config.json")))
        cfg["rope_parameters"] = dict(rs, rope_theta=500000.0)
        json.dump(cfg, open(os.path.join(d, "config.json"), "w"), indent=2)
        shutil.copy(os.path.join(src, "model.safetensors"), d)
        cases.append((name, d, True))
    cases.append(("chat", os.path.join(ROOT, "configs", "quickstart_chat", "model"), False))
    for case, d, nv in cases:
        for outtype in ("f32", "f16", "bf16", "q8_0"):
            if case != "llama" and outtype in ("f16", "bf16") :
                continue
            no_vocab(nv)
            base.TextModel.get_vocab_base_pre = (lambda self, tok: "qwen2") if case == "chat" else orig_pre
            out = os.path.join(tmp, f"{case}-{outtype}.gguf")
            sys.argv = ["convert_hf_to_gguf.py", d, "--outtype", outtype, "--outfile", out]
            try:
                runpy.run_path(os.path.join(conv, "convert_hf_to_gguf.py"), run_name="__main__")
            except SystemExit as e:
                if e.code:
                    raise
            js = describe(out, case, outtype)
            with open(os.path.join(a.out, f"{case}-{outtype}.json"), "w") as f:
                json.dump(js, f, indent=1)
            print("wrote", case, outtype, len(js["tensors"]), "tensors")
    no_vocab(False)
    for arch in ("llama", "qwen2"):
        for outtype in ("f32", "q8_0"):
            out = os.path.join(tmp, f"lora-{arch}-{outtype}.gguf")
            sys.argv = ["convert_lora_to_gguf.py", "--base", os.path.join(FIX, "tiny-" + arch, "model"),
                        "--outtype", outtype, "--outfile", out,
                        os.path.join(FIX, "tiny-" + arch, "adapter_step3")]
            try:
                runpy.run_path(os.path.join(conv, "convert_lora_to_gguf.py"), run_name="__main__")
            except SystemExit as e:
                if e.code:
                    raise
            js = describe(out, "lora-" + arch, outtype)
            with open(os.path.join(a.out, f"lora-{arch}-{outtype}.json"), "w") as f:
                json.dump(js, f, indent=1)
            print("wrote lora", arch, outtype, len(js["tensors"]), "tensors")
    base.TextModel.get_vocab_base_pre = orig_pre  # the real hash lookup
    for tok in ("llama-bpe", "qwen2", "llama-spm", "phi-3", "spm-bpe", "spm-bpe-pad",
                "spm-bpe-json"):
        # spm-bpe: the converter's real _set_vocab_sentencepiece reads tokenizer.model (needs
        # sentencepiece); spm-bpe-pad: the same with vocab_size 3 past the tokenizer ([PADn]);
        # spm-bpe-json: the same directory without it (tokenizer.json only)
        spm_case = tok in ("spm-bpe", "spm-bpe-pad")
        base.TextModel._set_vocab_sentencepiece = real_spm if spm_case else no_spm
        d = vocab_dir(os.path.join(tmp, "vocab-" + tok), tok)
        out = os.path.join(tmp, f"vocab-{tok}.gguf")
        sys.argv = ["convert_hf_to_gguf.py", d, "--vocab-only", "--outfile", out]
        try:
            runpy.run_path(os.path.join(conv, "convert_hf_to_gguf.py"), run_name="__main__")
        except SystemExit as e:
            if e.code:
                raise
        js = describe(out, "vocab-" + tok, "f32")
        js["kv"] = [k for k in js["kv"] if k[0].startswith("tokenizer.")]
        with open(os.path.join(a.out, f"vocab-{tok}.json"), "w") as f:
            json.dump(js, f, indent=1)
        print("wrote vocab", tok, len(js["kv"]), "keys")
    shutil.rmtree(tmp)


def vocab_dir(d, tok):
    """tiny-llama's config.json with vocab_size set to the size of tokenizers/<tok> (tokens and
    added tokens), tokenizer.json and tokenizer_config.json (and tokenizer.model for spm-bpe;
    spm-bpe-pad with vocab_size + 3; spm-bpe-json is spm-bpe without it or add_prefix_space): a model directory for the tokenizer keys alone (the C
    test makes the same one)."""
    import gzip
    os.makedirs(d)
    json_only, pad = tok == "spm-bpe-json", tok == "spm-bpe-pad"
    tok = "spm-bpe" if json_only or pad else tok
    if tok == "spm-bpe" and not json_only:
        shutil.copy(os.path.join(FIX, "tokenizers", tok, "tokenizer.model"), d)
    src = os.path.join(FIX, "tokenizers", tok)
    tj = gzip.open(os.path.join(src, "tokenizer.json.gz")).read()
    t = json.loads(tj)
    n = max(list(t["model"]["vocab"].values()) + [a["id"] for a in t["added_tokens"]]) + 1
    cfg = json.load(open(os.path.join(FIX, "tiny-llama", "model", "config.json")))
    cfg["vocab_size"] = n + (3 if pad else 0)
    json.dump(cfg, open(os.path.join(d, "config.json"), "w"), indent=2)
    open(os.path.join(d, "tokenizer.json"), "wb").write(tj)
    shutil.copy(os.path.join(src, "tokenizer_config.json"), d)
    if json_only:  # transformers honours add_prefix_space only from the .model: not loadable
        tc = json.load(open(os.path.join(d, "tokenizer_config.json")))
        del tc["add_prefix_space"]
        json.dump(tc, open(os.path.join(d, "tokenizer_config.json"), "w"), indent=2)
    return d


if __name__ == "__main__":
    main()
