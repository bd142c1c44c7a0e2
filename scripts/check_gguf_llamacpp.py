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
  4. trains an adapter 4 steps with `lorac train` over GGUF bases that llama.cpp's quantizer made
     (Q8_0 and Q4_K_M of a random Llama of hidden size 256, the chat tokenizer) and compares
     llama.cpp's logits of base + output_dir/adapter_model.gguf with transformers + PEFT on an
     HF model holding the GGUF's dequantized weights (gguf-py, q/k un-permuted) +
     adapter_model.safetensors: <= 1e-4 with llama.cpp running those weights as an F32 GGUF;
     on the quantized file itself llama.cpp also quantizes the activations (Q8_0 / Q8_K), so
     there the difference is reported with the base's own (<= twice it).
     --only-trained runs this part alone.
  5. exports minimal models carrying the real Llama 3 and Qwen2 tokenizers of
     tests/fixtures/tokenizers and checks that llama.cpp tokenizes SPM_STRINGS from each GGUF
     exactly as transformers does (as it checks for the chat tokenizer and spm-bpe).
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


def save_random(cfg, out):
    """A model of config cfg with random weights (normal 0.05; norms 0.5..1.5), saved to out."""
    m = AutoModelForCausalLM.from_config(cfg, torch_dtype=torch.float32)
    with torch.no_grad():
        for p in m.parameters():
            p.normal_(0, 0.05) if p.dim() > 1 else p.uniform_(0.5, 1.5)
    m.save_pretrained(out)


def copy_tokenizer(src, out, files=("tokenizer.json", "tokenizer_config.json",
                                    "special_tokens_map.json")):
    """src's tokenizer files into out; tokenizer.json may be stored gzipped in src."""
    import gzip
    for f in files:
        if f == "tokenizer.json" and os.path.exists(os.path.join(src, f + ".gz")):
            open(os.path.join(out, f), "wb").write(gzip.open(os.path.join(src, f + ".gz")).read())
        else:
            shutil.copy(os.path.join(src, f), out)


if cmd == "make_vocab":  # a minimal Llama carrying a real tokenizer (tests/fixtures/tokenizers)
    from transformers import LlamaConfig
    os.makedirs(args["out"], exist_ok=True)
    copy_tokenizer(args["tok"], args["out"], ("tokenizer.json", "tokenizer_config.json"))
    n = len(AutoTokenizer.from_pretrained(args["out"]))
    cfg = LlamaConfig(vocab_size=n, hidden_size=8, intermediate_size=16, num_hidden_layers=1,
                      num_attention_heads=1, num_key_value_heads=1, max_position_embeddings=64,
                      tie_word_embeddings=True)
    AutoModelForCausalLM.from_config(cfg, torch_dtype=torch.float32).save_pretrained(args["out"])
elif cmd == "make" and args["arch"] == "llama-spm":  # Llama 2's SentencePiece-style BPE
    from transformers import LlamaConfig
    cfg = LlamaConfig(vocab_size=32000, hidden_size=64, intermediate_size=160, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                      rms_norm_eps=1e-5, tie_word_embeddings=False, bos_token_id=1, eos_token_id=2)
    save_random(cfg, args["out"])
    copy_tokenizer(args["tok"], args["out"], ("tokenizer.json", "tokenizer_config.json"))
elif cmd == "make" and args["arch"] == "spm-bpe":  # the spm-bpe fixture: tokenizer.model + HF files
    from transformers import LlamaConfig
    cfg = LlamaConfig(vocab_size=1201, hidden_size=64, intermediate_size=160, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                      rms_norm_eps=1e-5, tie_word_embeddings=False, bos_token_id=1, eos_token_id=2)
    save_random(cfg, args["out"])
    copy_tokenizer(args["spm"], args["out"], ("tokenizer.json", "tokenizer.model",
                                              "tokenizer_config.json", "special_tokens_map.json"))
elif cmd == "tokenize":  # HF's ids of each string (no BOS)
    tok = AutoTokenizer.from_pretrained(args["base"])
    json.dump([tok(t, add_special_tokens=False)["input_ids"] for t in args["texts"]],
              open(args["out"], "w"))
elif cmd == "make" and args["arch"] == "llama256":  # rows of whole 256-element Q4_K blocks
    from transformers import LlamaConfig
    cfg = LlamaConfig(vocab_size=1024, hidden_size=256, intermediate_size=512, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                      rms_norm_eps=1e-5, tie_word_embeddings=False, bos_token_id=1021,
                      eos_token_id=1023)
    save_random(cfg, args["out"])
    copy_tokenizer(args["chat"], args["out"])
