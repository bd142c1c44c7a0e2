"""peft_bench.py — what the PEFT sides of lorac's benchmarks share
(scripts/bench_gpu_peft.py on a GPU, scripts/bench_cpu_peft.py on the CPU):
the same training step `lorac bench` times, in transformers + PEFT, as people
run it today.

A random-initialised LlamaForCausalLM built from a config (no download) with
SDPA attention, PEFT LoRA r (alpha 2r, no dropout) on all seven linears,
torch.optim.AdamW on the LoRA parameters, gradient clipping at 1.0,
pseudo-random token rows of micro-batch x seq with every token a label. The
shape flags are `lorac bench`'s (--hidden --layers --heads --kv-heads
--intermediate --vocab --tied --rank --batch --seq --steps --warmup
--checkpointing), so a script passes both the same words.
"""
import contextlib
import json
import resource
import time

LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def add_shape_args(p):
    """lorac bench's shape flags and defaults (the SmolLM-135M shape)."""
    for flag, default in (("--hidden", 576), ("--layers", 30), ("--heads", 9), ("--kv-heads", 3),
                          ("--intermediate", 1536), ("--vocab", 49152), ("--tied", 1),
                          ("--rank", 16), ("--batch", 4), ("--seq", 256), ("--steps", 3),
                          ("--warmup", 1)):
        p.add_argument(flag, type=int, default=default)
    p.add_argument("--checkpointing", action="store_true", help="gradient checkpointing")


def emit(obj):
    print(json.dumps(obj), flush=True)


def versions(torch, transformers, peft):
    return {"torch": torch.__version__, "transformers": transformers.__version__,
            "peft": peft.__version__}


def llama(a, torch, transformers, dtype, dev):
    """The random Llama of a's shape, its parameters created in dtype on dev
    (no f32 copy first: what from_pretrained(dtype=...) holds)."""
    cfg = transformers.LlamaConfig(
        hidden_size=a.hidden, num_hidden_layers=a.layers, num_attention_heads=a.heads,
        num_key_value_heads=a.kv_heads, intermediate_size=a.intermediate, vocab_size=a.vocab,
        head_dim=a.hidden // a.heads, max_position_embeddings=a.seq,
        tie_word_embeddings=bool(a.tied), rms_norm_eps=1e-5, rope_theta=10000.0,
        use_cache=False)
    cfg._attn_implementation = "sdpa"
    torch.manual_seed(1234)
    default_dtype = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with dev:  # random init on the device itself: seconds for 8B instead of minutes
            model = transformers.LlamaForCausalLM(cfg)
    finally:
        torch.set_default_dtype(default_dtype)
    return model.to(dtype)


def add_lora(a, model, peft):
    """PEFT LoRA on all seven linears (gradient checkpointing first when
    asked); the model in training mode."""
    if a.checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    lcfg = peft.LoraConfig(r=a.rank, lora_alpha=2 * a.rank, lora_dropout=0.0, bias="none",
                           task_type="CAUSAL_LM", target_modules=LORA_TARGETS)
    model = peft.get_peft_model(model, lcfg)
    model.train()
    return model


def trainer(a, model, torch, dev, fused=None):
    """The LoRA parameters, their AdamW, and the token rows [batch, seq]."""
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
                            fused=fused)
    g = torch.Generator().manual_seed(99)
    ids = torch.randint(0, a.vocab, (a.batch, a.seq), generator=g).to(dev)
    return params, opt, ids


def step(model, params, opt, ids, torch, autocast=None):
    """One optimizer step (forward under `autocast` when given); its loss."""
    with autocast() if autocast else contextlib.nullcontext():
        out = model(input_ids=ids, labels=ids)
    out.loss.backward()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    opt.step()
    opt.zero_grad(set_to_none=True)
    return out.loss.item()  # also waits for the step


def timed_steps(a, run_step, sync=lambda: None):
    """warmup + steps calls of run_step(); each timed step's seconds and the
    last loss as the row's step_s, tokens_per_s (the median step) and loss."""
    import statistics
    steps, loss = [], float("nan")
    for i in range(a.warmup + a.steps):
        sync()
        t0 = time.perf_counter()
        loss = run_step()
        sync()
        if i >= a.warmup:
            steps.append(time.perf_counter() - t0)
    return {"step_s": [round(s, 4) for s in steps],
            "tokens_per_s": round(a.batch * a.seq / statistics.median(steps), 1),
            "loss": round(loss, 4)}


def peak_rss_gib():
    """The process's peak resident memory so far (ru_maxrss, KiB on Linux)."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 4)
