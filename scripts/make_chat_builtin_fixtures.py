#!/usr/bin/env python3
"""make_chat_builtin_fixtures.py — expected renderings of Axolotl's built-in chat templates.

lorac ships its own text for the templates Axolotl selects with `chat_template: <name>`
(data/chat_templates/<name>.jinja, compiled in by data/chat_builtin.c). This script renders
Axolotl's own files (axolotl/utils/chat_templates/templates/<name>.jinja of the wheel) with
transformers' renderer (render_jinja_template, what apply_chat_template calls) on the
conversations of scripts/make_chat_template_fixtures.py plus three more (tool calls with
arguments as an object and as a JSON string, list content with an image), and writes
tests/fixtures/chat_templates/builtin_<name>.json in the same shape (plus axolotl_version):
  {"family", "source", "axolotl_version", "now", "template",
   "cases": [{"name", "context", "expected" | "error"}]}
`template` is Axolotl's text (the reference); tests/test_chat_builtin.c renders lorac's
built-in of the same name instead, and must match `expected` byte for byte or fail with
`error` (the raise_exception message). A case whose render raises a Python error that is not
a TemplateError (e.g. str + list) is left out: no template message to compare.
bos_token / eos_token are each family's real ones, recorded in every case's context.

Usage: pip install transformers jinja2
       pip download --no-deps axolotl==0.19.0 -d DIR && (cd DIR && unzip -q axolotl-*.whl)
       scripts/make_chat_builtin_fixtures.py DIR/axolotl/utils/chat_templates/templates
"""
import json
import os
import sys

from jinja2.exceptions import TemplateError
from transformers.utils.chat_template_utils import _compile_jinja_template, render_jinja_template

sys.path.insert(0, os.path.dirname(__file__))
from make_chat_template_fixtures import CONVERSATIONS, NOW, SYS, U1, A1, U3, strftime_now  # noqa: E402

AXOLOTL_VERSION = "0.19.0"

# name, bos_token, eos_token (the family's tokenizer_config.json values)
BUILTINS = [
    ("alpaca", "<s>", "</s>"),
    ("chatml", "<s>", "<|im_end|>"),
    ("gemma", "<bos>", "<eos>"),
    ("gemma3", "<bos>", "<eos>"),
    ("llama3", "<|begin_of_text|>", "<|eot_id|>"),
    ("llama4", "<|begin_of_text|>", "<|eot|>"),
    ("mistral_v1", "<s>", "</s>"),
    ("mistral_v2v3", "<s>", "</s>"),
    ("mistral_v3_tekken", "<s>", "</s>"),
    ("mistral_v7_tekken", "<s>", "</s>"),
    ("phi_3", "<s>", "<|endoftext|>"),
    ("phi_35", "<s>", "<|endoftext|>"),
    ("phi_4", "<|endoftext|>", "<|im_end|>"),
    ("qwen_25", "", "<|im_end|>"),
    ("qwen3", "", "<|im_end|>"),
    ("qwen3_5", "", "<|im_end|>"),
    ("deepseek_v3", "<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>"),
    ("cohere", "<BOS_TOKEN>", "<|END_OF_TURN_TOKEN|>"),
    ("metharme", "<s>", "</s>"),
    ("exaone", "[BOS]", "[|endofturn|]"),
    ("exaone4", "[BOS]", "[|endofturn|]"),
    ("deepseek_v2", "<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>"),
    ("falcon_h1", "<|begin_of_text|>", "<|end_of_text|>"),
    ("gemma3n", "<bos>", "<eos>"),
    ("llava", "<s>", "</s>"),
    ("nemotron_h", "<s>", "</s>"),
    ("pixtral", "<s>", "</s>"),
    ("qwen2_vl", "", "<|im_end|>"),
]

TOOL = {"type": "function", "function": {
    "name": "add", "description": "Adds two numbers.",
    "parameters": {"type": "object", "properties": {"a": {"type": "number"}, "b": {"type": "number"}},
                   "required": ["a", "b"]}}}
CALL = {"role": "assistant", "content": "", "tool_calls": [
    {"id": "call12345", "type": "function", "function": {"name": "add", "arguments": {"a": 2, "b": 2}}}]}
RESULT = {"role": "tool", "tool_call_id": "call12345", "content": "4"}
# the same call with its arguments as a JSON string (DeepSeek's templates concatenate them)
CALL_STR = {"role": "assistant", "content": None, "tool_calls": [
    {"id": "call12345", "type": "function", "function": {"name": "add", "arguments": '{"a": 2, "b": 2}'}},
    {"id": "call67890", "type": "function", "function": {"name": "add", "arguments": '{"a": 1, "b": 1}'}}]}
RESULT2 = {"role": "tool", "tool_call_id": "call67890", "content": "2"}
PARTS_SYS = {"role": "system", "content": [{"type": "text", "text": "Be brief."}]}
PARTS_U = {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Hi "}, {"type": "text", "text": "there"}]}

# (name, messages, add_generation_prompt, tools)
CASES = [(n, m, g, None) for n, m, g in CONVERSATIONS] + [
    ("tool_call", [SYS, U1, CALL, RESULT, A1, U3], True, [TOOL]),
    ("tool_call_str_args", [U1, CALL_STR, RESULT, RESULT2, A1], False, [TOOL]),
    ("content_parts", [PARTS_SYS, PARTS_U, A1], False, None),
]


def render(template, msgs, gen, tools, bos, eos):
    return render_jinja_template(conversations=[msgs], chat_template=template,
                                 add_generation_prompt=gen, tools=tools, documents=None,
                                 bos_token=bos, eos_token=eos)[0][0]


def main():
    src = sys.argv[1]
    out_dir = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "chat_templates")
    for name, bos, eos in BUILTINS:
        with open(os.path.join(src, name + ".jinja"), encoding="utf-8") as f:
            template = f.read()
        _compile_jinja_template(template).globals["strftime_now"] = strftime_now
        cases = []
        for cname, msgs, gen, tools in CASES:
            ctx = {"messages": msgs, "tools": tools, "documents": None,
                   "add_generation_prompt": gen, "bos_token": bos, "eos_token": eos}
            case = {"name": cname, "context": ctx}
            try:
                case["expected"] = render(template, msgs, gen, tools, bos, eos)
            except TemplateError as e:
                case["error"] = str(e)
            except Exception as e:  # noqa: BLE001 — a Python error, not the template's message
                print(f"  {name}/{cname}: left out ({type(e).__name__}: {e})")
                continue
            cases.append(case)
        doc = {"family": "builtin_" + name,
               "source": f"axolotl {AXOLOTL_VERSION} axolotl/utils/chat_templates/templates/{name}.jinja",
               "axolotl_version": AXOLOTL_VERSION, "now": NOW, "template": template, "cases": cases}
        with open(os.path.join(out_dir, "builtin_" + name + ".json"), "w", encoding="utf-8") as f:
            json.dump(doc, f, ensure_ascii=False, indent=1)
            f.write("\n")
        print(name, len(cases), "cases,", sum("error" in c for c in cases), "errors")


if __name__ == "__main__":
    main()
