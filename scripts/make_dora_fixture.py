#!/usr/bin/env python3
"""make_dora_fixture.py - the DoRA reference (PEFT's use_dora) for lorac's tests.

On tests/fixtures/tiny-llama (or, with --family, tiny-gemma2 / tiny-gemma3 / tiny-phi3: their
model/ and train.jsonl), in float64 with HF transformers + PEFT (scripts/make_fixtures.py's own
functions): a DoRA adapter (r 8, alpha 16, dropout 0, all the family's linears
(make_fixtures.targets: seven, or Phi-3's four with the fused qkv_proj and gate_up_proj, one
magnitude per output row of the fused weight), PEFT's LoraConfig(use_dora=True,
init_lora_weights=False) so A and B are both random and non-zero; the magnitudes PEFT creates, m = ||W + s*B*A|| per row, are then scaled by
1 + 0.1*N(0,1) so m/c != 1 and the first step's c is non-trivial). The adapter is saved in F32 and
read back, so the reference starts from exactly the values lorac reads. Writes, under
tests/fixtures/tiny-<family>/dora/:
  adapter_init/               the adapter (PEFT's save_pretrained; tensor names
                              ...lora_A.weight, ...lora_B.weight, ...lora_magnitude_vector)
  ref_step0.safetensors       rows 0-1 of train.jsonl from adapter_init: "logits" [32, vocab],
                              "loss" [1], "<saved name>.grad" for every A, B and magnitude (F32),
                              and "<magnitude name>.init": the magnitudes PEFT gives a fresh DoRA
                              adapter (B = 0: ||W|| per row; not in tiny-llama's, which predates
                              them: its test computes the row norms itself)
  dora.json                   the 3-step trace as configs/fixture_3step.yaml runs it (torch AdamW,
                              lr 1e-3, wd 0.01 on every trainable tensor incl. the magnitudes as
                              HF's Trainer decays them, clip 1.0, constant): [{step, loss,
                              grad_norm}], versions
  dora_step3.safetensors      the adapter after the 3 steps (F32, saved names)
  merged_layer0.safetensors   PEFT's merge_and_unload() of adapter_init (float64, stored F32):
                              layer 0's merged linears (layer 1 left out to keep it small)
  (the tiny-llama fixture was made with transformers 4.57.1 / peft 0.17.1, the others with
  transformers 5.17.0 / peft 0.21.2 as issue #15 names; dora.json records the versions)
DoRA over quantized bases (--quant, also part of a full tiny-llama run), the same adapter_init and
rows 0-1:
PEFT's DoRA in float64 over a dense model whose weights are what the quantized base dequantizes
to (PEFT's DoRA over a bitsandbytes 4-bit layer takes its weight norm from the dequantized
weight), one file each under dora/:
  ref_nf4.safetensors         every decoder linear (q,k,v,o,gate,up,down) replaced by its NF4
                              round trip (block 64, no double quant; make_fixtures.nf4_torch, the
                              QLoRA fixture's code, bit-identical to bitsandbytes and lc_nf4)
  ref_nf4dq.safetensors       the linears of tiny-llama-bnb4 (bitsandbytes NF4 with double
                              quant), dequantized here as bitsandbytes does in f32: absmax =
                              nested_quant_map[code] * nested_absmax + offset, w = quant_map[q] *
                              absmax; plus "merged.model.layers.0.self_attn.q_proj.weight":
                              PEFT's merge_and_unload over those weights (lorac merge --dequantize)
  ref_gguf_q8_0.safetensors   every weight of gguf-base/tiny-llama-q8_0.gguf as gguf-py
                              dequantizes it, q/k un-permuted (make_gguf_base_fixtures.read_back)
  each with "logits" [16, 512] (row 0's; the loss is over rows 0-1), "loss" [1], "<saved name>.grad" for every A, B and magnitude, and
  "<magnitude name>.init": the magnitudes PEFT gives a fresh DoRA adapter over those weights
  (init_lora_weights=True: B = 0, so the row norms of the dequantized W)
Usage: /work/venv-torch/bin/python scripts/make_dora_fixture.py [--quant]
       /work/venv-t5/bin/python scripts/make_dora_fixture.py --family gemma2|gemma3|phi3
       /work/venv-torch/bin/python scripts/make_dora_fixture.py --check-adapter DIR
         after  build/lorac train configs/fixture_3step.yaml --set output_dir=DIR \
                  --set lora_model_dir=$PWD/tests/fixtures/tiny-llama/dora/adapter_init
         (lorac's 3-step DoRA adapter in DIR loads with PeftModel.from_pretrained as a DoRA
          adapter and gives the logits of PEFT's own 3 steps, dora_step3; exits 1 otherwise;
          measured: max rel diff 5.4e-7)
Needs torch, transformers, peft, safetensors.
"""
import argparse, json, os, shutil, sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_fixtures as mf  # noqa: E402
import peft  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FAMILIES = ("llama", "gemma2", "gemma3", "phi3")
SEED = 1234
# the fixture this run reads and writes: tiny-llama unless main() is given --family
FAMILY = "llama"
FIX = os.path.join(ROOT, "tests", "fixtures", "tiny-llama")
OUT = os.path.join(FIX, "dora")


