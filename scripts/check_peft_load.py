#!/usr/bin/env python3
"""check_peft_load.py - lorac's trained adapters load in PEFT and give lorac's numbers there.

For every family fixture (tests/fixtures/tiny-{llama,mistral,qwen2,qwen3,gemma2,gemma3,phi3,
mixtral,qwen3moe} from their adapter_init/ — the MoE ones with target_parameters on the experts — and the DoRA ones tiny-{llama,gemma2,gemma3,phi3}/dora/adapter_init):
  1. `lorac train` takes 3 steps from that adapter (the settings of configs/fixture_3step.yaml
     and tests/test_trainer.c's family_trace: rows 0-1, 2-3, 4-5, AdamW lr 1e-3, wd 0.01,
     clip 1.0, constant) into a temporary output_dir;
  2. HF transformers loads the fixture's model in float64 (attn_implementation "eager") and
     PeftModel.from_pretrained loads lorac's output_dir on it;
  3. checks, each a row of the printed table, exit 1 on any failure:
     - the adapter_config.json PEFT read back: the family's target modules (make_fixtures.targets:
       Phi-3's fused qkv_proj / gate_up_proj; the MoE fixtures' target_modules and
       target_parameters), r, lora_alpha and use_dora as the start had them;
     - every tensor of lorac's adapter_model.safetensors is a parameter PEFT loaded, bit for
       bit, and PEFT has no adapter parameter the file lacks (so nothing was left at PEFT's
       own init);
     - HF's loss (mean over the supervised tokens after the causal shift, make_fixtures.
       causal_loss) on rows 0-1 and on rows 2-3 equals `lorac eval --adapter output_dir` on
       the same rows within 5e-7 relative (eval prints 8 significant digits; measured ≤ 4.7e-8),
       and differs
       from the loss of the untrained adapter_init (the trained adapter is what was loaded).
Exit 77 (ctest: skipped) when torch, transformers, peft or safetensors cannot be imported.

Usage: /work/venv-t5/bin/python scripts/check_peft_load.py LORAC_BINARY
       (made to run with transformers 5.17.0 / peft 0.21.2, the versions issue #15 names)
"""
import json, os, re, subprocess, sys, tempfile

try:
    import peft
    import safetensors.torch  # noqa: F401
    import torch
    import transformers
except ImportError as e:
    print("check_peft_load.py: skipped, cannot import %s" % (e.name or e))
    sys.exit(77)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_fixtures as mf  # noqa: E402  (one definition of the loss, targets and rows)
from make_dora_fixture import saved_name  # noqa: E402  (PEFT parameter -> saved tensor name)
from safetensors.torch import load_file  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIX = os.path.join(ROOT, "tests", "fixtures")
FAMILIES = ["llama", "mistral", "qwen2", "qwen3", "gemma2", "gemma3", "phi3", "mixtral", "qwen3moe"]
MOE_FAMILIES = ("mixtral", "qwen3moe")  # experts adapted through target_parameters
DORA_FAMILIES = ["llama", "gemma2", "gemma3", "phi3"]
TOL = 5e-7
YAML = """base_model: {fx}/model
adapter: lora
lora_model_dir: {init}
datasets:
  - path: {fx}/train.jsonl
    type: tokenized
sequence_len: 16
sample_packing: false
shuffle: false
micro_batch_size: 2
gradient_accumulation_steps: 1
num_epochs: 1
max_steps: 3
learning_rate: 1.0e-3
lr_scheduler: constant
warmup_steps: 0
weight_decay: 0.01
max_grad_norm: 1.0
logging_steps: 1
save_steps: 0
output_dir: {out}
"""


def cases():
    """(label, fixture dir, adapter_init dir, arch) for every fixture checked."""
    out = []
    for fam in FAMILIES:
        fx = os.path.join(FIX, "tiny-" + fam)
        out.append(("tiny-" + fam, fx, os.path.join(fx, "adapter_init"), fam))
    for fam in DORA_FAMILIES:
        fx = os.path.join(FIX, "tiny-" + fam)
        out.append(("tiny-%s/dora" % fam, fx, os.path.join(fx, "dora", "adapter_init"), fam))
    return out


def run(cmd):
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError("%s exited %d: %s" % (" ".join(cmd[:2]), r.returncode,
                                                 (r.stderr or r.stdout).strip()[-400:]))
    return r.stdout


def lorac_eval(lorac, fx, adapter, rows_file):
    # float32 asked for: `auto` means bfloat16 on a CPU with bf16 units, and the
    # comparison is against HF in float64 at 5e-7
    out = run([lorac, "eval", "--model", os.path.join(fx, "model"), "--adapter", adapter,
               "--data", rows_file, "--seq-len", "16", "--compute-dtype", "float32"])
    m = re.search(r"^loss:\s*(\S+)", out, re.M)
    if not m:
        raise RuntimeError("lorac eval printed no loss: line:\n" + out)
    return float(m.group(1))


def load_peft(fx, adapter):
    kw = {"dtype": torch.float64} if mf.TF_MAJOR >= 5 else {"torch_dtype": torch.float64}
    # MoE experts as plain per-expert loops too: transformers 5.24 defaults them to
    # torch's grouped_mm, which has no float64
    if hasattr(transformers.PretrainedConfig, "_experts_implementation"):
        kw["experts_implementation"] = "eager"
    base = transformers.AutoModelForCausalLM.from_pretrained(
        os.path.join(fx, "model"), attn_implementation="eager", **kw)
    pm = peft.PeftModel.from_pretrained(base.to(torch.float64), adapter)
    return pm.to(torch.float64).eval()


