#!/usr/bin/env python3
"""make_chat_template_fixtures.py — expected chat-template renderings from transformers.

Renders real chat templates (the .jinja files of llama.cpp's models/templates/, shipped in the
llama-cpp-python source package on PyPI) with transformers' own renderer
(transformers.utils.chat_template_utils.render_jinja_template, what apply_chat_template calls),
and writes one JSON file per family into tests/fixtures/chat_templates/:
  {"family", "source", "template", "cases": [{"name", "context", "expected" | "error"}]}
`context` is exactly what the template sees besides messages' conversion: messages, tools,
documents, add_generation_prompt, bos_token, eos_token. tests/test_chat_template.c renders the
same template with the same context and must produce `expected` byte for byte, or fail with an
error containing `error` (the raise_exception message).

strftime_now is pinned: both sides render at NOW (seconds since the epoch) in UTC. Here a
`strftime_now` global replaces transformers' one in the (cached) compiled template; the C side passes the same instant through lc_chat_render_opts.now with TZ=UTC.

Usage: pip install transformers jinja2
       pip download --no-deps --no-binary :all: llama-cpp-python==0.3.36  (then untar)
       scripts/make_chat_template_fixtures.py DIR/vendor/llama.cpp/models/templates
Needs no network and no model: only the template strings.
"""
import json
import os
import sys
from datetime import datetime, timezone

from jinja2.exceptions import TemplateError
from transformers.utils.chat_template_utils import _compile_jinja_template, render_jinja_template

NOW = 1721995200  # 2024-07-26 12:00:00 UTC; keep in step with CT_FIXTURE_NOW in the test

FAMILIES = [
    ("llama3_1", "meta-llama-Llama-3.1-8B-Instruct.jinja", "<|begin_of_text|>", "<|eot_id|>"),
    ("qwen2_5", "Qwen-Qwen2.5-7B-Instruct.jinja", "", "<|im_end|>"),
    ("qwen3", "Qwen-Qwen3-0.6B.jinja", "", "<|im_end|>"),
    ("mistral_nemo", "mistralai-Mistral-Nemo-Instruct-2407.jinja", "<s>", "</s>"),
    ("phi3_5", "microsoft-Phi-3.5-mini-instruct.jinja", "<s>", "<|endoftext|>"),
    ("gemma2", "google-gemma-2-2b-it.jinja", "<bos>", "<eos>"),
    ("llama3_2", "meta-llama-Llama-3.2-3B-Instruct.jinja", "<|begin_of_text|>", "<|eot_id|>"),
]

SYS = {"role": "system", "content": "You are a helpful assistant.\nAnswer briefly."}
U1 = {"role": "user", "content": "Hello! What's 2+2?"}
A1 = {"role": "assistant", "content": "It's 4."}
U2 = {"role": "user", "content": "  Grüße, 世界 🌍 — say \"hi\" and 'bye'\nthen a tab\there.  "}
A2 = {"role": "assistant", "content": "\"hi\" & 'bye' <ok>\n\nDone. ✓"}
U3 = {"role": "user", "content": "One more: ünïcödé?"}
THINK = {"role": "assistant", "content": "<think>\nLet me add.\n</think>\n\nIt is 4."}

CONVERSATIONS = [
    ("system_multi_turn", [SYS, U1, A1, U2, A2], False),
    ("system_multi_turn_gen", [SYS, U1, A1, U2, A2, U3], True),
    ("no_system", [U1, A1, U2], True),
    ("no_system_no_gen", [U1, A1], False),
    ("single_user_gen", [U2], True),
    ("thinking_reply", [U1, THINK, U3], True),
    ("system_only_user_gen", [SYS, U3], True),
    ("bad_alternation", [U1, U2], False),
]


def strftime_now(fmt):
    return datetime.fromtimestamp(NOW, tz=timezone.utc).strftime(fmt)


def main():
    src = sys.argv[1]
    out_dir = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "chat_templates")
    for family, fname, bos, eos in FAMILIES:
        with open(os.path.join(src, fname), encoding="utf-8") as f:
            template = f.read()
        # the compiled template is cached by transformers: pin its clock for this script's renders
        _compile_jinja_template(template).globals["strftime_now"] = strftime_now
        cases = []
        for name, msgs, gen in CONVERSATIONS:
            ctx = {"messages": msgs, "tools": None, "documents": None,
                   "add_generation_prompt": gen, "bos_token": bos, "eos_token": eos}
            case = {"name": name, "context": ctx}
            try:
                out = render_jinja_template(conversations=[msgs], chat_template=template,
                                            add_generation_prompt=gen, tools=None, documents=None,
                                            bos_token=bos, eos_token=eos)[0][0]
                case["expected"] = out
            except TemplateError as e:
                case["error"] = str(e)
            cases.append(case)
        doc = {"family": family, "source": "llama-cpp-python 0.3.36 vendor/llama.cpp/models/templates/" + fname,
               "now": NOW, "template": template, "cases": cases}
        with open(os.path.join(out_dir, family + ".json"), "w", encoding="utf-8") as f:
            json.dump(doc, f, ensure_ascii=False, indent=1)
            f.write("\n")
        print(family, len(cases), "cases,", sum("error" in c for c in cases), "errors")


if __name__ == "__main__":
    main()
