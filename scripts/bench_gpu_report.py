#!/usr/bin/env python3
"""bench_gpu_report.py — the tables of scripts/bench_gpu.sh (issue #11), from
the JSON lines its runs left, with the issue's targets as PASS / FAIL.

  bench_gpu_report.py train MANIFEST.tsv [--tiny]
      MANIFEST: one row a line, tab-separated: label, micro-batch, checkpointing
      (0/1), nf4 (0/1), sequence, lorac log, lorac exit status, PEFT log, PEFT
      exit status. A log's last line that starts with '{' is its JSON
      (`lorac bench`, scripts/bench_gpu_peft.py).
  bench_gpu_report.py kernels LORAC.jsonl TORCH.jsonl [--tiny] SHAPE FLAGS
      SHAPE FLAGS: the flags both kernel benchmarks ran with (--hidden --ff
      --vocab --batch --seq --heads --kv-heads --head-dim --adam-params ...).

Tokens/s are medians over the timed steps (batch · sequence / median step
time) on both sides. Memory: lorac's device_peak_mib (device bytes in use
at peak beyond the CUDA context, `lorac bench`'s JSON says how it is taken)
against torch.cuda.max_memory_allocated. The FLOP and byte counts of each
kernel are defined here, once (KERNELS below). Exit status: 0 when every row
ran and every target passed (--tiny: when every row ran), 1 otherwise.
"""
import argparse
import json
import statistics
import sys

# issue #11's targets
SPEED_X, QLORA_TOKS, QLORA_GIB = 2.0, 10_000, 12.0
ATTN_FWD_TFLOPS, ATTN_BWD_TFLOPS, DEQUANT_TBS = 250.0, 150.0, 2.0


def last_json(path):
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            lines = [l for l in f.read().splitlines() if l.startswith("{")]
        return json.loads(lines[-1]) if lines else None
    except (OSError, ValueError):
        return None


def why_not(path, rc):
    """What went wrong with a run: its JSON error, a timeout, or its last line."""
    j = last_json(path)
    if j and "error" in j:
        return j["error"]
    if rc in ("124", "137"):
        return "timed out"
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            tail = [l for l in f.read().splitlines() if l.strip()]
    except OSError:
        tail = []
    return f"exit {rc}" + (f": {tail[-1][:120]}" if tail else "")


def median_tps(j, tokens):
    return tokens / statistics.median(j["step_s"]) if j and j.get("step_s") else None


def fmt(x, spec):
    return "—" if x is None else format(x, spec)