def set_family(fam):
    global FAMILY, FIX, OUT
    FAMILY = fam
    FIX = os.path.join(ROOT, "tests", "fixtures", "tiny-" + fam)
    OUT = os.path.join(FIX, "dora")


def n_layers():
    with open(os.path.join(FIX, "model", "config.json")) as f:
        return json.load(f)["num_hidden_layers"]


def saved_name(n):
    """PEFT parameter name -> the name save_pretrained writes."""
    return (n.replace(".lora_A.default.", ".lora_A.").replace(".lora_B.default.", ".lora_B.")
            .replace(".lora_magnitude_vector.default.weight", ".lora_magnitude_vector"))


def dora_params(pm):
    out = {}
    for n, p in pm.named_parameters():
        if p.requires_grad:
            out[saved_name(n)] = p
    return dict(sorted(out.items()))


def make_adapter(adir):
    torch.manual_seed(SEED)
    base = mf.load_base(os.path.join(FIX, "model"), torch.float64)
    cfg = peft.LoraConfig(r=mf.LORA_R, lora_alpha=mf.LORA_ALPHA, lora_dropout=0.0,
                          target_modules=mf.targets(FAMILY), bias="none", task_type="CAUSAL_LM",
                          init_lora_weights=False, use_dora=True)
    pm = peft.get_peft_model(base, cfg)
    gen = torch.Generator().manual_seed(SEED)
    with torch.no_grad():
        for n, p in pm.named_parameters():
            if "lora_magnitude_vector" in n:
                p.mul_(1 + 0.1 * torch.randn(p.shape, generator=gen, dtype=p.dtype))
    pm = pm.to(torch.float32)
    pm.peft_config["default"].base_model_name_or_path = "../../model"
    pm.save_pretrained(adir)
    mf.drop_extras(adir, ["README.md"])
    sort_targets(os.path.join(adir, "adapter_config.json"))
    keys = sorted(load_file(os.path.join(adir, "adapter_model.safetensors")))
    print("saved keys (first 3 of %d):" % len(keys), keys[:3])


def sort_targets(path):
    """PEFT writes target_modules in its set's order, which changes from run to run (string
    hashing): sorted, so that a rerun writes the same bytes."""
    with open(path) as f:
        cfg = json.load(f)
    cfg["target_modules"] = sorted(cfg["target_modules"])
    with open(path, "w") as f:
        json.dump(cfg, f, indent=2, sort_keys=True)  # as PEFT's save_pretrained formats it


def fresh_magnitudes(base):
    """{"<magnitude name>.init": m} of a fresh DoRA adapter PEFT puts on base (init_lora_weights
    True: B = 0, so m = ||W|| per row of each of the family's linears)."""
    fresh = peft.get_peft_model(base, peft.LoraConfig(
        r=mf.LORA_R, lora_alpha=mf.LORA_ALPHA, lora_dropout=0.0, target_modules=mf.targets(FAMILY),
        bias="none", task_type="CAUSAL_LM", use_dora=True))
    return {saved_name(n) + ".init": p.detach() for n, p in fresh.named_parameters()
            if "lora_magnitude_vector" in n}


