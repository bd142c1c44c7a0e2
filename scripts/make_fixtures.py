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
    and, smaller (hidden 48, intermediate 96, vocab 256; ARCH_SHAPE), transformers >= 5 only:
        gemma2   Gemma2ForCausalLM  (head_dim 16, query_pre_attn_scalar 24, soft-caps 1.5 / 3.0,
                                     sliding window 6 on layer 0, layer 1 full, tied head, GELU-tanh)
        gemma3   Gemma3ForCausalLM  (gemma3_text: as gemma2 without soft-caps, q/k norms, RoPE
                                     theta 1e4 on the sliding layer, 1e6 with linear factor 2 on the full one)
        phi3     Phi3ForCausalLM    (fused qkv_proj / gate_up_proj, LongRoPE with
                                     original_max_position_embeddings 8 < 16 tokens, untied head)
    weights ~ N(0, 0.05), norm weights ~ 1 + N(0, 0.1) (Gemma: N(0, 0.1), its norms scale by 1 + w),
    biases ~ N(0, 0.02) (Gemma 2: embeddings N(0, 0.3), q/k N(0, 0.15), so the soft-caps bite);
    saved float32 with save_pretrained into model/;
  * train.jsonl: 6 rows x 16 tokens (ids in [3, 512)), labels -100 on row 1's first 6 and row 3's
    first 10 tokens;
  * a random non-zero LoRA (r 8, alpha 16, dropout 0, q,k,v,o,gate,up,down (Phi-3: qkv,o,gate_up,down);
    A and B ~ N(0, 0.1)):
    lora_init.safetensors (PEFT names) and adapter_init/ (PEFT save_pretrained);
  * ref_step0.safetensors: rows 0-1 as one batch: logits, loss, hidden.i, <lora name>.grad
    (Phi-3 also short.logits: row 0's first 8 tokens, LongRoPE's short factors);
  * 3 steps of torch.optim.AdamW (lr 1e-3, betas (0.9, 0.999), eps 1e-8, wd 0.01), clip_grad_norm_
    1.0, batches rows 0-1, 2-3, 4-5: lora_step3.safetensors, adapter_step3/, merged_step3.safetensors
    (PEFT merge_and_unload, float32; the base checkpoint's tensor names), meta.json (settings +
    per-step loss / pre-clip grad norm; for the newer families "family": what HF built: layer
    types, scales, RoPE frequencies, which LongRoPE list, how hard the soft-caps bite);
  * ref_nf4.safetensors (QLoRA reference: NF4 round trip of every decoder linear, block 64, no
    double quant) when bitsandbytes is importable (--nf4 torch uses this script's own NF4 code,
    which --check verifies bit-exactly against a bitsandbytes-made fixture);
  * an independent plain-PyTorch float64 re-implementation of the forward pass cross-checks
    HF/PEFT; the agreement goes into meta.json "reflib_agreement"; a README.md describes the dir.

Usage:
  python3 scripts/make_fixtures.py --arch llama --out /tmp/fix-llama [--seed 0] [--nf4 auto|bnb|torch|skip]
      (the RNG stream is seeded with seed + 1000 * index of the arch in llama, mistral, qwen2,
      qwen3, gemma2, gemma3, phi3 (ARCHES order; new ones are appended), so no two architectures
      share weights)
  python3 scripts/make_fixtures.py --check tests/fixtures/tiny-llama
      loads DIR/model + DIR/adapter_init, recomputes logits/loss/hidden/grads on rows 0-1 in
      float64 and prints max relative differences vs DIR/ref_step0.safetensors and the meta.json
      trace loss; when present also re-runs the 3 training steps (vs lora_step3 + trace), the
      merge (vs merged_step3) and NF4/QLoRA (vs ref_nf4, packed bytes must match exactly), and
      the plain re-implementation; exits 1 when anything exceeds --tol (default 1e-5).

Numerics: HF attention runs as "sdpa" (float64 end to end; HF's "eager" path does its softmax in
float32), except Gemma 2, whose attention soft-cap only the "eager" path applies. HF computes RoPE cos/sin in float32 even for float64 models, so HF and the plain
re-implementation (float64 RoPE) differ at ~1e-7. The loss is computed here in float64;
transformers' built-in loss (model(labels=...)) casts logits to float32 first, and the
tiny-llama fixture's stored loss / trace losses are exactly that (~1e-7 relative from ours).

Needs: torch, transformers, peft, safetensors; optionally bitsandbytes (CPU quantize works in
0.50). Tested with torch 2.15.0 + transformers 5.24.0 + PEFT 0.21.2 + bitsandbytes 0.50.2 in
/tmp/fixvenv (python3 -m venv /tmp/fixvenv && /tmp/fixvenv/bin/pip install torch transformers
peft safetensors bitsandbytes); the transformers-4 spellings (rope_theta, torch_dtype) are
handled but untested. tiny-gemma2 / tiny-gemma3 / tiny-phi3 were made with torch 2.5.1 +
transformers 5.17.0 + PEFT 0.21.2 (/work/venv-t5), where this script regenerates tiny-qwen3
byte for byte.
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

