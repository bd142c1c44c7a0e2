#!/usr/bin/env python3
"""make_moe_fixtures.py - build (or re-check) the tiny Mixtral / Qwen3-MoE reference fixtures.

Why: lorac's mixture-of-experts pieces (autograd/ops_moe.h, autograd/moe_block.h, and later the
Mixtral / Qwen3-MoE model families) are tested against HF transformers + PEFT. This writes a
fixture directory in the tiny-qwen3 layout (tests/fixtures/README.md) for --arch mixtral or
qwen3moe, reusing scripts/make_fixtures.py's helpers (data, PEFT loading, loss, AdamW trace,
float64 plain re-implementation) rather than copying them, plus ref_moe_block.safetensors, a
block-level reference for the C MoE block. Python is only for fixtures; lorac never runs it.

Model: 2 layers, hidden 64, 4 heads, 1 KV head, head_dim 16, vocab 32 (fewer than make_fixtures.py's
2 KV heads and vocab 512, so a directory stays < 1,000,000 bytes), untied head, rope_theta 10000, and in
every layer a sparse MoE feed-forward of 4 experts of width 32, top-2. Weights ~ N(0, 0.05) as in
make_fixtures.py, except the router (~ N(0, ROUTER_STD)) so the top-2 choice is far from
degenerate; every token's k-th and (k+1)-th router logits must differ by > MIN_GAP (checked on
all rows and both layers at step 0 and after each of the 3 training steps, else the seed is
rejected), so no tie or float32 rounding can flip a choice.
  mixtral   MixtralForCausalLM  (renormalised top-k)
  qwen3moe  Qwen3MoeForCausalLM (norm_topk_prob true; q_norm/k_norm); meta.json also holds the
            step-0 loss with norm_topk_prob false on the same weights and adapter.
LoRA: r 4, alpha 8 (scaling 2), dropout 0 (PEFT forbids dropout on target_parameters),
target_modules q,k,v,o and target_parameters experts.gate_up_proj, experts.down_proj, all A and B
random (~N(0, 0.1)). Training, data and loss exactly as make_fixtures.py (3 AdamW steps, rows
0-1 / 2-3 / 4-5, masked labels on rows 1 and 3).

ref_moe_block.safetensors (float64): layer 0's MoE block on the 16 tokens of row 0, its input x
being the HF run's post_attention_layernorm output: x [16, 64], a random upstream gradient
dy [16, 64], and for each routing variant V (mixtral: "renorm"; qwen3moe: "renorm" and "plain",
i.e. norm_topk_prob true / false): V.y, V.dx, V.ids [16, 2] (i32, chosen experts by descending
probability), V.w [16, 2] routing weights and V.<lora name>.grad of layer 0's four expert LoRA
tensors (PEFT layout), all from HF's block with the PEFT adapter of lora_init attached.

Numerics: HF computes the router softmax in float32 even for a float64 model, and RoPE's
cos/sin in float32; the plain re-implementation here is float64 throughout, so they agree at
~1e-7 (meta.json reflib_agreement), not 1e-15.

Usage:
  /work/venv-t5/bin/python scripts/make_moe_fixtures.py --arch mixtral --out tests/fixtures/tiny-mixtral
  /work/venv-t5/bin/python scripts/make_moe_fixtures.py --check tests/fixtures/tiny-mixtral
      recomputes everything from model/ + adapter_init/ and compares with the stored files
      (max relative difference per tensor, default --tol 1e-5); exits 1 on any excess.
Needs torch, transformers >= 5 (3D expert tensors; tested 5.17.0), peft >= 0.17 (target_parameters;
tested 0.21.2), safetensors.
"""

import argparse
import json
import os
import shutil
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_fixtures as mf  # noqa: E402  (its helpers; it checks the imports above)

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
import transformers  # noqa: E402
import peft  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402

