#!/usr/bin/env python3
"""make_fixtures.py - build (or re-check) a lorac reference fixture with HF transformers + PEFT.

Why: lorac (C) is tested against what the Python ecosystem computes. This script writes, for one
architecture, a fixture directory laid out exactly like tests/fixtures/tiny-llama/ (see
tests/fixtures/README.md), so each newly supported architecture gets its own reference.
Python is only used for fixtures/tests; lorac itself never runs it.

What it does (all reference math in float64 on CPU):
  * builds a tiny random model (2 layers, hidden 64, 4 heads, 2 KV heads, head_dim 16,
    intermediate 160, vocab 512, untied head, rope_theta 10000) for --arch
        llama    LlamaForCausalLM
        mistral  MistralForCausalLM (sliding_window left at the config default; irrelevant at 16 tokens)
        qwen2    Qwen2ForCausalLM   (q/k/v biases)
        qwen3    Qwen3ForCausalLM   (per-head q_norm/k_norm)
    weights ~ N(0, 0.05), norm weights ~ 1 + N(0, 0.1), biases ~ N(0, 0.02); saved float32 with
    save_pretrained into model/;
  * train.jsonl: 6 rows x 16 tokens (ids in [3, 512)), labels -100 on row 1's first 6 and row 3's
    first 10 tokens;
  * a random non-zero LoRA (r 8, alpha 16, dropout 0, q,k,v,o,gate,up,down; A and B ~ N(0, 0.1)):
    lora_init.safetensors (PEFT names) and adapter_init/ (PEFT save_pretrained);
  * ref_step0.safetensors: rows 0-1 as one batch: logits, loss, hidden.i, <lora name>.grad;
  * 3 steps of torch.optim.AdamW (lr 1e-3, betas (0.9, 0.999), eps 1e-8, wd 0.01), clip_grad_norm_
    1.0, batches rows 0-1, 2-3, 4-5: lora_step3.safetensors, adapter_step3/, merged_step3.safetensors
    (PEFT merge_and_unload, float32), meta.json (settings + per-step loss / pre-clip grad norm);
  * ref_nf4.safetensors (QLoRA reference: NF4 round trip of every decoder linear, block 64, no
    double quant) when bitsandbytes is importable (--nf4 torch uses this script's own NF4 code,
    which --check verifies bit-exactly against a bitsandbytes-made fixture);
  * an independent plain-PyTorch float64 re-implementation of the forward pass cross-checks
    HF/PEFT; the agreement goes into meta.json "reflib_agreement"; a README.md describes the dir.

Usage:
  python3 scripts/make_fixtures.py --arch llama --out /tmp/fix-llama [--seed 0] [--nf4 auto|bnb|torch|skip]
      (the RNG stream is seeded with seed + 1000 * index of the arch in llama, mistral, qwen2,
      qwen3, so the four architectures never share weights)
  python3 scripts/make_fixtures.py --check tests/fixtures/tiny-llama
      loads DIR/model + DIR/adapter_init, recomputes logits/loss/hidden/grads on rows 0-1 in
      float64 and prints max relative differences vs DIR/ref_step0.safetensors and the meta.json
      trace loss; when present also re-runs the 3 training steps (vs lora_step3 + trace), the
      merge (vs merged_step3) and NF4/QLoRA (vs ref_nf4, packed bytes must match exactly), and
      the plain re-implementation; exits 1 when anything exceeds --tol (default 1e-5).

Numerics: HF attention runs as "sdpa" (float64 end to end; HF's "eager" path does its softmax in
float32). HF computes RoPE cos/sin in float32 even for float64 models, so HF and the plain
re-implementation (float64 RoPE) differ at ~1e-7. The loss is computed here in float64;
transformers' built-in loss (model(labels=...)) casts logits to float32 first, and the
tiny-llama fixture's stored loss / trace losses are exactly that (~1e-7 relative from ours).

Needs: torch, transformers, peft, safetensors; optionally bitsandbytes (CPU quantize works in
0.50). Tested with torch 2.15.0 + transformers 5.24.0 + PEFT 0.21.2 + bitsandbytes 0.50.2 in
/tmp/fixvenv (python3 -m venv /tmp/fixvenv && /tmp/fixvenv/bin/pip install torch transformers
peft safetensors bitsandbytes); the transformers-4 spellings (rope_theta, torch_dtype) are
handled but untested.
"""

import argparse
import json
import math
import os
import shutil
import sys

try:
    import torch
    import torch.nn.functional as F
    import transformers
    import peft
    from safetensors.torch import load_file, save_file
except ImportError as e:  # pragma: no cover
    sys.exit("make_fixtures.py: missing dependency '%s'. Install with e.g.\n"
             "  python3 -m venv /tmp/fixvenv && /tmp/fixvenv/bin/pip install torch transformers peft safetensors\n"
             "and run with /tmp/fixvenv/bin/python." % (e.name or e))

