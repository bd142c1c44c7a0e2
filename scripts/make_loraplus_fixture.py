#!/usr/bin/env python3
"""make_loraplus_fixture.py - the LoRA+ reference for tests/test_trainer.c (loraplus_trace).

LoRA+ as Axolotl runs it: axolotl/core/trainers/mixins/optimizer.py (0.19) calls PEFT's
peft.optimizers.create_loraplus_optimizer(model, torch.optim.AdamW, loraplus_lr_ratio=...,
loraplus_lr_embedding=..., lr=..., betas=..., eps=...) - the optimizer kwargs of HF's Trainer,
which carry no weight_decay, so every group gets PEFT's loraplus_weight_decay (default 0.0):
lora_A at lr, lora_B at lr x ratio, no weight decay.

This script takes tests/fixtures/tiny-llama's reference run (adapter_init, rows 0-1, 2-3, 4-5 of
train.jsonl, constant lr 1e-3, betas (0.9, 0.999), eps 1e-8, clip_grad_norm_ 1.0, float64
HF transformers + PEFT: scripts/make_fixtures.py's own functions) with that optimizer at
loraplus_lr_ratio 16, and writes
  tests/fixtures/tiny-llama/loraplus_step3.safetensors  the adapter after 3 steps (F32, PEFT names)
  tests/fixtures/tiny-llama/loraplus.json               {"loraplus_lr_ratio", "trace": [{step,
                                                        loss, grad_norm}], versions}
Usage: /work/venv-torch/bin/python scripts/make_loraplus_fixture.py
Needs torch, transformers, peft, safetensors.
"""
import json, os, sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_fixtures as mf  # noqa: E402
import peft  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from peft.optimizers import create_loraplus_optimizer  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

RATIO = 16.0
FIX = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests", "fixtures",
                   "tiny-llama")


def main():
    torch.use_deterministic_algorithms(True)
    ids, labels = mf.read_train(os.path.join(FIX, "train.jsonl"))
    pm = mf.load_peft(os.path.join(FIX, "model"), os.path.join(FIX, "adapter_init"), torch.float64,
                      trainable=True)
    params = mf.lora_params(pm)
    opt = create_loraplus_optimizer(pm, torch.optim.AdamW, lr=mf.TRAIN["lr"],
                                    loraplus_lr_ratio=RATIO, loraplus_lr_embedding=1e-6,
                                    betas=tuple(mf.TRAIN["betas"]), eps=mf.TRAIN["eps"])
    groups = [(len(g["params"]), g["lr"], g["weight_decay"]) for g in opt.param_groups]
    trace = []
    for i, rows in enumerate(mf.BATCHES):
        opt.zero_grad(set_to_none=True)
        loss = mf.hf_step(pm, ids[rows], labels[rows])[1]
        gn = torch.nn.utils.clip_grad_norm_(list(params.values()), mf.TRAIN["max_grad_norm"])
        opt.step()
        trace.append({"step": i + 1, "loss": float(loss), "grad_norm": float(gn)})
        print("step %d loss %.9g grad_norm %.9g" % (i + 1, float(loss), float(gn)))
    save_file(mf.f32(params), os.path.join(FIX, "loraplus_step3.safetensors"))
    meta = {"loraplus_lr_ratio": RATIO, "param_groups [n, lr, weight_decay]": groups,
            "trace": trace, "torch": torch.__version__, "transformers": transformers.__version__,
            "peft": peft.__version__}
    with open(os.path.join(FIX, "loraplus.json"), "w") as f:
        json.dump(meta, f, indent=1)
        f.write("\n")
    print("groups", groups)


if __name__ == "__main__":
    main()
