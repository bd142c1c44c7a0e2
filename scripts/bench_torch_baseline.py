#!/usr/bin/env python3
"""bench_torch_baseline.py - plain-PyTorch CPU baseline for lorac's LoRA training benchmark.

What it measures: wall-clock time of full LoRA training steps (forward, cross-entropy loss,
backward, AdamW update on the LoRA parameters only, zero_grad) on a random SmolLM-135M-shaped
Llama, in float32 on the CPU with torch.set_num_threads(2) -- the same workload lorac's
benchmark runs, so lorac's tokens/s and peak memory can be put next to "what PyTorch does".
No transformers/peft: the model is written out here (~100 lines), so it runs on Debian's
python3-torch 1.13 as well as on current torch.

Model: hidden 576, 30 layers, 9 heads, 3 KV heads (GQA), head_dim 64, intermediate 1536,
vocab 49152, tied embeddings, RMSNorm eps 1e-5, RoPE theta 10000 (HF rotate_half layout), SiLU
MLP; base weights random N(0, 0.02) and frozen (requires_grad False). LoRA r 16, alpha 32 on
q,k,v,o,gate,up,down of every layer: A kaiming-uniform (a=sqrt(5)), B ~ U(-1e-3, 1e-3) (small but
non-zero so every LoRA parameter gets a gradient). Micro-batch 4 x 256 random tokens, full causal
attention (F.scaled_dot_product_attention when the torch has it, else an explicit masked softmax),
next-token cross-entropy (mean), torch.optim.AdamW(lr 1e-4, weight_decay 0.01).

Output: one JSON line on stdout
  {"impl": "pytorch <version>", "tokens_per_s": ..., "peak_rss_gib": ..., "step_s": [...]}
tokens_per_s = batch*seq*timed_steps / sum(step_s) (warm-up steps excluded); peak_rss_gib is
resource.getrusage(RUSAGE_SELF).ru_maxrss of the whole process (includes the warm-up and the
~0.5 GiB of frozen weights). A human-readable summary goes to stderr.

Run (Debian's torch is only visible to /usr/bin/python3, not to a pyenv python3):
  apt-get install -y python3-torch
  /usr/bin/python3 scripts/bench_torch_baseline.py                   # full size (slow: several s/step)
  /usr/bin/python3 scripts/bench_torch_baseline.py --layers 2 --steps 1   # quick smoke test
Flags: --steps N (timed, default 3) --warmup N (default 1) --batch B (4) --seq T (256)
       --layers L (30) --threads N (2) --seed S (0)
"""

import argparse
import json
import math
import resource
import sys
import time

try:
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
except ImportError:
    sys.exit("bench_torch_baseline.py: PyTorch is not importable by %s.\n"
             "  Debian: apt-get install -y python3-torch, then run with /usr/bin/python3\n"
             "  pip:    python3 -m pip install torch" % sys.executable)

HIDDEN, HEADS, KV_HEADS, HEAD_DIM, INTER, VOCAB = 576, 9, 3, 64, 1536, 49152
EPS, THETA = 1e-5, 10000.0
R, ALPHA = 16, 32
SDPA = getattr(F, "scaled_dot_product_attention", None)


class LoRALinear(nn.Module):
    """y = x W^T + (alpha/r) (x A^T) B^T with W frozen."""

    def __init__(self, fin, fout, gen):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(fout, fin, generator=gen) * 0.02, requires_grad=False)
        bound = 1.0 / math.sqrt(fin)   # kaiming_uniform_(a=sqrt(5)) on [r, fin]
        self.lora_A = nn.Parameter((torch.rand(R, fin, generator=gen) * 2 - 1) * bound)
        self.lora_B = nn.Parameter((torch.rand(fout, R, generator=gen) * 2 - 1) * 1e-3)
        self.scaling = ALPHA / R

    def forward(self, x):
        return F.linear(x, self.weight) + self.scaling * F.linear(F.linear(x, self.lora_A), self.lora_B)


class RMSNorm(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim), requires_grad=False)

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + EPS) * self.weight


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat([-x[..., h:], x[..., :h]], dim=-1)


class Block(nn.Module):
    def __init__(self, gen):
        super().__init__()
        self.input_layernorm = RMSNorm(HIDDEN)
        self.q_proj = LoRALinear(HIDDEN, HEADS * HEAD_DIM, gen)
        self.k_proj = LoRALinear(HIDDEN, KV_HEADS * HEAD_DIM, gen)
        self.v_proj = LoRALinear(HIDDEN, KV_HEADS * HEAD_DIM, gen)
        self.o_proj = LoRALinear(HEADS * HEAD_DIM, HIDDEN, gen)
        self.post_attention_layernorm = RMSNorm(HIDDEN)
        self.gate_proj = LoRALinear(HIDDEN, INTER, gen)
        self.up_proj = LoRALinear(HIDDEN, INTER, gen)
        self.down_proj = LoRALinear(INTER, HIDDEN, gen)

    def forward(self, x, cos, sin, mask):
        B, T, _ = x.shape
        h = self.input_layernorm(x)
        q = self.q_proj(h).view(B, T, HEADS, HEAD_DIM).transpose(1, 2)
        k = self.k_proj(h).view(B, T, KV_HEADS, HEAD_DIM).transpose(1, 2)
        v = self.v_proj(h).view(B, T, KV_HEADS, HEAD_DIM).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        rep = HEADS // KV_HEADS
        k = k.repeat_interleave(rep, dim=1)
        v = v.repeat_interleave(rep, dim=1)
        if SDPA is not None:
            o = SDPA(q, k, v, is_causal=True)
        else:
            att = torch.softmax(q @ k.transpose(-1, -2) * (1.0 / math.sqrt(HEAD_DIM)) + mask, dim=-1)
            o = att @ v
        x = x + self.o_proj(o.transpose(1, 2).reshape(B, T, HEADS * HEAD_DIM))
        h = self.post_attention_layernorm(x)
        return x + self.down_proj(F.silu(self.gate_proj(h)) * self.up_proj(h))


