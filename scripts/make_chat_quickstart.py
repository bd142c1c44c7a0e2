#!/usr/bin/env python3
"""make_chat_quickstart.py — writes the small chat model and chat data of configs/quickstart_chat.yaml.

The files it writes are committed (configs/quickstart_chat/), so the chat quickstart needs no
download and no Python; this script documents and reproduces them, and checks them.

  model/        a random Llama in Hugging Face layout (4 layers, hidden 128, 4 heads / 2 KV heads,
                BF16, untied lm_head) with a real tokenizer: a byte-level BPE trained here with
                HF `tokenizers` on the training text, built as Qwen2/2.5's (NFC, Split with the
                Qwen2 regex + ByteLevel(use_regex=false), ByteLevel decoder, no BOS added), the
                special tokens <|endoftext|> <|im_start|> <|im_end|>, and a ChatML chat_template
                (Qwen2-Instruct's: a default system prompt when the conversation has none,
                add_generation_prompt).
  train.jsonl   {"messages": [{"role", "content"}, ...]} conversations from a small grammar:
  eval.jsonl    capitals of made-up countries, addition, word reversal, colours of things,
                the next month or day;
                some multi-turn, some with non-ASCII words (café, naïve) for the byte-level path.

    python3 scripts/make_chat_quickstart.py [--out configs/quickstart_chat] [--seed 0]
                                            [--lorac build/lorac] [--no-check] [--tokenized DIR]

Needs numpy and tokenizers (`pip install numpy tokenizers`); the check (on by default) also needs
transformers (`pip install transformers`, no torch): it loads model/ with AutoTokenizer, renders
every conversation with apply_chat_template and compares text and ids with this script's own
ChatML rendering and the `tokenizers` ids. With --lorac BIN it also runs
`BIN tokenize --model model/` on every rendered conversation and requires the same ids.
--tokenized DIR writes the conversations pre-tokenized, with Axolotl's chat_template labels
(assistant turns + their <|im_end|>), as {"input_ids", "labels"} rows: a reference for
type: chat_template, and a way to train the same data as type: tokenized.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_quickstart import random_llama, write_safetensors  # noqa: E402

# Qwen2 / Qwen2.5's pre-tokenizer regex (Llama 3's differs only in \p{N}{1,3}); single digits
# keep the arithmetic rows digit by digit.
QWEN2_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
               r"|\s*[\r\n]+|\s+(?!\S)|\s+")
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]  # Qwen's order
DEFAULT_SYSTEM = "You are a helpful assistant."
# Qwen2-Instruct's chat_template (ChatML, no tools).
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\\n" + DEFAULT_SYSTEM + "<|im_end|>\\n' }}"
    "{% endif %}"
    "{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")
VOCAB = 1024           # tokenizer size: BPE vocabulary + the 3 special tokens
MAX_LEN = 1024         # max_position_embeddings, model_max_length


def render(messages, add_generation_prompt=False):
    """CHAT_TEMPLATE in Python (the check compares it with transformers' rendering)."""
    out = []
    if messages[0]["role"] != "system":
        out.append(f"<|im_start|>system\n{DEFAULT_SYSTEM}<|im_end|>\n")
    for m in messages:
        out.append(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n")
    if add_generation_prompt:
        out.append("<|im_start|>assistant\n")
    return "".join(out)


# ---- data ------------------------------------------------------------------------------
COUNTRIES = [("Veloria", "Marenta"), ("Kandor", "Bruskel"), ("Tessaly", "Ostwyn"), ("Orvane", "Caelum"),
             ("Mirelle", "Ferro"), ("Quorin", "Lindqvist"), ("Zanbar", "Amaré"), ("Elowen", "Søndby"),
             ("Drumlin", "Hollow Reach"), ("Pellaria", "Vestin"), ("Sunmark", "Corra"), ("Valdéra", "Ribeira"),
             ("Norrøy", "Kalvik"), ("Ixtal", "Tunemo"), ("Brisk", "Alder"), ("Calloway", "Port Ide"),
             ("Graxia", "Pemberly"), ("Lutheria", "Dunmore"), ("Saffrin", "Oakhaven"), ("Thule Minor", "Brann"),
             ("Yrvana", "Estelle"), ("Morrowind", "Vivec Bay"), ("Aurelle", "Château-Vert"), ("Kesh", "Umbra")]
COLOURS = [("a banana", "yellow"), ("grass", "green"), ("the sky", "blue"), ("a ripe tomato", "red"),
           ("snow", "white"), ("coal", "black"), ("an orange", "orange"), ("a plum", "purple"),
           ("a jalapeño", "green"), ("crème brûlée", "golden"), ("café au lait", "light brown"),
           ("a flamingo", "pink"), ("a lemon", "yellow"), ("a crow", "black"), ("the sea", "blue"),
           ("chocolate", "brown"), ("a pumpkin", "orange"), ("a polar bear", "white"),
           ("an emerald", "green"), ("a ruby", "red"), ("a sapphire", "blue"), ("a raven", "black"),
           ("a canary", "yellow"), ("lavender", "purple")]
WORDS = ["garden", "river", "lantern", "market", "pencil", "window", "rocket", "silver", "planet", "candle",
         "basket", "winter", "castle", "mirror", "orange", "tiger", "bridge", "cloud", "stone", "music",
         "café", "naïve", "piñata", "façade", "jalapeño", "über", "forest", "harbour", "kitten", "ladder",
         "meadow", "pocket", "rabbit", "saddle", "thunder", "velvet", "wander", "yellow", "anchor", "blanket",
         "compass", "dragon", "feather", "giant", "honey", "island", "jigsaw", "kettle", "lemon", "marble",
         "needle", "oyster", "puzzle", "quartz", "ribbon", "shadow", "tunnel", "umbrella", "violin", "walnut",
         "zebra", "résumé", "crêpe", "fiancé", "smörgåsbord"]
MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September",
          "October", "November", "December"]
DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
SYSTEMS = [None, None, DEFAULT_SYSTEM, "You are a concise assistant. Answer in one sentence.",
           "You are a friendly tutor for kids."]


def capital(rng):
    c, cap = COUNTRIES[rng.integers(len(COUNTRIES))]
    q = [f"What is the capital of {c}?", f"Which city is the capital of {c}?",
         f"Tell me the capital of {c}.", f"capital of {c}?"][rng.integers(4)]
    return q, f"The capital of {c} is {cap}.", ("And the capital of {}?", c, cap)


def addition(rng):
    a, b = (int(x) for x in rng.integers(0, 50, 2))
    q = [f"What is {a} + {b}?", f"Add {a} and {b}.", f"How much is {a} plus {b}?"][rng.integers(3)]
    return q, f"{a} + {b} = {a + b}.", None


def reverse(rng):
    w = WORDS[rng.integers(len(WORDS))]
    q = [f'Reverse the word "{w}".', f'Spell "{w}" backwards.'][rng.integers(2)]
    return q, f'"{w}" reversed is "{w[::-1]}".', None


def colour(rng):
    o, col = COLOURS[rng.integers(len(COLOURS))]
    q = [f"What colour is {o}?", f"What is the colour of {o}?"][rng.integers(2)]
    return q, f"{o[0].upper() + o[1:]} is {col}.", None


def sequence(rng):
    names, what = (MONTHS, "month") if rng.random() < 0.5 else (DAYS, "day")
    i = int(rng.integers(len(names)))
    nxt = names[(i + 1) % len(names)]
    q = [f"Which {what} comes after {names[i]}?", f"What is the {what} after {names[i]}?"][rng.integers(2)]
    return q, f"The {what} after {names[i]} is {nxt}.", None


TASKS = [capital, addition, reverse, colour, sequence]


def conversation(rng):
    msgs = []
    system = SYSTEMS[rng.integers(len(SYSTEMS))]
    if system:
        msgs.append({"role": "system", "content": system})
    turns = 1 + int(rng.random() < 0.3) + int(rng.random() < 0.1)
    for _ in range(turns):
        task = TASKS[rng.integers(len(TASKS))]
        q, a, follow = task(rng)
        msgs += [{"role": "user", "content": q}, {"role": "assistant", "content": a}]
    if follow and rng.random() < 0.5:  # a follow-up that refers back: "And the capital of X?"
        c, cap = COUNTRIES[rng.integers(len(COUNTRIES))]
        msgs += [{"role": "user", "content": follow[0].format(c)},
                 {"role": "assistant", "content": f"The capital of {c} is {cap}."}]
    return {"messages": msgs}


def make_data(out, rng, n_train, n_eval):
    rows = {}
    for name, n in (("train.jsonl", n_train), ("eval.jsonl", n_eval)):
        rows[name] = [conversation(rng) for _ in range(n)]
        with open(os.path.join(out, name), "w", encoding="utf-8") as f:
            for r in rows[name]:
                f.write(json.dumps(r, ensure_ascii=False, separators=(",", ":")) + "\n")
    return rows


# ---- tokenizer -------------------------------------------------------------------------
def make_tokenizer(out, train_rows):
    tok = Tokenizer(models.BPE(dropout=None, unk_token=None, continuing_subword_prefix="",
                               end_of_word_suffix="", fuse_unk=False, byte_fallback=False,
                               ignore_merges=False))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2_REGEX), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)])
    tok.post_processor = processors.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)
    tok.decoder = decoders.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)
    # The text the model sees between the special tokens: role names and contents, newlines.
    def texts():
        yield f"system\n{DEFAULT_SYSTEM}\n"
        for r in train_rows:
            yield "".join(f"{m['role']}\n{m['content']}\n" for m in r["messages"])
    trainer = trainers.BpeTrainer(vocab_size=VOCAB - len(SPECIALS), min_frequency=2, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), special_tokens=[])
    tok.train_from_iterator(texts(), trainer=trainer)
    tok.add_special_tokens([AddedToken(s, single_word=False, lstrip=False, rstrip=False, normalized=False,
                                       special=True) for s in SPECIALS])
    # The ByteLevel decoder's Python constructor does not keep its (unused) options; write them as
    # Qwen2.5's tokenizer.json has them, and use the file as written from here on.
    path = os.path.join(out, "tokenizer.json")
    j = json.loads(tok.to_str())
    j["decoder"] = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False}
    with open(path, "w", encoding="utf-8") as f:
        json.dump(j, f, indent=2, ensure_ascii=False)
        f.write("\n")
    tok = Tokenizer.from_file(path)
    ids = {s: tok.token_to_id(s) for s in SPECIALS}
    added = {str(ids[s]): {"content": s, "lstrip": False, "normalized": False, "rstrip": False,
                           "single_word": False, "special": True} for s in SPECIALS}
    cfg = {
        "add_bos_token": False, "add_prefix_space": False, "added_tokens_decoder": added,
        "additional_special_tokens": ["<|im_start|>", "<|im_end|>"],
        "bos_token": None, "chat_template": CHAT_TEMPLATE, "clean_up_tokenization_spaces": False,
        "eos_token": "<|im_end|>", "errors": "replace", "model_max_length": MAX_LEN,
        "pad_token": "<|endoftext|>", "split_special_tokens": False,
        "tokenizer_class": "PreTrainedTokenizerFast", "unk_token": None,
    }
    with open(os.path.join(out, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump(cfg, f, indent=2, ensure_ascii=False)
        f.write("\n")
    with open(os.path.join(out, "special_tokens_map.json"), "w") as f:
        json.dump({"additional_special_tokens": ["<|im_start|>", "<|im_end|>"],
                   "eos_token": "<|im_end|>", "pad_token": "<|endoftext|>"}, f, indent=2)
        f.write("\n")
    return tok, ids


# ---- model -----------------------------------------------------------------------------
def make_model(out, rng, vocab, ids):
    C, L, H, KV, FF, V = 128, 4, 4, 2, 352, vocab
    D = C // H
    cfg = {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": C,
        "intermediate_size": FF, "num_hidden_layers": L, "num_attention_heads": H,
        "num_key_value_heads": KV, "head_dim": D, "vocab_size": V, "max_position_embeddings": MAX_LEN,
        "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "tie_word_embeddings": False,
        "hidden_act": "silu", "attention_bias": False, "mlp_bias": False, "initializer_range": 0.02,
        "torch_dtype": "bfloat16",
        # as Qwen2.5-Instruct: bos is <|endoftext|> (never added: add_bos_token false), eos <|im_end|>
        "bos_token_id": ids["<|endoftext|>"], "eos_token_id": ids["<|im_end|>"],
    }
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
        f.write("\n")
    with open(os.path.join(out, "generation_config.json"), "w") as f:
        json.dump({"bos_token_id": ids["<|endoftext|>"],
                   "eos_token_id": [ids["<|im_end|>"], ids["<|endoftext|>"]],
                   "pad_token_id": ids["<|endoftext|>"], "do_sample": False}, f, indent=2)
        f.write("\n")
    t = random_llama(rng, V, C, L, H, KV, D, FF)  # as make_quickstart.py; lm_head below
    # lm_head: N(0, 1/hidden), logits of unit variance at init. At 0.02 a frozen, untied lm_head
    # caps every logit near 0.02 * sqrt(C) * |RMSNorm(h)| = 0.02 * C = 2.6 whatever LoRA does, and
    # the loss stalls above 5 (worse than a unigram model's 4.0 on these answers).
    t.append(("lm_head.weight", (rng.standard_normal((V, C)) * C ** -0.5).astype(np.float32)))
    write_safetensors(os.path.join(out, "model.safetensors"), t)


# ---- checks ----------------------------------------------------------------------------
def labels(ids, im_start, im_end, assistant_ids):
    """The labels Axolotl's chat_template gives (roles_to_train [assistant], train_on_eos turn):
    each assistant turn's content and its <|im_end|> keep their ids, all else is -100."""
    lab, i = [-100] * len(ids), 0
    while i < len(ids):
        if ids[i] == im_start and ids[i + 1:i + 1 + len(assistant_ids)] == assistant_ids:
            j = ids.index(im_end, i)
            lab[i + 1 + len(assistant_ids):j + 1] = ids[i + 1 + len(assistant_ids):j + 1]
            i = j
        i += 1
    return lab


def check(model_dir, rows, tok, ids, lorac):
    from transformers import AutoTokenizer
    hf = AutoTokenizer.from_pretrained(model_dir)
    assert hf.eos_token == "<|im_end|>" and hf.pad_token == "<|endoftext|>" and hf.bos_token is None, \
        (hf.eos_token, hf.pad_token, hf.bos_token)
    stats, texts = {}, []
    for name, rs in rows.items():
        lens, sup = [], 0
        for r in rs:
            text = hf.apply_chat_template(r["messages"], tokenize=False)
            assert text == render(r["messages"]), (text, render(r["messages"]))
            gen = hf.apply_chat_template(r["messages"][:-1], tokenize=False, add_generation_prompt=True)
            assert gen == render(r["messages"][:-1], True), gen
            enc = tok.encode(text, add_special_tokens=True).ids
            hf_ids = hf(text, add_special_tokens=True)["input_ids"]
            assert enc == hf_ids, (text, enc, hf_ids)
            assert tok.decode(enc, skip_special_tokens=False) == text, text
            for s in SPECIALS:
                assert text.count(s) == enc.count(ids[s]), (s, text)
            lens.append(len(enc))
            lab = labels(enc, ids["<|im_start|>"], ids["<|im_end|>"], tok.encode("assistant\n").ids)
            sup += sum(x != -100 for x in lab)
            texts.append((text, enc))
        stats[name] = (len(rs), sum(lens), sum(lens) / len(lens), max(lens), sup)
    if lorac:
        with tempfile.TemporaryDirectory(prefix="chatqs-") as d:
            p = os.path.join(d, "texts.jsonl")
            extra = ["", " ", "\n\n", "café naïve  über\tx", "<|im_start|><|im_end|>x<|endoftext|>",
                     "12345 + 678 = 7023.", "Ünïcödé e\u0301 (NFD é) 😀 ﬁ"]
            with open(p, "w", encoding="utf-8") as f:
                for t, _ in texts:
                    f.write(json.dumps({"text": t}, ensure_ascii=False) + "\n")
                for t in extra:
                    f.write(json.dumps({"text": t}, ensure_ascii=False) + "\n")
            for special in (False, True):
                cmd = [lorac, "tokenize", "--model", model_dir, "--jsonl", p] + \
                      (["--add-special-tokens"] if special else [])
                outl = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.splitlines()
                want = [e for _, e in texts] + [tok.encode(t, add_special_tokens=special).ids for t in extra]
                assert len(outl) == len(want), (len(outl), len(want))
                for k, (line, w) in enumerate(zip(outl, want)):
                    got = json.loads(line)["input_ids"]
                    assert got == w, (k, got, w)
        print(f"lorac tokenize: same ids as HF tokenizers on all {len(texts) + len(extra)} texts "
              f"(with and without --add-special-tokens)")
    return stats


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "configs", "quickstart_chat"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--train", type=int, default=800)
    ap.add_argument("--eval", type=int, default=60)
    ap.add_argument("--lorac", help="also compare `LORAC tokenize` with HF tokenizers on every conversation")
    ap.add_argument("--no-check", action="store_true", help="skip the transformers check")
    ap.add_argument("--tokenized", metavar="DIR",
                    help="also write DIR/{train,eval}.tokenized.jsonl: each conversation as "
                         '{"input_ids", "labels"} with the labels of Axolotl\'s chat_template (what '
                         "type: chat_template should make; trainable today as type: tokenized)")
    a = ap.parse_args()
    rng = np.random.default_rng(a.seed)
    model_dir = os.path.join(a.out, "model")
    os.makedirs(model_dir, exist_ok=True)
    rows = make_data(a.out, rng, a.train, a.eval)
    tok, ids = make_tokenizer(model_dir, rows["train.jsonl"])
    vocab = tok.get_vocab_size(with_added_tokens=True)
    make_model(model_dir, rng, vocab, ids)
    print(f"tokenizer: {vocab} tokens ({vocab - len(SPECIALS)} BPE + {len(SPECIALS)} special: "
          + ", ".join(f"{s} {i}" for s, i in ids.items()) + ")")
    if a.tokenized:
        os.makedirs(a.tokenized, exist_ok=True)
        head = tok.encode("assistant\n").ids
        for name, rs in rows.items():
            with open(os.path.join(a.tokenized, name.replace(".jsonl", ".tokenized.jsonl")), "w") as f:
                for r in rs:
                    enc = tok.encode(render(r["messages"])).ids
                    lab = labels(enc, ids["<|im_start|>"], ids["<|im_end|>"], head)
                    f.write(json.dumps({"input_ids": enc, "labels": lab}, separators=(",", ":")) + "\n")
    if not a.no_check:
        for name, (n, total, mean, mx, sup) in check(model_dir, rows, tok, ids, a.lorac).items():
            print(f"{name}: {n} conversations, {total} tokens (mean {mean:.1f}, max {mx}), "
                  f"{sup} trained (assistant turns + <|im_end|>)")


if __name__ == "__main__":
    main()
