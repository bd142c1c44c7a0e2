#!/usr/bin/env python3
"""make_dataset_type_fixtures.py — expected input_ids/labels of Axolotl's dataset types, by Axolotl's own code.

Why: lorac implements Axolotl's `type: chat_template`, `alpaca` and `input_output` in C. Which tokens
are supervised (labels != -100) is decided by Axolotl's Python code (turn location by sentinel
diffing, EOT/EOS search, train_on_eos, roles), and a re-derivation in C needs that code's real
output to be compared with. This script runs Axolotl 0.19.0's strategies, unmodified, on the
tokenizers of tests/fixtures/tokenizers/ and the chat templates of tests/fixtures/chat_templates/,
and writes tests/fixtures/dataset_types/<case>.json:

  {"source": how Axolotl was run,
   "tokenizer": "<dir in tests/fixtures/tokenizers>",
   "special_tokens": {...}   overrides applied as Axolotl's `special_tokens:` config does
                             (tokenizer.add_special_tokens({k: AddedToken(v, normalized=False)})); {} if none,
   "chat_template_fixture": "<name>"  tests/fixtures/chat_templates/<name>.json's "template" is the
                             tokenizer's chat_template (`chat_template: tokenizer_default`); chat_template only,
   "now": seconds since the epoch that strftime_now renders (chat_template only; as in that fixture),
   "sequence_len": N, "train_on_inputs": bool, "eot_tokens": null | [...] (top-level cfg.eot_tokens),
   "dataset": the Axolotl dataset entry, only the keys set (Axolotl's defaults apply to the rest),
   "rows": [{"row": raw JSONL row, "input_ids": [...], "labels": [...] (-100 = not supervised),
             "text": rendered chat text (chat_template only),
             "axolotl_warnings": [...] (only when Axolotl logged a warning for the row, or its
                                        notice that turns were located by the token-diff fallback)}
            | {"row": ..., "error": "<ExceptionType: message>"}]}

How Axolotl is run: the axolotl 0.19.0 wheel from PyPI, unzipped, imported as is. Its import chain
reaches torch and accelerate only through axolotl/utils/distributed.py (used for logging on the main
process); neither is used by the tokenizing strategies, so both are replaced by small stand-in
modules in sys.modules (`_stub_modules` below) after transformers has been imported (so transformers
still sees no torch). Everything else is the real package: transformers 5.16.1, tokenizers 0.23.1,
datasets 4.8.4, pydantic 2.12.5 (the versions axolotl 0.19.0 pins), colorama, addict.

Strategies as Axolotl's data pipeline builds them:
  chat_template: axolotl.prompt_strategies.load("chat_template", tokenizer, cfg, ds_cfg), ds_cfg being
      SFTDataset(**entry).model_dump(exclude_none=True) as axolotl's config validation gives it;
  alpaca: AlpacaPromptTokenizingStrategy(AlpacaPrompter(None), tokenizer, train_on_inputs, sequence_len)
      (utils/data/wrappers.py _handle_alpaca_dataset);
  input_output: axolotl.prompt_strategies.load("input_output", tokenizer, cfg, ds_cfg).
Each row goes through strategy.tokenize_prompt(row); dataset-level steps after it (drop_long_seq,
packing, attention_mask) are not part of these fixtures.

Tokenizer: transformers.PreTrainedTokenizerFast(tokenizer_file=tokenizer.json, **the *_token and
add_*_token fields of tokenizer_config.json). Not AutoTokenizer: for tokenizer_class LlamaTokenizer,
transformers 5 rebuilds the pipeline from its own class definition and then disagrees with the
tokenizer.json (and with HF `tokenizers`, which tests/fixtures/tokenizers/*/cases.jsonl and lorac
follow) on llama-spm and phi-3; PreTrainedTokenizerFast reproduces every cases.jsonl line. The
tokenizer's name_or_path holds no "mistral" (Axolotl skips a leading system turn for those).

Usage:
  pip download --no-deps axolotl==0.19.0 -d DIR && unzip DIR/axolotl-0.19.0-py3-none-any.whl -d DIR/src
  pip install transformers==5.16.1 tokenizers==0.23.1 datasets==4.8.4 pydantic==2.12.5 colorama addict jinja2
  scripts/make_dataset_type_fixtures.py DIR/src
Fixture and test use only: lorac itself never runs Python.
"""
import gzip
import importlib.abc
import importlib.machinery
import json
import logging
import os
import shutil
import sys
import tempfile
import types
from datetime import datetime, timezone

