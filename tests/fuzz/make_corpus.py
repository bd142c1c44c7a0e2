#!/usr/bin/env python3
"""make_corpus.py — writes the seed corpora in tests/fuzz/corpus/<target>/.

Seeds come from the real fixtures (tests/fixtures/tiny-*, configs/*.yaml) plus
small safetensors images made here (the 600 KB model fixture is too big for a
seed). Each corpus stays well under 200 KB. Run from anywhere:
    python3 tests/fuzz/make_corpus.py
"""
import json
import os
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
FIX = os.path.join(REPO, "tests", "fixtures")
OUT = os.path.join(HERE, "corpus")

DT = {"F32": ("<f", 4), "F16": ("<e", 2), "F64": ("<d", 8), "I32": ("<i", 4), "U8": ("<B", 1)}


def st_image(tensors, meta=None, pad=True):
    """tensors: list of (name, dtype, shape, values). Returns safetensors bytes."""
    hdr, data = {}, b""
    if meta:
        hdr["__metadata__"] = meta
    for name, dt, shape, vals in tensors:
        if dt == "BF16":
            raw = b"".join(struct.pack("<f", v)[2:] for v in vals)
        else:
            fmt, _ = DT[dt]
            raw = b"".join(struct.pack(fmt, v) for v in vals)
        hdr[name] = {"dtype": dt, "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    js = json.dumps(hdr, separators=(",", ":")).encode()
    if pad:
        js += b" " * (-len(js) % 8)
    return struct.pack("<Q", len(js)) + js + data


def put(target, name, blob):
    d = os.path.join(OUT, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(blob, str):
        blob = blob.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(blob)


def read(*p):
    with open(os.path.join(*p), "rb") as f:
        return f.read()


# tiny-llama LoRA shapes: module -> (out, in)
MODS = [("self_attn", "q_proj", 64, 64), ("self_attn", "k_proj", 32, 64),
        ("self_attn", "v_proj", 32, 64), ("self_attn", "o_proj", 64, 64),
        ("mlp", "gate_proj", 160, 64), ("mlp", "up_proj", 160, 64), ("mlp", "down_proj", 64, 160)]


def lora_tensors(r, dtype, mods=None):
    out = []
    for layer in range(2):
        for parent, mod, o, i in MODS:
            if mods and mod not in mods:
                continue
            base = f"base_model.model.model.layers.{layer}.{parent}.{mod}"
            out.append((base + ".lora_A.weight", dtype, [r, i], [0.01 * (k % 7) for k in range(r * i)]))
            out.append((base + ".lora_B.weight", dtype, [o, r], [0.0] * (o * r)))
    return out


def row_encoder_seeds():
    """fuzz_row_encoder: first byte '0'..'7' picks the encoder (see the target), the
    rest is one row line. Valid and invalid rows of each dataset type."""
    t = "fuzz_row_encoder"
    dump = lambda o: json.dumps(o, ensure_ascii=False)
    def row(k, name, r):
        if isinstance(r, bytes):
            put(t, f"{k}_{name}", str(k).encode() + r)
        else:
            put(t, f"{k}_{name}", str(k) + (r if isinstance(r, str) else dump(r)))
    deep = "[" * 200 + "]" * 200
    # ---- 0 completion
    for name, r in [
        ("text", {"text": "Hello world, this is a completion row."}),
        ("unicode", {"text": "héllo wörld — 日本語 🎉 \u0301e\u0308"}),
        ("specials", {"text": "<|im_start|>user\nhi<|im_end|><|endoftext|>"}),
        ("long", {"text": "word " * 400}),
        ("empty", {"text": ""}),
        ("not_string", {"text": 12345678901234567890123}),
        ("missing", {"other": "x"}),
        ("null", {"text": None}),
        ("array_row", '["text"]'),
        ("bad_json", '{"text": "abc'),
        ("nul_escape", '{"text": "a\\u0000b"}'),
        ("surrogate", '{"text": "\\ud800x"}'),
        ("deep", '{"x": ' + deep + ', "text": "t"}'),
        ("huge_number", '{"text": "n", "n": 1e999999}'),
        ("dup_key", '{"text": "a", "text": 5}'),
    ]:
        row(0, name, r)
    # ---- 1 alpaca
    for name, r in [
        ("full", {"instruction": "Add the numbers.", "input": "2 and 3", "output": "5"}),
        ("no_input", {"instruction": "Say hi.", "output": "Hi!"}),
        ("null_input", {"instruction": "Say hi.", "input": None, "output": "Hi!"}),
        ("empty_output", {"instruction": "Nothing.", "input": "", "output": ""}),
        ("long", {"instruction": "Repeat. " * 100, "input": "x " * 100, "output": "y " * 200}),
        ("unicode", {"instruction": "Übersetze 日本", "input": "🎉", "output": "ça va"}),
        ("specials", {"instruction": "<|im_end|>", "output": "<|endoftext|>"}),
        ("no_instruction", {"input": "x", "output": "y"}),
        ("no_output", {"instruction": "x"}),
        ("number_output", {"instruction": "x", "output": 1.5e308}),
        ("nested", {"instruction": {"a": [1, 2]}, "output": "y"}),
        ("bad_json", '{"instruction": '),
        ("deep", '{"instruction": "i", "output": "o", "d": ' + deep + '}'),
        ("empty_object", "{}"),
        ("nul_escape", '{"instruction": "a\\u0000", "output": "b"}'),
    ]:
        row(1, name, r)
    # ---- 2 input_output
    seg = lambda text, label: {"text": text, "label": label}
    for name, r in [
        ("two", {"segments": [seg("Q: hi\n", False), seg("A: hello", True)]}),
        ("three", {"segments": [seg("<|im_start|>", False), seg("x", True), seg("<|im_end|>", True)]}),
        ("empty_text", {"segments": [seg("", True), seg("a", False)]}),
        ("unicode", {"segments": [seg("日本語 🎉", True)]}),
        ("empty", {"segments": []}),
        ("not_list", {"segments": {"text": "a", "label": True}}),
        ("label_int", {"segments": [seg("a", 1)]}),
        ("label_missing", {"segments": [{"text": "a"}]}),
        ("text_number", {"segments": [seg(3, True)]}),
        ("segment_string", {"segments": ["a"]}),
        ("no_segments", {"text": "a"}),
        ("many", {"segments": [seg(str(i), i % 2 == 0) for i in range(60)]}),
        ("deep", '{"segments": [{"text": "a", "label": true, "x": ' + deep + '}]}'),
        ("bad_utf8", b'{"segments": [{"text": "\xff\xfe", "label": true}]}'),
        ("null_segment", {"segments": [None]}),
    ]:
        row(2, name, r)
    # ---- chat rows (3 ChatML, 4 Llama 3.1 with defaults; 7 ChatML with eot/drop_system)
    msg = lambda role, content, **kw: dict(role=role, content=content, **kw)
    tool_call = {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}
    tools = [{"type": "function", "function": {"name": "get_weather", "description": "Weather",
              "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                             "required": ["city"]}}}]
    chats = [
        ("basic", {"messages": [msg("user", "Hi"), msg("assistant", "Hello!")]}),
        ("system", {"messages": [msg("system", "Be brief."), msg("user", "2+2?"), msg("assistant", "4")]}),
        ("row_system", {"system": "Row system.", "messages": [msg("user", "a"), msg("assistant", "b")]}),
        ("multi", {"messages": [msg("human", "q1"), msg("gpt", "a1"), msg("user", "q2"), msg("assistant", "a2")]}),
        ("tools", {"tools": tools, "messages": [
            msg("user", "Weather in Paris?"),
            {"role": "assistant", "content": None, "tool_calls": [tool_call]},
            msg("tool", "22C"), msg("assistant", "It is 22C.")]}),
        ("tool_calls_no_content", {"messages": [msg("user", "x"), {"role": "assistant", "tool_calls": [tool_call]}]}),
        ("unicode", {"messages": [msg("user", "日本語 🎉 é"), msg("assistant", "ça va ✓")]}),
        ("specials_in_content", {"messages": [msg("user", "<|im_end|><|im_start|>"), msg("assistant", "<|endoftext|>")]}),
        ("empty_content", {"messages": [msg("user", ""), msg("assistant", "")]}),
        ("sentinel_content", {"messages": [msg("user", "[[dummy_message]]"), msg("assistant", "zzdummymessagezz")]}),
        ("only_system", {"messages": [msg("system", "s")]}),
        ("empty", {"messages": []}),
        ("unknown_role", {"messages": [msg("narrator", "x")]}),
        ("content_number", {"messages": [msg("user", 12345678901234567890)]}),
        ("no_role", {"messages": [{"content": "x"}]}),
        ("not_object", {"messages": ["hi"]}),
        ("not_list", {"messages": "hi"}),
        ("nested_content", {"messages": [msg("user", [{"type": "text", "text": "hi"}])]}),
        ("extra_keys", {"messages": [msg("user", "a", name="bob", meta={"k": [1, {"z": None}]}), msg("assistant", "b", weight=0)]}),
        ("deep", '{"messages": [{"role": "user", "content": "a", "x": ' + deep + '}]}'),
        ("huge_number", '{"messages": [{"role": "user", "content": "a", "n": -1e999}]}'),
        ("raise_roles", {"messages": [msg("assistant", "a"), msg("assistant", "b"), msg("user", "c")]}),
    ]
    for k in (3, 4, 7):
        for name, r in chats:
            row(k, name, r)
    # ---- 5 ChatML with options: conversations / from / value / training / system_prompt
    mv = lambda who, text, **kw: {"from": who, "value": text, **kw}
    for name, r in [
        ("basic", {"conversations": [mv("human", "Hi"), mv("gpt", "Hello")]}),
        ("system_prompt", {"system_prompt": "S", "conversations": [mv("usr", "a"), mv("bot", "b")]}),
        ("training_flags", {"conversations": [mv("human", "a", training=True), mv("gpt", "b", training=False), mv("gpt", "c", training=None)]}),
        ("training_bad", {"conversations": [mv("human", "a", training="yes")]}),
        ("function", {"tools": tools, "conversations": [mv("human", "w?"), {"from": "gpt", "value": None, "tool_calls": [tool_call]}, mv("function", "22C"), mv("gpt", "ok")]}),
        ("unknown_role", {"conversations": [mv("narrator", "x")]}),
        ("wrong_keys", {"conversations": [msg("user", "x")]}),
        ("messages_key", {"messages": [mv("human", "x")]}),
        ("unicode", {"conversations": [mv("human", "日本語"), mv("gpt", "🎉" * 20)]}),
        ("value_number", {"conversations": [mv("human", 5)]}),
        ("system_in_conv", {"system_prompt": "ignored", "conversations": [mv("system", "S"), mv("human", "a"), mv("gpt", "b")]}),
        ("empty", {"conversations": []}),
        ("deep", '{"conversations": [{"from": "human", "value": "a", "x": ' + deep + '}]}'),
        ("many", {"conversations": [mv("human" if i % 2 == 0 else "gpt", f"turn {i}") for i in range(24)]}),
        ("dup_keys", '{"conversations": [{"from": "human", "from": "gpt", "value": "a", "value": 3}]}'),
    ]:
        row(5, name, r)
    # ---- 6 Llama 3.1 with options (default keys)
    for name, r in [
        ("basic", {"messages": [msg("human", "Hi"), msg("gpt", "Hello")]}),
        ("system_prompt", {"system_prompt": "S", "messages": [msg("usr", "a"), msg("bot", "b")]}),
        ("training_flags", {"messages": [msg("user", "a", training=False), msg("assistant", "b", training=True)]}),
        ("tools", {"tools": tools, "messages": [
            msg("user", "Weather?"), {"role": "assistant", "content": None, "tool_calls": [tool_call]},
            msg("function", "22C"), msg("assistant", "ok")]}),
        ("tool_calls_two", {"tools": tools, "messages": [msg("user", "w"), {"role": "assistant", "tool_calls": [tool_call, tool_call]}]}),
        ("tool_args_string", {"messages": [msg("user", "w"), {"role": "assistant", "tool_calls": [{"type": "function", "function": {"name": "f", "arguments": "{\"a\": 1}"}}]}]}),
        ("ipython", {"messages": [msg("user", "w"), msg("ipython", "out")]}),
        ("tools_not_list", {"tools": "x", "messages": [msg("user", "a")]}),
        ("tools_weird", {"tools": [1, None, {"function": 3}], "messages": [msg("user", "a")]}),
        ("unicode", {"messages": [msg("user", "日本語 🎉"), msg("assistant", "é\u0301")]}),
        ("system_middle", {"messages": [msg("user", "a"), msg("system", "S"), msg("assistant", "b")]}),
        ("empty", {"messages": []}),
        ("deep", '{"messages": [{"role": "user", "content": "a", "x": ' + deep + '}]}'),
        ("huge_number", '{"messages": [{"role": "user", "content": "a"}], "n": 1e999}'),
        ("bad_json", '{"messages": [{"role": "user", "content": "a"}'),
    ]:
        row(6, name, r)
    # Llama 3.1 renders tools and tool-call arguments with tojson: numbers cJSON reads as
    # inf / beyond int64, and nesting past the renderer's limit
    row(4, "tojson_huge_numbers", '{"tools":[{"type":"function","function":{"name":"f",'
        '"parameters":{"a":1e999,"b":-1e999,"c":12345678901234567890123,"d":1e-400,"e":-0}}}],'
        '"messages":[{"role":"user","content":"w"},{"role":"assistant","content":null,'
        '"tool_calls":[{"type":"function","function":{"name":"f","arguments":{"x":1e999,'
        '"y":9007199254740993,"z":-9223372036854775809,"w":1.5}}}]}]}')
    row(4, "tojson_deep", '{"messages":[{"role":"user","content":"w"},{"role":"assistant",'
        '"tool_calls":[{"function":{"name":"f","arguments":' + "[" * 100 + "]" * 100 + '}}]}]}')


# ---- GGUF (fuzz_gguf): little-endian; str = u64 length + bytes
def gguf_str(s):
    b = s.encode() if isinstance(s, str) else s
    return struct.pack("<Q", len(b)) + b


GGUF_SCALAR = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<B",
               10: "<Q", 11: "<q", 12: "<d"}


def gguf_val(vt, v):
    if vt == 8:
        return gguf_str(v)
    if vt == 9:
        et, items = v
        return struct.pack("<IQ", et, len(items)) + b"".join(gguf_val(et, x) for x in items)
    return struct.pack(GGUF_SCALAR[vt], v)


# ggml type id -> (block size, bytes per block): the types lorac dequantizes
GGML_SIZES = {0: (1, 4), 1: (1, 2), 30: (1, 2), 2: (32, 18), 3: (32, 20), 6: (32, 22), 7: (32, 24),
              8: (32, 34), 10: (256, 84), 11: (256, 110), 12: (256, 144), 13: (256, 176),
              14: (256, 210)}


def gguf_image(kvs, tensors, version=3, align=32):
    """kvs: list of (key, value type, value); tensors: list of (name, ggml type, ne).
    Tensor data are bytes i*7+1, each tensor at the next aligned offset."""
    out = b"GGUF" + struct.pack("<IQQ", version, len(tensors), len(kvs))
    for k, vt, v in kvs:
        out += gguf_str(k) + struct.pack("<I", vt) + gguf_val(vt, v)
    data, infos = b"", b""
    for name, gt, ne in tensors:
        bs, ts = GGML_SIZES[gt]
        n = 1
        for d in ne:
            n *= d
        nb = n // bs * ts
        data += b"\0" * (-len(data) % align)
        infos += gguf_str(name) + struct.pack("<I", len(ne)) + b"".join(struct.pack("<Q", d) for d in ne)
        infos += struct.pack("<IQ", gt, len(data))
        data += bytes((i * 7 + 1) & 255 for i in range(nb))
    out += infos
    out += b"\0" * (-len(out) % align)
    return out + data


def gguf_seeds():
    t = "fuzz_gguf"
    every = [("general.architecture", 8, "llama"), ("u8", 0, 7), ("i8", 1, -7), ("u16", 2, 700),
             ("i16", 3, -700), ("u32", 4, 70000), ("i32", 5, -70000), ("f32", 6, 0.5),
             ("bool", 7, 1), ("u64", 10, 2**40), ("i64", 11, -2**40), ("f64", 12, 1e-9),
             ("arr.str", 9, (8, ["a", "", "<0x0A>"])), ("arr.i32", 9, (5, [1, -2, 3])),
             ("arr.f32", 9, (6, [0.25])), ("arr.bool", 9, (7, [0, 1])), ("arr.empty", 9, (4, []))]
    put(t, "meta_every_type", gguf_image(every, []))
    put(t, "every_ggml_type", gguf_image([("general.alignment", 4, 32)],
                                         [(f"t{gt}", gt, [GGML_SIZES[gt][0] * (1 if GGML_SIZES[gt][0] > 1 else 8)])
                                          for gt in GGML_SIZES]))
    put(t, "shapes_4d_align64", gguf_image([("general.alignment", 4, 64)],
                                           [("w", 8, [64, 2, 1, 2]), ("x", 12, [256, 1, 2]), ("n", 0, [3])],
                                           align=64))
    put(t, "v2_llama", gguf_image([("general.architecture", 8, "llama"), ("llama.block_count", 4, 1),
                                   ("tokenizer.ggml.tokens", 9, (8, ["<s>", "a", "b"]))],
                                  [("token_embd.weight", 1, [4, 3]), ("blk.0.attn_q.weight", 14, [256, 1])],
                                  version=2))
    put(t, "header_only", gguf_image([], []))


def pb_varint(v):
    v &= (1 << 64) - 1
    out = b""
    while True:
        b = v & 0x7F
        v >>= 7
        out += bytes([b | (0x80 if v else 0)])
        if not v:
            return out


def pb_field(num, wire, val):
    """one protobuf field: wire 0 val int, 2 val bytes, 5 val float, 1 val int (fixed64)"""
    key = pb_varint(num << 3 | wire)
    if wire == 0:
        return key + pb_varint(val)
    if wire == 2:
        return key + pb_varint(len(val)) + val
    if wire == 5:
        return key + struct.pack("<f", val)
    return key + struct.pack("<Q", val)


def spm_model(pieces, model_type=2, extra=b""):
    """a SentencePiece ModelProto: pieces (text, score, type or None)"""
    out = b""
    for text, score, typ in pieces:
        body = pb_field(1, 2, text.encode()) + pb_field(2, 5, score)
        if typ is not None:
            body += pb_field(3, 0, typ)
        out += pb_field(1, 2, body)
    trainer = (pb_field(3, 0, model_type) if model_type else b"") + pb_field(4, 0, len(pieces))
    trainer += pb_field(35, 0, 1)
    norm = pb_field(1, 2, b"identity") + pb_field(3, 0, 1) + pb_field(4, 0, 0)
    return out + pb_field(2, 2, trainer) + pb_field(3, 2, norm) + extra


def spm_seeds():
    t = "fuzz_spm_model"
    every = [("<unk>", 0.0, 2), ("<s>", 0.0, 3), ("</s>", 0.0, 3), ("<|user|>", 0.0, 4),
             ("<0x0A>", 0.0, 6), ("<0xE2>", 0.0, 6), ("\u2581the", -1.0, None), ("\u2581t", -2.0, 1),
             ("he", -3.0, 1), ("unused", -4.0, 5), ("\u6771", -5.0, 1)]
    put(t, "bpe_every_type", spm_model(every))
    put(t, "unigram_default", spm_model(every[:3] + every[6:9], model_type=0))
    # unknown fields of every wire type (self_test_data, a fixed64, a varint) are skipped
    put(t, "unknown_fields", spm_model(every[:4], extra=pb_field(4, 2, pb_field(1, 2, b"x")) +
                                       pb_field(9, 1, 7) + pb_field(10, 0, 300)))
    put(t, "fixture_spm_bpe", read(FIX, "tokenizers", "spm-bpe", "tokenizer.model"))


def main():
    # ---- safetensors
    t = "fuzz_safetensors"
    put(t, "one_f32", st_image([("w", "F32", [2, 2], [1, 2, 3, 4])], {"format": "pt"}))
    put(t, "mixed", st_image([("a.weight", "F16", [3], [1, -2, 0.5]),
                              ("b.bias", "BF16", [2], [1, 2]),
                              ("c", "I32", [2, 1], [7, 8]),
                              ("scalar", "F64", [], [3.5]),
                              ("empty", "F32", [0, 4], [])]))
    put(t, "empty_header", st_image([]))
    put(t, "unpadded", st_image([("x", "U8", [5], [1, 2, 3, 4, 5])], {"k": "v", "format": "pt"}, pad=False))
    put(t, "lora_r1_f32", st_image(lora_tensors(1, "F32"), {"format": "pt"}))
    put(t, "lora_r2_bf16_qv", st_image(lora_tensors(2, "BF16", ["q_proj", "v_proj"])))

    # ---- model.safetensors.index.json (shards made by the fuzz target itself)
    t = "fuzz_st_index"
    put(t, "two_shards", json.dumps({"metadata": {"total_size": 24}, "weight_map": {
        "a": "model-00001-of-00002.safetensors", "b": "model-00001-of-00002.safetensors",
        "c": "model-00002-of-00002.safetensors"}}, indent=2))
    put(t, "one_shard", json.dumps({"weight_map": {"a": "model-00001-of-00002.safetensors"}}))
    put(t, "inlink", json.dumps({"weight_map": {"c": "inlink.safetensors",
                                                "b": "model-00001-of-00002.safetensors"}}))
    put(t, "link_out", json.dumps({"weight_map": {"a": "link.safetensors"}}))
    put(t, "dotdot", json.dumps({"weight_map": {"a": "../outside.safetensors"}}))
    put(t, "missing", json.dumps({"weight_map": {"z": "model-00002-of-00002.safetensors"}}))

    # ---- config.json
    t = "fuzz_model_config"
    for arch in ("llama", "mistral", "qwen2", "qwen3"):
        p = os.path.join(FIX, "tiny-" + arch, "model", "config.json")
        if os.path.exists(p):
            put(t, "tiny_" + arch, read(p))
    legacy = json.loads(read(FIX, "tiny-llama", "model", "config.json"))
    del legacy["rope_parameters"]
    legacy["rope_theta"] = 500000.0
    legacy["rope_scaling"] = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                              "high_freq_factor": 4.0, "original_max_position_embeddings": 64}
    legacy["torch_dtype"] = "bfloat16"
    del legacy["dtype"]
    put(t, "legacy_llama3", json.dumps(legacy))
    lin = dict(legacy)
    lin["rope_scaling"] = {"type": "linear", "factor": 2.0}
    lin["quantization_config"] = {"quant_method": "bitsandbytes", "load_in_4bit": True}
    put(t, "linear_bnb", json.dumps(lin))

    # ---- YAML training configs (+ overrides after NUL bytes)
    t = "fuzz_yaml_config"
    cdir = os.path.join(REPO, "configs")
    for f in sorted(os.listdir(cdir)):
        if f.endswith(".yaml"):
            put(t, f[:-5], read(cdir, f))
    small = ("base_model: model\ndatasets:\n  - path: train.jsonl\n    type: tokenized\n"
             "lora_r: 8\nlora_target_modules: [q_proj, v_proj]\nmicro_batch_size: 2\n")
    put(t, "small_with_sets", small.encode() + b"\0lora_r=16\0learning_rate=1e-4\0datasets=[{path: x.jsonl}]")
    put(t, "flow", "{base_model: m, datasets: [{path: d.jsonl, type: tokenized}], lora_target_linear: true,"
                   " warmup_ratio: 0.1, resume_from_checkpoint: auto, device: cpu}\n")

    # ---- JSONL rows
    t = "fuzz_jsonl_row"
    for i, line in enumerate(read(FIX, "tiny-llama", "train.jsonl").splitlines()[:3]):
        put(t, f"row{i}", line)
    put(t, "mask", json.dumps({"input_ids": [1, 2, 3], "attention_mask": [1, 1, 1], "labels": None}))
    put(t, "ignore", json.dumps({"input_ids": [5, 6], "labels": [-100, 6]}) + "\r\n")
    rows = read(FIX, "tiny-llama", "train.jsonl").decode().splitlines()
    put(t, "three_rows_blank", rows[0] + "\n\n  \n" + rows[1] + "\r\n" + rows[2])

    # ---- adapter: adapter_config.json NUL adapter_model.safetensors
    t = "fuzz_adapter"
    real_cfg = read(FIX, "tiny-llama", "adapter_init", "adapter_config.json")
    cfg = json.loads(real_cfg)
    cfg["r"] = 1
    put(t, "r1_all_f32", json.dumps(cfg).encode() + b"\0" + st_image(lora_tensors(1, "F32"), {"format": "pt"}))
    cfg2 = {"peft_type": "LORA", "r": 2, "lora_alpha": 4, "lora_dropout": 0.1, "use_rslora": True,
            "target_modules": ["q_proj", "v_proj"], "bias": "none"}
    put(t, "r2_qv_bf16", json.dumps(cfg2).encode() + b"\0" + st_image(lora_tensors(2, "BF16", ["q_proj", "v_proj"])))
    cfg3 = {"r": 1, "lora_alpha": 1, "target_modules": "all-linear"}
    put(t, "r1_alllinear_f16", json.dumps(cfg3).encode() + b"\0" + st_image(lora_tensors(1, "F16")))
    put(t, "config_only", real_cfg)
    # header length not a multiple of 4: tensor data is misaligned for F32
    # (legal: the format does not require the writer's padding)
    for extra in range(4):
        img = st_image(lora_tensors(1, "F32", ["q_proj"]), {"format": "pt" + "!" * extra}, pad=False)
        if struct.unpack("<Q", img[:8])[0] % 4:
            break
    put(t, "r1_unpadded_f32", json.dumps({"r": 1, "lora_alpha": 2, "target_modules": ["q_proj"]}).encode()
        + b"\0" + img)

    row_encoder_seeds()
    gguf_seeds()
    spm_seeds()

    for d in sorted(os.listdir(OUT)):
        total = sum(os.path.getsize(os.path.join(OUT, d, f)) for f in os.listdir(os.path.join(OUT, d)))
        print(f"{d}: {len(os.listdir(os.path.join(OUT, d)))} seeds, {total} bytes")
        if total > 200_000:
            sys.exit(f"{d}: corpus over 200 KB")


if __name__ == "__main__":
    main()