def train(a):
    ok = True
    print("| shape | micro-batch | checkpointing | lorac tok/s | PEFT tok/s | ratio | "
          "lorac peak GiB | PEFT peak GiB | target | verdict |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    notes = []
    with open(a.manifest, encoding="utf-8") as f:
        rows = [l.rstrip("\n").split("\t") for l in f if l.strip()]
    for label, batch, ckpt, nf4, seq, llog, lrc, plog, prc in rows:
        tokens = int(batch) * int(seq)
        lj = last_json(llog) if lrc == "0" else None
        pj = last_json(plog) if prc == "0" else None
        if pj and "error" in pj:
            pj = None
        lt, pt = median_tps(lj, tokens), median_tps(pj, tokens)
        lg = lj["device_peak_mib"] / 1024 if lj and "device_peak_mib" in lj else None
        pg = pj.get("peak_gib") if pj else None
        if lj is None:
            notes.append(f"{label} mb {batch}: lorac: {why_not(llog, lrc)}")
        if pj is None:
            notes.append(f"{label} mb {batch}: PEFT: {why_not(plog, prc)}")
        if nf4 == "1":
            target = f"≥ {QLORA_TOKS:,} tok/s, ≤ {QLORA_GIB:g} GiB"
            met = lt is not None and lg is not None and lt >= QLORA_TOKS and lg <= QLORA_GIB
            judged = lt is not None and lg is not None
        else:
            target = f"≥ {SPEED_X:g}× PEFT, ≤ PEFT memory"
            judged = None not in (lt, pt, lg, pg)
            met = judged and lt >= SPEED_X * pt and lg <= pg
        verdict = ("PASS" if met else "FAIL") if judged else "not measured"
        # --tiny: every run gave its JSON (PEFT's QLoRA may lack bitsandbytes)
        ran = lj is not None and (pj is not None or nf4 == "1")
        ok = ok and (ran if a.tiny else bool(met))
        ratio = lt / pt if lt and pt else None
        print(f"| {label} | {batch} | {'on' if ckpt == '1' else 'off'} | {fmt(lt, ',.0f')} | "
              f"{fmt(pt, ',.0f')} | {fmt(ratio, '.2f')} | {fmt(lg, '.3g')} | {fmt(pg, '.3g')} | "
              f"{target} | {verdict} |")
    for n in notes:
        print(f"  - {n}")
    print("  lorac peak: device bytes in use at peak beyond the CUDA context (cudaMemGetInfo); "
          "PEFT peak: torch.cuda.max_memory_allocated (on the CPU: peak RSS)")
    return ok


def kernel_counts(s):
    """(FLOPs, bytes) of one call of each op at shape s, the minimum the op
    must do / move (bf16 activations, f32 AdamW state), the same for both sides."""
    N, C, F, V = s.batch * s.seq, s.hidden, s.ff, s.vocab
    B, T, H, D = s.batch, s.seq, s.heads, s.head_dim
    n = C * F
    nb = n // 64
    attn = 2.0 * B * H * T * T * D  # causal: half of 4·B·H·T²·D (FlashAttention's count)
    return {
        # read codes, u8 absmax, f32 nested absmax; write bf16
        "nf4_dequant": (None, n / 2 + nb + 4 * ((nb + 255) // 256) + 2 * n),
        "matmul_bf16": (2.0 * N * F * C, None),
        "matmul_nf4": (2.0 * N * F * C, None),
        "rmsnorm_fwd": (None, 2 * 2 * N * C + 2 * C),    # read x, write y
        "rmsnorm_bwd": (None, 3 * 2 * N * C + 2 * C),    # read x, dy; write dx
        "swiglu_fwd": (None, 3 * 2 * N * F),             # read g, u; write y
        "swiglu_bwd": (None, 5 * 2 * N * F),             # read g, u, dy; write dg, du
        "rope_fwd": (None, 2 * 2 * N * H * D),           # read q, write q'
        "attn_fwd": (attn, None),
        "attn_bwd": (2.5 * attn, None),                  # 5 GEMMs against the forward's 2
        "lm_head_ce": (4.0 * N * V * C, None),           # logits, then dx
        "adamw": (None, 28 * s.adam_params),             # read p, g, m, v; write p, m, v
    }


def rate(ms, flops, nbytes):
    if ms is None:
        return None, ""
    if flops:
        return flops / (ms * 1e-3) / 1e12, "TFLOP/s"
    return nbytes / (ms * 1e-3) / 1e9, "GB/s"


def read_ops(path):
    """{op: its JSON}; a line without an op (a run that could not start) is
    kept under None."""
    out = {}
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("{"):
                    j = json.loads(line)
                    out[j.get("op")] = j
    except (OSError, ValueError):
        pass
    return out


def kernels(a):
    counts = kernel_counts(a)
    lo, to = read_ops(a.lorac), read_ops(a.torch)
    targets = {"attn_fwd": ("TFLOP/s", ATTN_FWD_TFLOPS), "attn_bwd": ("TFLOP/s", ATTN_BWD_TFLOPS),
               "nf4_dequant": ("GB/s", DEQUANT_TBS * 1000)}
    dev = next((j["device"] for j in list(lo.values()) + list(to.values()) if "device" in j), "?")
    print(f"kernels at B {a.batch} T {a.seq} (N {a.batch * a.seq}), hidden {a.hidden}, "
          f"ff {a.ff}, vocab {a.vocab}, heads {a.heads}/{a.kv_heads} x {a.head_dim}, "
          f"AdamW {a.adam_params:,} params; device: {dev}")
    print("| op | lorac ms | lorac rate | torch ms | torch rate | torch ms / lorac ms | target | verdict |")
    print("|---|---|---|---|---|---|---|---|")
    ok = True
    for op, (flops, nbytes) in counts.items():
        lms = lo.get(op, {}).get("ms")
        tms = to.get(op, {}).get("ms")
        lr, unit = rate(lms, flops, nbytes)
        tr, _ = rate(tms, flops, nbytes)
        terr = to.get(op, {}).get("error")
        target, verdict = "", ""
        if op in targets:
            tu, tv = targets[op]
            target = f"lorac ≥ {tv:g} {tu}"
            verdict = "not measured" if lr is None else ("PASS" if lr >= tv else "FAIL")
            ok = ok and (lr is not None if a.tiny else verdict == "PASS")
        if lms is None:
            ok = False
        print(f"| {op} | {fmt(lms, '.4g')} | {fmt(lr, '.4g')} {unit if lr else ''} | "
              f"{fmt(tms, '.4g') if not terr else terr} | {fmt(tr, '.4g')} {unit if tr else ''} | "
              f"{fmt(tms / lms if lms and tms else None, '.2f')} | {target} | {verdict} |")
    for side, runs in (("lorac", lo), ("torch", to)):
        if runs.get(None, {}).get("error"):
            print(f"  - {side}: {runs[None]['error']}")
    return ok


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="what", required=True)
    t = sub.add_parser("train")
    t.add_argument("manifest")
    t.add_argument("--tiny", action="store_true")
    k = sub.add_parser("kernels")
    k.add_argument("lorac")
    k.add_argument("torch")
    k.add_argument("--tiny", action="store_true")
    for flag in ("--hidden", "--ff", "--vocab", "--batch", "--seq", "--heads", "--kv-heads",
                 "--head-dim", "--adam-params", "--reps", "--iters"):
        k.add_argument(flag, type=int, required=flag not in ("--reps", "--iters"))
    a = p.parse_args()
    if a.tiny:
        print("TINY SHAPES: lorac on the CUDA simulator, torch on the CPU: a check of the "
              "pipeline, not a speed; PASS / FAIL are shown only to exercise the report.")
    return 0 if (train(a) if a.what == "train" else kernels(a)) else 1


if __name__ == "__main__":
    sys.exit(main())
