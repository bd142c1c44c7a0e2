#!/usr/bin/env python3
"""bench_cpu_report.py — the lines scripts/bench_cpu.sh prints (the standard
library only: runs on any python3).

  bench_cpu_report.py peak GEMM_PEAK.json
      the GEMM ceiling `lorac bench --gemm-peak` measured
  bench_cpu_report.py row NAME ROUND RC RUN.json RUN.err OTHER%
      one run: tokens/s, peak RSS, the GEMM kernels; lorac's refusal or
      fall-back note from its stderr; the share of the cores other processes
      used during it
  bench_cpu_report.py summary RUNS.tsv GEMM_PEAK.json... [--layers N] [--tokens 1024]
      medians over the rounds, ratios and issue #18's targets as PASS / FAIL
      lines, and the fraction of the GEMM ceiling (the median of the rounds' peaks)
      lorac's GEMM work ran at

tokens/s of a run is tokens per step over its median timed step (lorac's and
PyTorch's the same way); peak RSS is the whole process's (ru_maxrss).
"""
import statistics
import sys

from bench_gpu_report import last_json as load, median_tps as tokens_per_s

TARGET_BF16, TARGET_F32, TARGET_RSS_GIB = 2.0, 1.5, 1.5
FULL_LAYERS = 30
QUIET_OTHER_PCT = 10  # other processes' share of the cores above which timings are noisy


def last_line(path):
    try:
        lines = [l.strip() for l in open(path) if l.strip()]
    except OSError:
        return ""
    return lines[-1] if lines else ""


def lorac_notes(err_path):
    """lorac's stderr lines, less their "lorac: " (it prints none on a plain run): a
    fall-back note."""
    try:
        return [l.strip().removeprefix("lorac: ") for l in open(err_path) if l.strip()]
    except OSError:
        return []


def kernels(name, j):
    if name.startswith("lorac"):
        k = f"{j.get('cpu_kernels')} kernels, OpenBLAS {j.get('blas_core')}"
        if "f32_gemm" in j:
            k += f", f32 weight GEMMs: {j['f32_gemm']}"
        if "bf16_gemm" in j:
            k += f", bf16 GEMMs: {j['bf16_gemm']}"
        if j.get("bf16_attention", "off") != "off":
            k += f", bf16 attention: {j['bf16_attention']}"
        return k
    dnnl = j.get("onednn_gemms")
    if isinstance(dnnl, dict):
        dnnl = ", ".join(f"{k} x{v}" for k, v in sorted(dnnl.items()))
    mkl = ", ".join(f"{k} x{v}" for k, v in sorted((j.get("mkl_calls") or {}).items()))
    return (f"torch cpu_capability {j.get('cpu_capability')}, mkldnn "
            f"{'on' if j.get('mkldnn') else 'off'}; oneDNN: {dnnl}; MKL verbose: {mkl or 'none'}")


def run_result(name, rc, j, err_path):
    """(the run's JSON, "") or, when it gave no numbers, (None, why in one line)."""
    if rc != 0 or j is None or "error" in j or not j.get("step_s"):
        if name.startswith("lorac") and rc != 0:
            why = last_line(err_path).removeprefix("lorac: ")
            return None, f"not available: {why or f'exit {rc}'}"
        why = (j or {}).get("error") or last_line(err_path) or f"exit {rc}"
        return None, f"failed: {why}"
    return j, ""


PEAK_KEYS = ("f32", "f32_onednn", "bf16", "torch_f32", "torch_bf16")
# the f32 libraries measured, and what the summary calls them
F32_KEYS = {"f32": "OpenBLAS", "f32_onednn": "oneDNN", "torch_f32": "torch.mm (MKL)"}


