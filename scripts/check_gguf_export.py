#!/usr/bin/env python3
"""check_gguf_export.py - read a GGUF file written by `lorac export-gguf` with gguf-py (the
`gguf` package: its own reader, not lorac's) and compare it with what llama.cpp's converter
writes, recorded in a tests/fixtures/gguf_export/<case>.json (scripts/make_gguf_export_fixtures.py).

  python scripts/check_gguf_export.py FILE.gguf FIXTURE.json
     every metadata key of the fixture present with the same type and value (arrays: same
     length and bytes; floats exactly), no other key but general.alignment (lorac writes 32,
     the default the converter leaves implicit); the same tensors (names, shapes, types) with
     the same data bytes. Prints one line per difference and exits 1 on any.
  python scripts/check_gguf_export.py --trained OUTPUT_DIR BASE.gguf
     the adapter_model.gguf that `lorac train` over BASE.gguf wrote into OUTPUT_DIR against its
     adapter_model.safetensors: general.type adapter, adapter.type lora, adapter.lora.alpha a
     FLOAT32 equal to adapter_config.json's lora_alpha, general.architecture the base's, and
     every lora_a / lora_b equal to A / B (B of q/k with its rows permuted as the converter's
     LlamaModel.permute for the llama architecture; qwen2/qwen3 unpermuted), nothing else.
  python scripts/check_gguf_export.py --selftest LORAC_BINARY
     exports every case of tests/fixtures/gguf_export that lorac can make from the repository's
     fixtures and checks each as above (the LoRA cases over the HF directory and over the GGUF
     file of the same model); trains 2 steps over the Q8_0 and Q4_K GGUF fixtures and checks
     the adapter_model.gguf of each as --trained does (exit 77 when the gguf package is
     missing: ctest skip);
     then merges every case of tests/fixtures/gguf-merge/expected.json with `lorac merge --base
     X.gguf` and checks the merged file: the base's metadata (same keys, types, values, order),
     the base's tensors (names, shapes, order), untouched ones with the base's type and bytes,
     each adapted linear with the type and bytes scripts/make_gguf_merge_fixtures.py computed.
"""
import json, os, subprocess, sys, tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIX = os.path.join(ROOT, "tests", "fixtures")


sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_gguf_export_fixtures import describe as describe_file  # noqa: E402  (one reading rule)


def describe(path):
    """{key: (type, value)} and {tensor: (shape, type, fnv)} of a GGUF file, as the fixtures hold them."""
    d = describe_file(path, "", "")
    kv = {k: (t, v) for k, t, v in d["kv"]}
    tensors = {n: (shape, ty, h) for n, shape, ty, h in d["tensors"]}
    return kv, tensors


def compare(path, fixture):
    want = json.load(open(fixture))
    kv, tensors = describe(path)
    bad = []
    wkeys = set()
    for k, t, v in want["kv"]:
        wkeys.add(k)
        if k not in kv:
            bad.append(f"missing key {k}")
        elif kv[k][0] != t or kv[k][1] != v:
            got = kv[k][1]
            if isinstance(got, str) and len(got) > 80:
                got = got[:80] + "..."
            bad.append(f"key {k}: {kv[k][0]} {got!r}, converter {t} {v!r}"[:300])
    for k in kv:
        if k not in wkeys and k != "general.alignment":
            bad.append(f"extra key {k} = {kv[k][1]!r}"[:200])
    wt = {n: (s, ty, h) for n, s, ty, h in want["tensors"]}
    for n in wt:
        if n not in tensors:
            bad.append(f"missing tensor {n}")
        elif tensors[n] != wt[n]:
            bad.append(f"tensor {n}: {tensors[n]}, converter {wt[n]}")
    for n in tensors:
        if n not in wt:
            bad.append(f"extra tensor {n}")
    for b in bad:
        print(f"{os.path.basename(fixture)}: {b}")
    return not bad


CASES = {  # case -> (base dir, extra args); made like make_gguf_export_fixtures.py makes them
    "llama": ("tiny-llama/model", ["--no-vocab"]),
    "mistral": ("tiny-mistral/model", ["--no-vocab"]),
    "qwen2": ("tiny-qwen2/model", ["--no-vocab"]),
    "qwen3": ("tiny-qwen3/model", ["--no-vocab"]),
    "chat": ("../../configs/quickstart_chat/model", []),
    "llama3rope": (None, ["--no-vocab"]),
    "linrope": (None, ["--no-vocab"]),
    "lora-llama": ("tiny-llama/model", ["--adapter", os.path.join(FIX, "tiny-llama/adapter_step3"),
                                        "--lora"]),
    "lora-qwen2": ("tiny-qwen2/model", ["--adapter", os.path.join(FIX, "tiny-qwen2/adapter_step3"),
                                        "--lora"]),
}
GGUF_BASE = {  # LoRA case -> the GGUF file of its base (tests/fixtures/gguf-base/)
    "lora-llama": "gguf-base/tiny-llama-f32.gguf",
    "lora-qwen2": "gguf-base/tiny-qwen2-q8_0.gguf",
}
ROPE = {"llama3rope": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                       "high_freq_factor": 4.0, "original_max_position_embeddings": 32},
        "linrope": {"rope_type": "linear", "factor": 2.0}}


