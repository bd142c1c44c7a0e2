#!/usr/bin/env python3
"""check_gguf_llamacpp.py - the real client: llama.cpp (llama-cpp-python) runs the GGUF files
`lorac export-gguf` writes, and its logits are compared with HF transformers' on the same tokens.

For each model - configs/quickstart_chat/model (llama architecture, its byte-level BPE tokenizer),
the same with Llama 3.1 RoPE scaling (original context 16, so the long wavelengths are scaled
on these 38 tokens), random Qwen2 and Qwen3 models of the same size made here with transformers (the same
tokenizer files), and a random small Llama with Llama 2's SentencePiece-style tokenizer
(tests/fixtures/tokenizers/llama-spm, vocabulary 32000; a plain text), and one with the
spm-bpe fixture's SentencePiece tokenizer.model + HF files (vocabulary 1201; its exported
vocabulary must tokenize SPM_STRINGS in llama.cpp exactly as transformers does) - it
  1. exports the model as f32 GGUF (lorac export-gguf) and compares llama.cpp's logits on the
     tokens of a chat text (tokenized by llama.cpp from the GGUF vocabulary, checked equal to
     transformers' tokenization) with transformers' logits: max |diff| / max |logit| <= 1e-4;
  2. makes a random PEFT LoRA adapter (r 8, alpha 16, all linears, B non-zero), exports it with
     --lora and the merged model (--adapter), and compares llama.cpp's logits of base + GGUF LoRA
     with those of the merged GGUF (<= 1e-4 relative) and with transformers + PEFT (<= 1e-4);
  3. merges the same PEFT adapter into the GGUF files themselves (`lorac merge --base X.gguf
     --type f32`): into the f32 GGUF, llama.cpp's logits of the merged file vs base.gguf + the
     GGUF LoRA (<= 1e-4; the file must also be byte-identical to step 2's merged export); into
     a q8_0 export of the model, llama.cpp's logits of the merged f32 file vs transformers +
     PEFT on the weights gguf-py dequantizes from that q8_0 file (q/k rows un-permuted)
     (<= 2e-2: the merged file's untouched output.weight is still Q8_0, and llama.cpp's q8_0
     matmul rounds the activations to 8 bits; a wrong merge moves the logits by ~1), and,
     reported only, vs llama.cpp's q8_0 base + GGUF LoRA (every linear rounds there: ~1e-2).
Needs two Pythons: this one with llama_cpp (pip install llama-cpp-python==0.3.36) and numpy,
and --torch-python with torch, transformers, peft, safetensors.

Usage: python scripts/check_gguf_llamacpp.py --lorac build/lorac --torch-python /path/python
       [--arch spm-bpe ...]   (only these models)
Prints one line per comparison; exit 1 when one is above its tolerance.
"""
import argparse, json, os, shutil, subprocess, sys, tempfile

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHAT = os.path.join(ROOT, "configs", "quickstart_chat", "model")
TEXT = ("<|im_start|>user\nWhat is the capital of Veloria? Reverse the word 'lantern'.<|im_end|>\n"
        "<|im_start|>assistant\nThe capital of Veloria is Ostrava.<|im_end|>\n")