import transformers  # noqa: F401  (first: its torch check must see no torch)
from transformers import PreTrainedTokenizerFast
from transformers.tokenization_utils_base import AddedToken
from transformers.utils.chat_template_utils import _compile_jinja_template

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
FIX = os.path.join(ROOT, "tests", "fixtures")
OUT_DIR = os.path.join(FIX, "dataset_types")
SOURCE = ("axolotl 0.19.0 (PyPI wheel, unmodified) run by scripts/make_dataset_type_fixtures.py with "
          "transformers 5.16.1 + tokenizers 0.23.1; torch/accelerate stubbed (imported, unused)")


# ---------------------------------------------------------------- stand-ins for torch, accelerate
class _Any:
    """Whatever attribute or call: another _Any. Enough for module-level annotations and defs."""
    def __init__(self, *a, **k): pass
    def __call__(self, *a, **k): return _Any()
    def __getattr__(self, n): return _Any()
    def __mro_entries__(self, bases): return (object,)
    def __bool__(self): return False
    def __or__(self, o): return _Any()
    def __ror__(self, o): return _Any()
    def __getitem__(self, k): return _Any()
    def __iter__(self): return iter(())


class _StubModule(types.ModuleType):
    def __getattr__(self, n):
        if n.startswith("__"):
            raise AttributeError(n)
        return _Any()


class _StubFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    ROOTS = ("torch", "accelerate")

    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in self.ROOTS:
            return importlib.machinery.ModuleSpec(name, self, is_package=True)
        return None

    def create_module(self, spec):
        m = _StubModule(spec.name)
        m.__path__ = []
        return m

    def exec_module(self, module):
        pass


def _stub_modules():
    sys.meta_path.insert(0, _StubFinder())


# ---------------------------------------------------------------- Axolotl warnings per row
class _Capture(logging.Handler):
    def __init__(self):
        super().__init__(logging.INFO)
        self.records = []

    def emit(self, record):
        msg = record.getMessage()
        # INFO is kept for the "token-diff fallback" notice (turns located without char offsets)
        if record.levelno >= logging.WARNING or "fallback" in msg:
            self.records.append(msg)


CAPTURE = _Capture()


# ---------------------------------------------------------------- tokenizers and templates
def load_tokenizer(name, special_tokens):
    src = os.path.join(FIX, "tokenizers", name)
    d = tempfile.mkdtemp(prefix="labelfix-tok-")
    path = os.path.join(d, "tokenizer.json")
    with gzip.open(os.path.join(src, "tokenizer.json.gz")) as f, open(path, "wb") as g:
        g.write(f.read())
    with open(os.path.join(src, "tokenizer_config.json")) as f:
        cfg = json.load(f)
    kw = {k: v for k, v in cfg.items() if k.endswith("_token")}  # bos/eos/unk/pad + add_bos/add_eos
    tok = PreTrainedTokenizerFast(tokenizer_file=path, **kw)
    shutil.rmtree(d)  # read into memory: the unpacked copy is not needed any more
    tok.name_or_path = name  # what Axolotl's find_turn looks at ("mistral" in it): not a mistral name
    # Axolotl's loaders/tokenizer.py, `special_tokens:` (no new vocabulary here: tokens exist)
    for k, v in special_tokens.items():
        before = len(tok)
        tok.add_special_tokens({k: AddedToken(v, rstrip=False, lstrip=False, normalized=False)})
        assert len(tok) == before, f"{name}: special token {v!r} is not in the vocabulary"
    return tok


def chat_fixture(name):
    with open(os.path.join(FIX, "chat_templates", name + ".json"), encoding="utf-8") as f:
        return json.load(f)


def pin_clock(template, now):
    # transformers caches the compiled template: its strftime_now renders at `now` (as the
    # chat-template fixtures do), so the Llama 3.x date lines are reproducible.
    _compile_jinja_template(template).globals["strftime_now"] = (
        lambda fmt: datetime.fromtimestamp(now, tz=timezone.utc).strftime(fmt))