def cmd_peak(path):
    p = load(path)
    if not p or "error" in p:
        print(f"   GEMM peak: not measured{': ' + p['error'] if p else ''}")
        return 0
    # lorac's file names its three (a text where one was not measured); PyTorch's, its own
    keys = PEAK_KEYS[:3] if any(k in p for k in PEAK_KEYS[:3]) else [k for k in PEAK_KEYS if k in p]
    if p.get("fma_peak_gflops"):
        print(f"   the cores' float32 multiply-add peak ({p['cpu_kernels']} kernels, "
              f"{p['threads']} threads): {p['fma_peak_gflops']:.1f} GFLOP/s")
    for dt in keys:
        v = p.get(dt)
        if isinstance(v, dict):
            lo = min(v["shapes"], key=lambda s: s["gflops"])
            hi = max(v["shapes"], key=lambda s: s["gflops"])
            print(f"   {dt} ({v['engine']}): {v['overall_gflops']:.1f} GFLOP/s over the step's "
                  f"frozen-weight GEMM shapes (M = {p['tokens']}), FLOP-weighted; "
                  f"{lo['gflops']:.1f} ({lo['what']}) to {hi['gflops']:.1f} ({hi['what']})")
        else:
            print(f"   {dt}: {v or 'not measured'}")
    groups = p.get("bf16_groups")
    if groups:
        parts = "; ".join(f"{g['group']} {g['dir']} ({g['form']}) {g['separate_ms']:.2f} -> "
                          f"{g['shared_ms']:.2f} ms" for g in groups)
        print(f"   bf16, each group's GEMMs shared (LORAC_CPU_BF16_GROUPS; GEMM time only): "
              f"{parts}; a step's saving {p['bf16_groups_step_ms_saved']:.1f} ms")
    return 0


def cmd_row(name, rnd, rc, json_path, err_path, other, tokens=1024):
    j = load(json_path)
    j, status = run_result(name, int(rc), j, err_path)
    busy = f" [other processes: {other}% of the cores]"
    if j is None:
        print(f"   round {rnd} {name}: {status}{busy}")
        return 0
    note = ""
    if name.startswith("lorac"):
        notes = lorac_notes(err_path)
        note = f"; lorac: {' / '.join(notes)}" if notes else ""
        # the memory plan lorac reserves against what the process reached (issue 10: within 5%)
        if j.get("plan_mib"):
            rss_mib = j["peak_rss_gib"] * 1024
            note += (f"; memory plan {j['plan_mib']:.1f} MiB vs peak RSS {rss_mib:.1f} MiB: "
                     f"{100 * (j['plan_mib'] - rss_mib) / rss_mib:+.1f}%")
    print(f"   round {rnd} {name}: {tokens_per_s(j, tokens):.1f} tokens/s (steps "
          f"{', '.join(f'{s:.2f}' for s in j['step_s'])} s), peak RSS "
          f"{j['peak_rss_gib']:.2f} GiB, loss {j['loss']:.4f}; {kernels(name, j)}{note}{busy}")
    return 0


def median_peak(peaks):
    """The --gemm-peak measurements' (loaded) overall rates, each key's median over the
    files (a key's first text where it was not measured), and one line on their spread."""
    out, spread = {}, []
    for key in PEAK_KEYS:
        vals = [p[key] for p in peaks if key in p]
        rates = [v["overall_gflops"] for v in vals if isinstance(v, dict)]
        if rates:
            out[key] = {"overall_gflops": statistics.median(rates)}
            spread.append(f"{key} {min(rates):.1f}-{max(rates):.1f}")
        elif vals:
            out[key] = vals[0]
    rounds = sum(1 for p in peaks if "f32" in p)
    return out, f"GEMM peaks of {rounds} rounds (GFLOP/s): {', '.join(spread)}"


def fastest_per_shape(peaks):
    """The f32 ceiling as far as any library measured here reaches: per shape the
    fastest library's median rate over the rounds (of the loaded measurements),
    FLOP-weighted over the step's calls as --gemm-peak's overall rate; (rate,
    {library: shapes it was fastest at}) or None."""
    rates = {}  # (what, library) -> [gflops]
    calls = {}  # what -> (flops of one call, calls per step)
    for p in peaks:
        for key in F32_KEYS:
            v = p.get(key)
            if not isinstance(v, dict):
                continue
            for sh in v["shapes"]:
                rates.setdefault((sh["what"], key), []).append(sh["gflops"])
                calls[sh["what"]] = (2.0 * sh["M"] * sh["N"] * sh["K"], sh["calls"])
    if not calls:
        return None
    flops = secs = 0.0
    wins = {}
    for what, (f, n) in calls.items():
        lib, r = max(((k, statistics.median(v)) for (w, k), v in rates.items() if w == what),
                     key=lambda kv: kv[1])
        wins[lib] = wins.get(lib, 0) + 1
        flops, secs = flops + f * n, secs + f * n / (r * 1e9)
    return flops / secs / 1e9, wins