SPM_TEXT = "Hello world! The capital of Veloria is Ostrava; reverse 'lantern' (12 + 30 = 42)."
TOL = 1e-4
# A merged file from a q8_0 base keeps the untouched output.weight in Q8_0, and llama.cpp's
# q8_0 matmul rounds the activations to 8 bits: 5.7e-3..7.0e-3 measured on the five models.
TOL_Q8 = 2e-2
# tokenized by llama.cpp from the GGUF and by transformers from the same directory (spm-bpe):
# words the -1000 scores split otherwise, spaces, digits, emoji, CJK, byte fallback, added tokens
SPM_STRINGS = [
    "Ostrava", "lantern", " lantern", "The capital of Veloria is Ostrava.",
    "Reverse the word 'lantern': nretnal", "Hello world", "  two leading spaces",
    "trailing space ", "multiple   spaces   inside", "tab\tseparated\tvalues", "new\nline",
    "\n\nleading newlines", "digits 0123456789", "3.14159 and 1,000,000", "2024-11-30 12:10",
    "emoji \U0001F600\U0001F389\U0001F44D", "\u2764\ufe0f heart",
    "\u6771\u4eac\u306f\u65e5\u672c\u306e\u9996\u90fd\u3067\u3059\u3002",
    "\u5317\u4eac\u662f\u4e2d\u56fd\u7684\u9996\u90fd", "\ud55c\uad6d\uc5b4 \ud14d\uc2a4\ud2b8",
    "Gr\u00fc\u00dfe aus M\u00fcnchen", "\u00c7a va? El ni\u00f1o est\u00e1 aqu\u00ed.",
    "\u0414\u043e\u0431\u0440\u044b\u0439 \u0434\u0435\u043d\u044c",
    "byte fallback: \u2603 \u222e \u215e \U0001D518\U0001D52B", "Veloria", "a Veloria b",
    "<|user|>hello<|assistant|>hi", "x<|extra|>y", "zzqx", "code(x) { return x * 2; }",
    "    indented", "mixed CASE WoRdS", "don't can't won't", "email@example.com http://x.y/z",
    "a", "lorac trains LoRA adapters", "\u00a0non-breaking space",
]