VOCAB = 32
EXPERTS, TOP_K, EXPERT_FF = 4, 2, 32
LORA_R, LORA_ALPHA = 4, 8
ATTN_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj"]
EXPERT_TARGETS = ["experts.gate_up_proj", "experts.down_proj"]
ROUTER_STD = 0.15
MIN_GAP = 1e-4  # float32 code's router logits are within ~1e-6 of float64 ones: 100x margin
ARCH_SEED = {"mixtral": 5000, "qwen3moe": 6000}
# make_fixtures.write_train draws ids below vocab_size; one KV head (GQA 4:1) and the small vocab keep
# a fixture directory under 1,000,000 bytes
mf.SHAPE = dict(mf.SHAPE, vocab_size=VOCAB, num_key_value_heads=1)


def build_config(arch):
    kw = dict(mf.SHAPE)
    kw.pop("intermediate_size")
    kw["rope_parameters"] = {"rope_type": "default", "rope_theta": mf.ROPE_THETA}
    if arch == "mixtral":
        return transformers.MixtralConfig(intermediate_size=EXPERT_FF, num_local_experts=EXPERTS,
                                          num_experts_per_tok=TOP_K, **kw)
    return transformers.Qwen3MoeConfig(intermediate_size=EXPERT_FF, moe_intermediate_size=EXPERT_FF,
                                       num_experts=EXPERTS, num_experts_per_tok=TOP_K,
                                       norm_topk_prob=True, decoder_sparse_step=1, mlp_only_layers=[],
                                       attention_bias=False, **kw)


def lora_config():
    return peft.LoraConfig(r=LORA_R, lora_alpha=LORA_ALPHA, lora_dropout=0.0, bias="none",
                           target_modules=list(ATTN_TARGETS), target_parameters=list(EXPERT_TARGETS),
                           task_type="CAUSAL_LM", init_lora_weights=False)


def blocks(pm):
    return [layer.mlp for layer in pm.base_model.model.model.layers]


def set_norm_topk(pm, on):
    for b in blocks(pm):
        if hasattr(b.gate, "norm_topk_prob"):
            b.gate.norm_topk_prob = on


# ----------------------------------------------------------------------------------------------
# independent float64 re-implementation: make_fixtures.RefModel with its dense-MLP slots rerouted
# ----------------------------------------------------------------------------------------------

def expert_lora(lora, layer):
    """{proj: (A_e list, B_e list)} from PEFT's stacked tensors. Nested ParamWrappers: the module's
    first registered parameter (gate_up_proj) is the inner one (experts.base_layer.lora_*)."""
    p = "base_model.model.model.layers.%d.mlp.experts." % layer
    out = {}
    for proj, pre in (("gate_up", p + "base_layer."), ("down", p)):
        a, b = lora.get(pre + "lora_A.weight"), lora.get(pre + "lora_B.weight")
        if a is None:
            continue
        # A [r*E, in]: expert-major rows; B [out, r*E]: rank-major columns (B_e = B[:, e::E])
        out[proj] = ([a[e * LORA_R:(e + 1) * LORA_R] for e in range(EXPERTS)],
                     [b[:, e::EXPERTS] for e in range(EXPERTS)])
    return out


def expert_weights(w, layer, arch):
    """[(gate [FF,C], up [FF,C], down [C,FF])] per expert, from the saved (per-expert) names."""
    if arch == "mixtral":
        p = "model.layers.%d.block_sparse_moe." % layer
        names = ("w1", "w3", "w2")
    else:
        p = "model.layers.%d.mlp." % layer
        names = ("gate_proj", "up_proj", "down_proj")
    ex = [tuple(w[p + "experts.%d.%s.weight" % (e, n)] for n in names) for e in range(EXPERTS)]
    return w[p + "gate.weight"], ex


def moe_ref(x, router, experts, lora, renorm):
    """Plain float64 sparse MoE: softmax over all experts, top-k, optional renorm, per-token sum."""
    shape = x.shape
    x = x.reshape(-1, shape[-1])
    p = torch.softmax(x @ router.t(), dim=-1)
    w, ids = torch.topk(p, TOP_K, dim=-1)
    if renorm:
        w = w / w.sum(-1, keepdim=True)
    s = LORA_ALPHA / LORA_R
    y = torch.zeros_like(x)
    for e, (g, u, d) in enumerate(experts):
        tok, slot = torch.nonzero(ids == e, as_tuple=True)
        if tok.numel() == 0:
            continue
        xe = x[tok]
        gu = torch.cat([g, u], 0)
        if "gate_up" in lora:
            gu = gu + s * lora["gate_up"][1][e] @ lora["gate_up"][0][e]
        if "down" in lora:
            d = d + s * lora["down"][1][e] @ lora["down"][0][e]
        h = xe @ gu.t()
        ye = (F.silu(h[:, :EXPERT_FF]) * h[:, EXPERT_FF:]) @ d.t()
        y = y.index_add(0, tok, ye * w[tok, slot].unsqueeze(-1))
    return y.reshape(shape), ids, w