elif cmd == "gguf_logits":  # HF model = the GGUF's weights as gguf-py dequantizes them
    import gguf
    from peft import PeftModel
    m = AutoModelForCausalLM.from_pretrained(args["config"], torch_dtype=torch.float32)
    c = m.config
    r = gguf.GGUFReader(args["gguf"])
    names = {"attn_norm": "input_layernorm", "ffn_norm": "post_attention_layernorm",
             "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj",
             "attn_v": "self_attn.v_proj", "attn_output": "self_attn.o_proj",
             "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj", "ffn_down": "mlp.down_proj"}
    sd, types = {}, set()
    for t in r.tensors:
        w = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32)
        w = w.reshape([int(x) for x in reversed(t.shape)]) if len(t.shape) > 1 else w.reshape(-1)
        types.add(t.tensor_type.name)
        parts = t.name.split(".")
        if parts[0] == "blk":
            mod = parts[2]
            if mod in ("attn_q", "attn_k"):  # undo LlamaModel.permute
                h = c.num_attention_heads if mod == "attn_q" else c.num_key_value_heads
                w = w.reshape(h, w.shape[0] // h // 2, 2, -1).swapaxes(1, 2).reshape(w.shape)
            name = f"model.layers.{parts[1]}.{names[mod]}.weight"
        else:
            name = {"token_embd": "model.embed_tokens.weight", "output": "lm_head.weight",
                    "output_norm": "model.norm.weight"}[parts[0]]
        sd[name] = torch.from_numpy(np.ascontiguousarray(w))
    missing, unexpected = m.load_state_dict(sd, strict=False)
    assert not unexpected and all("rotary" in k for k in missing), (missing, unexpected)
    m.save_pretrained(args["save"])  # the dequantized model, with the tokenizer files
    copy_tokenizer(args["config"], args["save"])
    m.eval()
    x = torch.tensor([args["ids"]])
    with torch.no_grad():
        np.save(args["out"] + "-base.npy", m(x).logits[0].double().numpy())
        m = PeftModel.from_pretrained(m, args["adapter"])
        m.eval()
        np.save(args["out"] + "-peft.npy", m(x).logits[0].double().numpy())
    json.dump(sorted(types), open(args["out"] + ".types.json", "w"))
elif cmd == "make":  # a random qwen2 / qwen3 model with the chat tokenizer
    from transformers import Qwen2Config, Qwen3Config
    common = dict(vocab_size=1024, hidden_size=128, intermediate_size=352, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                  rms_norm_eps=1e-6, rope_theta=1000000.0, tie_word_embeddings=False,
                  bos_token_id=1021, eos_token_id=1023, torch_dtype="float32")
    cfg = Qwen2Config(**common) if args["arch"] == "qwen2" else Qwen3Config(head_dim=32, **common)
    save_random(cfg, args["out"])
    copy_tokenizer(args["chat"], args["out"])
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


def real_vocabularies(a, tmp):
    """The real byte-level tokenizers of tests/fixtures/tokenizers (Llama 3, Qwen2) exported by
    lorac export-gguf and tokenized by llama.cpp from the GGUF, against transformers."""
    ok = True
    for name in ("llama-bpe", "qwen2"):
        d = os.path.join(tmp, "vocab-" + name)
        torch_side(a.torch_python, "make_vocab", out=d,
                   tok=os.path.join(ROOT, "tests", "fixtures", "tokenizers", name))
        g = d + ".gguf"
        lorac(a.lorac, "--base", d, "--out", g)
        good, line = same_tokens(a.torch_python, d, g, tmp)
        ok &= good
        print(f"{'ok ' if good else 'BAD'} {name} tokenizer (export-gguf of a 1-layer model): {line}")
    return ok


def rel(a, b):
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


def llama_quantize(src, dst, ftype):
    """llama.cpp's own quantizer (llama-quantize): ftype 7 Q8_0, 15 Q4_K_M."""
    import llama_cpp
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = ftype
    params.nthread = 2
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]  # quiet its per-tensor report
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 1)
    os.dup2(null, 2)
    try:
        rc = llama_cpp.llama_model_quantize(src.encode(), dst.encode(), params)
    finally:
        for fd, s in zip((1, 2), saved):
            os.dup2(s, fd)
            os.close(s)
        os.close(null)
    if rc != 0:
        sys.exit(f"llama_model_quantize {src} -> {dst} failed")


TRAIN_YAML = """base_model: {base}
adapter: lora
lora_r: 8
lora_alpha: 16
lora_target_linear: true
datasets:
  - path: {data}
    type: tokenized
sequence_len: 32
micro_batch_size: 2
max_steps: 4
learning_rate: 2e-2
seed: 5
output_dir: {out}
"""