TORCH_SIDE = r'''
import json, os, shutil, sys, numpy as np, torch
from transformers import AutoModelForCausalLM, AutoTokenizer
cmd, args = sys.argv[1], json.loads(sys.argv[2])
torch.manual_seed(args.get("seed", 0))
if cmd == "make" and args["arch"] == "llama-spm":  # Llama 2's SentencePiece-style BPE
    from transformers import LlamaConfig
    cfg = LlamaConfig(vocab_size=32000, hidden_size=64, intermediate_size=160, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                      rms_norm_eps=1e-5, tie_word_embeddings=False, bos_token_id=1, eos_token_id=2)
    m = AutoModelForCausalLM.from_config(cfg, torch_dtype=torch.float32)
    with torch.no_grad():
        for p in m.parameters():
            p.normal_(0, 0.05) if p.dim() > 1 else p.uniform_(0.5, 1.5)
    m.save_pretrained(args["out"])
    import gzip
    open(os.path.join(args["out"], "tokenizer.json"), "wb").write(
        gzip.open(os.path.join(args["tok"], "tokenizer.json.gz")).read())
    shutil.copy(os.path.join(args["tok"], "tokenizer_config.json"), args["out"])
elif cmd == "make" and args["arch"] == "spm-bpe":  # the spm-bpe fixture: tokenizer.model + HF files
    from transformers import LlamaConfig
    cfg = LlamaConfig(vocab_size=1201, hidden_size=64, intermediate_size=160, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                      rms_norm_eps=1e-5, tie_word_embeddings=False, bos_token_id=1, eos_token_id=2)
    m = AutoModelForCausalLM.from_config(cfg, torch_dtype=torch.float32)
    with torch.no_grad():
        for p in m.parameters():
            p.normal_(0, 0.05) if p.dim() > 1 else p.uniform_(0.5, 1.5)
    m.save_pretrained(args["out"])
    import gzip
    src = args["spm"]
    open(os.path.join(args["out"], "tokenizer.json"), "wb").write(
        gzip.open(os.path.join(src, "tokenizer.json.gz")).read())
    for f in ("tokenizer.model", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy(os.path.join(src, f), args["out"])
elif cmd == "tokenize":  # HF's ids of each string (no BOS)
    tok = AutoTokenizer.from_pretrained(args["base"])
    json.dump([tok(t, add_special_tokens=False)["input_ids"] for t in args["texts"]],
              open(args["out"], "w"))
elif cmd == "make":  # a random qwen2 / qwen3 model with the chat tokenizer
    from transformers import Qwen2Config, Qwen3Config
    common = dict(vocab_size=1024, hidden_size=128, intermediate_size=352, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                  rms_norm_eps=1e-6, rope_theta=1000000.0, tie_word_embeddings=False,
                  bos_token_id=1021, eos_token_id=1023, torch_dtype="float32")
    cfg = Qwen2Config(**common) if args["arch"] == "qwen2" else Qwen3Config(head_dim=32, **common)
    m = AutoModelForCausalLM.from_config(cfg, torch_dtype=torch.float32)
    with torch.no_grad():
        for p in m.parameters():
            p.normal_(0, 0.05) if p.dim() > 1 else p.uniform_(0.5, 1.5)
    m.save_pretrained(args["out"])
    for f in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy(os.path.join(args["chat"], f), args["out"])
elif cmd == "adapter":
    from peft import LoraConfig, get_peft_model
    m = AutoModelForCausalLM.from_pretrained(args["base"], torch_dtype=torch.float32)
    lc = LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "k_proj", "v_proj", "o_proj",
                    "gate_proj", "up_proj", "down_proj"], lora_dropout=0.0)
    pm = get_peft_model(m, lc)
    with torch.no_grad():
        for n, p in pm.named_parameters():
            if "lora_" in n:
                p.normal_(0, 0.05)
    pm.save_pretrained(args["out"])
elif cmd == "logits":
    tok = AutoTokenizer.from_pretrained(args["base"])
    ids = tok(args["text"], add_special_tokens=False)["input_ids"]
    m = AutoModelForCausalLM.from_pretrained(args["base"], torch_dtype=torch.float32)
    if args.get("gguf_weights"):  # the weights of a GGUF file, dequantized by gguf-py
        import gguf
        r = gguf.GGUFReader(args["gguf_weights"])
        arch = bytes(r.fields["general.architecture"].parts[-1]).decode()
        arch_id = {v: k for k, v in gguf.MODEL_ARCH_NAMES.items()}[arch]
        tmap = gguf.get_tensor_name_map(arch_id, m.config.num_hidden_layers)
        ts = {t.name: t for t in r.tensors}
        c = m.config
        with torch.no_grad():
            for n, p in m.named_parameters():
                gname = tmap.get_name(n, try_suffixes=(".weight", ".bias"))
                t = ts[gname]
                w = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32).reshape(p.shape)
                heads = (c.num_attention_heads if "q_proj" in n else
                         c.num_key_value_heads if "k_proj" in n else 0)
                if arch == "llama" and heads:  # undo LlamaModel.permute
                    w = w.reshape(heads, w.shape[0] // heads // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)
                p.copy_(torch.from_numpy(np.ascontiguousarray(w)))
    if args.get("adapter"):
        from peft import PeftModel
        m = PeftModel.from_pretrained(m, args["adapter"])
    m.eval()
    with torch.no_grad():
        out = m(torch.tensor([ids])).logits[0].double().numpy()
    np.save(args["out"], out)
    json.dump(ids, open(args["out"] + ".ids.json", "w"))
'''


def torch_side(py, cmd, **kw):
    subprocess.run([py, "-c", TORCH_SIDE, cmd, json.dumps(kw)], check=True,
                   stdout=subprocess.DEVNULL)


def lorac(binary, *args, cmd="export-gguf"):
    p = subprocess.run([binary, cmd, *args], capture_output=True, text=True)
    if p.returncode:
        sys.exit(f"lorac {cmd} {' '.join(args)} failed: {p.stderr}")


def llama_logits(gguf, ids, lora=None, text=None):
    from llama_cpp import Llama
    # f32 KV cache (llama.cpp keeps K and V in f16 by default: ~1e-3 relative)
    kw = dict(model_path=gguf, n_ctx=256, logits_all=True, n_threads=2, verbose=False, seed=0,
              type_k=0, type_v=0, flash_attn=False)
    if lora:
        kw["lora_path"] = lora
    llm = Llama(**kw)
    text_ids = None
    llm.reset()
    llm.eval(ids)
    out = np.array(llm.scores[: len(ids)], dtype=np.float64)
    text_ids = llm.tokenize((text or TEXT).encode(), add_bos=False, special=True)
    del llm
    return out, text_ids


