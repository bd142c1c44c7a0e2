#!/usr/bin/env python3
"""bench_torch_ops.py — torch's side of the kernel benchmark (tests/bench_cuda_ops.c):
the same ops, names, flags and timing, with what PyTorch / transformers / PEFT
run for them, so scripts/bench_gpu.sh can set each lorac kernel against torch's
on the same card.

  nf4_dequant   bitsandbytes.functional.dequantize_4bit (NF4, double quant, blocks of 64)
  matmul_bf16   torch.matmul(x, W.t())
  matmul_nf4    bitsandbytes.matmul_4bit (what Linear4bit's forward calls)
  rmsnorm_fwd / rmsnorm_bwd   F.rms_norm; its backward by torch.autograd.grad
  swiglu_fwd / swiglu_bwd     F.silu(g) * u; its backward by torch.autograd.grad
  rope_fwd      transformers' apply_rotary_pos_emb arithmetic (q·cos + rotate_half(q)·sin)
  attn_fwd / attn_bwd         F.scaled_dot_product_attention(is_causal, enable_gqa);
                              backward by torch.autograd.grad over the kept graph
  lm_head_ce    x·Wᵀ in chunks of 1024 rows, F.cross_entropy(logits.float()), dx by autograd
  adamw         torch.optim.AdamW(fused=True) step over adam_params f32 values

Timing as bench_cuda_ops: one untimed call, then reps × (synchronise, iters
calls, synchronise) on the wall clock, the median per call in ms. One JSON line
per op: {"impl":"torch","op":...,"ms":...} or {"impl":"torch","op":...,"error":...}.
--device cpu runs the same on the CPU (for checking the pipeline on tiny shapes).
"""
import argparse
import json
import statistics
import sys
import time


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    for flag, default in (("--hidden", 4096), ("--ff", 14336), ("--vocab", 128256),
                          ("--batch", 2), ("--seq", 2048), ("--heads", 32), ("--kv-heads", 8),
                          ("--head-dim", 128), ("--adam-params", 40_000_000), ("--reps", 10),
                          ("--iters", 5)):
        p.add_argument(flag, type=int, default=default)
    p.add_argument("--ops", default=None, help="comma-separated op names (default: all)")
    p.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    return p.parse_args()