class RefMoE(mf.RefModel):
    """make_fixtures.RefModel (embeddings, RMSNorm, LoRA attention, RoPE, head) whose dense MLP
    slots compute the MoE block instead: lin(h, gate_proj) remembers h and returns zeros, so the
    dense product silu(0)·up is 0, and lin(·, down_proj) returns moe(h)."""

    def __init__(self, model_dir, lora, arch, renorm):
        super().__init__(model_dir, lora)
        self.scaling = LORA_ALPHA / LORA_R
        self.arch, self.renorm = arch, renorm

    def lin(self, x, mod):
        if not mod.endswith(("mlp.gate_proj", "mlp.up_proj", "mlp.down_proj")):
            return super().lin(x, mod)
        if mod.endswith("mlp.gate_proj"):
            self._h = x
        if not mod.endswith("mlp.down_proj"):
            return torch.zeros_like(x[..., :1])
        layer = int(mod.split(".")[2])
        router, ex = expert_weights(self.w, layer, self.arch)
        return moe_ref(self._h, router, ex, expert_lora(self.lora, layer), self.renorm)[0]


# ----------------------------------------------------------------------------------------------
# the computation (shared by make and --check)
# ----------------------------------------------------------------------------------------------

def router_gaps(pm, ids):
    """Smallest gap between the k-th and (k+1)-th router logit over every token and layer, and
    the smallest gap between any two logits of a token."""
    gaps = [float("inf"), float("inf")]

    def hook(mod, inp, out):
        z = torch.sort(inp[0].reshape(-1, inp[0].shape[-1]) @ mod.weight.t(), dim=-1, descending=True)[0]
        gaps[0] = min(gaps[0], (z[:, TOP_K - 1] - z[:, TOP_K]).min().item())
        gaps[1] = min(gaps[1], (z[:, :-1] - z[:, 1:]).min().item())

    hs = [b.gate.register_forward_hook(hook) for b in blocks(pm)]
    with torch.no_grad():
        pm(input_ids=ids, use_cache=False)
    for h in hs:
        h.remove()
    return gaps


def block_ref(pm, x, dy, renorm):
    """Layer 0's MoE block (HF + PEFT) on x [N, C]: y, dx, ids, w and its expert LoRA grads."""
    blk = blocks(pm)[0]
    set_norm_topk(pm, renorm)
    pm.zero_grad(set_to_none=True)
    xl = x.clone().requires_grad_(True)
    y = blk(xl.unsqueeze(0)).squeeze(0)
    (y * dy).sum().backward()
    with torch.no_grad():
        _, w, ids = blk.gate(x)
    pre = "base_model.model.model.layers.0.mlp.experts."
    out = {"y": y.detach(), "dx": xl.grad.detach(), "ids": ids.to(torch.int32), "w": w.to(torch.float64)}
    for k, p in mf.lora_params(pm).items():
        if k.startswith(pre):
            out[k + ".grad"] = p.grad.detach().clone()
    set_norm_topk(pm, True)
    pm.zero_grad(set_to_none=True)
    return out


def variants(arch):
    return {"renorm": True} if arch == "mixtral" else {"renorm": True, "plain": False}