def trained_over_gguf(a, tmp):
    """`lorac train` over a GGUF base quantized by llama.cpp (Q8_0, Q4_K_M), then llama.cpp runs
    the base + output_dir/adapter_model.gguf. The reference is transformers + PEFT on an HF
    model holding the GGUF's weights as gguf-py dequantizes them (q/k un-permuted) +
    adapter_model.safetensors. llama.cpp's CPU kernels multiply quantized weights by
    activations they quantize too (Q8_0 / Q8_K), a percent-level change of the logits with or
    without an adapter; so the 1e-4 check runs llama.cpp on the same dequantized weights as an
    F32 GGUF (lorac export-gguf of that HF model) + the same adapter_model.gguf, and the run on
    the quantized file itself is reported next to llama.cpp's own floor there (the base
    alone)."""
    ok = True
    base = os.path.join(tmp, "llama256")
    torch_side(a.torch_python, "make", arch="llama256", out=base, chat=CHAT, seed=3)
    f32 = os.path.join(tmp, "llama256-f32.gguf")
    lorac(a.lorac, "--base", base, "--out", f32)
    rng = np.random.default_rng(4)
    data = os.path.join(tmp, "rows.jsonl")
    with open(data, "w") as f:
        for _ in range(16):
            ids = [int(x) for x in rng.integers(0, 1021, 32)]
            f.write(json.dumps({"input_ids": ids, "labels": ids}) + "\n")
    ids = [int(x) for x in rng.integers(0, 1021, 24)]
    for name, ftype in (("q8_0", 7), ("q4_k_m", 15)):
        g = os.path.join(tmp, f"llama256-{name}.gguf")
        llama_quantize(f32, g, ftype)
        out = os.path.join(tmp, "trained-" + name)
        cfg = os.path.join(tmp, name + ".yaml")
        open(cfg, "w").write(TRAIN_YAML.format(base=g, data=data, out=out))
        p = subprocess.run([a.lorac, "train", cfg], capture_output=True, text=True)
        if p.returncode or "adapter_model.gguf" not in p.stdout + p.stderr:
            sys.exit(f"lorac train over {g} failed: {p.stderr[-800:]}")
        ad = os.path.join(out, "adapter_model.gguf")
        deq = os.path.join(tmp, name + "-dequantized")
        ref = os.path.join(tmp, name)
        torch_side(a.torch_python, "gguf_logits", config=base, gguf=g, ids=ids, out=ref,
                   save=deq, adapter=out)
        deq_gguf = deq + ".gguf"
        lorac(a.lorac, "--base", deq, "--out", deq_gguf)
        types = json.load(open(ref + ".types.json"))
        hf0, hf1 = np.load(ref + "-base.npy"), np.load(ref + "-peft.npy")
        d0, _ = llama_logits(deq_gguf, ids)
        d1, _ = llama_logits(deq_gguf, ids, lora=ad)
        q0, _ = llama_logits(g, ids)
        q1, _ = llama_logits(g, ids, lora=ad)
        r_deq, r_deq0 = rel(d1, hf1), rel(d0, hf0)
        r_q, r_q0 = rel(q1, hf1), rel(q0, hf0)
        good = r_deq <= TOL and r_q <= 2 * max(r_q0, TOL)
        ok &= good
        print(f"{'ok ' if good else 'BAD'} trained 4 steps over a {name.upper()} GGUF base "
              f"({', '.join(types)}), {len(ids)} tokens, vs transformers+PEFT on the dequantized "
              f"weights + adapter_model.safetensors (max|diff|/max|logit|): llama.cpp on those "
              f"weights (F32 GGUF) + adapter_model.gguf {r_deq:.3g} (tol {TOL}; base alone "
              f"{r_deq0:.3g}); llama.cpp on the {name.upper()} file + adapter_model.gguf "
              f"{r_q:.3g} (base alone {r_q0:.3g}: its quantized activations; tol twice that); "
              f"the adapter moves the logits by {rel(hf0, hf1):.3g}")
    return ok


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lorac", default=os.path.join(ROOT, "build", "lorac"))
    ap.add_argument("--torch-python", required=True)
    ap.add_argument("--arch", action="append", help="only these models (default: all)")
    ap.add_argument("--only-trained", action="store_true",
                    help="only the adapter trained over GGUF bases (4.)")
    a = ap.parse_args()
    ok = True
    tmp = tempfile.mkdtemp()
    try:
        if not a.arch:  # --arch selects among the exported models (1.-3.)
            ok &= trained_over_gguf(a, tmp)
        if not a.arch and not a.only_trained:
            ok &= real_vocabularies(a, tmp)
        for arch in () if a.only_trained else (a.arch or ("llama", "llama3rope", "qwen2", "qwen3",
                                                          "llama-spm", "spm-bpe")):
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
            if arch in ("spm-bpe", "llama"):  # tokenizer.model / byte-level BPE: as transformers
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
