#!/usr/bin/env python3
"""bench_cpu_peft.py — the PyTorch side of scripts/bench_cpu.sh: the training
step `lorac bench` times, in transformers + PEFT on the CPU, as a user of PEFT
runs it (the model, LoRA and step are scripts/peft_bench.py's, shared with
bench_gpu_peft.py).

  --dtype f32   everything float32 (the GEMMs: MKL's sgemm, or oneDNN)
  --dtype bf16  the base model in bfloat16 (created so, as from_pretrained(
                dtype=torch.bfloat16) holds it), LoRA parameters float32 (PEFT's
                autocast_adapter_dtype), the forward under
                torch.autocast("cpu", dtype=torch.bfloat16): what a PEFT user
                does on a CPU for speed
torch.set_num_threads(--threads, default 2). Takes `lorac bench`'s shape flags.

Prints one JSON line: each timed step's seconds, tokens/s (median step), peak
RSS (ru_maxrss: the whole process, model build included), the loss, the LoRA
parameters' dtype, and which GEMM kernels ran: torch.backends.mkldnn
.is_available(), torch.backends.cpu.get_cpu_capability(), and the oneDNN
implementations of one extra (untimed) step run with oneDNN's verbose mode on,
counted from its "exec,cpu,<primitive>,<implementation>" lines for matmul and
inner_product ("MKL (no oneDNN verbose lines)" when there are none: torch's f32
linear is MKL's sgemm, which oneDNN does not see); MKL's own verbose lines of
the same step are counted by function too (mkl_calls).
"""
import argparse
import collections
import os
import re
import sys
import tempfile
import time

import peft_bench as pb


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    pb.add_shape_args(p)
    p.add_argument("--dtype", default="f32", choices=["f32", "bf16"])
    p.add_argument("--threads", type=int, default=2)
    return p.parse_args()


def captured_stdout(fn):
    """Runs fn() with file descriptor 1 (where oneDNN and MKL print their
    verbose lines, from C) sent to a temporary file; returns fn's result and
    the file's text."""
    sys.stdout.flush()
    saved = os.dup(1)
    with tempfile.TemporaryFile(mode="w+b") as f:
        os.dup2(f.fileno(), 1)
        try:
            result = fn()
        finally:
            sys.stdout.flush()
            os.dup2(saved, 1)
            os.close(saved)
        f.seek(0)
        return result, f.read().decode("utf-8", "replace")


def gemm_kernels(text):
    """oneDNN's matmul / inner_product executions by implementation, and MKL's
    verbose calls by function, of the verbose text."""
    dnnl = collections.Counter()
    for m in re.finditer(r"exec,cpu,(matmul|inner_product),([^,]+),", text):
        dnnl[f"{m.group(1)}:{m.group(2)}"] += 1
    mkl = collections.Counter(m.group(1) for m in re.finditer(r"MKL_VERBOSE\s+(\w+)\(", text))
    return dict(dnnl), dict(mkl)


def main():
    a = parse_args()
    row = {"impl": "peft", "device": "cpu", "dtype": a.dtype, "checkpointing": a.checkpointing}
    try:
        import torch
        import transformers
        import peft
    except ImportError as e:
        pb.emit({**row, "error": f"import failed: {e}"})
        return 1
    row.update(pb.versions(torch, transformers, peft))
    torch.set_num_threads(a.threads)
    row.update(threads=torch.get_num_threads(), mkldnn=torch.backends.mkldnn.is_available(),
               cpu_capability=torch.backends.cpu.get_cpu_capability())
    dev = torch.device("cpu")
    bf16 = a.dtype == "bf16"
    t_setup = time.perf_counter()
    model = pb.llama(a, torch, transformers, torch.bfloat16 if bf16 else torch.float32, dev)
    model = pb.add_lora(a, model, peft)
    params, opt, ids = pb.trainer(a, model, torch, dev)
    row["trainable_params"] = sum(p.numel() for p in params)
    row["lora_dtype"] = sorted({str(p.dtype).replace("torch.", "") for p in params})
    autocast = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if bf16 else None
    run = lambda: pb.step(model, params, opt, ids, torch, autocast)  # noqa: E731
    row["setup_s"] = round(time.perf_counter() - t_setup, 2)
    row.update(pb.timed_steps(a, run))
    row["peak_rss_gib"] = pb.peak_rss_gib()

    def verbose_step():
        with torch.backends.mkldnn.verbose(torch.backends.mkldnn.VERBOSE_ON), \
                torch.backends.mkl.verbose(torch.backends.mkl.VERBOSE_ON):
            return run()
    _, text = captured_stdout(verbose_step)
    dnnl, mkl = gemm_kernels(text)
    row["onednn_gemms"] = dnnl or "MKL (no oneDNN verbose lines)"
    row["mkl_calls"] = mkl
    pb.emit(row)
    return 0


if __name__ == "__main__":
    sys.exit(main())