def rope_variant(tmp, name):
    import shutil
    d = os.path.join(tmp, name)
    if not os.path.isdir(d):
        os.makedirs(d)
        src = os.path.join(FIX, "tiny-llama", "model")
        cfg = json.load(open(os.path.join(src, "config.json")))
        cfg["rope_parameters"] = dict(ROPE[name], rope_theta=500000.0)
        json.dump(cfg, open(os.path.join(d, "config.json"), "w"), indent=2)
        shutil.copy(os.path.join(src, "model.safetensors"), d)
    return d


def compare_merged(path, base, merged, label):
    """A `lorac merge` GGUF file against its GGUF base and the expected merged tensors."""
    got, want = describe_file(path, "", ""), describe_file(base, "", "")
    bad = []
    if got["kv"] != want["kv"]:
        bad.append("metadata differs from the base's: " + str(
            [k for k, b in zip(got["kv"], want["kv"]) if k != b][:1] or "key count")[:200])
    if [t[:2] for t in got["tensors"]] != [t[:2] for t in want["tensors"]]:
        bad.append("tensor names, shapes or order differ from the base's")
    for (name, _, ty, h), (_, _, bty, bh) in zip(got["tensors"], want["tensors"]):
        exp = (merged[name][0], merged[name][1]) if name in merged else (bty, bh)
        if (ty, h) != exp:
            bad.append(f"tensor {name}: {ty} {h}, expected {exp[0]} {exp[1]}")
    for b in bad:
        print(f"{label}: {b}")
    return not bad


def selftest_merge(lorac, tmp):
    ok = True
    cases = json.load(open(os.path.join(FIX, "gguf-merge", "expected.json")))
    for name, c in cases.items():
        base = os.path.join(FIX, "gguf-base", c["base"])
        adapter = os.path.join(FIX, c["adapter"])
        if c["rslora"]:
            import shutil
            d = os.path.join(tmp, name + "-adapter")
            os.makedirs(d)
            shutil.copy(os.path.join(adapter, "adapter_model.safetensors"), d)
            cfg = json.load(open(os.path.join(adapter, "adapter_config.json")))
            cfg["use_rslora"] = True
            json.dump(cfg, open(os.path.join(d, "adapter_config.json"), "w"))
            adapter = d
        out = os.path.join(tmp, name + ".gguf")
        cmd = [lorac, "merge", "--base", base, "--adapter", adapter, "--out", out]
        cmd += ["--type", c["type"]] if c["type"] else []
        p = subprocess.run(cmd, capture_output=True, text=True)
        if p.returncode:
            print(" ".join(cmd), "failed:", p.stderr.strip())
            ok = False
            continue
        good = compare_merged(out, base, {k: v[:2] for k, v in c["merged"].items()}, name)
        print(("ok  " if good else "BAD ") + "merge " + name)
        ok &= good
    return ok


def read_safetensors(path):
    """{name: float32 array} of an F32 safetensors file (numpy only)."""
    import numpy as np
    raw = open(path, "rb").read()
    n = int.from_bytes(raw[:8], "little")
    head = json.loads(raw[8:8 + n])
    out = {}
    for name, t in head.items():
        if name == "__metadata__":
            continue
        assert t["dtype"] == "F32", f"{path}: {name} is {t['dtype']}"
        b, e = t["data_offsets"]
        out[name] = np.frombuffer(raw[8 + n + b:8 + n + e], dtype=np.float32).reshape(t["shape"])
    return out