# the order is the seed order (seed + 1000 * index): new architectures go at the end, so that the
# older fixtures keep their seeds
ARCHES = {
    "llama": "LlamaConfig",
    "mistral": "MistralConfig",
    "qwen2": "Qwen2Config",
    "qwen3": "Qwen3Config",
    "gemma2": "Gemma2Config",
    "gemma3": "Gemma3TextConfig",
    "phi3": "Phi3Config",
}
SHAPE = dict(vocab_size=512, hidden_size=64, intermediate_size=160, num_hidden_layers=2,
             num_attention_heads=4, num_key_value_heads=2, head_dim=16,
             max_position_embeddings=128, rms_norm_eps=1e-5, tie_word_embeddings=False,
             bos_token_id=1, eos_token_id=2, hidden_act="silu", initializer_range=0.02)
ROPE_THETA = 10000.0
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
# Phi-3's fused linears, as PEFT targets them (one LoRA per fused matrix)
PHI3_TARGETS = ["qkv_proj", "o_proj", "gate_up_proj", "down_proj"]

# The newer families: hidden 48 with head_dim 16 (H*D = 64 != C, as in real Gemma checkpoints;
# Phi-3 has no head_dim key, so D = C/H = 12), vocab 256 and intermediate 96 to keep each fixture
# directory under 1 MB. DROP removes a SHAPE key (Gemma's is hidden_activation; Phi-3 has no head_dim).
DROP = object()
SMALL = dict(vocab_size=256, hidden_size=48, intermediate_size=96, pad_token_id=None)
GEMMA_SLIDING_LAYERS = ["sliding_attention", "full_attention"]
PHI3_ROPE_LEN = 6                                    # D/2 = 12/2 factors per list
ARCH_SHAPE = {
    # Gemma 2: soft-caps small enough to bite at this scale (real checkpoints: 50 and 30),
    # query_pre_attn_scalar != head_dim, sliding window 6 < 16 tokens, tied head
    "gemma2": dict(SMALL, hidden_act=DROP, hidden_activation="gelu_pytorch_tanh",
                   tie_word_embeddings=True, query_pre_attn_scalar=24, attn_logit_softcapping=1.5,
                   final_logit_softcapping=3.0, sliding_window=6, layer_types=GEMMA_SLIDING_LAYERS),
    # Gemma 3 (text): local/global RoPE (global with linear scaling 2), no soft-caps
    "gemma3": dict(SMALL, hidden_act=DROP, hidden_activation="gelu_pytorch_tanh",
                   tie_word_embeddings=True, query_pre_attn_scalar=24, attn_logit_softcapping=None,
                   final_logit_softcapping=None, sliding_window=6, layer_types=GEMMA_SLIDING_LAYERS),
    # Phi-3: fused qkv / gate_up, LongRoPE with original_max_position_embeddings 8 < 16 tokens
    "phi3": dict(SMALL, head_dim=DROP, original_max_position_embeddings=8),
}
ROPE_BY_ARCH = {
    "gemma3": {"sliding_attention": {"rope_type": "default", "rope_theta": ROPE_THETA},
               "full_attention": {"rope_type": "linear", "factor": 2.0, "rope_theta": 1000000.0}},
    "phi3": {"rope_type": "longrope", "rope_theta": ROPE_THETA, "partial_rotary_factor": 1.0,
             "original_max_position_embeddings": 8,
             "short_factor": [1.0 + 0.1 * i for i in range(PHI3_ROPE_LEN)],
             "long_factor": [2.0 + 0.4 * i for i in range(PHI3_ROPE_LEN)]},
}
# random-init scales that differ per family (randomize_): Gemma stores norm weights around 0 (it
# multiplies by 1 + w); Gemma 2's q/k and embedding (= tied head) are larger so that the 1.5 / 3.0
# soft-caps are clearly non-linear (meta.json "family"."softcap_bite")
INIT = {"norm_center": 1.0, "embed_std": 0.05, "qk_std": 0.05}
ARCH_INIT = {"gemma2": {"norm_center": 0.0, "embed_std": 0.3, "qk_std": 0.15},
             "gemma3": {"norm_center": 0.0}}
# HF's "sdpa" attention ignores the attention soft-cap; Gemma 2 runs "eager" (softmax in float32)
EAGER_MODEL_TYPES = ("gemma2",)
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

def shape(arch):
    """SHAPE with the architecture's own settings (ARCH_SHAPE) on top."""
    kw = dict(SHAPE, **ARCH_SHAPE.get(arch, {}))
    return {k: v for k, v in kw.items() if v is not DROP}