def compute(d, arch, dy=None):
    """Everything the fixture stores, recomputed from d/model, d/adapter_init, d/train.jsonl."""
    mdir, ainit = os.path.join(d, "model"), os.path.join(d, "adapter_init")
    ids, labels = mf.read_train(os.path.join(d, "train.jsonl"))
    b0 = mf.BATCHES[0]
    res = {}
    pm = mf.load_peft(mdir, ainit, torch.float64, trainable=True)
    res["gaps"] = router_gaps(pm, ids)
    # block input: layer 0's post_attention_layernorm output on rows 0-1
    cap = {}

    def grab(mod, inp, out):  # (returns None: a hook's return value would replace the output)
        cap.setdefault("x", inp[0].detach())

    hk = blocks(pm)[0].register_forward_hook(grab)
    logits, loss, hidden, grads = mf.hf_step(pm, ids[b0], labels[b0])
    hk.remove()
    ref0 = {"logits": logits, "loss": loss.reshape(1)}
    ref0.update({"hidden.%d" % i: h for i, h in enumerate(hidden)})
    ref0.update({k + ".grad": g for k, g in grads.items()})
    res["ref0"], res["grads"] = ref0, grads
    x = cap["x"][0]  # row 0: [16, 64]
    if dy is None:
        dy = torch.randn(x.shape, generator=torch.Generator().manual_seed(ARCH_SEED[arch] + 7),
                         dtype=torch.float64)
    blk = {"x": x, "dy": dy}
    for v, renorm in variants(arch).items():
        blk.update({v + "." + k: t for k, t in block_ref(pm, x, dy, renorm).items()})
    res["block"] = blk
    if arch == "qwen3moe":
        set_norm_topk(pm, False)
        with torch.no_grad():
            res["loss_plain"] = mf.causal_loss(pm(input_ids=ids[b0], use_cache=False).logits, labels[b0]).item()
        set_norm_topk(pm, True)
    pm.zero_grad(set_to_none=True)
    # router gaps at every state training passes through: step 0 (above), after steps 1, 2 and 3
    states = [res["gaps"]]
    n_calls = [0]

    def step(i, l):
        if n_calls[0] > 0:  # the state the previous optimizer step left
            states.append(router_gaps(pm, ids))
        n_calls[0] += 1
        return mf.hf_step(pm, i, l)[1]

    pm.zero_grad(set_to_none=True)
    res["trace"] = mf.train_steps(mf.lora_params(pm), step, ids, labels)
    states.append(router_gaps(pm, ids))
    res["gaps"] = [min(g[0] for g in states), min(g[1] for g in states)]
    res["step3"] = mf.f32(mf.lora_params(pm))
    del pm

    # the plain re-implementation, from lora_init
    ref = RefMoE(mdir, mf.leaf_lora(os.path.join(d, "lora_init.safetensors")), arch, True)
    rlogits, rloss, rhidden, rgrads = mf.ref_step(ref, ids[b0], labels[b0])
    rblk = {}
    router, ex = expert_weights(ref.w, 0, arch)
    for v, renorm in variants(arch).items():
        xl = x.clone().requires_grad_(True)
        for p in ref.lora.values():
            p.grad = None
        y, _, _ = moe_ref(xl, router, ex, expert_lora(ref.lora, 0), renorm)
        (y * dy).sum().backward()
        rblk[v] = max(mf.maxrel(y, blk[v + ".y"]), mf.maxrel(xl.grad, blk[v + ".dx"]),
                      max(mf.maxrel(ref.lora[k[len(v) + 1:-5]].grad, blk[k])
                          for k in blk if k.startswith(v + ".") and k.endswith(".grad")))
    rtrace = mf.train_steps(ref.lora, lambda i, l: mf.ref_step(ref, i, l)[1], ids, labels)
    res["agree"] = {
        "logits_maxabs": mf.maxabs(rlogits, logits),
        "loss_abs": abs(rloss.item() - loss.item()),
        "grad_maxrel": max(mf.maxrel(rgrads[k], grads[k]) for k in grads),
        "hidden_maxabs": max(mf.maxabs(a, b) for a, b in zip(rhidden, hidden)),
        "block_maxrel": max(rblk.values()),
        "train_final_maxabs": max(mf.maxabs(ref.lora[k], res["step3"][k]) for k in res["step3"]),
        "train_loss_diff": max(abs(a["loss"] - b["loss"]) for a, b in zip(rtrace, res["trace"])),
    }
    if arch == "qwen3moe":
        ref_plain = RefMoE(mdir, mf.leaf_lora(os.path.join(d, "lora_init.safetensors")), arch, False)
        with torch.no_grad():
            res["agree"]["loss_plain_abs"] = abs(
                mf.causal_loss(ref_plain.forward(ids[b0])[0], labels[b0]).item() - res["loss_plain"])
    return res


