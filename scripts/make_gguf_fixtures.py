#!/usr/bin/env python3
"""make_gguf_fixtures.py - write tests/fixtures/gguf/{types,types_expected}.gguf with gguf-py.

Why: tests/test_gguf.c checks that lorac's GGUF reader (data/gguf.c) reads what gguf-py writes
and that its dequantizers (data/ggml_quants.c) give gguf-py's float32 results bit for bit.
Python only makes the fixtures; the test suite never runs Python.

types.gguf (general.alignment 64) holds, for each type in TYPES:
  <T>.quant  floats quantized by gguf-py (only for the types gguf-py can quantize: F32, F16,
             BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0), rows: N(0,1), x1e4 (huge scales), x1e-6
             (subnormal f16 scales), all zero, all -0.0, constant, N(0,1) with one outlier
  <T>.raw    random block bytes (dequantization must take any bytes), 12 blocks in 3 rows, with
             each block's f16 scale fields (d, dmin/m) set in turn to 65504, -65504, the
             smallest subnormal (+/-), -0, 0, 1, the smallest normal, the largest subnormal,
             a random finite half; blocks 10 and 11 all 0x00 / all 0xFF bytes (max codes)
             before their scales are set. Scales are never inf/NaN (gguf-py's NaN bits would
             follow numpy's SIMD path, not a format rule). F16 raw holds +/-inf, no NaN;
             BF16 and F32 raw hold any bits, NaN included.
  Q8_0.3d / Q4_K.4d   tensors of 3 and 4 dimensions.
  Metadata: one key of every value type (test.u8 ... test.f64, test.bool, test.str) and an
  array of every element type (test.arr.<type>, strings with UTF-8 and an empty one; an empty
  array cannot be written by gguf-py: test_gguf.c builds one by hand).
types_expected.gguf: for each tensor of types.gguf, a F32 tensor of the same name and shape
  holding gguf.quants.dequantize() of the tensor as GGUFReader reads it back.

Usage: python scripts/make_gguf_fixtures.py [--out tests/fixtures/gguf]
Needs: pip install gguf numpy (checked with gguf 0.19.0, numpy 2.4).
"""
import argparse
import os

import numpy as np
import gguf
from gguf import GGMLQuantizationType as T, GGUFValueType as V

TYPES = [T.F32, T.F16, T.BF16, T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q8_0,
         T.Q2_K, T.Q3_K, T.Q4_K, T.Q5_K, T.Q6_K]
QUANTIZABLE = {T.F32, T.F16, T.BF16, T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q8_0}
# byte offsets of the f16 scale fields inside one block
SCALE_FIELDS = {T.Q4_0: [0], T.Q4_1: [0, 2], T.Q5_0: [0], T.Q5_1: [0, 2], T.Q8_0: [0],
                T.Q2_K: [80, 82], T.Q3_K: [108], T.Q4_K: [0, 2], T.Q5_K: [0, 2], T.Q6_K: [208]}
EXTREME_HALVES = [0x7bff, 0xfbff, 0x0001, 0x8001, 0x8000, 0x0000, 0x3c00, 0x0400, 0x03ff]

# metadata written (test_gguf.c checks the same values)
META = [
    ("test.u8", 200, V.UINT8), ("test.i8", -100, V.INT8), ("test.u16", 60000, V.UINT16),
    ("test.i16", -30000, V.INT16), ("test.u32", 4000000000, V.UINT32),
    ("test.i32", -2000000000, V.INT32), ("test.f32", 0.15625, V.FLOAT32),
    ("test.bool", True, V.BOOL), ("test.str", "héllo, GGUF ✓", V.STRING),
    ("test.u64", 18000000000000000000, V.UINT64), ("test.i64", -9000000000000000000, V.INT64),
    ("test.f64", -2.5e300, V.FLOAT64),
]
ARRAYS = [
    ("test.arr.u8", [0, 1, 255], V.UINT8), ("test.arr.i8", [-128, 0, 127], V.INT8),
    ("test.arr.u16", [0, 65535], V.UINT16), ("test.arr.i16", [-32768, 32767], V.INT16),
    ("test.arr.u32", [1, 2, 4294967295], V.UINT32), ("test.arr.i32", [-1, 0, 7], V.INT32),
    ("test.arr.f32", [0.5, -1.25, 3.0], V.FLOAT32), ("test.arr.bool", [True, False, True], V.BOOL),
    ("test.arr.str", ["a", "", "ünï", "<0x0A>"], V.STRING),
    ("test.arr.u64", [0, 18446744073709551615], V.UINT64),
    ("test.arr.i64", [-9223372036854775808, 9223372036854775807], V.INT64),
    ("test.arr.f64", [1e-300, -0.0], V.FLOAT64),
]