def same_tokens(py, base, gguf, tmp):
    """llama.cpp's ids (GGUF vocabulary, no BOS, special tokens parsed) against transformers'
    (AutoTokenizer on base, add_special_tokens=False) for SPM_STRINGS: (all equal, a report)."""
    from llama_cpp import Llama
    out = os.path.join(tmp, "hf-tokens.json")
    torch_side(py, "tokenize", base=base, texts=SPM_STRINGS, out=out)
    hf = json.load(open(out))
    llm = Llama(model_path=gguf, vocab_only=True, verbose=False)
    bad = []
    for t, want in zip(SPM_STRINGS, hf):
        got = llm.tokenize(t.encode(), add_bos=False, special=True)
        if list(got) != want:
            bad.append(f"{t!r}: llama.cpp {list(got)} transformers {want}")
    del llm
    n = len(SPM_STRINGS)
    line = (f"llama.cpp tokenizes {n - len(bad)}/{n} strings as transformers "
            f"({sum(len(h) for h in hf)} tokens; Ostrava, lantern, spaces, digits, emoji, CJK, "
            f"byte fallback, added tokens)")
    return not bad, line + "".join("\n      " + b for b in bad)


def rel(a, b):
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lorac", default=os.path.join(ROOT, "build", "lorac"))
    ap.add_argument("--torch-python", required=True)
    ap.add_argument("--arch", action="append", help="only these models (default: all)")
    a = ap.parse_args()
    ok = True
    tmp = tempfile.mkdtemp()
    try:
        for arch in a.arch or ("llama", "llama3rope", "qwen2", "qwen3", "llama-spm", "spm-bpe"):
            base = CHAT
            text = TEXT if arch not in ("llama-spm", "spm-bpe") else SPM_TEXT
            if arch == "llama3rope":  # Llama 3.1 RoPE scaling: the rope_freqs tensor
                base = os.path.join(tmp, arch)
                shutil.copytree(CHAT, base)
                cfg = json.load(open(os.path.join(base, "config.json")))
                for k in ("rope_parameters", "rope_scaling"):
                    cfg.pop(k, None)
                cfg["rope_theta"] = 500000.0
                cfg["rope_scaling"] = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                       "high_freq_factor": 4.0,
                                       "original_max_position_embeddings": 16}
                json.dump(cfg, open(os.path.join(base, "config.json"), "w"), indent=2)
            elif arch != "llama":
                base = os.path.join(tmp, arch)
                torch_side(a.torch_python, "make", arch=arch, out=base, chat=CHAT, seed=1,
                           tok=os.path.join(ROOT, "tests", "fixtures", "tokenizers", "llama-spm"),
                           spm=os.path.join(ROOT, "tests", "fixtures", "tokenizers", "spm-bpe"))
            g = os.path.join(tmp, arch + ".gguf")
            lorac(a.lorac, "--base", base, "--out", g)
            ref = os.path.join(tmp, arch + "-hf.npy")
            torch_side(a.torch_python, "logits", base=base, text=text, out=ref)
            ids = json.load(open(ref + ".ids.json"))
            hf = np.load(ref)
            got, lids = llama_logits(g, ids, text=text)
            same_ids = list(lids) == ids
            r = rel(got, hf)
            # SentencePiece-style vocabularies: the converter (and lorac, as it) writes scores
            # -1000 when there is no tokenizer.model, and llama.cpp's SPM tokenizer, which merges
            # by score, then splits some words otherwise than HF's BPE (the converter's own file
            # does the same): reported, not a failure; the logits use HF's ids either way.
            # spm-bpe has its tokenizer.model: real scores, so the ids must match.
            need_ids = arch != "llama-spm"
            good = r <= TOL and (same_ids or not need_ids)
            ok &= good
            print(f"{'ok ' if good else 'BAD'} {arch}: f32 GGUF in llama.cpp vs transformers, "
                  f"{len(ids)} tokens: max|diff|/max|logit| = {r:.3g} (tol {TOL}); "
                  f"llama.cpp tokenizes the text as transformers: {same_ids}"
                  + ("" if need_ids or same_ids else
                     " (known: scores -1000 from tokenizer.json, as the converter writes them)"))
            if arch == "spm-bpe":  # tokenizer.model: llama.cpp tokenizes as transformers
                good, line = same_tokens(a.torch_python, base, g, tmp)
                ok &= good
                print(f"{'ok ' if good else 'BAD'} {arch}: {line}")
            ad = os.path.join(tmp, arch + "-adapter")
            torch_side(a.torch_python, "adapter", base=base, out=ad, seed=2)
            gl = os.path.join(tmp, arch + "-lora.gguf")
            gm = os.path.join(tmp, arch + "-merged.gguf")
            lorac(a.lorac, "--base", base, "--adapter", ad, "--lora", "--out", gl)
            lorac(a.lorac, "--base", base, "--adapter", ad, "--out", gm)
            refp = os.path.join(tmp, arch + "-peft.npy")
            torch_side(a.torch_python, "logits", base=base, adapter=ad, text=text, out=refp)
            peft = np.load(refp)
            with_lora, _ = llama_logits(g, ids, lora=gl)
            merged, _ = llama_logits(gm, ids)
            r1, r2, r3 = rel(with_lora, merged), rel(merged, peft), rel(with_lora, peft)
            moved = rel(hf, peft)
            good = r1 <= TOL and r2 <= TOL and r3 <= TOL
            ok &= good
            print(f"{'ok ' if good else 'BAD'} {arch}: llama.cpp base + GGUF LoRA vs lorac's merged "
                  f"GGUF: {r1:.3g}; merged GGUF vs transformers+PEFT: {r2:.3g}; GGUF LoRA vs "
                  f"PEFT: {r3:.3g} (tol {TOL}; the adapter moves the logits by {moved:.3g})")
            # 3. the adapter merged into the GGUF files (lorac merge --base X.gguf)
            gm2 = os.path.join(tmp, arch + "-merged-from-gguf.gguf")
            lorac(a.lorac, "--base", g, "--adapter", ad, "--out", gm2, "--type", "f32", cmd="merge")
            merged2, _ = llama_logits(gm2, ids)
            r4 = rel(merged2, with_lora)
            same = open(gm, "rb").read() == open(gm2, "rb").read()
            good = r4 <= TOL and same
            ok &= good
            print(f"{'ok ' if good else 'BAD'} {arch}: lorac merge --base f32.gguf: llama.cpp on the "
                  f"merged GGUF vs base.gguf + GGUF LoRA: {r4:.3g} (tol {TOL}); the file is "
                  f"byte-identical to export-gguf --adapter's: {same}")
            gq = os.path.join(tmp, arch + "-q8_0.gguf")
            gqm = os.path.join(tmp, arch + "-q8_0-merged.gguf")
            lorac(a.lorac, "--base", base, "--out", gq, "--type", "q8_0")
            lorac(a.lorac, "--base", gq, "--adapter", ad, "--out", gqm, "--type", "f32", cmd="merge")
            q_lora, _ = llama_logits(gq, ids, lora=gl)
            q_merged, _ = llama_logits(gqm, ids)
            refq = os.path.join(tmp, arch + "-peft-q8_0.npy")
            torch_side(a.torch_python, "logits", base=base, adapter=ad, text=text, out=refq,
                       gguf_weights=gq)
            q_peft = np.load(refq)
            r5, r6 = rel(q_merged, q_peft), rel(q_merged, q_lora)
            good = r5 <= TOL_Q8
            ok &= good
            print(f"{'ok ' if good else 'BAD'} {arch}: lorac merge --base q8_0.gguf --type f32: "
                  f"llama.cpp on the merged GGUF vs transformers+PEFT on gguf-py's dequantized "
                  f"q8_0 weights: {r5:.3g} (tol {TOL_Q8}: the untouched Q8_0 output.weight); vs "
                  f"llama.cpp's q8_0 base + GGUF LoRA: {r6:.3g} (reported only: there every "
                  f"linear rounds its activations to 8 bits)")
    finally:
        shutil.rmtree(tmp)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