class Model(nn.Module):
    def __init__(self, layers, gen):
        super().__init__()
        self.embed_tokens = nn.Parameter(torch.randn(VOCAB, HIDDEN, generator=gen) * 0.02,
                                         requires_grad=False)   # tied with the LM head
        self.layers = nn.ModuleList([Block(gen) for _ in range(layers)])
        self.norm = RMSNorm(HIDDEN)

    def forward(self, ids):
        T = ids.shape[1]
        inv = 1.0 / (THETA ** (torch.arange(0, HEAD_DIM, 2, dtype=torch.float32) / HEAD_DIM))
        f = torch.outer(torch.arange(T, dtype=torch.float32), inv)
        emb = torch.cat([f, f], dim=-1)
        cos, sin = emb.cos(), emb.sin()
        mask = None if SDPA is not None else torch.full((T, T), float("-inf")).triu(1)
        x = F.embedding(ids, self.embed_tokens)
        for layer in self.layers:
            x = layer(x, cos, sin, mask)
        return F.linear(self.norm(x), self.embed_tokens)


def peak_rss_gib():
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports KiB, macOS bytes
    return rss / (2.0 ** 30) if sys.platform == "darwin" else rss / (2.0 ** 20)


def main():
    ap = argparse.ArgumentParser(description="Plain-PyTorch CPU LoRA training baseline (see module docstring).")
    ap.add_argument("--steps", type=int, default=3, help="timed steps (default 3)")
    ap.add_argument("--warmup", type=int, default=1, help="untimed warm-up steps (default 1)")
    ap.add_argument("--batch", type=int, default=4, help="micro-batch size (default 4)")
    ap.add_argument("--seq", type=int, default=256, help="tokens per row (default 256)")
    ap.add_argument("--layers", type=int, default=30, help="decoder layers (default 30 = SmolLM-135M)")
    ap.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if args.steps < 1 or args.warmup < 0 or args.batch < 1 or args.seq < 2 or args.layers < 1:
        ap.error("need --steps >= 1, --warmup >= 0, --batch >= 1, --seq >= 2, --layers >= 1")

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    model = Model(args.layers, gen)
    params = [p for p in model.parameters() if p.requires_grad]
    n_lora = sum(p.numel() for p in params)
    n_all = sum(p.numel() for p in model.parameters())
    opt = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.01)
    ids = torch.randint(0, VOCAB, (args.batch, args.seq), generator=gen)
    # every row is `seq` tokens; the model sees seq-1 of them and predicts the next one
    inputs, targets = ids, torch.roll(ids, -1, dims=1)
    targets[:, -1] = -100   # last position has no next token
    print("bench_torch_baseline: torch %s, %d threads, %s attention, %d layers, %d params (%d LoRA), "
          "batch %d x %d" % (torch.__version__, torch.get_num_threads(),
                             "sdpa" if SDPA is not None else "manual", args.layers, n_all, n_lora,
                             args.batch, args.seq), file=sys.stderr, flush=True)

    times, losses = [], []
    for step in range(args.warmup + args.steps):
        t0 = time.perf_counter()
        logits = model(inputs)
        loss = F.cross_entropy(logits.view(-1, VOCAB), targets.view(-1), ignore_index=-100)
        loss.backward()
        if step == 0:  # every LoRA A and B must receive a gradient (B is non-zero on purpose)
            dead = sum(1 for p in params if p.grad is None or not bool(p.grad.abs().sum() > 0))
            if dead:
                sys.exit("bench_torch_baseline.py: %d LoRA tensors got no gradient" % dead)
        opt.step()
        opt.zero_grad(set_to_none=True)
        dt = time.perf_counter() - t0
        del logits
        losses.append(loss.item())
        print("  step %d%s: %.3f s, loss %.4f" % (step + 1, " (warm-up)" if step < args.warmup else "",
                                                  dt, losses[-1]), file=sys.stderr, flush=True)
        if step >= args.warmup:
            times.append(dt)
    if not all(math.isfinite(l) for l in losses):
        sys.exit("bench_torch_baseline.py: non-finite loss %s" % losses)
    tokens = args.batch * args.seq * len(times)
    print(json.dumps({"impl": "pytorch %s" % torch.__version__,
                      "tokens_per_s": round(tokens / sum(times), 3),
                      "peak_rss_gib": round(peak_rss_gib(), 4),
                      "step_s": [round(t, 4) for t in times]}), flush=True)


if __name__ == "__main__":
    main()