def targets(arch):
    return list(PHI3_TARGETS if arch == "phi3" else TARGETS)


def build_config(arch):
    cls = getattr(transformers, ARCHES[arch])
    kw = shape(arch)
    if TF_MAJOR >= 5:
        kw["rope_parameters"] = json.loads(json.dumps(ROPE_BY_ARCH.get(
            arch, {"rope_type": "default", "rope_theta": ROPE_THETA})))
    elif arch in ROPE_BY_ARCH:
        sys.exit("make_fixtures.py: --arch %s needs transformers >= 5 (rope_parameters)" % arch)
    else:
        kw["rope_theta"] = ROPE_THETA
    if arch in ("llama", "qwen3"):
        kw["attention_bias"] = False
    if arch == "llama":
        kw["mlp_bias"] = False
    return cls(**kw)


def randomize_(model, gen, arch="llama"):
    """Deterministic, larger-than-default random init (so nothing is near-trivial). The draws are
    the same for every arch (one randn per parameter, in named_parameters order); only the scales
    of ARCH_INIT differ."""
    sc = dict(INIT, **ARCH_INIT.get(arch, {}))
    with torch.no_grad():
        for name, p in model.named_parameters():
            r = torch.randn(p.shape, generator=gen, dtype=torch.float64)
            if name.endswith("norm.weight"):          # input/post_attention/final/q/k (+ Gemma's pre/post ff) norms
                v = sc["norm_center"] + 0.1 * r
            elif name.endswith(".bias"):
                v = 0.02 * r
            elif name.endswith("embed_tokens.weight"):
                v = sc["embed_std"] * r
            elif name.endswith(("q_proj.weight", "k_proj.weight")):
                v = sc["qk_std"] * r
            else:
                v = 0.05 * r
            p.copy_(v.to(p.dtype))


def write_train(path, gen, vocab_size=SHAPE["vocab_size"]):
    ids = torch.randint(3, vocab_size, (ROWS, SEQ), generator=gen)
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


def lora_config(arch="llama"):
    return peft.LoraConfig(r=LORA_R, lora_alpha=LORA_ALPHA, lora_dropout=0.0,
                           target_modules=targets(arch), bias="none", task_type="CAUSAL_LM",
                           init_lora_weights=False)


def load_base(model_dir, dtype):
    kw = {"dtype": dtype} if TF_MAJOR >= 5 else {"torch_dtype": dtype}
    # sdpa: in float64 it is float64 throughout; the "eager" path does its softmax in float32.
    # But sdpa ignores Gemma 2's attention soft-cap, so Gemma 2 runs eager (EAGER_MODEL_TYPES).
    with open(os.path.join(model_dir, "config.json")) as f:
        mtype = json.load(f).get("model_type")
    impl = "eager" if mtype in EAGER_MODEL_TYPES else "sdpa"
    m = transformers.AutoModelForCausalLM.from_pretrained(model_dir, attn_implementation=impl, **kw)
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

GEMMA_TYPES = ("gemma2", "gemma3_text")


def rope_powers(theta, d):
    """theta^(2i/d) for i < d/2, float64: RoPE's inverse frequencies before any scaling are 1 / this."""
    return float(theta) ** (torch.arange(0, d, 2, dtype=torch.float64) / d)