def make():
    os.makedirs(OUT, exist_ok=True)
    adir = os.path.join(OUT, "adapter_init")
    shutil.rmtree(adir, ignore_errors=True)
    make_adapter(adir)
    torch.use_deterministic_algorithms(True)
    ids, labels = mf.read_train(os.path.join(FIX, "train.jsonl"))
    mdir = os.path.join(FIX, "model")
    pm = mf.load_peft(mdir, adir, torch.float64, trainable=True)
    params = dora_params(pm)
    n_mod = len(mf.targets(FAMILY))
    assert len(params) == 3 * n_mod * n_layers(), len(params)
    b0 = mf.BATCHES[0]
    pm.zero_grad(set_to_none=True)
    out = pm(input_ids=ids[b0], use_cache=False)
    loss = mf.causal_loss(out.logits, labels[b0])
    loss.backward()
    ref = {"logits": out.logits.detach().reshape(-1, out.logits.shape[-1]),
           "loss": loss.detach().reshape(1)}
    for k, p in params.items():
        ref[k + ".grad"] = p.grad.detach()
    ref.update(fresh_magnitudes(mf.load_base(mdir, torch.float64)))
    save_file(mf.f32(ref), os.path.join(OUT, "ref_step0.safetensors"))
    print("step-1 loss %.12f" % loss.item())

    trace = train(pm, params, ids, labels)
    save_file(mf.f32(params), os.path.join(OUT, "dora_step3.safetensors"))
    meta = {"trace": trace, "torch": torch.__version__, "transformers": transformers.__version__,
            "peft": peft.__version__}
    with open(os.path.join(OUT, "dora.json"), "w") as f:
        json.dump(meta, f, indent=1)
        f.write("\n")
    del pm

    pm = mf.load_peft(mdir, adir, torch.float64, trainable=False)
    merged = pm.merge_and_unload().state_dict()
    keep = {k: v for k, v in merged.items() if k.startswith("model.layers.0.") and k.endswith("_proj.weight")}
    assert len(keep) == n_mod, sorted(keep)
    save_file(mf.f32(keep), os.path.join(OUT, "merged_layer0.safetensors"))


def bnb4_dequant(path):
    """{linear weight name: f32 [out, in]} of a bitsandbytes NF4 double-quant checkpoint, in the
    two f32 roundings bitsandbytes (and lc_nf4_block_absmax) uses for absmax."""
    f = load_file(path)
    out = {}
    for k in f:
        if not k.endswith(".weight.quant_state.bitsandbytes__nf4"):
            continue
        w = k[: -len(".quant_state.bitsandbytes__nf4")]
        st = json.loads(bytes(f[k].tolist()).decode())
        assert st["quant_type"] == "nf4" and st["nested_blocksize"] == 256, st
        bs, shape = st["blocksize"], st["shape"]
        nmap, nabs = f[w + ".nested_quant_map"], f[w + ".nested_absmax"]
        codes = f[w + ".absmax"].long()
        blk = torch.arange(codes.numel()) // 256
        absmax = nmap[codes] * nabs[blk]  # f32 product, then + offset: two roundings
        absmax = absmax + torch.tensor(st["nested_offset"], dtype=torch.float32)
        packed = f[w].reshape(-1)
        q = torch.stack([packed >> 4, packed & 15], dim=1).reshape(-1).long()
        n = shape[0] * shape[1]
        vals = f[w + ".quant_map"][q[:n]] * absmax.repeat_interleave(bs)[:n]
        out[w] = vals.reshape(shape)
    return out


def quant_bases():
    """name -> a function giving the float64 state dict PEFT runs on."""
    mdir = os.path.join(FIX, "model")

    def nf4():
        sd = {k: v.to(torch.float64) for k, v in load_file(os.path.join(mdir, "model.safetensors")).items()}
        nsd, _ = mf.nf4_weights(sd, mf.nf4_torch)
        return nsd

    def nf4dq():
        sd = {k: v.to(torch.float64) for k, v in load_file(os.path.join(mdir, "model.safetensors")).items()}
        deq = bnb4_dequant(os.path.join(ROOT, "tests", "fixtures", "tiny-llama-bnb4", "model",
                                        "model.safetensors"))
        assert len(deq) == 14, len(deq)
        for k, v in deq.items():
            sd[k] = v.to(torch.float64)
        return sd

    def gguf_q8_0():
        import make_gguf_base_fixtures as gb
        cfg = transformers.AutoConfig.from_pretrained(mdir)
        return gb.read_back(os.path.join(ROOT, "tests", "fixtures", "gguf-base",
                                         "tiny-llama-q8_0.gguf"), cfg)
    return {"nf4": nf4, "nf4dq": nf4dq, "gguf_q8_0": gguf_q8_0}


def with_weights(pm, sd):
    """Every weight of sd into PEFT model pm's base (a linear's through its base_layer)."""
    base = pm.get_base_model()
    with torch.no_grad():
        for k, v in sd.items():
            if "rotary" in k:
                continue
            mod = base.get_submodule(k.rsplit(".", 1)[0])
            layer = getattr(mod, "base_layer", mod)
            getattr(layer, k.rsplit(".", 1)[1]).copy_(v.to(torch.float64))


