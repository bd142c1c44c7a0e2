#!/usr/bin/env python3
"""bench_gpu_peft.py — the PEFT side of scripts/bench_gpu.sh: the same training
step `lorac bench` times, in transformers + PEFT, as people run it today (the
model, LoRA and step are scripts/peft_bench.py's, shared with bench_cpu_peft.py).

A random-initialised LlamaForCausalLM built from a config (no download) in
bf16 with SDPA attention, PEFT LoRA r (default 16, alpha 2r) on all seven
linears, torch.optim.AdamW (fused on CUDA), gradient checkpointing when asked
(non-reentrant), pseudo-random token rows of micro-batch x seq with every token
a label. With --nf4 the block linears are bitsandbytes Linear4bit (NF4, double
quant, blocksize 64, bf16 compute), as `load_in_4bit` makes them; without
bitsandbytes the row prints {"error": "bitsandbytes missing"}.

Takes `lorac bench`'s shape flags (--hidden --layers --heads --kv-heads
--intermediate --vocab --tied --rank --batch --seq --steps --warmup --nf4
--checkpointing), so scripts/bench_gpu.sh passes both the same words, and
--device cuda|cpu. Prints one JSON line: tokens/s (median over the steps
after warm-up), each step's seconds, and as peak_gib on CUDA
torch.cuda.max_memory_allocated over the steps (reset after the model is built;
max_memory_reserved too), on the CPU the process's peak RSS.
"""
import argparse
import sys
import time

import peft_bench as pb


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    pb.add_shape_args(p)
    p.add_argument("--nf4", action="store_true", help="bitsandbytes NF4 base (QLoRA)")
    p.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    return p.parse_args()


def to_nf4(model, torch, bnb):
    """Every linear of the blocks as a bitsandbytes Linear4bit (NF4, double
    quant), quantized on the device from its bf16 weight, as from_pretrained
    with BitsAndBytesConfig(load_in_4bit, nf4, double quant, bf16) does."""
    for layer in model.model.layers:
        for parent in (layer.self_attn, layer.mlp):
            for name, lin in list(parent.named_children()):
                if not isinstance(lin, torch.nn.Linear):
                    continue
                q = bnb.nn.Linear4bit(lin.in_features, lin.out_features, bias=lin.bias is not None,
                                      compute_dtype=torch.bfloat16, compress_statistics=True,
                                      quant_type="nf4", device="meta")
                q.weight = bnb.nn.Params4bit(lin.weight.data, requires_grad=False, blocksize=64,
                                             compress_statistics=True, quant_type="nf4")
                q.weight = q.weight.to(lin.weight.device)  # quantizes
                setattr(parent, name, q)
    # what PEFT reads to dispatch its bitsandbytes LoRA layers
    model.is_loaded_in_4bit = True


def main():
    a = parse_args()
    row = {"impl": "peft", "device": a.device, "checkpointing": a.checkpointing,
           "weights": "NF4-dq" if a.nf4 else "bf16"}
    try:
        import torch
        import transformers
        import peft
    except ImportError as e:
        pb.emit({**row, "error": f"import failed: {e}"})
        return 0
    bnb = None
    if a.nf4:
        try:
            import bitsandbytes as bnb
        except ImportError:
            pb.emit({**row, "error": "bitsandbytes missing"})
            return 0
    row.update(pb.versions(torch, transformers, peft))
    if a.device == "cuda" and not torch.cuda.is_available():
        pb.emit({**row, "error": "torch sees no CUDA device"})
        return 0
    dev = torch.device(a.device)
    if a.device == "cuda":
        row["card"] = torch.cuda.get_device_name(0)
    t_setup = time.perf_counter()
    model = pb.llama(a, torch, transformers, torch.bfloat16, dev)
    if bnb is not None:
        to_nf4(model, torch, bnb)
    model = pb.add_lora(a, model, peft)
    if bnb is not None:  # the base layers PEFT wrapped: every block linear in NF4
        row["nf4_linears"] = sum(isinstance(m, bnb.nn.Linear4bit) for m in model.modules())
        row["peft_lora_4bit"] = sum(type(m).__module__.endswith("lora.bnb")
                                    for m in model.modules())
    params, opt, ids = pb.trainer(a, model, torch, dev,
                                  fused=True if a.device == "cuda" else None)
    row["trainable_params"] = sum(p.numel() for p in params)
    sync = torch.cuda.synchronize if a.device == "cuda" else (lambda: None)
    if a.device == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    row["setup_s"] = round(time.perf_counter() - t_setup, 2)
    row.update(pb.timed_steps(a, lambda: pb.step(model, params, opt, ids, torch), sync))
    if a.device == "cuda":
        row["peak_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 4)
        row["peak_what"] = "torch.cuda.max_memory_allocated over the timed steps"
        row["reserved_gib"] = round(torch.cuda.max_memory_reserved() / 2**30, 4)
    else:  # the CPU (--tiny): the process's peak RSS, a different quantity
        row["peak_gib"] = pb.peak_rss_gib()
        row["peak_what"] = "peak RSS of the process (CPU)"
    pb.emit(row)
    return 0


if __name__ == "__main__":
    sys.exit(main())
