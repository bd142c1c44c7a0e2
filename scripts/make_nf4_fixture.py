#!/usr/bin/env python3
"""make_nf4_fixture.py - write tests/fixtures/nf4_double_quant.safetensors with real bitsandbytes.

Why: tests/test_nf4.c checks that lorac's NF4 quantizer (autograd/nf4.c) reproduces
bitsandbytes bit for bit, double quantization included. This script runs bitsandbytes'
quantize_4bit(quant_type="nf4", blocksize=64) once without and once with compress_statistics
(double quant) on a few fixed-seed weights and saves every piece of both results.
Python is only used to make the fixture; the test suite reads the file and never runs Python.

Cases (each stored under "<case>.<what>"):
  main      [256, 128] N(0, 0.02): 512 absmax blocks = 2 nested 256-blocks (torch's cascade
            sum goes through a full level); row 3 all zero (two zero blocks), row 7's first
            block holds the f32 NF4 midpoints exactly (ties) and +-1, scaled by 2^-5; row 9's
            first block has one non-zero value
  tail      [5, 70]: 350 values, the last NF4 block partial (30 values) and all zero, so its
            absmax is torch's clamp value 1e-38; 6 blocks (mean of < 8 values: scalar path),
            one partial nested block
  odd_cols  [4, 51]: blocks straddle rows, rows 1 and 3 start on a low nibble; partial NF4
            block and partial nested block
What is saved per case:
  weight (F32 [rows, cols]), codes (U8 [n/2], first value in the high nibble), absmax (F32,
  plain), absmax_q (U8, nested codes), nested_absmax (F32), offset (F32 [1]), absmax_dq (F32:
  bnb's dequantized nested absmax), dequant (F32: dequantize_4bit of the double-quant state);
  dequant_plain (F32, plain state) for the small cases. Shared: nested_map (F32 [256], the
  state2.code bnb stores) and nf4_code (F32 [16]).

Usage: python scripts/make_nf4_fixture.py [--out tests/fixtures/nf4_double_quant.safetensors]
Needs torch, bitsandbytes (0.50 quantizes on CPU), safetensors, numpy.
"""
import argparse
import os

import numpy as np
import torch
import bitsandbytes
import bitsandbytes.functional as F
from safetensors.numpy import save_file

NF4 = np.array([-1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453,
                -0.28444138169288635, -0.18477343022823334, -0.09105003625154495, 0.0,
                0.07958029955625534, 0.16093020141124725, 0.24611230194568634,
                0.33791524171829224, 0.44070982933044434, 0.5626170039176941,
                0.7229568362236023, 1.0], dtype=np.float32)


def make_weights():
    g = torch.Generator().manual_seed(1234)
    main = (torch.randn(256, 128, generator=g) * 0.02).float()
    main[3].zero_()
    mids = (NF4[:-1] + NF4[1:]) / np.float32(2)             # f32 midpoints: exact ties
    tie = np.concatenate([[1.0, -1.0], mids, -mids, mids * np.float32(0.5), NF4]).astype(np.float32)
    tie = tie[:64] if tie.size >= 64 else np.pad(tie, (0, 64 - tie.size))
    main[7, :64] = torch.from_numpy(tie) * 2.0**-5           # power of 2 keeps the ties exact
    main[9, :64] = 0.0
    main[9, 17] = -0.05
    tail = torch.randn(5, 70, generator=g).float()
    tail.view(-1)[320:] = 0.0                                # last (partial) block all zero
    odd = torch.randn(4, 51, generator=g).float()
    return {"main": main, "tail": tail, "odd_cols": odd}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("--out", default=os.path.join(here, "..", "tests", "fixtures", "nf4_double_quant.safetensors"))
    args = ap.parse_args()

    torch.set_num_threads(1)
    out = {}
    nested_map = None
    for name, w in make_weights().items():
        q_plain, st_plain = F.quantize_4bit(w, blocksize=64, compress_statistics=False, quant_type="nf4")
        q, st = F.quantize_4bit(w, blocksize=64, compress_statistics=True, quant_type="nf4")
        assert torch.equal(q, q_plain), "codes must not depend on double quant"
        absmax_dq = F.dequantize_blockwise(st.absmax, st.state2) + st.offset
        deq = F.dequantize_4bit(q, st, quant_type="nf4")
        out[f"{name}.weight"] = w.numpy()
        out[f"{name}.codes"] = q.reshape(-1).numpy()
        out[f"{name}.absmax"] = st_plain.absmax.numpy()
        out[f"{name}.absmax_q"] = st.absmax.numpy()
        out[f"{name}.nested_absmax"] = st.state2.absmax.numpy()
        out[f"{name}.offset"] = st.offset.reshape(1).float().numpy()
        out[f"{name}.absmax_dq"] = absmax_dq.float().numpy()
        out[f"{name}.dequant"] = deq.numpy()
        if name != "main":
            out[f"{name}.dequant_plain"] = F.dequantize_4bit(q_plain, st_plain, quant_type="nf4").numpy()
        if nested_map is None:
            nested_map = st.state2.code.clone()
        assert torch.equal(nested_map, st.state2.code)
    out["nested_map"] = nested_map.numpy()
    out["nf4_code"] = F.get_4bit_type("nf4", device="cpu").numpy()
    out = {k: np.ascontiguousarray(v) for k, v in out.items()}
    meta = {"bitsandbytes": bitsandbytes.__version__, "torch": torch.__version__,
            "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "generator": "scripts/make_nf4_fixture.py"}
    save_file(out, args.out, metadata=meta)
    print(f"wrote {args.out} ({os.path.getsize(args.out)} bytes), {meta}")


if __name__ == "__main__":
    main()