def make_quant():
    torch.use_deterministic_algorithms(True)
    ids, labels = mf.read_train(os.path.join(FIX, "train.jsonl"))
    b0 = mf.BATCHES[0]
    mdir = os.path.join(FIX, "model")
    adir = os.path.join(OUT, "adapter_init")
    for name, make_sd in quant_bases().items():
        sd = make_sd()
        pm = mf.load_peft(mdir, adir, torch.float64, trainable=True)
        with_weights(pm, sd)
        # PEFT caches nothing of W: the weight norm is recomputed from base_layer.weight each forward
        params = dora_params(pm)
        pm.zero_grad(set_to_none=True)
        out = pm(input_ids=ids[b0], use_cache=False)
        loss = mf.causal_loss(out.logits, labels[b0])
        loss.backward()
        ref = {"logits": out.logits.detach()[0], "loss": loss.detach().reshape(1)}  # row 0's
        for k, p in params.items():
            ref[k + ".grad"] = p.grad.detach()
        if name == "nf4dq":
            pm.eval()
            merged = pm.merge_and_unload().state_dict()
            key = "model.layers.0.self_attn.q_proj.weight"
            ref["merged." + key] = merged[key]
        del pm
        base = mf.load_base(mdir, torch.float64)
        with torch.no_grad():  # the weights first: PEFT's DoRA init reads them
            for k, v in sd.items():
                if "rotary" not in k:
                    base.get_parameter(k).copy_(v.to(torch.float64))
        ref.update(fresh_magnitudes(base))
        fn = os.path.join(OUT, "ref_%s.safetensors" % name)
        save_file(mf.f32(ref), fn)
        print("%s: step-1 loss %.12f (%d bytes)" % (name, loss.item(), os.path.getsize(fn)))


def train(pm, params, ids, labels):
    def step(i, l):
        pm.zero_grad(set_to_none=True)
        loss = mf.causal_loss(pm(input_ids=i, use_cache=False).logits, l)
        loss.backward()
        return loss.detach()
    trace = mf.train_steps(params, step, ids, labels)
    for t in trace:
        print("step %d loss %.9g grad_norm %.9g" % (t["step"], t["loss"], t["grad_norm"]))
    return trace


def check_adapter(adir):
    """A lorac-written DoRA adapter (lorac train with configs/fixture_3step.yaml from
    dora/adapter_init) loads with PeftModel.from_pretrained as a DoRA adapter and gives, on rows
    0-1, the logits of PEFT's own 3-step result (dora_step3.safetensors put into adapter_init's
    model): lorac's training, saving and PEFT's loading agree end to end."""
    ids, _ = mf.read_train(os.path.join(FIX, "train.jsonl"))
    b0 = mf.BATCHES[0]
    mdir = os.path.join(FIX, "model")
    pm = mf.load_peft(mdir, adir, torch.float64, trainable=False)
    with torch.no_grad():
        got = pm(input_ids=ids[b0], use_cache=False).logits
    ref = load_file(os.path.join(OUT, "dora_step3.safetensors"))
    pm2 = mf.load_peft(mdir, os.path.join(OUT, "adapter_init"), torch.float64, trainable=False)
    n = 0
    with torch.no_grad():
        for name, p in pm2.named_parameters():
            if saved_name(name) in ref:
                p.copy_(ref[saved_name(name)].to(torch.float64))
                n += 1
        want = pm2(input_ids=ids[b0], use_cache=False).logits
    e = mf.maxrel(got, want)
    dora = pm.peft_config["default"].use_dora
    print("%s: use_dora %s, logits vs PEFT's 3-step adapter: max rel diff %.3e (%d tensors)"
          % (adir, dora, e, n))
    want_n = 3 * len(mf.targets(FAMILY)) * n_layers()
    return 0 if dora and n == want_n and e < 5e-6 else 1  # measured 5.4e-7 (tiny-llama)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--check-adapter")
    ap.add_argument("--quant", action="store_true", help="only the quantized-base references")
    ap.add_argument("--family", choices=FAMILIES, default="llama",
                    help="the fixture tiny-FAMILY (the quantized-base references are tiny-llama's)")
    a = ap.parse_args()
    set_family(a.family)
    if a.family != "llama" and a.quant:
        sys.exit("make_dora_fixture.py: --quant is tiny-llama's only")
    if a.check_adapter:
        sys.exit(check_adapter(a.check_adapter))
    if not a.quant:
        make()
    if a.family == "llama":
        make_quant()


if __name__ == "__main__":
    main()
