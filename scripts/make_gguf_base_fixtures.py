#!/usr/bin/env python3
"""make_gguf_base_fixtures.py - GGUF base models and their PyTorch/PEFT references for
tests/test_gguf_base.c (`base_model: model.gguf`).

Writes tests/fixtures/gguf-base/:
  tiny-llama-f32.gguf, tiny-llama-q8_0.gguf   tests/fixtures/tiny-llama/model as llama.cpp's
        convert_hf_to_gguf.py lays it out (arch "llama", attn_q / attn_k rows permuted by
        LlamaModel.permute, norms F32), matrices F32 / Q8_0 (gguf-py's quantizer).
  tiny-qwen2-q8_0.gguf, tiny-qwen3-q8_0.gguf   tests/fixtures/tiny-qwen2|3/model (arch qwen2 /
        qwen3: q/k not permuted; Qwen2's q/k/v biases and Qwen3's q/k norms as F32 vectors).
  tiny-llama3-q4_k.gguf + tiny-llama3-adapter/   a random Llama (hidden 256 so that rows hold
        whole 256-element Q4_K blocks; 2 layers, 4 heads, 2 KV heads, head_dim 64, vocab 512)
        with Llama 3.1 RoPE scaling stored as the converter does (a rope_freqs tensor), its
        matrices in Q4_K from the simple quantizer below (gguf-py 0.19 cannot quantize Q4_K;
        any valid blocks do: the reference uses the dequantized weights), and a random PEFT
        adapter (r 8, alpha 16, every linear).
  ref.safetensors   for each GGUF file <f> (stem), in float64 from the weights gguf-py
        dequantizes (read back with GGUFReader), q/k un-permuted, in HF LlamaForCausalLM +
        PEFT, on rows 0-1 of tests/fixtures/tiny-llama/train.jsonl:
        <f>.loss / <f>.grad_norm (mean CE over supervised tokens after the causal shift; the
        global L2 norm of every LoRA gradient) with the fixture's adapter (tiny-llama/
        adapter_init, tiny-qwen2|3/adapter_init, or tiny-llama3-adapter), and <f>.logits [2, 16, 512].

Usage: /work/venv-torch/bin/python scripts/make_gguf_base_fixtures.py [--out DIR]
Needs: torch, transformers, peft, safetensors, numpy, gguf (checked with gguf 0.19.0,
transformers 4.57.1, peft 0.17).
"""
import argparse
import json
import os

import numpy as np
import torch
import torch.nn.functional as F
import gguf
from gguf import GGMLQuantizationType as T
from safetensors.numpy import save_file
from transformers import AutoConfig, AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM
from peft import LoraConfig, PeftModel, get_peft_model

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
FIX = os.path.join(ROOT, "tests", "fixtures")
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def permute(w, n_head, n_head_kv):
    """convert_hf_to_gguf.py LlamaModel.permute (HF rotate-half rows -> GGML interleaved)."""
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    return (w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:])
            .swapaxes(1, 2).reshape(w.shape))