def llama_permute(w, heads):
    """convert_hf_to_gguf.py's LlamaModel.permute of an HF [rows, cols] weight."""
    rows = w.shape[0]
    return w.reshape(heads, 2, rows // heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


GGUF_MODULES = {"q_proj": "attn_q", "k_proj": "attn_k", "v_proj": "attn_v",
                "o_proj": "attn_output", "gate_proj": "ffn_gate", "up_proj": "ffn_up",
                "down_proj": "ffn_down"}


def check_trained(out_dir, base):
    """adapter_model.gguf of a `lorac train` over GGUF base against the PEFT files."""
    import gguf
    import numpy as np
    bad = []
    b = gguf.GGUFReader(base)
    arch = b.fields["general.architecture"].contents()
    heads = {"q_proj": b.fields[f"{arch}.attention.head_count"].contents()}
    kv = b.fields.get(f"{arch}.attention.head_count_kv")
    heads["k_proj"] = kv.contents() if kv else heads["q_proj"]
    r = gguf.GGUFReader(os.path.join(out_dir, "adapter_model.gguf"))
    f = r.fields
    cfg = json.load(open(os.path.join(out_dir, "adapter_config.json")))
    for k, want in (("general.type", "adapter"), ("adapter.type", "lora"),
                    ("general.architecture", arch)):
        if k not in f or f[k].contents() != want:
            bad.append(f"{k}: {f[k].contents() if k in f else None!r}, expected {want!r}")
    a = f.get("adapter.lora.alpha")
    if not a or a.types[0] != gguf.GGUFValueType.FLOAT32 or a.contents() != cfg["lora_alpha"]:
        bad.append(f"adapter.lora.alpha: {a and a.types[0].name} {a and a.contents()}, expected "
                   f"FLOAT32 {cfg['lora_alpha']}")
    st = read_safetensors(os.path.join(out_dir, "adapter_model.safetensors"))
    tensors = {t.name: t for t in r.tensors}
    seen = set()
    for name, w in st.items():
        # base_model.model.model.layers.N.{self_attn,mlp}.X_proj.lora_{A,B}.weight
        parts = name.split(".")
        layer, mod, ab = int(parts[4]), parts[6], parts[7][-1]
        g = f"blk.{layer}.{GGUF_MODULES[mod]}.weight.lora_{ab.lower()}"
        seen.add(g)
        if ab == "B" and arch == "llama" and mod in heads:
            w = llama_permute(w, heads[mod])
        t = tensors.get(g)
        if t is None:
            bad.append(f"missing tensor {g}")
        elif t.tensor_type != gguf.GGMLQuantizationType.F32 or \
                [int(x) for x in t.shape] != [w.shape[1], w.shape[0]]:
            bad.append(f"tensor {g}: {t.tensor_type.name} {list(t.shape)}, expected F32 "
                       f"{[w.shape[1], w.shape[0]]}")
        elif not np.array_equal(np.asarray(t.data).reshape(w.shape), w):
            bad.append(f"tensor {g} differs from {name}")
    bad += [f"extra tensor {n}" for n in tensors if n not in seen]
    for m in bad:
        print(f"{out_dir}/adapter_model.gguf: {m}")
    return not bad


TRAIN_YAML = """base_model: {base}
adapter: lora
lora_r: 8
lora_alpha: 16
lora_target_linear: true
datasets:
  - path: {data}
    type: tokenized
sequence_len: 16
micro_batch_size: 2
max_steps: 2
learning_rate: 1e-3
output_dir: {out}
"""


def selftest_trained(lorac, tmp):
    ok = True
    for stem in ("tiny-llama-q8_0", "tiny-llama3-q4_k"):
        base = os.path.join(FIX, "gguf-base", stem + ".gguf")
        out = os.path.join(tmp, "train-" + stem)
        cfg = os.path.join(tmp, stem + ".yaml")
        open(cfg, "w").write(TRAIN_YAML.format(
            base=base, data=os.path.join(FIX, "tiny-llama", "train.jsonl"), out=out))
        p = subprocess.run([lorac, "train", cfg], capture_output=True, text=True)
        if p.returncode:
            print(f"lorac train over {stem} failed:", p.stderr.strip()[-500:])
            ok = False
            continue
        good = check_trained(out, base)
        print(("ok  " if good else "BAD ") + f"trained over {stem}.gguf: adapter_model.gguf")
        ok &= good
    return ok


def selftest(lorac):
    try:
        import gguf  # noqa: F401
    except ImportError:
        print("gguf (pip install gguf) is not installed: skipped")
        return 77
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        for fx in sorted(os.listdir(os.path.join(FIX, "gguf_export"))):
            case, outtype = fx[:-5].rsplit("-", 1)
            if case not in CASES:
                continue
            base, extra = CASES[case]
            out = os.path.join(tmp, fx[:-5] + ".gguf")
            base = os.path.join(FIX, base) if base else rope_variant(tmp, case)
            cmd = [lorac, "export-gguf", "--base", base, "--out", out,
                   "--type", outtype] + extra
            p = subprocess.run(cmd, capture_output=True, text=True)
            if p.returncode:
                print(" ".join(cmd), "failed:", p.stderr.strip())
                ok = False
                continue
            good = compare(out, os.path.join(FIX, "gguf_export", fx))
            print(("ok  " if good else "BAD ") + fx)
            ok &= good
            if case in GGUF_BASE:  # the same adapter over the GGUF file of its base
                gout = out[:-5] + "-gguf-base.gguf"
                cmd[cmd.index(base)] = os.path.join(FIX, GGUF_BASE[case])
                cmd[cmd.index(out)] = gout
                p = subprocess.run(cmd, capture_output=True, text=True)
                good = p.returncode == 0 and compare(gout, os.path.join(FIX, "gguf_export", fx))
                if p.returncode:
                    print(" ".join(cmd), "failed:", p.stderr.strip())
                print(("ok  " if good else "BAD ") + fx + " (over " + GGUF_BASE[case] + ")")
                ok &= good
        ok &= selftest_trained(lorac, tmp)
        ok &= selftest_merge(lorac, tmp)
    return 0 if ok else 1


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--selftest":
        sys.exit(selftest(sys.argv[2]))
    if len(sys.argv) == 4 and sys.argv[1] == "--trained":
        sys.exit(0 if check_trained(sys.argv[2], sys.argv[3]) else 1)
    if len(sys.argv) != 3:
        print(__doc__)
        sys.exit(2)
    sys.exit(0 if compare(sys.argv[1], sys.argv[2]) else 1)


if __name__ == "__main__":
    main()
