#!/usr/bin/env python3
"""make_gguf_merge_fixtures.py - what `lorac merge --base model.gguf --adapter DIR --out F.gguf`
must write for each adapted linear, computed independently with gguf-py and numpy, into
tests/fixtures/gguf-merge/expected.json (tests/test_gguf_merge.c, scripts/check_gguf_export.py).

  /work/venv-torch/bin/python scripts/make_gguf_merge_fixtures.py

For every case (a GGUF base of tests/fixtures/gguf-base, a PEFT adapter, optionally read as
rsLoRA, an output --type) and every linear the adapter adapts, blk.N.<linear>.weight:
  W      = gguf.quants.dequantize(stored bytes) in the file's (llama.cpp's) row order
  delta  = scaling * B @ A in float64 (scaling = alpha / r, or alpha / sqrt(r) with rsLoRA),
           in HF row order, then permuted with convert_hf_to_gguf.py's LlamaModel.permute for
           attn_q / attn_k of the llama architecture (qwen2 / qwen3 store HF order)
  ref64  = W + delta (float64): the exact merge
  w32    = float32(W) + float32(delta): the float32 merge lorac documents (train/merge.h: the
           products summed in double, scaled, rounded once to f32, added in f32); checked here
           to be within 1e-6 of ref64 relative to max|ref64|
  bytes  = w32 in the output type by numpy / gguf-py: f32 as is, f16 numpy astype (round to
           nearest even), bf16 and q8_0 gguf.quants.quantize
DoRA adapters (use_dora, ...lora_magnitude_vector m), as PEFT's merge_and_unload, row by row in HF
order before the permutation:
  ref64  = m / ||W + delta|| * (W + delta) (float64)
  w32    = v * (m / sqrt(sum v^2)), v = float32(W) + float32(delta), the squares summed in
           float64 left to right and the product rounded once to f32 (train/merge.c)
Recorded per tensor: [type, FNV-1a 64 of bytes, sum |ref64|, sum sign_i * ref64_i] with
sign_i = -1 when bit 63 of (i * 0x9E3779B97F4A7C15 mod 2^64) is set, else +1 (i the element
index in file order): the test compares the bytes exactly and, for f32, the signed sum of
lorac's output with ref64's within 1e-6 of sum |ref64|. Tensors the adapter does not touch
must be the base's bytes (checked against the base file itself, not recorded).
"""
import json, math, os, sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIX = os.path.join(ROOT, "tests", "fixtures")
OUT = os.path.join(FIX, "gguf-merge", "expected.json")

# name -> (base file in gguf-base/, adapter dir under tests/fixtures, rslora, --type or None)
CASES = {
    "llama-q8_0-f32": ("tiny-llama-q8_0.gguf", "tiny-llama/adapter_step3", False, "f32"),
    "llama-q8_0-default": ("tiny-llama-q8_0.gguf", "tiny-llama/adapter_step3", False, None),
    "llama-q8_0-q8_0": ("tiny-llama-q8_0.gguf", "tiny-llama/adapter_step3", False, "q8_0"),
    "llama-q8_0-rslora-bf16": ("tiny-llama-q8_0.gguf", "tiny-llama/adapter_step3", True, "bf16"),
    "llama-f32-default": ("tiny-llama-f32.gguf", "tiny-llama/adapter_step3", False, None),
    "llama3-q4_k-f32": ("tiny-llama3-q4_k.gguf", "gguf-base/tiny-llama3-adapter", False, "f32"),
    "llama3-q4_k-q8_0": ("tiny-llama3-q4_k.gguf", "gguf-base/tiny-llama3-adapter", False, "q8_0"),
    "qwen2-q8_0-f16": ("tiny-qwen2-q8_0.gguf", "tiny-qwen2/adapter_step3", False, "f16"),
    "qwen3-q8_0-f32": ("tiny-qwen3-q8_0.gguf", "tiny-qwen3/adapter_step3", False, "f32"),
    "llama-q8_0-dora-f32": ("tiny-llama-q8_0.gguf", "tiny-llama/dora/adapter_init", False, "f32"),
    "llama-q8_0-dora-default": ("tiny-llama-q8_0.gguf", "tiny-llama/dora/adapter_init", False, None),
}
LINEARS = {"self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
           "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
           "mlp.down_proj": "ffn_down"}


def fnv(b: bytes) -> str:
    a = np.frombuffer(b, dtype=np.uint8)
    h = 0xcbf29ce484222325
    for x in a.tolist():
        h ^= x
        h = (h * 0x100000001b3) & 0xffffffffffffffff
    return "%016x" % h


def signs(n):
    i = np.arange(n, dtype=np.uint64)
    with np.errstate(over="ignore"):
        return np.where((i * np.uint64(0x9E3779B97F4A7C15)) >> np.uint64(63), -1.0, 1.0)