def unpermute(w, n_head):
    return (w.reshape(n_head, w.shape[0] // n_head // 2, 2, *w.shape[1:])
            .swapaxes(1, 2).reshape(w.shape))


def q4_k_quantize(w):
    """A simple valid Q4_K quantizer (not llama.cpp's search): per 32-element sub-block
    scale = (max - min(0, lo)) / 15, min = -min(0, lo); 6-bit sub-block scales and mins
    relative to the block's f16 d and dmin; 4-bit codes."""
    rows, cols = w.shape
    assert cols % 256 == 0
    x = w.astype(np.float32).reshape(-1, 8, 32)              # [blocks, sub, 32]
    lo = np.minimum(x.min(axis=2), 0)
    hi = np.maximum(x.max(axis=2), lo + 1e-8)
    sc, mn = (hi - lo) / 15, -lo                              # [blocks, 8]
    d = (sc.max(axis=1) / 63).astype(np.float16)
    dmin = (mn.max(axis=1) / 63).astype(np.float16)
    df, dminf = d.astype(np.float32), dmin.astype(np.float32)
    with np.errstate(divide="ignore", invalid="ignore"):
        qs_ = np.where(df[:, None] > 0, np.rint(sc / df[:, None]), 0).clip(0, 63).astype(np.uint8)
        qm_ = np.where(dminf[:, None] > 0, np.rint(mn / dminf[:, None]), 0).clip(0, 63).astype(np.uint8)
        step = (df[:, None] * qs_)[:, :, None]
        off = (dminf[:, None] * qm_)[:, :, None]
        q = np.where(step > 0, np.rint((x + off) / step), 0).clip(0, 15).astype(np.uint8)
    scales = np.zeros((x.shape[0], 12), np.uint8)
    scales[:, 0:4] = qs_[:, 0:4] | ((qs_[:, 4:8] >> 4) << 6)
    scales[:, 4:8] = qm_[:, 0:4] | ((qm_[:, 4:8] >> 4) << 6)
    scales[:, 8:12] = (qs_[:, 4:8] & 0xF) | ((qm_[:, 4:8] & 0xF) << 4)
    qs = (q[:, 0::2, :] | (q[:, 1::2, :] << 4)).reshape(-1, 128)   # sub 2j low, 2j+1 high
    blocks = np.concatenate([d.view(np.uint8).reshape(-1, 2), dmin.view(np.uint8).reshape(-1, 2),
                             scales, qs], axis=1)
    return blocks.reshape(rows, cols // 256 * 144)


def write_gguf(path, cfg, sd, qtype, arch="llama", rope_freqs=None):
    """cfg: the HF config; sd: HF state dict (float32 numpy). Only arch llama permutes q/k
    (Qwen2Model / Qwen3Model keep HF order: their GGUF RoPE is NEOX-style)."""
    H, KV, D = cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim
    w = gguf.GGUFWriter(path, arch)
    w.add_name("lorac test model")
    w.add_context_length(cfg.max_position_embeddings)
    w.add_embedding_length(cfg.hidden_size)
    w.add_block_count(cfg.num_hidden_layers)
    w.add_feed_forward_length(cfg.intermediate_size)
    w.add_rope_dimension_count(D)
    w.add_head_count(H)
    w.add_head_count_kv(KV)
    w.add_rope_freq_base(cfg.rope_theta)
    w.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    w.add_key_length(D)
    w.add_value_length(D)
    w.add_vocab_size(cfg.vocab_size)
    w.add_file_type({T.F32: 0, T.Q8_0: 7, T.Q4_K: 15}[qtype])

    def mat(name, a):
        a = np.ascontiguousarray(a, dtype=np.float32)
        if qtype == T.F32:
            w.add_tensor(name, a)
        elif qtype == T.Q4_K:
            w.add_tensor(name, q4_k_quantize(a), raw_dtype=T.Q4_K)
        else:
            w.add_tensor(name, gguf.quants.quantize(a, qtype), raw_dtype=qtype)

    def vec(name, a):
        w.add_tensor(name, np.ascontiguousarray(a, dtype=np.float32))

    if rope_freqs is not None:
        vec("rope_freqs.weight", rope_freqs)
    mat("token_embd.weight", sd["model.embed_tokens.weight"])
    vec("output_norm.weight", sd["model.norm.weight"])
    mat("output.weight", sd["lm_head.weight"])
    names = {"self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k",
             "self_attn.v_proj": "attn_v", "self_attn.o_proj": "attn_output",
             "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up", "mlp.down_proj": "ffn_down"}
    for l in range(cfg.num_hidden_layers):
        p = f"model.layers.{l}."
        vec(f"blk.{l}.attn_norm.weight", sd[p + "input_layernorm.weight"])
        for hf, gg in names.items():
            a = sd[p + hf + ".weight"]
            if gg == "attn_q" and arch == "llama":
                a = permute(a, H, H)
            elif gg == "attn_k" and arch == "llama":
                a = permute(a, H, KV)
            mat(f"blk.{l}.{gg}.weight", a)
            if p + hf + ".bias" in sd:
                vec(f"blk.{l}.{gg}.bias", sd[p + hf + ".bias"])
        for hf, gg in [("self_attn.q_norm", "attn_q_norm"), ("self_attn.k_norm", "attn_k_norm")]:
            if p + hf + ".weight" in sd:
                vec(f"blk.{l}.{gg}.weight", sd[p + hf + ".weight"])
        vec(f"blk.{l}.ffn_norm.weight", sd[p + "post_attention_layernorm.weight"])
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def read_back(path, cfg, arch="llama"):
    """HF state dict (float64 torch) from the GGUF file as gguf-py dequantizes it."""
    H, KV = cfg.num_attention_heads, cfg.num_key_value_heads
    r = gguf.GGUFReader(path)
    t = {x.name: gguf.quants.dequantize(x.data, x.tensor_type).astype(np.float64)
         for x in r.tensors}
    sd = {"model.embed_tokens.weight": t["token_embd.weight"],
          "model.norm.weight": t["output_norm.weight"], "lm_head.weight": t["output.weight"]}
    names = {"self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k",
             "self_attn.v_proj": "attn_v", "self_attn.o_proj": "attn_output",
             "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up", "mlp.down_proj": "ffn_down"}
    for l in range(cfg.num_hidden_layers):
        p = f"model.layers.{l}."
        sd[p + "input_layernorm.weight"] = t[f"blk.{l}.attn_norm.weight"]
        sd[p + "post_attention_layernorm.weight"] = t[f"blk.{l}.ffn_norm.weight"]
        for hf, gg in names.items():
            a = t[f"blk.{l}.{gg}.weight"]
            if gg == "attn_q" and arch == "llama":
                a = unpermute(a, H)
            elif gg == "attn_k" and arch == "llama":
                a = unpermute(a, KV)
            sd[p + hf + ".weight"] = a
            if f"blk.{l}.{gg}.bias" in t:
                sd[p + hf + ".bias"] = t[f"blk.{l}.{gg}.bias"]
        for hf, gg in [("self_attn.q_norm", "attn_q_norm"), ("self_attn.k_norm", "attn_k_norm")]:
            if f"blk.{l}.{gg}.weight" in t:
                sd[p + hf + ".weight"] = t[f"blk.{l}.{gg}.weight"]
    return {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in sd.items()}


def load_rows(n=2):
    ids, labels = [], []
    with open(os.path.join(FIX, "tiny-llama", "train.jsonl")) as f:
        for line in f.readlines()[:n]:
            d = json.loads(line)
            ids.append(d["input_ids"])
            labels.append(d["labels"])
    return torch.tensor(ids), torch.tensor(labels)


def reference(path, cfg, adapter_dir, ids, labels, arch="llama"):
    model = AutoModelForCausalLM.from_config(cfg).double()
    missing = model.load_state_dict(read_back(path, cfg, arch), strict=False)
    assert not missing.unexpected_keys and all("rotary" in k for k in missing.missing_keys), missing
    pm = PeftModel.from_pretrained(model, adapter_dir, is_trainable=True).double()
    logits = pm(input_ids=ids).logits
    v = logits.shape[-1]
    loss = F.cross_entropy(logits[:, :-1, :].reshape(-1, v), labels[:, 1:].reshape(-1),
                           ignore_index=-100)
    loss.backward()
    gn = torch.sqrt(sum((p.grad.double() ** 2).sum() for n, p in pm.named_parameters()
                        if "lora_" in n and p.grad is not None))
    return logits.detach().numpy(), float(loss), float(gn)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(FIX, "gguf-base"))
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    ids, labels = load_rows()
    refs = {}

    # tiny-llama as F32 and Q8_0
    src = os.path.join(FIX, "tiny-llama", "model")
    cfg = LlamaConfig.from_pretrained(src)
    hf = LlamaForCausalLM.from_pretrained(src, dtype=torch.float32)
    sd = {k: v.numpy() for k, v in hf.state_dict().items()}
    for stem, qt in [("tiny-llama-f32", T.F32), ("tiny-llama-q8_0", T.Q8_0)]:
        path = os.path.join(a.out, stem + ".gguf")
        write_gguf(path, cfg, sd, qt)
        refs[stem] = reference(path, cfg, os.path.join(FIX, "tiny-llama", "adapter_init"),
                               ids, labels)

    # Qwen2 (q/k/v biases) and Qwen3 (q/k norms): no permutation
    for arch in ["qwen2", "qwen3"]:
        src = os.path.join(FIX, "tiny-" + arch, "model")
        cfgq = AutoConfig.from_pretrained(src)
        hfq = AutoModelForCausalLM.from_pretrained(src, dtype=torch.float32)
        sdq = {k: v.numpy() for k, v in hfq.state_dict().items()}
        stem = f"tiny-{arch}-q8_0"
        path = os.path.join(a.out, stem + ".gguf")
        write_gguf(path, cfgq, sdq, T.Q8_0, arch=arch)
        refs[stem] = reference(path, cfgq, os.path.join(FIX, "tiny-" + arch, "adapter_init"),
                               ids, labels, arch)

    # a Llama 3.1-style model in Q4_K (rows of whole 256-blocks)
    torch.manual_seed(1234)
    cfg3 = LlamaConfig(hidden_size=256, intermediate_size=512, num_hidden_layers=2,
                       num_attention_heads=4, num_key_value_heads=2, head_dim=64,
                       vocab_size=512, max_position_embeddings=256, rms_norm_eps=1e-5,
                       tie_word_embeddings=False, rope_theta=500000.0,
                       rope_scaling={"rope_type": "llama3", "factor": 8.0,
                                     "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                     "original_max_position_embeddings": 64})
    # transformers 4.x spelling (rope_theta + rope_scaling); check it took effect
    assert abs(float(LlamaForCausalLM(cfg3).model.rotary_emb.inv_freq[-1]) -
               500000.0 ** (-62 / 64) / 8) < 1e-12
    m3 = LlamaForCausalLM(cfg3)
    with torch.no_grad():  # non-trivial norms
        for n, p in m3.named_parameters():
            if "norm" in n:
                p.copy_(1 + 0.1 * torch.randn_like(p))
    sd3 = {k: v.numpy() for k, v in m3.state_dict().items()}
    # rope_freqs as convert_hf_to_gguf.py LlamaModel.generate_extra_tensors computes them
    rp = cfg3.rope_scaling
    base, dim = cfg3.rope_theta, cfg3.head_dim
    freqs = 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.float32) / dim))
    factor, lf, hff, old = rp["factor"], rp["low_freq_factor"], rp["high_freq_factor"], \
        rp["original_max_position_embeddings"]
    low_wl, high_wl = old / lf, old / hff
    rf = []
    for fr in freqs.tolist():
        wl = 2 * np.pi / fr
        if wl < high_wl:
            rf.append(1)
        elif wl > low_wl:
            rf.append(factor)
        else:
            s = (old / wl - lf) / (hff - lf)
            rf.append(1 / ((1 - s) / factor + s))
    path = os.path.join(a.out, "tiny-llama3-q4_k.gguf")
    write_gguf(path, cfg3, sd3, T.Q4_K, rope_freqs=np.array(rf, np.float32))
    adir = os.path.join(a.out, "tiny-llama3-adapter")
    torch.manual_seed(99)
    pm = get_peft_model(LlamaForCausalLM(cfg3), LoraConfig(
        r=8, lora_alpha=16, lora_dropout=0.0, target_modules=TARGETS,
        init_lora_weights=False, task_type="CAUSAL_LM"))
    pm.save_pretrained(adir)
    if os.path.exists(os.path.join(adir, "README.md")):  # PEFT's model card
        os.remove(os.path.join(adir, "README.md"))
    refs["tiny-llama3-q4_k"] = reference(path, cfg3, adir, ids, labels)

    out = {}
    for stem, (logits, loss, gn) in refs.items():
        out[stem + ".logits"] = logits.astype(np.float32)
        out[stem + ".loss"] = np.array([loss], np.float64)
        out[stem + ".grad_norm"] = np.array([gn], np.float64)
        print(f"{stem}: loss {loss:.9f} grad_norm {gn:.6f} "
              f"({os.path.getsize(os.path.join(a.out, stem + '.gguf'))} bytes)")
    save_file(out, os.path.join(a.out, "ref.safetensors"))


if __name__ == "__main__":
    main()