def quant_rows(rng, block):
    cols = 2 * max(block, 32)
    rows = [rng.standard_normal(cols), rng.standard_normal(cols) * 1e4,
            rng.standard_normal(cols) * 1e-6, np.zeros(cols), -np.zeros(cols),
            np.full(cols, 0.37), rng.standard_normal(cols)]
    rows[-1][5] = 40.0
    return np.stack(rows).astype(np.float32)


def raw_blocks(rng, qtype, nblocks):
    block, size = gguf.GGML_QUANT_SIZES[qtype]
    b = rng.integers(0, 256, size=(nblocks, size), dtype=np.uint8)
    if qtype == T.F16:
        h = b.view(np.uint16)
        nan = (h & 0x7c00) == 0x7c00
        h[nan] &= 0xfc00  # NaN -> +/-inf
        return b
    if qtype in (T.F32, T.BF16):
        return b
    b[-2, :] = 0
    b[-1, :] = 0xFF
    for i in range(nblocks):
        for k, off in enumerate(SCALE_FIELDS[qtype]):
            j = (i + 3 * k) % (len(EXTREME_HALVES) + 1)
            if j < len(EXTREME_HALVES):
                hv = EXTREME_HALVES[j]
            else:
                hv = int(rng.integers(0, 0x7c00)) | (int(rng.integers(0, 2)) << 15)
            b[i, off] = hv & 0xFF
            b[i, off + 1] = hv >> 8
    return b


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="tests/fixtures/gguf")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    rng = np.random.default_rng(14)
    src = os.path.join(args.out, "types.gguf")
    w = gguf.GGUFWriter(src, arch="lorac-test")
    w.add_custom_alignment(64)
    for key, val, vt in META:
        w.add_key_value(key, val, vt)
    for key, val, vt in ARRAYS:
        w.add_key_value(key, val, V.ARRAY, sub_type=vt)
    for qt in TYPES:
        block, size = gguf.GGML_QUANT_SIZES[qt]
        if qt in QUANTIZABLE:
            x = quant_rows(rng, block)
            q = gguf.quants.quantize(x, qt)
            if qt == T.F32:
                w.add_tensor(f"{qt.name}.quant", q)
            else:
                w.add_tensor(f"{qt.name}.quant", q.view(np.uint8), raw_dtype=qt)
        nblocks = 12 if block > 1 else 3 * 160
        raw = raw_blocks(rng, qt, nblocks).reshape(3, -1)
        w.add_tensor(f"{qt.name}.raw", raw, raw_dtype=qt)
    x3 = rng.standard_normal((2, 3, 64)).astype(np.float32)
    w.add_tensor("Q8_0.3d", gguf.quants.quantize(x3, T.Q8_0), raw_dtype=T.Q8_0)
    w.add_tensor("Q4_K.4d", raw_blocks(rng, T.Q4_K, 4).reshape(2, 1, 2, -1), raw_dtype=T.Q4_K)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()

    r = gguf.GGUFReader(src)
    exp = gguf.GGUFWriter(os.path.join(args.out, "types_expected.gguf"), arch="lorac-test")
    n = 0
    for t in r.tensors:
        y = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32, copy=False)
        ne = [int(d) for d in t.shape]
        assert list(y.shape[::-1]) == ne, (t.name, y.shape, ne)
        exp.add_tensor(t.name, np.ascontiguousarray(y))
        n += 1
    exp.write_header_to_file()
    exp.write_kv_data_to_file()
    exp.write_tensors_to_file()
    exp.close()
    print(f"{n} tensors of {len(TYPES)} types written to {args.out}")


if __name__ == "__main__":
    main()