def hf_loss(pm, ids, labels):
    with torch.no_grad():
        return float(mf.causal_loss(pm(input_ids=ids, use_cache=False).logits, labels))


def check_config(pm, init_dir, arch):
    """Problems with the adapter_config.json PEFT read back (empty list: none)."""
    c = pm.peft_config["default"]
    with open(os.path.join(init_dir, "adapter_config.json")) as f:
        want = json.load(f)
    bad = []
    # the MoE fixtures adapt attention (target_modules) and the experts (target_parameters)
    want_m = want["target_modules"] if arch in MOE_FAMILIES else mf.targets(arch)
    got_t, want_t = sorted(c.target_modules or []), sorted(want_m)
    if got_t != want_t:
        bad.append("target_modules %s, the family's are %s" % (got_t, want_t))
    got_p = sorted(getattr(c, "target_parameters", None) or [])
    if got_p != sorted(want.get("target_parameters") or []):
        bad.append("target_parameters %s, adapter_init has %s" % (got_p, want.get("target_parameters")))
    for key in ("r", "lora_alpha", "use_dora"):
        if getattr(c, key) != want.get(key, False):
            bad.append("%s %s, adapter_init has %s" % (key, getattr(c, key), want.get(key)))
    return bad


def check_tensors(pm, adapter):
    """Problems with the tensors PEFT loaded from adapter/adapter_model.safetensors."""
    saved = load_file(os.path.join(adapter, "adapter_model.safetensors"))
    params = {saved_name(n): p for n, p in pm.named_parameters()
              if ".lora_A." in n or ".lora_B." in n or "lora_magnitude_vector" in n}
    bad = ["%s: in the file, not a PEFT parameter" % k for k in sorted(set(saved) - set(params))]
    bad += ["%s: a PEFT parameter missing from the file" % k for k in sorted(set(params) - set(saved))]
    for k in sorted(set(saved) & set(params)):
        if not torch.equal(params[k].detach(), saved[k].to(torch.float64)):
            bad.append("%s: PEFT's value differs from the file's" % k)
    return bad, len(saved)


def check_case(lorac, tmp, label, fx, init_dir, arch):
    """One table row: (label, tensors, [(rows, hf, lorac, rel)], problems)."""
    work = os.path.join(tmp, label.replace("/", "_"))
    os.makedirs(work)
    out = os.path.join(work, "out")
    cfg = os.path.join(work, "run.yaml")
    with open(cfg, "w") as f:
        f.write(YAML.format(fx=fx, init=init_dir, out=out))
    run([lorac, "train", cfg])
    ids, labels = mf.read_train(os.path.join(fx, "train.jsonl"))
    with open(os.path.join(fx, "train.jsonl")) as f:
        lines = [ln for ln in f if ln.strip()]
    pm = load_peft(fx, out)
    bad = check_config(pm, init_dir, arch)
    tbad, n_tensors = check_tensors(pm, out)
    bad += tbad
    losses = []
    pm0 = load_peft(fx, init_dir)
    for rows in mf.BATCHES[:2]:
        rf = os.path.join(work, "rows%d%d.jsonl" % tuple(rows))
        with open(rf, "w") as f:
            f.writelines(lines[r] for r in rows)
        want = lorac_eval(lorac, fx, out, rf)
        got = hf_loss(pm, ids[rows], labels[rows])
        rel = abs(got - want) / abs(want)
        if rel > TOL:
            bad.append("rows %d-%d: HF loss %.9g, lorac eval %.9g (rel %.2e > %g)"
                       % (rows[0], rows[1], got, want, rel, TOL))
        before = hf_loss(pm0, ids[rows], labels[rows])
        if abs(before - got) <= 100 * TOL * abs(got):
            bad.append("rows %d-%d: the trained adapter's loss %.9g is adapter_init's (%.9g)"
                       % (rows[0], rows[1], got, before))
        losses.append((rows, got, want, rel))
    return label, n_tensors, losses, bad


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    lorac = os.path.abspath(sys.argv[1])
    transformers.logging.set_verbosity_error()  # the table, not HF's load progress and notes
    transformers.utils.logging.disable_progress_bar()
    torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))
    print("transformers %s, peft %s, torch %s; HF float64 eager vs lorac eval, tolerance %g"
          % (transformers.__version__, peft.__version__, torch.__version__, TOL))
    print("%-18s %7s  %-14s %-14s %-9s  %-14s %-14s %-9s  %s" % (
        "fixture", "tensors", "HF rows 0-1", "lorac eval", "rel", "HF rows 2-3", "lorac eval",
        "rel", "result"))
    failed = 0
    with tempfile.TemporaryDirectory(prefix="check_peft_load.") as tmp:
        for label, fx, init_dir, arch in cases():
            try:
                label, n, losses, bad = check_case(lorac, tmp, label, fx, init_dir, arch)
            except Exception as e:  # a failed run is one failed row, the others still run
                print("%-18s FAILED: %s" % (label, e))
                failed += 1
                continue
            cells = "  ".join("%-14.9g %-14.9g %-9.2e" % (g, w, r) for _, g, w, r in losses)
            print("%-18s %7d  %s  %s" % (label, n, cells, "ok" if not bad else "FAILED"))
            for b in bad:
                print("    " + b)
            failed += bool(bad)
    print("%d of %d fixtures failed" % (failed, len(cases())))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