def main():
    a = parse_args()
    import torch
    import torch.nn.functional as F
    try:
        import bitsandbytes as bnb
    except ImportError:
        bnb = None
    dev = torch.device(a.device)
    if a.device == "cuda" and not torch.cuda.is_available():
        print(json.dumps({"impl": "torch", "error": "torch sees no CUDA device"}))
        return 0
    name = torch.cuda.get_device_name(0) if a.device == "cuda" else "cpu"
    sync = torch.cuda.synchronize if a.device == "cuda" else (lambda: None)
    bf = torch.bfloat16
    N, C, FF, V = a.batch * a.seq, a.hidden, a.ff, a.vocab
    B, T, H, KV, D = a.batch, a.seq, a.heads, a.kv_heads, a.head_dim
    torch.manual_seed(0)

    def rnd(*shape, scale=1.0, dtype=bf, grad=False):
        t = ((torch.rand(*shape, device=dev, dtype=torch.float32) * 2 - 1) * scale).to(dtype)
        return t.requires_grad_(grad)

    ops = {}
    W = rnd(FF, C, scale=0.035)
    x = rnd(N, C)
    ops["matmul_bf16"] = lambda: torch.matmul(x, W.t())
    if bnb is not None:
        Wd = rnd(C, FF, scale=0.035)
        qd, sd = bnb.functional.quantize_4bit(Wd, blocksize=64, compress_statistics=True,
                                              quant_type="nf4")
        qg, sg = bnb.functional.quantize_4bit(W, blocksize=64, compress_statistics=True,
                                              quant_type="nf4")
        ops["nf4_dequant"] = lambda: bnb.functional.dequantize_4bit(qd, sd)
        ops["matmul_nf4"] = lambda: bnb.matmul_4bit(x, qg.t(), quant_state=sg)
    else:
        ops["nf4_dequant"] = ops["matmul_nf4"] = "bitsandbytes missing"

    xn = rnd(N, C, grad=True)
    wn = rnd(C)
    yn = F.rms_norm(xn, (C,), wn, 1e-5)
    dyn = rnd(N, C)
    ops["rmsnorm_fwd"] = lambda: F.rms_norm(xn.detach(), (C,), wn, 1e-5)
    ops["rmsnorm_bwd"] = lambda: torch.autograd.grad(yn, xn, dyn, retain_graph=True)

    g, u = rnd(N * FF, scale=2.0, grad=True), rnd(N * FF, scale=2.0, grad=True)
    ys = F.silu(g) * u
    dys = rnd(N * FF)
    ops["swiglu_fwd"] = lambda: F.silu(g.detach()) * u.detach()
    ops["swiglu_bwd"] = lambda: torch.autograd.grad(ys, (g, u), dys, retain_graph=True)

    # RoPE as transformers applies it: q [B, H, T, D], cos / sin [B, 1, T, D] in bf16
    qr = rnd(B, T, H, D).transpose(1, 2)
    inv = 500000.0 ** (-torch.arange(0, D, 2, device=dev, dtype=torch.float32) / D)
    ang = torch.arange(T, device=dev, dtype=torch.float32)[:, None] * inv[None, :]
    ang = torch.cat((ang, ang), dim=-1)
    cos, sin = ang.cos().to(bf)[None, None], ang.sin().to(bf)[None, None]

    def rope():
        x1, x2 = qr[..., : D // 2], qr[..., D // 2:]
        return qr * cos + torch.cat((-x2, x1), dim=-1) * sin
    ops["rope_fwd"] = rope

    q = rnd(B, T, H, D, grad=True)
    k, v = rnd(B, T, KV, D, grad=True), rnd(B, T, KV, D, grad=True)
    qt, kt, vt = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
    ops["attn_fwd"] = lambda: F.scaled_dot_product_attention(
        qt.detach(), kt.detach(), vt.detach(), is_causal=True, enable_gqa=True)
    out = F.scaled_dot_product_attention(qt, kt, vt, is_causal=True, enable_gqa=True)
    dout = rnd(B, H, T, D)
    ops["attn_bwd"] = lambda: torch.autograd.grad(out, (q, k, v), dout, retain_graph=True)

    Wh = rnd(V, C, scale=0.035)
    xh = rnd(N, C)
    tgt = torch.randint(0, V, (N,), device=dev)

    def lm_head_ce():
        dx = torch.empty_like(xh)
        for r in range(0, N, 1024):
            xc = xh[r:r + 1024].detach().requires_grad_(True)
            loss = F.cross_entropy(torch.matmul(xc, Wh.t()).float(), tgt[r:r + 1024],
                                   reduction="sum") / N
            dx[r:r + 1024] = torch.autograd.grad(loss, xc)[0]
        return dx
    ops["lm_head_ce"] = lm_head_ce

    p = torch.nn.Parameter(rnd(a.adam_params, scale=0.1, dtype=torch.float32))
    p.grad = rnd(a.adam_params, scale=0.01, dtype=torch.float32)
    opt = torch.optim.AdamW([p], lr=1e-4, weight_decay=0.0, fused=True)
    ops["adamw"] = opt.step

    wanted = a.ops.split(",") if a.ops else list(ops)
    order = ["nf4_dequant", "matmul_bf16", "matmul_nf4", "rmsnorm_fwd", "rmsnorm_bwd",
             "swiglu_fwd", "swiglu_bwd", "rope_fwd", "attn_fwd", "attn_bwd", "lm_head_ce",
             "adamw"]
    for op in order:
        if op not in wanted:
            continue
        f = ops[op]
        row = {"impl": "torch", "op": op, "device": name}
        if isinstance(f, str):
            print(json.dumps({**row, "error": f}), flush=True)
            continue
        f()
        sync()
        times = []
        for _ in range(a.reps):
            t0 = time.perf_counter()
            for _ in range(a.iters):
                f()
            sync()
            times.append((time.perf_counter() - t0) * 1e3 / a.iters)
        row["ms"] = round(statistics.median(times), 5)
        print(json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