ARCHES = {
    "llama": "LlamaConfig",
    "mistral": "MistralConfig",
    "qwen2": "Qwen2Config",
    "qwen3": "Qwen3Config",
}
SHAPE = dict(vocab_size=512, hidden_size=64, intermediate_size=160, num_hidden_layers=2,
             num_attention_heads=4, num_key_value_heads=2, head_dim=16,
             max_position_embeddings=128, rms_norm_eps=1e-5, tie_word_embeddings=False,
             bos_token_id=1, eos_token_id=2, hidden_act="silu", initializer_range=0.02)
ROPE_THETA = 10000.0
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
LORA_R, LORA_ALPHA = 8, 16
SEQ, ROWS = 16, 6
MASKED = {1: 6, 3: 10}           # row -> number of leading label positions set to -100
BATCHES = [[0, 1], [2, 3], [4, 5]]
TRAIN = {"optimizer": "torch.optim.AdamW", "lr": 0.001, "weight_decay": 0.01,
         "betas": [0.9, 0.999], "eps": 1e-08, "max_grad_norm": 1.0,
         "schedule": "constant, no warmup", "micro_batch_size": 2, "grad_accum": 1,
         "shuffle": False, "steps": 3}
NF4_BLOCK = 64
NF4_CODE = [-1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453,
            -0.28444138169288635, -0.18477343022823334, -0.09105003625154495, 0.0,
            0.07958029955625534, 0.16093020141124725, 0.24611230194568634, 0.33791524171829224,
            0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0]
TF_MAJOR = int(transformers.__version__.split(".")[0])


def log(*a):
    print(*a, flush=True)


# ----------------------------------------------------------------------------------------------
# model / data / adapter construction
# ----------------------------------------------------------------------------------------------

def build_config(arch):
    cls = getattr(transformers, ARCHES[arch])
    kw = dict(SHAPE)
    if TF_MAJOR >= 5:
        kw["rope_parameters"] = {"rope_type": "default", "rope_theta": ROPE_THETA}
    else:
        kw["rope_theta"] = ROPE_THETA
    if arch in ("llama", "qwen3"):
        kw["attention_bias"] = False
    if arch == "llama":
        kw["mlp_bias"] = False
    return cls(**kw)


