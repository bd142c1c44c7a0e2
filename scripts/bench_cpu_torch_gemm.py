#!/usr/bin/env python3
"""bench_cpu_torch_gemm.py — PyTorch's own GEMM rate at the shapes `lorac bench
--gemm-peak` measured, for scripts/bench_cpu.sh's ceiling (issue #18).

  bench_cpu_torch_gemm.py GEMM_PEAK.json [--threads 2]

Reads lorac's --gemm-peak JSON (its "f32" shapes: what, M, N, K, calls) and times
the same products with torch.mm on the same number of threads, as lorac's
measurement does: a warm-up call, then the best of at least 3 calls and 0.15 s.
"<module> fwd" is x[M,K]·W[N,K]ᵀ (a linear's forward), "<module> bwd-data" is
dy[M,K]·W[K,N] (its input gradient), W stored as a linear's weight in both.
Prints one JSON line in --gemm-peak's form:
  {"tokens":M,"threads":T,"torch_f32":{"engine":…,"overall_gflops":…,"step_gflop":…,
   "shapes":[{"what","M","N","K","calls","gflops"},…]}}
plus "torch_bf16" (bf16 operands and result, as autocast runs a linear) where the CPU
has bf16 units (AMX or AVX512-BF16); on other CPUs torch emulates them and the
rate says nothing about a ceiling.
overall_gflops is FLOP-weighted over the step's calls, as lorac's.
"""
import argparse
import json
import sys
import time

MIN_REPS, MIN_S = 3, 0.15


def bf16_units():
    try:
        flags = next(l for l in open("/proc/cpuinfo") if l.startswith("flags")).split()
    except (OSError, StopIteration):
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


def best_gflops(torch, shape, dtype):
    M, N, K = shape["M"], shape["N"], shape["K"]
    g = torch.Generator().manual_seed(1)
    bwd = shape["what"].endswith("bwd-data")
    a = (torch.rand(M, K, generator=g) - 0.5).to(dtype)
    w = (torch.rand(K, N, generator=g) - 0.5) if bwd else (torch.rand(N, K, generator=g) - 0.5)
    w = w.to(dtype)
    b = w if bwd else w.t()
    best, t_all, rep = float("inf"), time.perf_counter(), -1
    while rep < MIN_REPS or time.perf_counter() - t_all < MIN_S:
        t0 = time.perf_counter()
        torch.mm(a, b)
        dt = time.perf_counter() - t0
        if rep >= 0:  # rep -1: warm-up
            best = min(best, dt)
        rep += 1
    return 2.0 * M * N * K / best / 1e9


def rates(torch, shapes, dtype, engine):
    out, flops, secs = [], 0.0, 0.0
    for s in shapes:
        r = best_gflops(torch, s, dtype)
        f = 2.0 * s["M"] * s["N"] * s["K"] * s["calls"]
        flops, secs = flops + f, secs + f / (r * 1e9)
        out.append({k: s[k] for k in ("what", "M", "N", "K", "calls")} | {"gflops": round(r, 1)})
    return {"engine": engine, "overall_gflops": round(flops / secs / 1e9, 1),
            "step_gflop": round(flops / 1e9, 3), "shapes": out}


def main(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("gemm_peak")
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args(argv)
    try:
        peak = json.loads([l for l in open(a.gemm_peak) if l.strip()][-1])
        shapes = peak["f32"]["shapes"]
    except (OSError, IndexError, KeyError, TypeError, ValueError) as e:
        print(json.dumps({"error": f"{a.gemm_peak}: no --gemm-peak f32 shapes ({e})"}))
        return 1
    import torch

    torch.set_num_threads(a.threads)
    blas = "MKL" if torch.backends.mkl.is_available() else "no MKL"
    row = {"tokens": peak.get("tokens"), "threads": torch.get_num_threads(),
           "torch_f32": rates(torch, shapes, torch.float32, f"torch {torch.__version__} mm ({blas})")}
    if bf16_units():
        row["torch_bf16"] = rates(torch, shapes, torch.bfloat16,
                                  f"torch {torch.__version__} mm, bf16 (oneDNN)")
    print(json.dumps(row))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
