#!/usr/bin/env python3
"""bench_gpu_peft.py — the PEFT side of scripts/bench_gpu.sh: the same training
step `lorac bench` times, in transformers + PEFT, as people run it today.

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
import json
import statistics
import sys
import time


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    for flag, default in (("--hidden", 576), ("--layers", 30), ("--heads", 9), ("--kv-heads", 3),
                          ("--intermediate", 1536), ("--vocab", 49152), ("--tied", 1),
                          ("--rank", 16), ("--batch", 4), ("--seq", 256), ("--steps", 3),
                          ("--warmup", 1)):
        p.add_argument(flag, type=int, default=default)
    p.add_argument("--nf4", action="store_true", help="bitsandbytes NF4 base (QLoRA)")
    p.add_argument("--checkpointing", action="store_true", help="gradient checkpointing")
    p.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    return p.parse_args()


def emit(obj):
    print(json.dumps(obj), flush=True)


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
        emit({**row, "error": f"import failed: {e}"})
        return 0
    bnb = None
    if a.nf4:
        try:
            import bitsandbytes as bnb
        except ImportError:
            emit({**row, "error": "bitsandbytes missing"})
            return 0
    row.update(torch=torch.__version__, transformers=transformers.__version__,
               peft=peft.__version__)
    if a.device == "cuda" and not torch.cuda.is_available():
        emit({**row, "error": "torch sees no CUDA device"})
        return 0
    dev = torch.device(a.device)
    if a.device == "cuda":
        row["card"] = torch.cuda.get_device_name(0)
    t_setup = time.perf_counter()
    head_dim = a.hidden // a.heads
    cfg = transformers.LlamaConfig(
        hidden_size=a.hidden, num_hidden_layers=a.layers, num_attention_heads=a.heads,
        num_key_value_heads=a.kv_heads, intermediate_size=a.intermediate, vocab_size=a.vocab,
        head_dim=head_dim, max_position_embeddings=a.seq, tie_word_embeddings=bool(a.tied),
        rms_norm_eps=1e-5, rope_theta=10000.0, use_cache=False)
    cfg._attn_implementation = "sdpa"
    torch.manual_seed(1234)
    default_dtype = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)
    with dev:  # random init on the device itself: seconds for 8B instead of minutes
        model = transformers.LlamaForCausalLM(cfg)
    torch.set_default_dtype(default_dtype)
    model.to(torch.bfloat16)
    if bnb is not None:
        to_nf4(model, torch, bnb)
    if a.checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    lcfg = peft.LoraConfig(r=a.rank, lora_alpha=2 * a.rank, lora_dropout=0.0, bias="none",
                           task_type="CAUSAL_LM",
                           target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj",
                                           "up_proj", "down_proj"])
    model = peft.get_peft_model(model, lcfg)
    if bnb is not None:  # the base layers PEFT wrapped: every block linear in NF4
        row["nf4_linears"] = sum(isinstance(m, bnb.nn.Linear4bit) for m in model.modules())
        row["peft_lora_4bit"] = sum(type(m).__module__.endswith("lora.bnb")
                                    for m in model.modules())
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    row["trainable_params"] = sum(p.numel() for p in params)
    opt = torch.optim.AdamW(params, lr=1e-4, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
                            fused=True if a.device == "cuda" else None)
    g = torch.Generator().manual_seed(99)
    ids = torch.randint(0, a.vocab, (a.batch, a.seq), generator=g).to(dev)
    sync = torch.cuda.synchronize if a.device == "cuda" else (lambda: None)
    if a.device == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    row["setup_s"] = round(time.perf_counter() - t_setup, 2)
    steps, loss = [], float("nan")
    for step in range(a.warmup + a.steps):
        sync()
        t0 = time.perf_counter()
        out = model(input_ids=ids, labels=ids)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        loss = out.loss.item()  # also waits for the step
        sync()
        if step >= a.warmup:
            steps.append(time.perf_counter() - t0)
    tokens = a.batch * a.seq
    row.update(step_s=[round(s, 4) for s in steps],
               tokens_per_s=round(tokens / statistics.median(steps), 1), loss=round(loss, 4))
    if a.device == "cuda":
        row["peak_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 4)
        row["peak_what"] = "torch.cuda.max_memory_allocated over the timed steps"
        row["reserved_gib"] = round(torch.cuda.max_memory_reserved() / 2**30, 4)
    else:  # the CPU (--tiny): the process's peak RSS, a different quantity
        import resource
        row["peak_gib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 4)
        row["peak_what"] = "peak RSS of the process (CPU)"
    emit(row)
    return 0


if __name__ == "__main__":
    sys.exit(main())