# ---------------------------------------------------------------- rows
def conversations():
    """Chat rows: the chat-template fixtures' conversations that are training data, and more."""
    by_name = {c["name"]: c["context"]["messages"] for c in chat_fixture("llama3_1")["cases"]}
    sysm, u1, a1, u2, a2 = by_name["system_multi_turn"]
    think = by_name["thinking_reply"][1]
    rows = [
        {"messages": by_name["system_multi_turn"]},            # system + 2 turns, non-ASCII/emoji, spaces
        {"messages": by_name["no_system_no_gen"]},             # one user/assistant pair
        {"messages": [u1, think]},                             # assistant content with <think> block
        {"messages": [sysm, u1, a1, u2, a2,
                      {"role": "user", "content": "Thanks"},
                      {"role": "assistant", "content": "You're welcome! 👍🏽🇩🇪"}]},  # 3 assistant turns
        {"messages": [u2, {"role": "assistant", "content": "  \n leading and trailing \n\n"}]},
        {"messages": [u1, {"role": "assistant", "content": "k"}]},  # one-token reply
        {"messages": [u1, {"role": "assistant", "content": ""}]},   # empty reply
        {"messages": by_name["no_system"]},                    # ends on a user turn (nothing after it trains)
    ]
    return rows


def sharegpt(rows):
    m = {"system": "system", "user": "human", "assistant": "gpt"}
    return [{"conversations": [{"from": m[x["role"]], "value": x["content"]} for x in r["messages"]]}
            for r in rows]


ALPACA_ROWS = [
    {"instruction": "Add the numbers.", "input": "2 and 2", "output": "4"},
    {"instruction": "Say hi in German.", "output": "Hallo! Grüße 🌍"},                  # no input key
    {"instruction": "Name a colour.", "input": "", "output": "Blue."},                 # empty input
    {"instruction": "  Spaces around  ", "input": "\nnewline first\n", "output": " leading space\n"},
    {"instruction": "Reply with nothing.", "input": "x", "output": ""},                  # empty output
]


def alpaca_rows(eos_text):
    return ALPACA_ROWS + [{"instruction": "Finish.", "input": "", "output": "Done." + eos_text}]


INPUT_OUTPUT_ROWS = [
    {"segments": [{"label": True, "text": "<s>Hello\n"}, {"label": False, "text": "user says hi\n"},
                  {"label": True, "text": "assistant says hi</s>"}]},
    {"segments": [{"label": False, "text": "Question: 2+2?"}, {"label": True, "text": " Answer: 4"}]},
    {"segments": [{"label": True, "text": "  Grüße, 世界 🌍 "}, {"label": False, "text": "\n\nmasked\n"},
                  {"label": True, "text": "trained ✓"}]},
    {"segments": [{"label": False, "text": "only masked"}]},
    {"segments": [{"label": True, "text": ""}, {"label": False, "text": "after empty"}]},
]


# ---------------------------------------------------------------- running Axolotl
def run_rows(strategy, rows, tokenizer, chat):
    out = []
    from axolotl.utils.logging import MultiProcessAdapter
    for row in rows:
        CAPTURE.records.clear()
        MultiProcessAdapter.warning_once.cache_clear()  # else a warning_once shows on one row only
        entry = {"row": row}
        try:
            res = strategy.tokenize_prompt(json.loads(json.dumps(row)))  # a copy: Axolotl may mutate
            entry["input_ids"] = list(res["input_ids"])
            entry["labels"] = list(res["labels"])
            assert len(entry["input_ids"]) == len(entry["labels"])
            if chat:
                turns = strategy.get_conversation_thread(json.loads(json.dumps(row)))
                entry["text"] = strategy.prompter.build_prompt_text(turns)
        except Exception as e:  # recorded, never dropped
            entry["error"] = f"{type(e).__name__}: {e}"
        if CAPTURE.records:
            entry["axolotl_warnings"] = list(dict.fromkeys(CAPTURE.records))
        out.append(entry)
    return out


