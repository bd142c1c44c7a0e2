#!/usr/bin/env python3
"""make_quickstart.py — writes the small model and data that configs/quickstart.yaml trains on.

The files it writes are committed (configs/quickstart/), so the quickstart needs no download and
no Python; this script only documents and reproduces them. The model is a random Llama
(4 layers, hidden 128, 4 heads / 2 KV heads, vocab 256 = bytes, BF16) in Hugging Face layout. The
data are byte-tokenized English sentences from a small template grammar, so the adapter has real
structure to learn; question/answer rows mask the question with -100, as chat fine-tunes do.

    python3 scripts/make_quickstart.py [--out configs/quickstart] [--seed 0]
Needs numpy only.
"""
import argparse
import json
import os
import struct

import numpy as np


def bf16_bytes(a):
    """float32 array -> bfloat16 bytes, round to nearest even."""
    u = np.ascontiguousarray(a, dtype=np.float32).view(np.uint32).astype(np.uint64)
    u = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
    return u.astype(np.uint16).tobytes()


def write_safetensors(path, tensors):
    header, blobs, off = {}, [], 0
    for name, arr in tensors:
        data = bf16_bytes(arr)
        header[name] = {"dtype": "BF16", "shape": list(arr.shape), "data_offsets": [off, off + len(data)]}
        blobs.append(data)
        off += len(data)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def random_llama(rng, V, C, L, H, KV, D, FF):
    """(name, float32 array) of a random Llama without lm_head: N(0, 0.02) weights, unit norms,
    drawn from rng in this order (the shipped models depend on it)."""
    w = lambda *s: (rng.standard_normal(s) * 0.02).astype(np.float32)
    t = [("model.embed_tokens.weight", w(V, C)), ("model.norm.weight", np.ones(C, np.float32))]
    for l in range(L):
        p = f"model.layers.{l}."
        t += [(p + "input_layernorm.weight", np.ones(C, np.float32)),
              (p + "post_attention_layernorm.weight", np.ones(C, np.float32)),
              (p + "self_attn.q_proj.weight", w(H * D, C)), (p + "self_attn.k_proj.weight", w(KV * D, C)),
              (p + "self_attn.v_proj.weight", w(KV * D, C)), (p + "self_attn.o_proj.weight", w(C, H * D)),
              (p + "mlp.gate_proj.weight", w(FF, C)), (p + "mlp.up_proj.weight", w(FF, C)),
              (p + "mlp.down_proj.weight", w(C, FF))]
    return t


def make_model(out, rng):
    C, L, H, KV, FF, V = 128, 4, 4, 2, 352, 256
    D = C // H
    cfg = {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": C,
        "intermediate_size": FF, "num_hidden_layers": L, "num_attention_heads": H,
        "num_key_value_heads": KV, "head_dim": D, "vocab_size": V, "max_position_embeddings": 256,
        "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "tie_word_embeddings": True,
        "hidden_act": "silu", "attention_bias": False, "mlp_bias": False,
        "torch_dtype": "bfloat16", "bos_token_id": 1, "eos_token_id": 10,
    }
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    t = random_llama(rng, V, C, L, H, KV, D, FF)
    write_safetensors(os.path.join(out, "model.safetensors"), t)


SUBJECTS = ["the cat", "a small dog", "my neighbour", "the old sailor", "a young girl", "the teacher",
            "our robot", "the farmer", "a tired student", "the baker"]
VERBS = ["found", "painted", "carried", "lost", "fixed", "wanted", "counted", "hid", "sold", "built"]
OBJECTS = ["a red box", "three apples", "the blue boat", "an old map", "a warm loaf", "the tall ladder",
           "seven stones", "a paper kite", "the brass key", "a wooden chair"]
PLACES = ["in the garden", "near the river", "at the market", "under the bridge", "on the hill",
          "behind the school", "by the harbour", "inside the barn"]


def make_data(out, rng, n_train=480, n_eval=48):
    def sentence():
        s, v, o, p = (x[rng.integers(len(x))] for x in (SUBJECTS, VERBS, OBJECTS, PLACES))
        return f"{s} {v} {o} {p}.", (s, v, o)

    def row():
        if rng.random() < 0.3:  # question/answer: only the answer is trained
            text, (s, v, o) = sentence()
            q = f"Q: what did {s} do? A: "
            ids = list((q + f"{s} {v} {o}.\n").encode())
            labels = [-100] * len(q) + ids[len(q):]
            return {"input_ids": ids, "labels": labels}
        text = " ".join(sentence()[0].capitalize() for _ in range(int(rng.integers(1, 3)))) + "\n"
        return {"input_ids": list(text.encode())}

    for name, n in (("train.jsonl", n_train), ("eval.jsonl", n_eval)):
        with open(os.path.join(out, name), "w") as f:
            for _ in range(n):
                f.write(json.dumps(row(), separators=(",", ":")) + "\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "configs", "quickstart"))
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    rng = np.random.default_rng(a.seed)
    make_model(os.path.join(a.out, "model"), rng)
    make_data(a.out, rng)


if __name__ == "__main__":
    main()
