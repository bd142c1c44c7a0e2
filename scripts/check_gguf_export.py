#!/usr/bin/env python3
"""check_gguf_export.py - read a GGUF file written by `lorac export-gguf` with gguf-py (the
`gguf` package: its own reader, not lorac's) and compare it with what llama.cpp's converter
writes, recorded in a tests/fixtures/gguf_export/<case>.json (scripts/make_gguf_export_fixtures.py).

  python scripts/check_gguf_export.py FILE.gguf FIXTURE.json
     every metadata key of the fixture present with the same type and value (arrays: same
     length and bytes; floats exactly), no other key but general.alignment (lorac writes 32,
     the default the converter leaves implicit); the same tensors (names, shapes, types) with
     the same data bytes. Prints one line per difference and exits 1 on any.
  python scripts/check_gguf_export.py --selftest LORAC_BINARY
     exports every case of tests/fixtures/gguf_export that lorac can make from the repository's
     fixtures and checks each as above (exit 77 when the gguf package is missing: ctest skip);
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
        ok &= selftest_merge(lorac, tmp)
    return 0 if ok else 1


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--selftest":
        sys.exit(selftest(sys.argv[2]))
    if len(sys.argv) != 3:
        print(__doc__)
        sys.exit(2)
    sys.exit(0 if compare(sys.argv[1], sys.argv[2]) else 1)


if __name__ == "__main__":
    main()