def randomize_(model, gen):
    """Deterministic, larger-than-default random init (so nothing is near-trivial)."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):          # input/post_attention/final/q/k norms
                v = 1.0 + 0.1 * torch.randn(p.shape, generator=gen, dtype=torch.float64)
            elif name.endswith(".bias"):
                v = 0.02 * torch.randn(p.shape, generator=gen, dtype=torch.float64)
            else:
                v = 0.05 * torch.randn(p.shape, generator=gen, dtype=torch.float64)
            p.copy_(v.to(p.dtype))


def write_train(path, gen):
    ids = torch.randint(3, SHAPE["vocab_size"], (ROWS, SEQ), generator=gen)
    with open(path, "w") as f:
        for r in range(ROWS):
            row = ids[r].tolist()
            lab = list(row)
            for t in range(MASKED.get(r, 0)):
                lab[t] = -100
            f.write(json.dumps({"input_ids": row, "labels": lab}) + "\n")


def read_train(path):
    ids, labels = [], []
    with open(path) as f:
        for line in f:
            if line.strip():
                d = json.loads(line)
                ids.append(d["input_ids"])
                labels.append(d["labels"])
    return torch.tensor(ids, dtype=torch.long), torch.tensor(labels, dtype=torch.long)


def lora_config():
    return peft.LoraConfig(r=LORA_R, lora_alpha=LORA_ALPHA, lora_dropout=0.0,
                           target_modules=list(TARGETS), bias="none", task_type="CAUSAL_LM",
                           init_lora_weights=False)


def load_base(model_dir, dtype):
    kw = {"dtype": dtype} if TF_MAJOR >= 5 else {"torch_dtype": dtype}
    # sdpa: in float64 it is float64 throughout; the "eager" path does its softmax in float32.
    m = transformers.AutoModelForCausalLM.from_pretrained(model_dir, attn_implementation="sdpa", **kw)
    return m.to(dtype)


def load_peft(model_dir, adapter_dir, dtype, trainable):
    base = load_base(model_dir, dtype)
    pm = peft.PeftModel.from_pretrained(base, adapter_dir, is_trainable=trainable)
    return pm.to(dtype)


def lora_name(param_name):
    """PEFT parameter name -> saved name (drop the adapter name 'default')."""
    return param_name.replace(".lora_A.default.", ".lora_A.").replace(".lora_B.default.", ".lora_B.")


def lora_params(pm):
    out = {}
    for n, p in pm.named_parameters():
        if ".lora_A." in n or ".lora_B." in n:
            out[lora_name(n)] = p
    return dict(sorted(out.items()))


def save_adapter(pm, out_dir):
    pm.peft_config["default"].base_model_name_or_path = "../model"
    pm.save_pretrained(out_dir)
    drop_extras(out_dir, ["README.md"])          # PEFT's model-card stub; the fixture has none


def drop_extras(d, names):
    for n in names:
        p = os.path.join(d, n)
        if os.path.exists(p):
            os.remove(p)


def f32(d):
    return {k: v.detach().to(torch.float32).contiguous().clone() for k, v in d.items()}


# ----------------------------------------------------------------------------------------------
# reference math (HF/PEFT path)
# ----------------------------------------------------------------------------------------------

def causal_loss(logits, labels):
    """Mean over supervised tokens after the causal shift: logits[t] predicts labels[t+1].
    Computed in the logits' dtype (float64 here). Note: transformers' built-in loss
    (model(labels=...)) first casts logits to float32; the tiny-llama fixture's loss values
    are exactly that, which differs from this one by ~1e-7 relative."""
    v = logits.shape[-1]
    return F.cross_entropy(logits[:, :-1, :].reshape(-1, v), labels[:, 1:].reshape(-1),
                           ignore_index=-100, reduction="mean")


def hf_step(pm, ids, labels):
    """One forward/backward. Returns (logits, loss, hidden list, {lora name: grad})."""
    pm.zero_grad(set_to_none=True)
    out = pm(input_ids=ids, output_hidden_states=True, use_cache=False)
    loss = causal_loss(out.logits, labels)
    loss.backward()
    grads = {k: p.grad.detach().clone() for k, p in lora_params(pm).items()}
    return out.logits.detach(), loss.detach(), [h.detach() for h in out.hidden_states], grads


def train_steps(params, step_fn, ids, labels):
    """3 AdamW steps over BATCHES. params: {name: leaf tensor}. step_fn(ids, labels) -> loss
    (after backward). Returns trace list."""
    plist = list(params.values())
    opt = torch.optim.AdamW(plist, lr=TRAIN["lr"], betas=tuple(TRAIN["betas"]), eps=TRAIN["eps"],
                            weight_decay=TRAIN["weight_decay"])
    trace = []
    for i, rows in enumerate(BATCHES):
        opt.zero_grad(set_to_none=True)
        loss = step_fn(ids[rows], labels[rows])
        gn = torch.nn.utils.clip_grad_norm_(plist, TRAIN["max_grad_norm"])
        opt.step()
        trace.append({"step": i + 1, "loss": float(loss), "grad_norm": float(gn)})
    return trace


# ----------------------------------------------------------------------------------------------
# independent plain-PyTorch float64 implementation (cross-check of HF + PEFT)
# ----------------------------------------------------------------------------------------------

class RefModel:
    def __init__(self, model_dir, lora, weights=None):
        cfg = json.load(open(os.path.join(model_dir, "config.json")))
        self.cfg = cfg
        w = weights if weights is not None else load_file(os.path.join(model_dir, "model.safetensors"))
        self.w = {k: v.to(torch.float64) for k, v in w.items()}
        self.lora = lora            # {saved lora name: f64 leaf tensor}
        self.scaling = LORA_ALPHA / LORA_R
        self.H = cfg["num_attention_heads"]
        self.KV = cfg.get("num_key_value_heads") or self.H
        self.D = cfg.get("head_dim") or cfg["hidden_size"] // self.H
        self.eps = cfg["rms_norm_eps"]
        rp = cfg.get("rope_parameters") or {}
        self.theta = float(rp.get("rope_theta", cfg.get("rope_theta", 10000.0)))
        self.L = cfg["num_hidden_layers"]

    def rms(self, x, w):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * w

    def lin(self, x, mod):
        y = x @ self.w[mod + ".weight"].t()
        if mod + ".bias" in self.w:
            y = y + self.w[mod + ".bias"]
        a = self.lora.get("base_model.model." + mod + ".lora_A.weight")
        if a is not None:
            b = self.lora["base_model.model." + mod + ".lora_B.weight"]
            y = y + self.scaling * ((x @ a.t()) @ b.t())
        return y

    def rope(self, x, T):
        d = self.D
        inv = 1.0 / (self.theta ** (torch.arange(0, d, 2, dtype=torch.float64) / d))
        f = torch.outer(torch.arange(T, dtype=torch.float64), inv)
        emb = torch.cat([f, f], -1)
        cos, sin = emb.cos(), emb.sin()
        x1, x2 = x[..., : d // 2], x[..., d // 2:]
        return x * cos + torch.cat([-x2, x1], -1) * sin

    def forward(self, ids):
        B, T = ids.shape
        H, KV, D = self.H, self.KV, self.D
        x = self.w["model.embed_tokens.weight"][ids]
        hidden = []
        mask = torch.full((T, T), float("-inf"), dtype=torch.float64).triu(1)
        for i in range(self.L):
            p = "model.layers.%d." % i
            hidden.append(x)
            h = self.rms(x, self.w[p + "input_layernorm.weight"])
            q = self.lin(h, p + "self_attn.q_proj").view(B, T, H, D)
            k = self.lin(h, p + "self_attn.k_proj").view(B, T, KV, D)
            v = self.lin(h, p + "self_attn.v_proj").view(B, T, KV, D)
            if p + "self_attn.q_norm.weight" in self.w:
                q = self.rms(q, self.w[p + "self_attn.q_norm.weight"])
                k = self.rms(k, self.w[p + "self_attn.k_norm.weight"])
            q, k, v = (t.transpose(1, 2) for t in (q, k, v))
            q, k = self.rope(q, T), self.rope(k, T)
            k = k.repeat_interleave(H // KV, dim=1)
            v = v.repeat_interleave(H // KV, dim=1)
            att = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(D) + mask, dim=-1)
            o = (att @ v).transpose(1, 2).reshape(B, T, H * D)
            x = x + self.lin(o, p + "self_attn.o_proj")
            h = self.rms(x, self.w[p + "post_attention_layernorm.weight"])
            m = F.silu(self.lin(h, p + "mlp.gate_proj")) * self.lin(h, p + "mlp.up_proj")
            x = x + self.lin(m, p + "mlp.down_proj")
        x = self.rms(x, self.w["model.norm.weight"])
        hidden.append(x)
        head = self.w.get("lm_head.weight", self.w["model.embed_tokens.weight"])
        return x @ head.t(), hidden


def ref_step(ref, ids, labels):
    for p in ref.lora.values():
        p.grad = None
    logits, hidden = ref.forward(ids)
    loss = causal_loss(logits, labels)
    loss.backward()
    return (logits.detach(), loss.detach(), [h.detach() for h in hidden],
            {k: p.grad.detach().clone() for k, p in ref.lora.items()})


def leaf_lora(lora_file):
    return {k: v.to(torch.float64).clone().requires_grad_(True)
            for k, v in sorted(load_file(lora_file).items())}


# ----------------------------------------------------------------------------------------------
# NF4 (bitsandbytes layout: block 64, absmax f32 per block, first code in the high nibble)
# ----------------------------------------------------------------------------------------------

def nf4_torch(w, block=NF4_BLOCK):
    """Same algorithm as bitsandbytes' reference kernel: scaled = x * (1/absmax), nearest code via
    the f32 midpoints (ties go to the lower code). Returns packed u8 [n/2], absmax f32, dequant f32."""
    code = torch.tensor(NF4_CODE, dtype=torch.float32)
    flat = w.detach().to(torch.float32).reshape(-1)
    n = flat.numel()
    nb = (n + block - 1) // block
    pad = torch.zeros(nb * block, dtype=torch.float32)
    pad[:n] = flat
    blocks = pad.view(nb, block)
    absmax = blocks.abs().amax(dim=1)
    if n % block:  # bnb takes the last partial block's absmax over its real elements only
        absmax[-1] = flat[(nb - 1) * block:].abs().max()
    scaled = torch.clamp(blocks * (1.0 / absmax.clamp(min=1e-38)).view(-1, 1), -1, 1).reshape(-1)[:n]
    bounds = (code[:-1] + code[1:]) / 2
    q = torch.bucketize(scaled, bounds).to(torch.uint8)
    if n % 2:
        q = torch.cat([q, torch.zeros(1, dtype=torch.uint8)])
    packed = (q[0::2] << 4) | q[1::2]
    deq = (code[q[:n].long()] * absmax.repeat_interleave(block)[:n]).view(w.shape)
    return packed.contiguous(), absmax.contiguous(), deq.contiguous()


def nf4_bnb(w, block=NF4_BLOCK):
    import bitsandbytes.functional as BF
    x = w.detach().to(torch.float32).contiguous()
    packed, st = BF.quantize_4bit(x, blocksize=block, compress_statistics=False, quant_type="nf4")
    deq = BF.dequantize_4bit(packed, st)
    return (packed.reshape(-1).contiguous(), st.absmax.to(torch.float32).contiguous(),
            deq.to(torch.float32).reshape(w.shape).contiguous())


def is_decoder_linear(name):
    return any(name.endswith("." + t + ".weight") for t in TARGETS)


def nf4_weights(base_sd, quant):
    """Replace every decoder linear's weight (q,k,v,o,gate,up,down; not embeddings / lm_head, as
    bitsandbytes QLoRA loading does) by its NF4 round trip. Returns (new sd, {name: (packed, absmax, deq)})."""
    sd = dict(base_sd)
    parts = {}
    for k, v in base_sd.items():
        if is_decoder_linear(k):
            packed, absmax, deq = quant(v)
            sd[k] = deq
            parts[k] = (packed, absmax, deq)
    return sd, parts


def qlora_step(model_dir, adapter_dir, nf4_sd, ids, labels):
    """HF+PEFT forward/backward with the base linears replaced by their NF4 dequant (float64)."""
    pm = load_peft(model_dir, adapter_dir, torch.float64, trainable=True)
    base = pm.get_base_model()
    with torch.no_grad():
        for k, v in nf4_sd.items():
            if is_decoder_linear(k):
                mod = base.get_submodule(k[: -len(".weight")])
                layer = getattr(mod, "base_layer", mod)
                layer.weight.copy_(v.to(torch.float64))
    return hf_step(pm, ids, labels)


# ----------------------------------------------------------------------------------------------
# comparison helpers
# ----------------------------------------------------------------------------------------------

def maxrel(a, b):
    """max|a-b| / max|b| (normalised by the reference tensor's scale; robust near zeros)."""
    a, b = a.to(torch.float64), b.to(torch.float64)
    scale = b.abs().max().item()
    return (a - b).abs().max().item() / (scale if scale > 0 else 1.0)


def maxabs(a, b):
    return (a.to(torch.float64) - b.to(torch.float64)).abs().max().item()


# ----------------------------------------------------------------------------------------------
# make
# ----------------------------------------------------------------------------------------------

README_TMPL = """# {name}/
A random {cls} ({desc}), float32. Made by `scripts/make_fixtures.py --arch {arch} --seed {seed}`
with transformers {tf} + PEFT {peft} (torch {torch}, float64 on CPU).

| file | what |
| --- | --- |
| `model/` | `config.json` + `model.safetensors`: the base model as `save_pretrained` writes it |
| `train.jsonl` | 6 rows of 16 tokens: `{{"input_ids": [...], "labels": [...]}}`; labels −100 where masked (row 1: first 6, row 3: first 10) |
| `lora_init.safetensors` | the starting LoRA A/B for all 7 linears of every layer (PEFT names, F32), random and non-zero (B too) |
| `adapter_init/` | the same start as a PEFT adapter directory (`adapter_config.json` + `adapter_model.safetensors`) |
| `ref_step0.safetensors` | rows 0–1 as one batch, from `lora_init`: `logits` [2,16,512], `loss` [1], `hidden.i` (input of layer i; `hidden.2` is after the final norm), and `<lora name>.grad` for every A and B |
| `lora_step3.safetensors`, `adapter_step3/` | LoRA after 3 optimizer steps (rows 0–1, 2–3, 4–5), torch AdamW lr 1e-3, betas (0.9, 0.999), eps 1e-8, weight_decay 0.01, clip grad norm 1.0, constant lr |
| `merged_step3.safetensors` | the base with `adapter_step3` merged (PEFT `merge_and_unload`), F32 |
{nf4_row}| `meta.json` | the settings above and the per-step loss and pre-clip grad norm (`trace`) |

LoRA: r 8, alpha 16 (scaling 2), dropout 0, targets q,k,v,o,gate,up,down. Loss: mean over
supervised tokens after the causal shift. float32 code should match logits and losses to ~1e-5
relative and gradients to ~1e-4 relative; a real bug shows as O(1) differences.
Step-1 loss {loss1:.9f}; an independent float64 re-implementation agrees with HF/PEFT to
{agree} (meta.json `reflib_agreement`).
"""

NF4_ROW = ("| `ref_nf4.safetensors` | QLoRA reference ({how}): every decoder linear's base weight (q,k,v,o,gate,up,down; "
           "not embeddings / lm_head) replaced by its NF4 round trip (block 64, no double quant, first code in the high nibble); "
           "`...q_proj.weight.nf4` (packed u8), `.absmax`, `.dequant` for layer 0; `qlora.logits`, `qlora.loss`, "
           "`<lora name>.qlora_grad` for rows 0–1 |\n")

DESCS = {
    "llama": "2 layers, hidden 64, 4 heads, 2 KV heads (GQA), head_dim 16, intermediate 160, vocab 512, untied head, rope_theta 10000",
    "mistral": "2 layers, hidden 64, 4 heads, 2 KV heads (GQA), head_dim 16, intermediate 160, vocab 512, untied head, rope_theta 10000, config-default sliding_window (inactive at 16 tokens)",
    "qwen2": "2 layers, hidden 64, 4 heads, 2 KV heads (GQA), head_dim 16, intermediate 160, vocab 512, untied head, rope_theta 10000, q/k/v biases",
    "qwen3": "2 layers, hidden 64, 4 heads, 2 KV heads (GQA), head_dim 16, intermediate 160, vocab 512, untied head, rope_theta 10000, per-head q_norm/k_norm before RoPE",
}


OUTPUT_FILES = ["train.jsonl", "lora_init.safetensors", "ref_step0.safetensors", "lora_step3.safetensors",
                "merged_step3.safetensors", "ref_nf4.safetensors", "meta.json", "README.md"]


def pick_nf4(mode):
    if mode == "skip":
        return None, None
    if mode in ("auto", "bnb"):
        try:
            import bitsandbytes  # noqa: F401
            return nf4_bnb, "bitsandbytes %s" % bitsandbytes.__version__
        except Exception as e:  # ImportError, or a broken native library
            if mode == "bnb":
                sys.exit("make_fixtures.py: --nf4 bnb but bitsandbytes is not importable (%s); "
                         "pip install bitsandbytes" % e)
            log("note: bitsandbytes not importable (%s): skipping ref_nf4.safetensors "
                "(use --nf4 torch for this script's own bnb-compatible NF4)" % e)
            return None, None
    return nf4_torch, "scripts/make_fixtures.py NF4 (bnb-compatible)"


def make(args):
    out = args.out
    quant, nf4_how = pick_nf4(args.nf4)
    if os.path.exists(out) and os.listdir(out):
        if not args.force:
            sys.exit("make_fixtures.py: %s exists and is not empty (use --force to overwrite)" % out)
        for sub in ("model", "adapter_init", "adapter_step3"):
            shutil.rmtree(os.path.join(out, sub), ignore_errors=True)
        for f in OUTPUT_FILES:
            if os.path.exists(os.path.join(out, f)):
                os.remove(os.path.join(out, f))
    os.makedirs(out, exist_ok=True)
    # each arch gets its own stream (otherwise llama and mistral would be bit-identical)
    rng_seed = args.seed + 1000 * sorted(ARCHES).index(args.arch)
    torch.manual_seed(rng_seed)
    gen = torch.Generator().manual_seed(rng_seed)
    mdir, ainit, astep = (os.path.join(out, d) for d in ("model", "adapter_init", "adapter_step3"))

    # 1. base model (float32)
    cfg = build_config(args.arch)
    model = transformers.AutoModelForCausalLM.from_config(cfg).to(torch.float32)
    randomize_(model, gen)
    model.save_pretrained(mdir)
    drop_extras(mdir, ["generation_config.json"])  # not part of the fixture layout
    del model
    log("wrote", mdir)

    # 2. data
    write_train(os.path.join(out, "train.jsonl"), gen)
    ids, labels = read_train(os.path.join(out, "train.jsonl"))

    # 3. initial LoRA (float32, A and B random)
    base = load_base(mdir, torch.float32)
    pm = peft.get_peft_model(base, lora_config())
    with torch.no_grad():
        for k, p in lora_params(pm).items():
            p.copy_(0.1 * torch.randn(p.shape, generator=gen, dtype=torch.float64))
    lp = lora_params(pm)
    assert len(lp) == 2 * len(TARGETS) * SHAPE["num_hidden_layers"], sorted(lp)
    save_file(f32(lp), os.path.join(out, "lora_init.safetensors"))
    save_adapter(pm, ainit)
    del pm, base
    log("wrote lora_init.safetensors, adapter_init/")

    # 4. step 0 reference (float64, HF + PEFT), from the files just written
    pm = load_peft(mdir, ainit, torch.float64, trainable=True)
    b0 = BATCHES[0]
    logits, loss, hidden, grads = hf_step(pm, ids[b0], labels[b0])
    ref0 = {"logits": logits, "loss": loss.reshape(1)}
    for i, h in enumerate(hidden):
        ref0["hidden.%d" % i] = h
    for k, g in grads.items():
        ref0[k + ".grad"] = g
    save_file(f32(ref0), os.path.join(out, "ref_step0.safetensors"))
    log("step0 loss %.12f" % loss.item())

    # 5. train 3 steps (HF + PEFT)
    pm.zero_grad(set_to_none=True)
    trace = train_steps(lora_params(pm), lambda i, l, m=pm: hf_step(m, i, l)[1], ids, labels)
    step3 = f32(lora_params(pm))
    save_file(step3, os.path.join(out, "lora_step3.safetensors"))
    del pm
    for t in trace:
        log("step %d loss %.12f grad_norm %.12f" % (t["step"], t["loss"], t["grad_norm"]))

    # adapter_step3 + merged (float32, as a user would do it)
    pm = load_peft(mdir, ainit, torch.float32, trainable=True)
    sd = peft.get_peft_model_state_dict(pm)
    assert set(sd) == set(step3), (sorted(sd)[:3], sorted(step3)[:3])
    peft.set_peft_model_state_dict(pm, step3)
    save_adapter(pm, astep)
    merged = pm.merge_and_unload()
    save_file({k: v.detach().contiguous().clone() for k, v in merged.state_dict().items()},
              os.path.join(out, "merged_step3.safetensors"))
    del pm, merged
    log("wrote lora_step3.safetensors, adapter_step3/, merged_step3.safetensors")

    # 6. independent re-implementation agreement
    ref = RefModel(mdir, leaf_lora(os.path.join(out, "lora_init.safetensors")))
    rlogits, rloss, rhidden, rgrads = ref_step(ref, ids[b0], labels[b0])
    hid = max(maxabs(a, b) for a, b in zip(rhidden, hidden))
    rtrace = train_steps(ref.lora, lambda i, l: ref_step(ref, i, l)[1], ids, labels)
    agree = {
        "logits_maxabs": maxabs(rlogits, logits),
        "loss_abs": abs(rloss.item() - loss.item()),
        "grad_maxrel": max(maxrel(rgrads[k], grads[k]) for k in grads),
        "train_final_maxabs": max(maxabs(ref.lora[k], step3[k]) for k in step3),
        "train_loss_diff": max(abs(a["loss"] - b["loss"]) for a, b in zip(rtrace, trace)),
    }
    log("reflib agreement:", json.dumps(agree), "hidden_maxabs %.3g" % hid)
    bad = [k for k, v in agree.items() if not v < 1e-4] + (["hidden"] if not hid < 1e-4 else [])
    if bad:
        sys.exit("make_fixtures.py: HF/PEFT and the plain re-implementation disagree on %s; "
                 "fixture is suspect (transformers version / arch quirk?)" % bad)

    # 7. NF4 / QLoRA reference
    if quant is not None:
        base_sd = load_file(os.path.join(mdir, "model.safetensors"))
        nsd, parts = nf4_weights(base_sd, quant)
        ql, qloss, _, qgrads = qlora_step(mdir, ainit, nsd, ids[b0], labels[b0])
        outq = {"qlora.logits": ql, "qlora.loss": qloss.reshape(1)}
        for k, g in qgrads.items():
            outq[k + ".qlora_grad"] = g
        outq = f32(outq)
        for k, (packed, absmax, deq) in parts.items():
            if k.startswith("model.layers.0."):
                outq[k + ".nf4"] = packed
                outq[k + ".absmax"] = absmax
                outq[k + ".dequant"] = deq
        save_file(outq, os.path.join(out, "ref_nf4.safetensors"))
        log("wrote ref_nf4.safetensors (%s), qlora loss %.12f" % (nf4_how, qloss.item()))

    # 8. meta.json + README.md
    # same keys as tiny-llama's meta.json; the seed and NF4 source go into README.md
    made_with = {"torch": torch.__version__, "transformers": transformers.__version__,
                 "peft": peft.__version__}
    meta = {
        "name": "tiny-" + args.arch,
        "arch": args.arch,
        "lora": {"r": LORA_R, "alpha": LORA_ALPHA, "dropout": 0.0, "targets": list(TARGETS)},
        "seq_len": SEQ,
        "rows": ROWS,
        "step0_batch_rows": BATCHES[0],
        "train": TRAIN,
        "loss": "mean over supervised tokens (labels != -100) after the causal shift",
        "trace": trace,
        "reflib_agreement": agree,
        "hidden_states": "hidden.i is the input of layer i; hidden.L is after the final norm (HF convention)",
        "made_with": made_with,
    }
    with open(os.path.join(out, "meta.json"), "w") as f:
        json.dump(meta, f, indent=1)
    with open(os.path.join(out, "README.md"), "w") as f:
        f.write(README_TMPL.format(
            name="tiny-" + args.arch, cls=type(cfg).__name__.replace("Config", ""), arch=args.arch,
            desc=DESCS[args.arch], seed=args.seed, tf=transformers.__version__, peft=peft.__version__,
            torch=torch.__version__, loss1=trace[0]["loss"],
            agree="logits %.1e abs, grads %.1e rel" % (agree["logits_maxabs"], agree["grad_maxrel"]),
            nf4_row=NF4_ROW.format(how=nf4_how) if quant is not None else ""))
    log("done:", out)


# ----------------------------------------------------------------------------------------------
# check
# ----------------------------------------------------------------------------------------------

def check(args):
    d = args.check
    tol = args.tol
    mdir, ainit = os.path.join(d, "model"), os.path.join(d, "adapter_init")
    ids, labels = read_train(os.path.join(d, "train.jsonl"))
    meta = json.load(open(os.path.join(d, "meta.json"))) if os.path.exists(os.path.join(d, "meta.json")) else {}
    b0 = meta.get("step0_batch_rows", BATCHES[0])
    want = load_file(os.path.join(d, "ref_step0.safetensors"))
    worst = {}

    def note(group, v):
        worst[group] = max(worst.get(group, 0.0), v)

    pm = load_peft(mdir, ainit, torch.float64, trainable=True)
    with torch.no_grad():
        hf_loss = pm(input_ids=ids[b0], labels=labels[b0], use_cache=False).loss.item()
    logits, loss, hidden, grads = hf_step(pm, ids[b0], labels[b0])
    log("recomputed loss (HF+PEFT, float64): %.12f" % loss.item())
    log("  (transformers' built-in loss, which casts logits to float32: %.12f)" % hf_loss)
    log("ref_step0 loss:                     %.12f" % want["loss"].item())
    note("loss", abs(loss.item() - want["loss"].item()) / abs(want["loss"].item()))
    if meta.get("trace"):
        t1 = meta["trace"][0]["loss"]
        log("meta.json trace step-1 loss:        %.12f  (|diff| %.3g)" % (t1, abs(loss.item() - t1)))
        note("loss_vs_meta", abs(loss.item() - t1) / abs(t1))
    note("logits", maxrel(logits, want["logits"]))
    for i, h in enumerate(hidden):
        if "hidden.%d" % i in want:
            note("hidden", maxrel(h, want["hidden.%d" % i]))
    missing = [k for k in grads if k + ".grad" not in want]
    if missing:
        log("MISSING grads in ref_step0:", missing[:4])
        note("missing", float("inf"))
    for k, g in grads.items():
        if k + ".grad" in want:
            note("grads", maxrel(g, want[k + ".grad"]))

    # 3 training steps from adapter_init vs lora_step3 / meta trace
    if os.path.exists(os.path.join(d, "lora_step3.safetensors")):
        pm.zero_grad(set_to_none=True)
        trace = train_steps(lora_params(pm), lambda i, l: hf_step(pm, i, l)[1], ids, labels)
        want3 = load_file(os.path.join(d, "lora_step3.safetensors"))
        got3 = lora_params(pm)
        note("lora_step3", max(maxrel(got3[k], want3[k]) for k in want3))
        for a, b in zip(trace, meta.get("trace", [])):
            log("  step %d loss %.9f (meta %.9f)  grad_norm %.9f (meta %.9f)"
                % (a["step"], a["loss"], b["loss"], a["grad_norm"], b["grad_norm"]))
            note("trace_loss", abs(a["loss"] - b["loss"]) / abs(b["loss"]))
            note("trace_grad_norm", abs(a["grad_norm"] - b["grad_norm"]) / abs(b["grad_norm"]))
    del pm
    if os.path.exists(os.path.join(d, "merged_step3.safetensors")):
        pm = load_peft(mdir, os.path.join(d, "adapter_step3"), torch.float32, trainable=False)
        merged = pm.merge_and_unload().state_dict()
        wantm = load_file(os.path.join(d, "merged_step3.safetensors"))
        if set(merged) != set(wantm):
            log("merged_step3 tensor names differ:", sorted(set(merged) ^ set(wantm))[:4])
            note("merged_names", float("inf"))
        note("merged_step3", max(maxrel(merged[k], wantm[k]) for k in wantm if k in merged))
        del pm, merged

    # independent implementation against the same file (informational + guarded)
    ref = RefModel(mdir, leaf_lora(os.path.join(d, "lora_init.safetensors")))
    rlogits, rloss, rhidden, rgrads = ref_step(ref, ids[b0], labels[b0])
    note("reflib_logits", maxrel(rlogits, want["logits"]))
    note("reflib_grads", max(maxrel(rgrads[k], want[k + ".grad"]) for k in rgrads))
    log("plain re-implementation loss:       %.12f" % rloss.item())

    nf4_file = os.path.join(d, "ref_nf4.safetensors")
    if os.path.exists(nf4_file):
        wq = load_file(nf4_file)
        base_sd = load_file(os.path.join(mdir, "model.safetensors"))
        nsd, parts = nf4_weights(base_sd, nf4_torch)
        nbad = 0
        for k, (packed, absmax, deq) in parts.items():
            if k + ".nf4" in wq:
                nbad += int((packed != wq[k + ".nf4"].reshape(-1)).sum())
                note("nf4_absmax", maxrel(absmax, wq[k + ".absmax"]))
                note("nf4_dequant", maxrel(deq, wq[k + ".dequant"]))
        log("NF4 (this script's torch code) vs ref_nf4: %d packed bytes differ" % nbad)
        note("nf4_bytes_differ", float(nbad))
        ql, qloss, _, qgrads = qlora_step(mdir, ainit, nsd, ids[b0], labels[b0])
        log("recomputed qlora loss: %.12f  ref_nf4 qlora.loss: %.12f" % (qloss.item(), wq["qlora.loss"].item()))
        note("qlora_loss", abs(qloss.item() - wq["qlora.loss"].item()) / abs(wq["qlora.loss"].item()))
        note("qlora_logits", maxrel(ql, wq["qlora.logits"]))
        note("qlora_grads", max(maxrel(g, wq[k + ".qlora_grad"]) for k, g in qgrads.items()))

    log("max relative differences vs %s (max|a-b|/max|ref| per tensor; loss: |a-b|/|ref|):" % d)
    fails = []
    for k, v in worst.items():
        lim = 0.0 if k == "nf4_bytes_differ" else tol
        ok = v <= lim
        fails += [] if ok else [k]
        log("  %-18s %.3e  %s" % (k, v, "ok" if ok else "FAIL (> %g)" % lim))
    if fails:
        log("CHECK FAILED:", ", ".join(fails))
        return 1
    log("CHECK OK (tol %g)" % tol)
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="See the module docstring for details.")
    ap.add_argument("--arch", choices=sorted(ARCHES), help="architecture to generate")
    ap.add_argument("--out", help="output fixture directory")
    ap.add_argument("--seed", type=int, default=0, help="RNG seed (default 0)")
    ap.add_argument("--nf4", choices=["auto", "bnb", "torch", "skip"], default="auto",
                    help="ref_nf4.safetensors: auto = bitsandbytes if importable, else skip (default)")
    ap.add_argument("--force", action="store_true", help="overwrite a non-empty --out")
    ap.add_argument("--check", metavar="DIR", help="verify an existing fixture dir instead of making one")
    ap.add_argument("--tol", type=float, default=1e-5,
                    help="--check: max allowed relative difference (default 1e-5; values are stored F32)")
    args = ap.parse_args()
    torch.set_grad_enabled(True)
    if args.check:
        sys.exit(check(args))
    if not args.arch or not args.out:
        ap.error("--arch and --out are required (or use --check DIR)")
    make(args)


if __name__ == "__main__":
    main()