class RefModel:
    """The forward pass written from the papers / model cards, not from HF's code paths:
    Llama / Mistral / Qwen2 (biases) / Qwen3 (q/k norms), Gemma 2 / 3 (norms x (1 + w), four norms a
    layer, embedding x sqrt(C), GELU-tanh, scale query_pre_attn_scalar^-1/2, attention and final
    soft-caps c*tanh(s/c) with the cap before the mask, sliding-window layers from layer_types,
    local/global RoPE per layer type, tied head) and Phi-3 (fused qkv / gate_up, LongRoPE).
    Everything float64, RoPE included. self.stats collects how hard the soft-caps bite."""

    def __init__(self, model_dir, lora, weights=None):
        cfg = json.load(open(os.path.join(model_dir, "config.json")))
        self.cfg = cfg
        w = weights if weights is not None else load_file(os.path.join(model_dir, "model.safetensors"))
        self.w = {k: v.to(torch.float64) for k, v in w.items()}
        self.lora = lora            # {saved lora name: f64 leaf tensor}
        self.scaling = LORA_ALPHA / LORA_R
        self.kind = cfg.get("model_type", "llama")
        self.gemma = self.kind in GEMMA_TYPES
        self.C = cfg["hidden_size"]
        self.H = cfg["num_attention_heads"]
        self.KV = cfg.get("num_key_value_heads") or self.H
        self.D = cfg.get("head_dim") or self.C // self.H
        self.FF = cfg["intermediate_size"]
        self.eps = cfg["rms_norm_eps"]
        self.L = cfg["num_hidden_layers"]
        self.max_pos = cfg.get("max_position_embeddings")
        self.layer_types = cfg.get("layer_types") or ["full_attention"] * self.L
        self.window = cfg.get("sliding_window")
        self.attn_scale = (cfg["query_pre_attn_scalar"] ** -0.5 if self.gemma else self.D ** -0.5)
        self.attn_cap = cfg.get("attn_logit_softcapping") if self.kind == "gemma2" else None
        if self.kind == "gemma3_text" and cfg.get("attn_logit_softcapping") is not None:
            sys.exit("make_fixtures.py: gemma3 config sets attn_logit_softcapping, which transformers 5 "
                     "ignores; the plain re-implementation does not guess")
        self.final_cap = cfg.get("final_logit_softcapping") if self.gemma else None
        act = cfg.get("hidden_activation") or cfg.get("hidden_act", "silu")
        acts = {"silu": F.silu, "gelu_pytorch_tanh": lambda x: F.gelu(x, approximate="tanh")}
        if act not in acts:
            sys.exit("make_fixtures.py: %s: activation %r not in the plain re-implementation" % (model_dir, act))
        self.act = acts[act]
        rp = cfg.get("rope_parameters") or {"rope_type": "default",
                                            "rope_theta": cfg.get("rope_theta", 10000.0)}
        # Gemma 3 keys rope_parameters by layer type; the others have one flat set
        self.rope_by_type = {lt: rp.get(lt, rp) for lt in set(self.layer_types)}
        self.stats = {}

    def rms(self, x, w):
        if self.gemma:
            w = 1.0 + w
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

    def rope_freqs(self, rp, T):
        """(inv_freq [d/2] float64, cos/sin multiplier, rotary dims d, which LongRoPE list) for T tokens."""
        d = int(self.D * rp.get("partial_rotary_factor", 1.0))
        base = rope_powers(rp["rope_theta"], d)
        kind, mult, which = rp.get("rope_type", rp.get("type", "default")), 1.0, None
        if kind == "default":
            inv = 1.0 / base
        elif kind == "linear":
            inv = 1.0 / base / rp["factor"]
        elif kind == "longrope":
            # LongRoPE (Phi-3): the long list when the sequence is longer than the pretraining
            # length, else the short one; cos/sin x sqrt(1 + ln(s) / ln(L0)), s = max / L0
            l0 = rp["original_max_position_embeddings"]
            s = rp.get("factor") or self.max_pos / l0
            mult = rp.get("attention_factor") or (1.0 if s <= 1 else math.sqrt(1 + math.log(s) / math.log(l0)))
            which = "long_factor" if T > l0 else "short_factor"
            inv = 1.0 / (torch.tensor(rp[which], dtype=torch.float64) * base)
        else:
            sys.exit("make_fixtures.py: rope_type %r not in the plain re-implementation" % kind)
        return inv, mult, d, which

    def rope(self, x, T, rp):
        inv, mult, d, _ = self.rope_freqs(rp, T)
        f = torch.outer(torch.arange(T, dtype=torch.float64), inv)
        emb = torch.cat([f, f], -1)
        cos, sin = emb.cos() * mult, emb.sin() * mult
        xr, xp = x[..., :d], x[..., d:]
        x1, x2 = xr[..., : d // 2], xr[..., d // 2:]
        return torch.cat([xr * cos + torch.cat([-x2, x1], -1) * sin, xp], -1)

    def mask(self, T, layer_type):
        q = torch.arange(T).view(-1, 1)
        k = torch.arange(T).view(1, -1)
        ok = k <= q
        if layer_type == "sliding_attention":
            ok = ok & (q - k < self.window)          # the last `window` positions, itself included
        m = torch.zeros(T, T, dtype=torch.float64)
        return m.masked_fill(~ok, float("-inf")), ok

    def cap(self, s, c, key, ok=None):
        """c * tanh(s / c); records max |s/c| and the share of |s/c| > 0.5 (over unmasked entries)."""
        r = (s / c).detach()
        r = r[ok.expand_as(r)] if ok is not None else r.reshape(-1)
        self.stats[key] = {"max_abs_s_over_c": r.abs().max().item(),
                           "share_over_0.5": (r.abs() > 0.5).double().mean().item()}
        return c * torch.tanh(s / c)

    def attention(self, h, p, T, layer_type):
        B = h.shape[0]
        H, KV, D = self.H, self.KV, self.D
        if p + "self_attn.qkv_proj.weight" in self.w:           # Phi-3: rows q | k | v
            qkv = self.lin(h, p + "self_attn.qkv_proj")
            q, k, v = qkv.split([H * D, KV * D, KV * D], dim=-1)
        else:
            q = self.lin(h, p + "self_attn.q_proj")
            k = self.lin(h, p + "self_attn.k_proj")
            v = self.lin(h, p + "self_attn.v_proj")
        q, k, v = q.reshape(B, T, H, D), k.reshape(B, T, KV, D), v.reshape(B, T, KV, D)
        if p + "self_attn.q_norm.weight" in self.w:
            q = self.rms(q, self.w[p + "self_attn.q_norm.weight"])
            k = self.rms(k, self.w[p + "self_attn.k_norm.weight"])
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))
        rp = self.rope_by_type[layer_type]
        q, k = self.rope(q, T, rp), self.rope(k, T, rp)
        k = k.repeat_interleave(H // KV, dim=1)
        v = v.repeat_interleave(H // KV, dim=1)
        s = q @ k.transpose(-1, -2) * self.attn_scale
        mask, ok = self.mask(T, layer_type)
        if self.attn_cap is not None:
            s = self.cap(s, self.attn_cap, "attn_softcap." + p.split(".")[2], ok)
        att = torch.softmax(s + mask, dim=-1)
        o = (att @ v).transpose(1, 2).reshape(B, T, H * D)
        return self.lin(o, p + "self_attn.o_proj")

    def mlp(self, h, p):
        if p + "mlp.gate_up_proj.weight" in self.w:              # Phi-3: rows gate | up
            gu = self.lin(h, p + "mlp.gate_up_proj")
            gate, up = gu[..., : self.FF], gu[..., self.FF:]
        else:
            gate, up = self.lin(h, p + "mlp.gate_proj"), self.lin(h, p + "mlp.up_proj")
        return self.lin(self.act(gate) * up, p + "mlp.down_proj")

    def forward(self, ids):
        B, T = ids.shape
        x = self.w["model.embed_tokens.weight"][ids]
        if self.gemma:
            x = x * math.sqrt(self.C)
        hidden = []
        for i in range(self.L):
            p = "model.layers.%d." % i
            hidden.append(x)
            a = self.attention(self.rms(x, self.w[p + "input_layernorm.weight"]), p, T, self.layer_types[i])
            if self.gemma:
                a = self.rms(a, self.w[p + "post_attention_layernorm.weight"])
                x = x + a
                m = self.mlp(self.rms(x, self.w[p + "pre_feedforward_layernorm.weight"]), p)
                x = x + self.rms(m, self.w[p + "post_feedforward_layernorm.weight"])
            else:
                x = x + a
                x = x + self.mlp(self.rms(x, self.w[p + "post_attention_layernorm.weight"]), p)
        x = self.rms(x, self.w["model.norm.weight"])
        hidden.append(x)
        head = self.w.get("lm_head.weight", self.w["model.embed_tokens.weight"])
        logits = x @ head.t()
        if self.final_cap is not None:
            logits = self.cap(logits, self.final_cap, "final_softcap")
        return logits, hidden


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
# family specifics: what HF built, and the extra references
# ----------------------------------------------------------------------------------------------

def longrope_set(rp, inv_freq):
    """Which LongRoPE list ('short_factor' / 'long_factor') HF's inv_freq [D/2] was made from."""
    base = rope_powers(rp["rope_theta"], 2 * len(rp["short_factor"]))
    err = {k: maxrel(inv_freq, 1.0 / (torch.tensor(rp[k], dtype=torch.float64) * base))
           for k in ("short_factor", "long_factor")}
    best = min(err, key=err.get)
    assert err[best] < 1e-6, err
    return best


def hf_family_info(arch, pm, T, model_dir):
    """The family-specific settings as HF itself built them (read back from the modules after a
    forward over T tokens), for meta.json "family": the C side must reproduce these."""
    m = pm.get_base_model()
    cfg, inner = m.config, m.model
    info = {}
    if arch in ("gemma2", "gemma3"):
        att = [layer.self_attn for layer in inner.layers]
        info.update({
            "layer_types": list(cfg.layer_types),
            "sliding_window_per_layer": [a.sliding_window for a in att],
            "sliding_rule": "key k visible to query q iff q - sliding_window < k <= q (masking_utils.sliding_window_overlay)",
            "attention_scale": att[0].scaling,
            "query_pre_attn_scalar": cfg.query_pre_attn_scalar,
            "embed_scale": inner.embed_tokens.embed_scale.item(),
            "embed_scale_note": "hidden_size**0.5 as a tensor in the weights' dtype (exact here: float64); "
                                "f32 weights: float32(sqrt(C)), bf16: bf16(sqrt(C))",
            "norm": "x * rsqrt(mean(x^2) + eps) * (1 + w), every norm incl. q/k norms; 4 norms a layer",
            "activation": cfg.hidden_activation,
            "attn_logit_softcapping": cfg.attn_logit_softcapping if arch == "gemma2" else None,
            "final_logit_softcapping": cfg.final_logit_softcapping,
            "attn_implementation": cfg._attn_implementation,
            "tied_head": "lm_head.weight" not in load_file(os.path.join(model_dir, "model.safetensors")),
        })
    if arch == "gemma3":
        re = inner.rotary_emb
        info["rope"] = {lt: dict(cfg.rope_parameters[lt], attention_scaling=getattr(re, lt + "_attention_scaling"),
                                 inv_freq=getattr(re, lt + "_inv_freq").tolist()) for lt in re.layer_types}
    if arch == "phi3":
        re = inner.rotary_emb
        rp = cfg.rope_parameters
        info["rope"] = {"seq_len": T, "original_max_position_embeddings": rp["original_max_position_embeddings"],
                        "max_position_embeddings": cfg.max_position_embeddings,
                        "factor_set_used": longrope_set(rp, re.inv_freq.to(torch.float64)),
                        "attention_factor": re.attention_scaling, "inv_freq": re.inv_freq.tolist(),
                        "rule": "long_factor iff max(position_ids)+1 > original_max_position_embeddings; "
                                "cos and sin x attention_factor either way"}
        H, KV = cfg.num_attention_heads, cfg.num_key_value_heads
        D = cfg.hidden_size // H
        info["fused"] = {"qkv_proj": "[(H + 2 KV) D, C] = [%d, %d]: rows q [0, %d), k [%d, %d), v [%d, %d)"
                                     % ((H + 2 * KV) * D, cfg.hidden_size, H * D, H * D, (H + KV) * D,
                                        (H + KV) * D, (H + 2 * KV) * D),
                         "gate_up_proj": "[2 FF, C] = [%d, %d]: rows gate [0, %d), up [%d, %d); down(up * silu(gate))"
                                         % (2 * cfg.intermediate_size, cfg.hidden_size, cfg.intermediate_size,
                                            cfg.intermediate_size, 2 * cfg.intermediate_size)}
    return info


def short_len(config):
    """Phi-3 (config.json dict): a sequence of original_max_position_embeddings tokens, which takes
    LongRoPE's short list; 0 for the others."""
    if config.get("model_type") != "phi3":
        return 0
    return config["rope_parameters"]["original_max_position_embeddings"]


def extra_refs(pm, ids):
    """Extra reference tensors of ref_step0: Phi-3's `short.logits` [1, L0, V], row 0's first L0 =
    original_max_position_embeddings tokens (short factors), from adapter_init."""
    n = short_len(pm.get_base_model().config.to_dict())
    if not n:
        return {}
    with torch.no_grad():
        out = pm(input_ids=ids[:1, :n], use_cache=False)
    rp = pm.get_base_model().config.rope_parameters
    assert longrope_set(rp, pm.get_base_model().model.rotary_emb.inv_freq.to(torch.float64)) == "short_factor"
    return {"short.logits": out.logits.detach()}


def ref_extra(ref, ids):
    n = short_len(ref.cfg)
    if not n:
        return {}
    with torch.no_grad():
        return {"short.logits": ref.forward(ids[:1, :n])[0]}


def base_keys_only(sd, model_dir):
    """The merged state dict with the base checkpoint's tensor names only (a tied head is one tensor
    there, embed_tokens; state_dict() lists it twice)."""
    keys = set(load_file(os.path.join(model_dir, "model.safetensors")))
    return {k: v for k, v in sd.items() if k in keys}


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
    return any(name.endswith("." + t + ".weight") for t in TARGETS + PHI3_TARGETS)


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
| `lora_init.safetensors` | the starting LoRA A/B for all {nlin} linears of every layer (PEFT names, F32), random and non-zero (B too) |
| `adapter_init/` | the same start as a PEFT adapter directory (`adapter_config.json` + `adapter_model.safetensors`) |
| `ref_step0.safetensors` | rows 0–1 as one batch, from `lora_init`: `logits` [2,16,{vocab}], `loss` [1], `hidden.i` (input of layer i; `hidden.{nlayers}` is after the final norm), and `<lora name>.grad` for every A and B{extra_ref} |
| `lora_step3.safetensors`, `adapter_step3/` | LoRA after 3 optimizer steps (rows 0–1, 2–3, 4–5), torch AdamW lr 1e-3, betas (0.9, 0.999), eps 1e-8, weight_decay 0.01, clip grad norm 1.0, constant lr |
| `merged_step3.safetensors` | the base with `adapter_step3` merged (PEFT `merge_and_unload`), F32 |
{nf4_row}| `meta.json` | the settings above and the per-step loss and pre-clip grad norm (`trace`) |

LoRA: r 8, alpha 16 (scaling 2), dropout 0, targets {targets}. Loss: mean over
supervised tokens after the causal shift. float32 code should match logits and losses to ~1e-5
relative and gradients to ~1e-4 relative; a real bug shows as O(1) differences.
Step-1 loss {loss1:.9f}; an independent float64 re-implementation agrees with HF/PEFT to
{agree} (meta.json `reflib_agreement`).
{family}"""

# per family: what the C side must reproduce (README paragraph; the numbers are in meta.json "family")
FAMILY_NOTES = {
    "gemma2": """
Gemma 2 as transformers {tf} computes it (meta.json `family` has what HF built): embeddings × √48
(`embed_scale`, float32), every RMSNorm × (1 + w) (norm weights stored around 0), four norms a
layer (input, post_attention, pre_feedforward, post_feedforward: `x + post(attn(in(x)))`, then
`x + post_ff(mlp(pre_ff(x)))`), GELU-tanh MLP, attention scale 24^-1/2 (`query_pre_attn_scalar`,
not head_dim 16), scores soft-capped `1.5·tanh(s/1.5)` before the causal / sliding mask, layer 0
sliding (query q sees keys q−5..q: window 6), layer 1 full, tied head (no `lm_head` in `model/`),
logits soft-capped `3·tanh(z/3)`. The caps bite (`family.softcap_bite`: share of |s/c| > 0.5).
HF runs eager attention here (its sdpa path drops the soft-cap), softmax in float32.
""",
    "gemma3": """
Gemma 3 (text) as transformers {tf} computes it (meta.json `family`): as Gemma 2 (× √48 embeddings,
(1 + w) norms, four norms a layer, GELU-tanh, scale 24^-1/2, tied head, layer 0 sliding with window
6, layer 1 full) without soft-caps, plus per-head `q_norm` / `k_norm` ((1 + w), [16]) after the
projections and before RoPE, and RoPE per layer type (`rope_parameters.sliding_attention`: theta
10000; `rope_parameters.full_attention`: theta 1e6, linear scaling factor 2, i.e. inv_freq / 2).
""",
    "phi3": """
Phi-3 as transformers {tf} computes it (meta.json `family`): fused `qkv_proj` [96, 48] (H 4, KV 2,
D 12: rows q [0,48), k [48,72), v [72,96)) and `gate_up_proj` [192, 48]
(gate rows [0,96), up [96,192)), one LoRA per fused matrix (PEFT targets qkv_proj, o_proj,
gate_up_proj, down_proj). LongRoPE: `original_max_position_embeddings` 8 < 16 tokens, so HF uses
`long_factor` for the 16-token rows (`family.rope.factor_set_used`) and multiplies cos and sin by
√(1 + ln(128/8)/ln 8) = 1.5275 (`family.rope.attention_factor`); `short.logits` [1,8,256] is row 0's
first 8 tokens (8 ≤ 8: `short_factor`, same attention factor) from `adapter_init`.
""",
}

NF4_ROW = ("| `ref_nf4.safetensors` | QLoRA reference ({how}): every decoder linear's base weight (q,k,v,o,gate,up,down, or Phi-3's qkv,o,gate_up,down; "
           "not embeddings / lm_head) replaced by its NF4 round trip (block 64, no double quant, first code in the high nibble); "
           "`...q_proj.weight.nf4` (packed u8), `.absmax`, `.dequant` for layer 0; `qlora.logits`, `qlora.loss`, "
           "`<lora name>.qlora_grad` for rows 0–1 |\n")

DESCS = {
    "llama": "2 layers, hidden 64, 4 heads, 2 KV heads (GQA), head_dim 16, intermediate 160, vocab 512, untied head, rope_theta 10000",
    "mistral": "2 layers, hidden 64, 4 heads, 2 KV heads (GQA), head_dim 16, intermediate 160, vocab 512, untied head, rope_theta 10000, config-default sliding_window (inactive at 16 tokens)",
    "qwen2": "2 layers, hidden 64, 4 heads, 2 KV heads (GQA), head_dim 16, intermediate 160, vocab 512, untied head, rope_theta 10000, q/k/v biases",
    "qwen3": "2 layers, hidden 64, 4 heads, 2 KV heads (GQA), head_dim 16, intermediate 160, vocab 512, untied head, rope_theta 10000, per-head q_norm/k_norm before RoPE",
    "gemma2": "2 layers, hidden 48, 4 heads, 2 KV heads (GQA), head_dim 16, intermediate 96, vocab 256, tied head, rope_theta 10000, query_pre_attn_scalar 24, attention soft-cap 1.5, final soft-cap 3.0, sliding window 6 on layer 0",
    "gemma3": "2 layers, hidden 48, 4 heads, 2 KV heads (GQA), head_dim 16, intermediate 96, vocab 256, tied head, query_pre_attn_scalar 24, q/k norms, sliding window 6 on layer 0 with rope_theta 10000, layer 1 full with rope_theta 1e6 and linear scaling 2",
    "phi3": "2 layers, hidden 48, 4 heads, 2 KV heads (GQA), head_dim 12, intermediate 96, vocab 256, untied head, fused qkv_proj / gate_up_proj, LongRoPE (rope_theta 10000, original_max_position_embeddings 8, max_position_embeddings 128)",
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
    rng_seed = args.seed + 1000 * list(ARCHES).index(args.arch)
    torch.manual_seed(rng_seed)
    gen = torch.Generator().manual_seed(rng_seed)
    mdir, ainit, astep = (os.path.join(out, d) for d in ("model", "adapter_init", "adapter_step3"))

    # 1. base model (float32)
    cfg = build_config(args.arch)
    model = transformers.AutoModelForCausalLM.from_config(cfg).to(torch.float32)
    randomize_(model, gen, args.arch)
    model.save_pretrained(mdir)
    drop_extras(mdir, ["generation_config.json"])  # not part of the fixture layout
    del model
    log("wrote", mdir)

    # 2. data
    write_train(os.path.join(out, "train.jsonl"), gen, cfg.vocab_size)
    ids, labels = read_train(os.path.join(out, "train.jsonl"))

    # 3. initial LoRA (float32, A and B random)
    base = load_base(mdir, torch.float32)
    pm = peft.get_peft_model(base, lora_config(args.arch))
    with torch.no_grad():
        for k, p in lora_params(pm).items():
            p.copy_(0.1 * torch.randn(p.shape, generator=gen, dtype=torch.float64))
    lp = lora_params(pm)
    assert len(lp) == 2 * len(targets(args.arch)) * cfg.num_hidden_layers, sorted(lp)
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
    family = hf_family_info(args.arch, pm, ids.shape[1], mdir)
    extra = extra_refs(pm, ids)
    ref0.update(extra)
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
    merged = base_keys_only(pm.merge_and_unload().state_dict(), mdir)
    save_file({k: v.detach().contiguous().clone() for k, v in merged.items()},
              os.path.join(out, "merged_step3.safetensors"))
    del pm, merged
    log("wrote lora_step3.safetensors, adapter_step3/, merged_step3.safetensors")

    # 6. independent re-implementation agreement
    ref = RefModel(mdir, leaf_lora(os.path.join(out, "lora_init.safetensors")))
    rlogits, rloss, rhidden, rgrads = ref_step(ref, ids[b0], labels[b0])
    hid = max(maxabs(a, b) for a, b in zip(rhidden, hidden))
    if ref.stats:
        family["softcap_bite"] = dict(ref.stats)
        log("soft-cap |s/c| (plain re-implementation, rows 0-1):", json.dumps(ref.stats))
    rextra = ref_extra(ref, ids)
    rtrace = train_steps(ref.lora, lambda i, l: ref_step(ref, i, l)[1], ids, labels)
    agree = {
        "logits_maxabs": maxabs(rlogits, logits),
        "loss_abs": abs(rloss.item() - loss.item()),
        "grad_maxrel": max(maxrel(rgrads[k], grads[k]) for k in grads),
        "train_final_maxabs": max(maxabs(ref.lora[k], step3[k]) for k in step3),
        "train_loss_diff": max(abs(a["loss"] - b["loss"]) for a, b in zip(rtrace, trace)),
    }
    for k, v in rextra.items():
        agree[k.replace(".", "_") + "_maxabs"] = maxabs(v, extra[k])
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
        "lora": {"r": LORA_R, "alpha": LORA_ALPHA, "dropout": 0.0, "targets": targets(args.arch)},
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
    if family:
        meta["family"] = family
    with open(os.path.join(out, "meta.json"), "w") as f:
        json.dump(meta, f, indent=1)
    with open(os.path.join(out, "README.md"), "w") as f:
        f.write(README_TMPL.format(
            name="tiny-" + args.arch, cls=type(cfg).__name__.replace("TextConfig", " (text)").replace("Config", ""), arch=args.arch,
            desc=DESCS[args.arch], seed=args.seed, tf=transformers.__version__, peft=peft.__version__,
            torch=torch.__version__, loss1=trace[0]["loss"],
            agree="logits %.1e abs, grads %.1e rel" % (agree["logits_maxabs"], agree["grad_maxrel"]),
            nf4_row=NF4_ROW.format(how=nf4_how) if quant is not None else "",
            nlin=len(targets(args.arch)), vocab=cfg.vocab_size, nlayers=cfg.num_hidden_layers,
            targets=",".join(t.replace("_proj", "") for t in targets(args.arch)),
            extra_ref="; `short.logits` (below)" if extra else "",
            family=FAMILY_NOTES.get(args.arch, "").format(tf=transformers.__version__)))
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
    for k, v in extra_refs(pm, ids).items():           # Phi-3: short.logits
        note(k, maxrel(v, want[k]) if k in want else float("inf"))

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
        merged = base_keys_only(pm.merge_and_unload().state_dict(), mdir)
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
    for k, v in ref_extra(ref, ids).items():
        note("reflib_" + k, maxrel(v, want[k]))
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
