#!/usr/bin/env python3
"""make_generate_fixtures.py - greedy generation references for `lorac generate` (issue #17).

Why: lorac's decoder (KV cache over the trainer's own layer code) must produce exactly the tokens
transformers' generate() produces. For each tiny fixture model (tests/fixtures/tiny-<family>/,
random, vocabulary 512, no tokenizer) this writes tests/fixtures/generate/<family>.json:

  prompts          a few prompts of token ids (lengths 1, 5, 16, 48; ids in [3, 512), fixed seed)
  greedy           per prompt, the 32 new ids of model.generate(do_sample=False, max_new_tokens=32)
                   on the base model alone
  greedy_adapter   the same with the fixture's adapter_init/ (PeftModel.from_pretrained, unmerged)
  logits_prompt    index of the prompt whose first-step logits are stored
  logits,          the next-token logits [512] after that prompt (the first generated step), base
  logits_adapter   and with the adapter

Generation ends only at max_new_tokens: generation_config.eos_token_id is set to None (no
min_new_tokens, which would change the logits), so all 32 tokens are produced; lorac is driven
the same way (no stop ids). The reference runs in float64 with sdpa attention on CPU (HF computes
RoPE cos/sin in float32 either way); lorac runs in float32, so the logits agree to ~1e-6 relative
and the argmax of each step is the same unless two logits are closer than that (the script
prints the smallest top-1/top-2 margin it met, to show how far from a tie every step was).

And tests/fixtures/generate/quickstart_chat.json, the text path on configs/quickstart_chat/model
(a small random Llama with a real byte-level BPE tokenizer and a ChatML template):
  prompt, prompt_ids            tokenizer(prompt).input_ids (special tokens as the post-processor)
  messages, messages_ids        apply_chat_template(messages, add_generation_prompt=True,
                                tokenize=True)
  greedy_prompt, greedy_messages  generate(do_sample=False, max_new_tokens=24) from each, with the
                                model's own generation_config (its eos ids stop it, the stop id
                                kept, as HF returns it)
  text_prompt, text_messages    tokenizer.decode of those new ids without a final eos id

Usage: /work/venv-torch/bin/python scripts/make_generate_fixtures.py [--fixtures tests/fixtures]
Made with torch 2.5.1 (CPU), transformers 4.57.1, peft 0.17.1.
"""

import argparse
import json
import os
import sys

import torch
import transformers
import peft

FAMILIES = ["llama", "mistral", "qwen2", "qwen3"]
LENGTHS = [1, 5, 16, 48]
NEW = 32
LOGITS_PROMPT = 2


def load(model_dir, adapter_dir):
    m = transformers.AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float64,
                                                          attn_implementation="sdpa")
    if adapter_dir:
        m = peft.PeftModel.from_pretrained(m, adapter_dir)
    m = m.to(torch.float64).eval()
    gc = m.generation_config
    gc.eos_token_id = None
    gc.pad_token_id = 0
    return m


def greedy(m, prompt):
    ids = torch.tensor([prompt], dtype=torch.long)
    with torch.no_grad():
        out = m.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False,
                         max_new_tokens=NEW, output_scores=True, return_dict_in_generate=True)
    new = out.sequences[0, len(prompt):].tolist()
    assert len(new) == NEW, (len(new), "HF stopped early")
    margin = min(float((s[0].topk(2).values[0] - s[0].topk(2).values[1]) /
                       s[0].abs().max()) for s in out.scores)
    return new, margin


def first_logits(m, prompt):
    with torch.no_grad():
        return m(torch.tensor([prompt], dtype=torch.long)).logits[0, -1].tolist()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--fixtures", default=os.path.join(os.path.dirname(__file__), "..", "tests",
                                                       "fixtures"))
    a = ap.parse_args()
    out_dir = os.path.join(a.fixtures, "generate")
    os.makedirs(out_dir, exist_ok=True)
    gen = torch.Generator().manual_seed(17)
    prompts = [torch.randint(3, 512, (n,), generator=gen).tolist() for n in LENGTHS]
    for fam in FAMILIES:
        d = os.path.join(a.fixtures, "tiny-" + fam)
        rec = {"family": fam, "max_new_tokens": NEW, "prompts": prompts,
               "made_with": {"torch": torch.__version__, "transformers": transformers.__version__,
                             "peft": peft.__version__, "dtype": "float64", "attn": "sdpa"}}
        worst = 1.0
        for key, adapter in (("", None), ("_adapter", os.path.join(d, "adapter_init"))):
            m = load(os.path.join(d, "model"), adapter)
            rows = []
            for p in prompts:
                new, margin = greedy(m, p)
                rows.append(new)
                worst = min(worst, margin)
            rec["greedy" + key] = rows
            rec["logits" + key] = first_logits(m, prompts[LOGITS_PROMPT])
        rec["logits_prompt"] = LOGITS_PROMPT
        rec["min_relative_top2_margin"] = worst
        path = os.path.join(out_dir, fam + ".json")
        with open(path, "w") as f:
            json.dump(rec, f)
            f.write("\n")
        print("%s: %s (smallest top-1/top-2 logit margin / max|logit|: %.3g)" % (fam, path, worst))
    quickstart_chat(a, out_dir)


def quickstart_chat(a, out_dir):
    d = os.path.join(a.fixtures, "..", "..", "configs", "quickstart_chat", "model")
    tok = transformers.AutoTokenizer.from_pretrained(d)
    m = transformers.AutoModelForCausalLM.from_pretrained(d, dtype=torch.float64,
                                                          attn_implementation="sdpa").eval()
    gc = m.generation_config
    eos = gc.eos_token_id if isinstance(gc.eos_token_id, list) else [gc.eos_token_id]
    eos = set(eos) | {tok.eos_token_id}
    prompt = "The capital of Veltria is"
    messages = [{"role": "system", "content": "You are a helpful assistant."},
                {"role": "user", "content": "What is 12 + 30?"}]
    rec = {"prompt": prompt, "messages": messages, "max_new_tokens": 24,
           "prompt_ids": tok(prompt).input_ids,
           "messages_ids": list(tok.apply_chat_template(messages, add_generation_prompt=True,
                                                         tokenize=True))}
    for key, ids in (("prompt", rec["prompt_ids"]), ("messages", rec["messages_ids"])):
        x = torch.tensor([ids], dtype=torch.long)
        with torch.no_grad():
            out = m.generate(x, attention_mask=torch.ones_like(x), do_sample=False,
                             max_new_tokens=24, eos_token_id=sorted(eos), pad_token_id=0)
        new = out[0, len(ids):].tolist()
        rec["greedy_" + key] = new
        rec["text_" + key] = tok.decode(new[:-1] if new and new[-1] in eos else new)
    path = os.path.join(out_dir, "quickstart_chat.json")
    with open(path, "w") as f:
        json.dump(rec, f, ensure_ascii=False)
        f.write("\n")
    print("quickstart_chat: %s" % path)


if __name__ == "__main__":
    sys.exit(main())