def make_case(fname, tokenizer_name, dtype, dataset, rows, special_tokens=None, template=None,
              sequence_len=4096, train_on_inputs=False, eot_tokens=None):
    from axolotl.prompt_strategies import load as load_strategy
    from axolotl.prompt_tokenizers import AlpacaPromptTokenizingStrategy
    from axolotl.prompters import AlpacaPrompter
    from axolotl.utils.dict import DictDefault
    from axolotl.utils.schemas.datasets import SFTDataset

    special_tokens = special_tokens or {}
    tok = load_tokenizer(tokenizer_name, special_tokens)
    case = {"source": SOURCE, "tokenizer": tokenizer_name, "special_tokens": special_tokens}
    cfg = DictDefault({"sequence_len": sequence_len, "train_on_inputs": train_on_inputs})
    if eot_tokens is not None:
        cfg["eot_tokens"] = eot_tokens
    if template:
        fx = chat_fixture(template)
        tok.chat_template = fx["template"]
        pin_clock(fx["template"], fx["now"])
        case["chat_template_fixture"] = template
        case["now"] = fx["now"]
    case.update({"sequence_len": sequence_len, "train_on_inputs": train_on_inputs,
                 "eot_tokens": eot_tokens, "dataset": {"type": dtype, **dataset}})
    ds_cfg = SFTDataset(path="data.jsonl", **case["dataset"]).model_dump(exclude_none=True)
    CAPTURE.records.clear()
    if dtype == "alpaca":
        strategy = AlpacaPromptTokenizingStrategy(AlpacaPrompter(None), tok, train_on_inputs, sequence_len)
    else:
        strategy = load_strategy(dtype, tok, cfg, ds_cfg)
    if CAPTURE.records:
        case["axolotl_warnings"] = list(dict.fromkeys(CAPTURE.records))
    case["rows"] = run_rows(strategy, rows, tok, chat=dtype == "chat_template")
    check(case, tok, strategy)
    os.makedirs(OUT_DIR, exist_ok=True)
    with open(os.path.join(OUT_DIR, fname + ".json"), "w", encoding="utf-8") as f:
        json.dump(case, f, ensure_ascii=False, indent=None, separators=(",", ":"))
        f.write("\n")
    return case


# ---------------------------------------------------------------- checks
def supervised_runs(ids, labels):
    """Maximal runs of supervised tokens, each as the list of ids."""
    runs, cur = [], []
    for i, l in zip(ids, labels):
        if l == -100:
            if cur:
                runs.append(cur)
            cur = []
        else:
            assert l == i, "a supervised label differs from its input id"
            cur.append(i)
    if cur:
        runs.append(cur)
    return runs


def check(case, tok, strategy):
    """Sanity print, per row, of what is supervised. For chat rows, asserts that the decoded
    supervised tokens hold every trained turn's content (as given, or stripped where the template
    trims it), in order; what else is supervised is printed: the end-of-turn tokens, and "glue",
    template text that shares a token with the content's first or last characters (Axolotl takes
    every token that overlaps the turn's character span)."""
    name = f"{case['tokenizer']}/{case.get('chat_template_fixture', case['dataset']['type'])}"
    dtype = case["dataset"]["type"]
    ends = set(strategy.eot_tokens if dtype == "chat_template" else []) | {tok.eos_token}
    for n, r in enumerate(case["rows"]):
        if "error" in r:
            print(f"  {name} row {n}: ERROR {r['error']}")
            continue
        runs = [tok.decode(run) for run in supervised_runs(r["input_ids"], r["labels"])]
        if dtype != "chat_template":
            print(f"  {name} row {n}: {len(r['input_ids'])} ids, supervised {runs!r}")
            continue
        turns = strategy.get_conversation_thread(json.loads(json.dumps(r["row"])))
        roles = set(strategy.roles_to_train)
        want = [t["content"] for t in turns
                if (t.get("training") if t.get("training") is not None
                    else (strategy.train_on_inputs or t["role"] in roles)) and t["content"]]
        got, pos, extra = "".join(runs), 0, []
        for w in want:
            # as given; trimmed (Llama 3.x templates trim); without "<think>\n" (Qwen3's template
            # moves the think block out of the content, and the placeholder render keeps "<think>\n")
            for cand in (w, w.strip(), w.removeprefix("<think>\n")):
                i = got.find(cand, pos)
                if i >= 0:
                    w = cand
                    break
            assert i >= 0, f"{name} row {n}: trained content {w!r} is not supervised: {runs!r}"
            extra.append(got[pos:i])
            pos = i + len(w)
        extra.append(got[pos:])
        glue = [e for e in extra if e and _strip_ends(e, ends)]
        print(f"  {name} row {n}: {'ok' if not glue else 'ok, glue ' + repr(glue)}  supervised {runs!r}")