def merged_file(d, adapter, path):
    """merge_and_unload in float32 and save_pretrained (per-expert names, as a user gets them)."""
    pm = mf.load_peft(os.path.join(d, "model"), adapter, torch.float32, trainable=False)
    tmp = path + ".dir"
    pm.merge_and_unload().save_pretrained(tmp)
    shutil.move(os.path.join(tmp, "model.safetensors"), path)
    shutil.rmtree(tmp)


# ----------------------------------------------------------------------------------------------
# make
# ----------------------------------------------------------------------------------------------

README = """# {name}/
A random {cls} (2 layers, hidden 64, 4 heads, 1 KV head, head_dim 16, vocab 32, untied head,
rope_theta 10000; every layer a sparse MoE feed-forward: {E} experts of width {FF}, top-{k}{extra}),
float32. Made by `scripts/make_moe_fixtures.py --arch {arch} --seed {seed}` with transformers {tf} + PEFT {peft}
(torch {torch}, float64 on CPU). Layout as tiny-qwen3 (see tests/fixtures/README.md):

| file | what |
| --- | --- |
| `model/` | `config.json` + `model.safetensors` as `save_pretrained` writes it: per-expert weights ({names}) |
| `train.jsonl` | 6 rows of 16 tokens (labels −100: row 1 first 6, row 3 first 10) |
| `lora_init.safetensors`, `adapter_init/` | the starting LoRA (PEFT names, F32), random non-zero A and B: q,k,v,o (target_modules) and `experts.gate_up_proj`, `experts.down_proj` (target_parameters: `mlp.experts.base_layer.lora_A/B` is gate_up, A [r·E, 64], B [64, r·E]; `mlp.experts.lora_A/B` is down, A [r·E, 32], B [64, r·E]; expert e: A rows e·r..e·r+r−1, B columns e, e+E, …) |
| `ref_step0.safetensors` | rows 0–1: `logits`, `loss`, `hidden.i`, `<lora name>.grad` |
| `lora_step3.safetensors`, `adapter_step3/` | after 3 AdamW steps (lr 1e-3, wd 0.01, clip 1.0; rows 0–1, 2–3, 4–5) |
| `merged_step3.safetensors` | `merge_and_unload` of adapter_step3, saved by `save_pretrained` (per-expert names), F32 |
| `ref_moe_block.safetensors` | float64 block reference, layer 0, the 16 tokens of row 0: `x`, `dy`, and per variant ({variants}) `.y`, `.dx`, `.ids` (i32), `.w`, `.<expert lora name>.grad` |
| `meta.json` | settings, per-step loss / grad norm (`trace`), router logit gaps, reflib agreement{plain_meta} |

LoRA r {r}, alpha {alpha} (scaling 2), dropout 0. Step-1 loss {loss1:.9f}. Smallest gap between a
token's top-{k} and next router logit (steps 0 to 3, all rows, both layers): {gap:.3g}. An
independent float64 re-implementation agrees with HF/PEFT to {agree} (HF's router softmax and
RoPE tables are float32).
"""