def permute(w, n_head):
    """convert_hf_to_gguf.py LlamaModel.permute: HF rows -> llama.cpp's."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def unpermute(w, n_head):
    """The inverse of permute: llama.cpp's rows -> HF."""
    return w.reshape(n_head, w.shape[0] // n_head // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def dora(W, delta64, m):
    """(ref64, w32) of a DoRA merge, in the rows' order of W (HF)."""
    v64 = W.astype(np.float64) + delta64
    ref64 = v64 * (m.astype(np.float64) / np.sqrt(np.sum(v64 * v64, axis=1)))[:, None]
    v = (W + delta64.astype(np.float32)).astype(np.float64)
    g = m.astype(np.float64) / np.sqrt(np.cumsum(v * v, axis=1)[:, -1])
    return ref64, (v * g[:, None]).astype(np.float32)


def field(r, key):
    f = r.fields[key]
    return f.contents()


def case_entries(base, adapter, rslora, outtype):
    import gguf
    from safetensors.numpy import load_file
    r = gguf.GGUFReader(os.path.join(FIX, "gguf-base", base))
    arch = field(r, "general.architecture")
    n_head = int(field(r, f"{arch}.attention.head_count"))
    n_kv = int(field(r, f"{arch}.attention.head_count_kv"))
    cfg = json.load(open(os.path.join(FIX, adapter, "adapter_config.json")))
    rank, alpha = cfg["r"], cfg["lora_alpha"]
    scale = alpha / math.sqrt(rank) if rslora else alpha / rank
    ad = load_file(os.path.join(FIX, adapter, "adapter_model.safetensors"))
    tensors = {t.name: t for t in r.tensors}
    out = {}
    worst = 0.0
    for key in sorted(ad):
        if not key.endswith(".lora_A.weight"):
            continue
        stem = key[len("base_model.model."):-len(".lora_A.weight")]  # model.layers.N.self_attn.q_proj
        layer = int(stem.split(".")[2])
        hf = ".".join(stem.split(".")[3:])
        name = f"blk.{layer}.{LINEARS[hf]}.weight"
        t = tensors[name]
        A = ad[key].astype(np.float32)
        B = ad[key.replace("lora_A", "lora_B")].astype(np.float32)
        W = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32)
        W = W.reshape(B.shape[0], A.shape[1])
        acc = np.zeros((B.shape[0], A.shape[1]), dtype=np.float64)
        for k in range(A.shape[0]):  # exact products, summed in k order
            acc += B[:, k:k + 1].astype(np.float64) * A[k:k + 1, :].astype(np.float64)
        delta64 = acc * scale
        heads = n_head if hf == "self_attn.q_proj" else n_kv if hf == "self_attn.k_proj" else 0
        heads = heads if arch == "llama" else 0
        mag = key.replace(".lora_A.weight", ".lora_magnitude_vector")
        if cfg.get("use_dora"):
            ref64, w32 = dora(unpermute(W, heads) if heads else W, delta64, ad[mag])
            if heads:
                ref64, w32 = permute(ref64, heads), permute(w32, heads)
        else:
            if heads:
                delta64 = permute(delta64, heads)
            ref64 = W.astype(np.float64) + delta64
            w32 = W + delta64.astype(np.float32)
        err = float(np.max(np.abs(w32.astype(np.float64) - ref64)) / np.max(np.abs(ref64)))
        assert err <= 1e-6, (name, err)
        worst = max(worst, err)
        t_out = outtype or ("f32" if t.tensor_type == gguf.GGMLQuantizationType.F32 else "f16")
        if t_out == "q8_0" and A.shape[1] % 32:
            t_out = "f16"
        if t_out == "f32":
            b = w32.astype("<f4").tobytes()
        elif t_out == "f16":
            b = w32.astype("<f2").tobytes()
        else:
            qt = gguf.GGMLQuantizationType.BF16 if t_out == "bf16" else gguf.GGMLQuantizationType.Q8_0
            b = gguf.quants.quantize(w32, qt).tobytes()
        flat = ref64.reshape(-1)
        out[name] = [t_out.upper(), fnv(b), float(np.sum(np.abs(flat))),
                     float(np.sum(signs(flat.size) * flat))]
    return out, worst


def main():
    cases = {}
    for name, (base, adapter, rslora, outtype) in CASES.items():
        merged, worst = case_entries(base, adapter, rslora, outtype)
        cases[name] = {"base": base, "adapter": adapter, "rslora": rslora, "type": outtype,
                       "merged": merged}
        print(f"{name}: {len(merged)} merged linears, f32 merge vs float64 {worst:.2g} of max|W'|")
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w") as f:
        json.dump(cases, f, indent=1)
        f.write("\n")
    print("wrote", OUT, os.path.getsize(OUT), "bytes")


if __name__ == "__main__":
    sys.exit(main())