def _strip_ends(text, ends):
    """What is left of `text` once end-of-turn token texts are removed."""
    for e in sorted(ends, key=len, reverse=True):
        text = text.replace(e, "")
    return text


# ---------------------------------------------------------------- the cases
def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    _stub_modules()
    sys.path.insert(0, os.path.abspath(sys.argv[1]))
    import axolotl.utils.logging  # noqa: F401
    logging.getLogger("axolotl").addHandler(CAPTURE)
    logging.getLogger("axolotl").propagate = False

    conv = conversations()
    ct = {}
    ct["chat_template-llama-bpe-llama3_1"] = ("llama-bpe", "llama3_1", {"eos_token": "<|eot_id|>"}, None)
    ct["chat_template-llama-bpe-llama3_2"] = ("llama-bpe", "llama3_2", {}, None)
    ct["chat_template-qwen2-qwen2_5"] = ("qwen2", "qwen2_5", {"eos_token": "<|im_end|>"}, None)
    ct["chat_template-qwen2-qwen3"] = ("qwen2", "qwen3", {}, None)
    ct["chat_template-llama-spm-mistral_nemo"] = ("llama-spm", "mistral_nemo", {"eos_token": "</s>"}, None)
    ct["chat_template-phi-3-phi3_5"] = ("phi-3", "phi3_5", {}, None)
    ct["chat_template-phi-3-phi3_5-eot_end"] = ("phi-3", "phi3_5", {}, ["<|end|>"])
    for fname, (tk, tpl, sp, eot) in ct.items():
        print(fname)
        make_case(fname, tk, "chat_template", {}, conv, special_tokens=sp, template=tpl, eot_tokens=eot)

    l31 = dict(special_tokens={"eos_token": "<|eot_id|>"}, template="llama3_1")
    variants = {
        "roles_user_assistant": ({"roles_to_train": ["assistant", "user"]}, conv),
        "eos_all": ({"train_on_eos": "all"}, conv),
        "eos_last": ({"train_on_eos": "last"}, conv),
        "eos_none": ({"train_on_eos": "none"}, conv),
        "sharegpt_roles": ({"field_messages": "conversations",
                            "message_property_mappings": {"role": "from", "content": "value"},
                            "roles": {"user": ["human"], "assistant": ["gpt"], "system": ["system"]}},
                           sharegpt(conv)),
    }
    # per-message training override: Axolotl reads it only when message_field_training names the key
    # (its default is None); the second file shows the key is ignored without it.
    skip = json.loads(json.dumps(conv[3]))
    skip["messages"][2]["training"] = False
    train_user = json.loads(json.dumps(conv[0]))
    train_user["messages"][1]["training"] = True
    variants["message_training"] = ({"message_field_training": "training"}, [skip, train_user])
    variants["message_training_unset"] = ({}, [skip, train_user])
    for v, (ds, rows) in variants.items():
        fname = f"chat_template-llama-bpe-llama3_1-{v}"
        print(fname)
        make_case(fname, "llama-bpe", "chat_template", ds, rows, **l31)

    eos_text = {"llama-spm": "</s>", "llama-bpe": "<|end_of_text|>", "qwen2": "<|endoftext|>"}
    for tk in ("llama-spm", "llama-bpe", "qwen2"):
        for toi in (False, True):
            fname = f"alpaca-{tk}-train_on_inputs_{str(toi).lower()}"
            print(fname)
            make_case(fname, tk, "alpaca", {}, alpaca_rows(eos_text[tk]), train_on_inputs=toi)
    for tk in ("llama-bpe", "llama-spm"):
        for toi in (False, True):
            fname = f"input_output-{tk}-train_on_inputs_{str(toi).lower()}"
            print(fname)
            make_case(fname, tk, "input_output", {}, INPUT_OUTPUT_ROWS, train_on_inputs=toi)


if __name__ == "__main__":
    main()