def make(args):
    arch, out = args.arch, args.out
    if os.path.exists(out) and os.listdir(out):
        if not args.force:
            sys.exit("make_moe_fixtures.py: %s exists and is not empty (use --force)" % out)
        shutil.rmtree(out)
    os.makedirs(out)
    seed = args.seed + ARCH_SEED[arch]
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    mdir = os.path.join(out, "model")
    cfg = build_config(arch)
    model = transformers.AutoModelForCausalLM.from_config(cfg).to(torch.float32)
    mf.randomize_(model, gen)
    with torch.no_grad():
        for b in model.model.layers:
            b.mlp.gate.weight.copy_(ROUTER_STD * torch.randn(b.mlp.gate.weight.shape, generator=gen,
                                                             dtype=torch.float64))
    model.save_pretrained(mdir)
    mf.drop_extras(mdir, ["generation_config.json"])
    del model
    mf.write_train(os.path.join(out, "train.jsonl"), gen)

    base = mf.load_base(mdir, torch.float32)
    pm = peft.get_peft_model(base, lora_config())
    with torch.no_grad():
        for p in mf.lora_params(pm).values():
            p.copy_(0.1 * torch.randn(p.shape, generator=gen, dtype=torch.float64))
    lp = mf.lora_params(pm)
    assert len(lp) == 2 * (len(ATTN_TARGETS) + len(EXPERT_TARGETS)) * mf.SHAPE["num_hidden_layers"], sorted(lp)
    save_file(mf.f32(lp), os.path.join(out, "lora_init.safetensors"))
    mf.save_adapter(pm, os.path.join(out, "adapter_init"))
    del pm, base

    res = compute(out, arch)
    if not res["gaps"][0] > MIN_GAP:
        sys.exit("make_moe_fixtures.py: a top-%d router gap is %.3g <= %g: pick another --seed"
                 % (TOP_K, res["gaps"][0], MIN_GAP))
    bad = [k for k, v in res["agree"].items() if not v < (1e-4 if k.startswith("train") else 1e-5)]
    if bad:
        sys.exit("make_moe_fixtures.py: HF/PEFT and the plain re-implementation disagree on %s: %s"
                 % (bad, json.dumps(res["agree"])))
    save_file(mf.f32(res["ref0"]), os.path.join(out, "ref_step0.safetensors"))
    save_file({k: v.contiguous() for k, v in res["block"].items()}, os.path.join(out, "ref_moe_block.safetensors"))
    save_file(res["step3"], os.path.join(out, "lora_step3.safetensors"))
    pm = mf.load_peft(mdir, os.path.join(out, "adapter_init"), torch.float32, trainable=True)
    peft.set_peft_model_state_dict(pm, res["step3"])
    mf.save_adapter(pm, os.path.join(out, "adapter_step3"))
    del pm
    merged_file(out, os.path.join(out, "adapter_step3"), os.path.join(out, "merged_step3.safetensors"))

    meta = {
        "name": "tiny-" + arch,
        "arch": arch,
        "lora": {"r": LORA_R, "alpha": LORA_ALPHA, "dropout": 0.0, "targets": list(ATTN_TARGETS),
                 "target_parameters": list(EXPERT_TARGETS)},
        "moe": {"num_experts": EXPERTS, "top_k": TOP_K, "expert_ff": EXPERT_FF,
                "renormalize": True, "router_std": ROUTER_STD,
                "min_topk_logit_gap": res["gaps"][0], "min_logit_gap": res["gaps"][1],
                "block_variants": variants(arch)},
        "seq_len": mf.SEQ,
        "rows": mf.ROWS,
        "step0_batch_rows": mf.BATCHES[0],
        "train": mf.TRAIN,
        "loss": "mean over supervised tokens (labels != -100) after the causal shift; no router aux loss",
        "trace": res["trace"],
        "reflib_agreement": res["agree"],
        "hidden_states": "hidden.i is the input of layer i; hidden.L is after the final norm (HF convention)",
        "made_with": {"torch": torch.__version__, "transformers": transformers.__version__,
                      "peft": peft.__version__, "seed": args.seed},
    }
    if arch == "qwen3moe":
        meta["loss_norm_topk_prob_false"] = res["loss_plain"]
    with open(os.path.join(out, "meta.json"), "w") as f:
        json.dump(meta, f, indent=1)
    names = ("block_sparse_moe.experts.e.w1/w3/w2 (gate/up/down), block_sparse_moe.gate" if arch == "mixtral"
             else "mlp.experts.e.gate_proj/up_proj/down_proj, mlp.gate")
    with open(os.path.join(out, "README.md"), "w") as f:
        f.write(README.format(
            name="tiny-" + arch, seed=args.seed, cls=type(build_config(arch)).__name__.replace("Config", ""), arch=arch,
            E=EXPERTS, FF=EXPERT_FF, k=TOP_K,
            extra="; renormalised" if arch == "mixtral" else "; norm_topk_prob true; q_norm/k_norm",
            tf=transformers.__version__, peft=peft.__version__, torch=torch.__version__, names=names,
            variants=", ".join("`%s` = %s" % (v, "renormalised" if r else "not renormalised")
                               for v, r in variants(arch).items()),
            plain_meta=", `loss_norm_topk_prob_false` (step-0 loss with norm_topk_prob false)"
            if arch == "qwen3moe" else "",
            r=LORA_R, alpha=LORA_ALPHA, loss1=res["trace"][0]["loss"], gap=res["gaps"][0],
            agree="logits %.1e abs, grads %.1e rel, block %.1e rel" % (
                res["agree"]["logits_maxabs"], res["agree"]["grad_maxrel"], res["agree"]["block_maxrel"])))
    size = sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(out) for f in fs)
    mf.log("done: %s (%d bytes), agreement %s" % (out, size, json.dumps(res["agree"])))