def cmd_summary(manifest, peak_paths, args):
    layers = int(args[args.index("--layers") + 1]) if "--layers" in args else FULL_LAYERS
    tokens = int(args[args.index("--tokens") + 1]) if "--tokens" in args else 1024
    runs, other = {}, 0  # name -> [(json, status, stderr path)]; the busiest run's other load
    for line in open(manifest):
        name, _rnd, rc, jp, ep, busy = line.rstrip("\n").split("\t")
        runs.setdefault(name, []).append(run_result(name, int(rc), load(jp), ep) + (ep,))
        other = max(other, int(busy))
    # best: tokens/s of the fastest step of all rounds — other load only ever adds time, so
    # on a busy machine it is the steadier figure (the targets are judged on the medians)
    med, best, rss, ok = {}, {}, {}, {}
    print("| run | tokens/s (median) | range | fastest step | peak RSS GiB | GEMM kernels |")
    print("|---|---|---|---|---|---|")
    for name, rs in runs.items():
        good = [j for j, _, _ in rs if j]
        if not good:
            print(f"| {name} | {rs[-1][1]} | | | | |")
            continue
        t = [tokens_per_s(j, tokens) for j in good]
        med[name], ok[name] = statistics.median(t), good[-1]
        rss[name] = max(j["peak_rss_gib"] for j in good)
        best[name] = tokens / min(min(j["step_s"]) for j in good)
        notes = lorac_notes(rs[-1][2]) if name.startswith("lorac") else []
        extra = f" (lorac: {' / '.join(notes)})" if notes else ""
        print(f"| {name} | {med[name]:.1f} | {min(t):.1f}-{max(t):.1f} ({len(t)} runs) | "
              f"{best[name]:.1f} | {rss[name]:.2f} | {kernels(name, good[-1])}{extra} |")
    if other > QUIET_OTHER_PCT:
        print(f"WARNING: other processes used up to {other}% of the cores during a run: these "
              "timings are not a quiet machine's, and the ratios below may be far off")
    if layers != FULL_LAYERS:
        print(f"note: {layers} layers, not the SmolLM-135M shape's {FULL_LAYERS}: the ratios "
              "below are indicative only")
    noisy = " [busy machine: not a result]" if other > QUIET_OTHER_PCT else ""
    torch_runs = [n for n in ("PyTorch f32", "PyTorch bf16") if n in med]
    if torch_runs:
        fastest = max(torch_runs, key=lambda n: med[n])
        if "lorac bf16" in med:
            r = med["lorac bf16"] / med[fastest]
            passed = r >= TARGET_BF16 and rss["lorac bf16"] <= TARGET_RSS_GIB
            fell_back = ok["lorac bf16"].get("bf16_gemm", "off") == "off"
            print(f"{'PASS' if passed else 'FAIL'}: lorac bf16 / {fastest} (PyTorch's fastest) = "
                  f"{r:.2f}x (target >= {TARGET_BF16}x; fastest steps "
                  f"{best['lorac bf16'] / best[fastest]:.2f}x) at {rss['lorac bf16']:.2f} GiB "
                  f"peak RSS (target <= {TARGET_RSS_GIB})"
                  + (" — lorac ran float32 GEMMs (no bf16 units / bf16 off)" if fell_back else "")
                  + noisy)
        else:
            why = runs.get("lorac bf16", [(None, "not run", "")])[-1][1]
            print(f"FAIL: lorac bf16 / {fastest} (PyTorch's fastest): not measured, lorac bf16 "
                  f"{why}")
        if "lorac f32" in med and "PyTorch f32" in med:
            r = med["lorac f32"] / med["PyTorch f32"]
            print(f"{'PASS' if r >= TARGET_F32 else 'FAIL'}: lorac f32 / PyTorch f32 = {r:.2f}x "
                  f"(target >= {TARGET_F32}x; fastest steps "
                  f"{best['lorac f32'] / best['PyTorch f32']:.2f}x); peak RSS {rss['lorac f32']:.2f} vs "
                  f"{rss['PyTorch f32']:.2f} GiB{noisy}")
    peaks = [p for p in map(load, peak_paths) if p]
    peak, spread = median_peak(peaks)
    print(spread)
    f32 = peak.get("f32")
    bf16 = peak.get("bf16")
    for name in ("lorac f32", "lorac bf16", "PyTorch f32", "PyTorch bf16"):
        lj = ok.get("lorac f32") or ok.get("lorac bf16")
        if name not in med or not lj or lj.get("gemm_gflop") is None or not isinstance(f32, dict):
            continue
        gflop, step = lj["gemm_gflop"], tokens / med[name]
        rate = gflop / step
        ceil, what = f32["overall_gflops"], "lorac's f32 (OpenBLAS)"
        if name.startswith("lorac") and ok[name].get("f32_gemm") == "onednn" and \
                isinstance(peak.get("f32_onednn"), dict):
            ceil, what = peak["f32_onednn"]["overall_gflops"], "lorac's f32 (oneDNN)"
        if name == "PyTorch f32" and isinstance(peak.get("torch_f32"), dict):
            ceil, what = peak["torch_f32"]["overall_gflops"], "PyTorch's own f32 (torch.mm)"
        if name.endswith("bf16") and isinstance(bf16, dict):
            ceil, what = bf16["overall_gflops"], "lorac's bf16"
        if name == "PyTorch bf16" and isinstance(peak.get("torch_bf16"), dict):
            ceil, what = peak["torch_bf16"]["overall_gflops"], "PyTorch's own bf16 (torch.mm)"
        at_peak = gflop / ceil
        src = "" if name.startswith("lorac") else " (lorac's count of the same step)"
        rest = (f"the other {step - at_peak:.2f} s are non-GEMM work and GEMMs below the peak"
                if at_peak <= step else "faster than that peak (another GEMM library, or the "
                "peak's measurement was disturbed)")
        print(f"GEMM, {name}: {gflop:.1f} GFLOP per step{src} ran at {rate:.1f} GFLOP/s over the "
              f"{step:.2f} s median step = {100 * rate / ceil:.0f}% of {what} GEMM peak "
              f"at these shapes ({ceil:.1f} GFLOP/s): at that peak the GEMMs would take "
              f"{at_peak:.2f} s, {rest}")
    best = fastest_per_shape(peaks)
    if best:
        rate_best, wins = best
        print(f"f32 GEMM ceiling, the fastest library per shape: {rate_best:.1f} GFLOP/s ("
              + ", ".join(f"{F32_KEYS[k]} fastest at {n} of {sum(wins.values())} shapes"
                          for k, n in sorted(wins.items()))
              + ")")
        for name in ("lorac f32", "PyTorch f32"):
            lj = ok.get("lorac f32")
            if name in med and lj and lj.get("gemm_gflop"):
                gflop, step = lj["gemm_gflop"], tokens / med[name]
                print(f"  {name}: its step's GEMM work at that ceiling would take "
                      f"{gflop / rate_best:.2f} s of its {step:.2f} s median step "
                      f"({100 * gflop / rate_best / step:.0f}%)")
    fma = [p["fma_peak_gflops"] for p in peaks if p.get("fma_peak_gflops")]
    lj = ok.get("lorac f32")
    if fma and lj and lj.get("gemm_gflop"):
        # the hardware's own bound: no GEMM runs faster than the multiply-adds themselves
        fma_peak, gflop = statistics.median(fma), lj["gemm_gflop"]
        line = (f"hardware ceiling: the cores' float32 multiply-add peak {fma_peak:.1f} GFLOP/s "
                f"(median of {len(fma)} rounds)")
        if best:
            line += f"; the fastest library per shape reaches {100 * best[0] / fma_peak:.0f}% of it"
        print(line)
        at_fma = gflop / fma_peak
        if "lorac f32" in med:
            step = tokens / med["lorac f32"]
            print(f"  lorac f32: its step's GEMM work at that peak would take {at_fma:.2f} s of its "
                  f"{step:.2f} s median step ({100 * at_fma / step:.0f}%)")
        if "PyTorch f32" in med:
            torch_step = tokens / med["PyTorch f32"]
            line = (f"  so lorac f32 / PyTorch f32 can be at most {torch_step / at_fma:.2f}x in this "
                    f"sitting (PyTorch's median step over lorac's GEMM work at that peak, nothing "
                    f"else in lorac's step)")
            if best:
                line += f"; {torch_step * best[0] / gflop:.2f}x with the GEMMs at the fastest library's rates"
            print(line)
    if bf16 is not None and not isinstance(bf16, dict):
        print(f"bf16 GEMM peak: {bf16}")
    return 0


def main(argv):
    if len(argv) >= 2 and argv[0] == "peak":
        return cmd_peak(argv[1])
    if len(argv) == 7 and argv[0] == "row":
        return cmd_row(*argv[1:])
    if len(argv) >= 3 and argv[0] == "summary":
        opts = [i for i, a in enumerate(argv) if a.startswith("--")]
        end = opts[0] if opts else len(argv)
        return cmd_summary(argv[1], argv[2:end], argv[end:])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