# ----------------------------------------------------------------------------------------------
# check
# ----------------------------------------------------------------------------------------------

def check(args):
    d = args.check
    meta = json.load(open(os.path.join(d, "meta.json")))
    arch = meta["arch"]
    want_blk = load_file(os.path.join(d, "ref_moe_block.safetensors"))
    res = compute(d, arch, dy=want_blk["dy"])
    worst = {}

    def note(k, v):
        worst[k] = max(worst.get(k, 0.0), v)

    want0 = load_file(os.path.join(d, "ref_step0.safetensors"))
    for k, v in res["ref0"].items():
        note("ref_step0", mf.maxrel(v, want0[k]) if k in want0 else float("inf"))
    note("ref_step0_names", float(set(want0) != set(res["ref0"])))
    for k, v in res["block"].items():
        note("ref_moe_block", mf.maxrel(v, want_blk[k]) if k in want_blk else float("inf"))
    note("ref_moe_block_names", float(set(want_blk) != set(res["block"])))
    want3 = load_file(os.path.join(d, "lora_step3.safetensors"))
    note("lora_step3", max(mf.maxrel(res["step3"][k], want3[k]) for k in want3))
    for a, b in zip(res["trace"], meta["trace"]):
        note("trace_loss", abs(a["loss"] - b["loss"]) / abs(b["loss"]))
        note("trace_grad_norm", abs(a["grad_norm"] - b["grad_norm"]) / abs(b["grad_norm"]))
    if arch == "qwen3moe":
        note("loss_norm_topk_false", abs(res["loss_plain"] - meta["loss_norm_topk_prob_false"]))
    tmp = os.path.join(d, ".check_merged.safetensors")
    merged_file(d, os.path.join(d, "adapter_step3"), tmp)
    got, wantm = load_file(tmp), load_file(os.path.join(d, "merged_step3.safetensors"))
    os.remove(tmp)
    note("merged_names", float(set(got) != set(wantm)))
    note("merged_step3", max(mf.maxrel(got[k], wantm[k]) for k in wantm if k in got))
    for k, v in res["agree"].items():
        note("reflib_" + k, v)
    note("router_gap_below_min", float(not res["gaps"][0] > MIN_GAP))
    fails = []
    for k, v in sorted(worst.items()):
        ok = v <= args.tol
        fails += [] if ok else [k]
        mf.log("  %-28s %.3e  %s" % (k, v, "ok" if ok else "FAIL (> %g)" % args.tol))
    if fails:
        mf.log("CHECK FAILED:", ", ".join(fails))
        return 1
    mf.log("CHECK OK (tol %g)" % args.tol)
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", choices=sorted(ARCH_SEED))
    ap.add_argument("--out")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--force", action="store_true")
    ap.add_argument("--check", metavar="DIR")
    ap.add_argument("--tol", type=float, default=1e-5)
    args = ap.parse_args()
    torch.set_grad_enabled(True)
    if args.check:
        sys.exit(check(args))
    if not args.arch or not args.out:
        ap.error("--arch and --out are required (or --check DIR)")
    make(args)


if __name__ == "__main__":
    main()
