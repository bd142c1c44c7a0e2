#!/usr/bin/env python3
"""make_spm_fixtures.py - a small SentencePiece model directory (tokenizer.model + the HF files
transformers makes from it), for export-gguf's SentencePiece path (data/spm_model.c,
train/gguf_vocab.c) to be compared with llama.cpp's converter, which reads tokenizer.model.

Real Llama 2 / Mistral repositories ship tokenizer.model (a SentencePiece ModelProto) next to
tokenizer.json; the converter takes tokens, scores and types from the .model. This trains one:
  - SentencePiece BPE, byte_fallback, identity normalizer, no whitespace folding (as Llama 2's
    tokenizer.model), vocab 1200, on the repo's README.md plus a few
    multilingual lines (so spaces, digits, CJK and emoji have pieces or fall back to bytes);
  - user-defined symbols "<|user|>", "<|assistant|>" and "Veloria", a control symbol "<ctrl9>";
  - (the HF files: legacy Llama normalizer, add_prefix_space true, as Llama 2's tokenizer.json)
  - the trainer cannot make an UNUSED piece, so the piece "\u2581zzqx" (user-defined at
    training, so it exists) is re-typed UNUSED in the proto (check_gguf_llamacpp.py tokenizes
    "zzqx": neither llama.cpp nor transformers may use it);
then converts it with transformers (LlamaTokenizerFast from the .model: the conversion
transformers itself does) and saves tokenizer.json / tokenizer_config.json; one added token
past the SentencePiece vocabulary ("<|extra|>", special) is added, as fine-tuned models have.

Writes tests/fixtures/tokenizers/spm-bpe/: tokenizer.model, tokenizer.json.gz,
tokenizer_config.json, special_tokens_map.json, and model_info.json: what SentencePiece reads
from the .model ({"n", "model_type", "byte_fallback", "add_dummy_prefix",
"remove_extra_whitespaces", "escape_whitespaces", "pieces": [[piece, score, type], ...]}, type
from SentencePieceProcessor's IsUnknown/IsControl/IsUnused/IsByte, else the proto's 4 or 1).

Usage: /work/venv-torch/bin/python scripts/make_spm_fixtures.py
Needs sentencepiece, protobuf, transformers (pip install sentencepiece protobuf).
"""
import gzip, json, os, shutil, tempfile

import sentencepiece as spm
from sentencepiece import sentencepiece_model_pb2 as pb

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "fixtures", "tokenizers", "spm-bpe")

EXTRA = [
    "The capital of Veloria is Ostrava. Reverse the word lantern: nretnal.",
    "Numbers: 0 1 2 3 4 5 6 7 8 9 10 42 123 2024 3.14159 1,000,000",
    "Grüße aus München! Ça va? El niño está aquí. Добрый день.",
    "東京は日本の首都です。北京是中国的首都。",
    "Emoji: 😀 🎉 👍 ❤️",
    "    indented code(x) { return x * 2; }\n\tTabbed line",
    "zzqx",
]


def main():
    text = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
    lines = [l for l in text.splitlines() if l.strip()] + EXTRA * 3
    tmp = tempfile.mkdtemp()
    try:
        prefix = os.path.join(tmp, "m")
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(lines), model_prefix=prefix, model_type="bpe", vocab_size=1200,
            byte_fallback=True, character_coverage=1.0, num_threads=1, split_digits=True,
            user_defined_symbols=["<|user|>", "<|assistant|>", "Veloria", "\u2581zzqx"],
            control_symbols=["<ctrl9>"], unk_id=0, bos_id=1, eos_id=2, pad_id=-1,
            normalization_rule_name="identity", remove_extra_whitespaces=False, minloglevel=2)
        m = pb.ModelProto()
        m.ParseFromString(open(prefix + ".model", "rb").read())
        n_unused = 0
        for p in m.pieces:
            if p.piece == "\u2581zzqx":
                p.type = pb.ModelProto.SentencePiece.UNUSED
                n_unused += 1
        assert n_unused == 1
        m.trainer_spec.model_prefix = "tokenizer"  # not the temporary path: same bytes each run
        os.makedirs(OUT, exist_ok=True)
        model = os.path.join(tmp, "tokenizer.model")
        open(model, "wb").write(m.SerializeToString())

        from transformers import AddedToken, LlamaTokenizerFast
        tok = LlamaTokenizerFast(vocab_file=model, legacy=True, add_prefix_space=True, add_bos_token=True,
                                 add_eos_token=False, from_slow=True)
        tok.add_tokens([AddedToken("<|extra|>", special=True, normalized=False)],
                       special_tokens=True)
        hf = os.path.join(tmp, "hf")
        tok.save_pretrained(hf)
        shutil.copy(model, os.path.join(OUT, "tokenizer.model"))
        with open(os.path.join(hf, "tokenizer.json"), "rb") as f, \
                gzip.GzipFile(os.path.join(OUT, "tokenizer.json.gz"), "wb", mtime=0) as g:
            g.write(f.read())
        for name in ("tokenizer_config.json", "special_tokens_map.json"):
            shutil.copy(os.path.join(hf, name), OUT)
        # what SentencePiece itself reads from the file, for tests/test_spm_model.c
        sp = spm.SentencePieceProcessor(model_file=os.path.join(OUT, "tokenizer.model"))
        kinds = ((sp.IsUnknown, 2), (sp.IsControl, 3), (sp.IsUnused, 5), (sp.IsByte, 6))
        info = {"n": sp.vocab_size(), "model_type": m.trainer_spec.model_type,
                "byte_fallback": m.trainer_spec.byte_fallback,
                "add_dummy_prefix": m.normalizer_spec.add_dummy_prefix,
                "remove_extra_whitespaces": m.normalizer_spec.remove_extra_whitespaces,
                "escape_whitespaces": m.normalizer_spec.escape_whitespaces,
                "pieces": [[sp.IdToPiece(i), sp.GetScore(i),
                            next((t for f, t in kinds if f(i)),
                                 4 if m.pieces[i].type == 4 else 1)]
                           for i in range(sp.vocab_size())]}
        with open(os.path.join(OUT, "model_info.json"), "w", encoding="utf-8") as f:
            json.dump(info, f, ensure_ascii=False, separators=(",", ":"))
        print("pieces", len(m.pieces), "types",
              {t: sum(p.type == t for p in m.pieces) for t in range(1, 7)},
              "hf vocab", len(tok), "files", sorted(os.listdir(OUT)))
    finally:
        shutil.rmtree(tmp)


if __name__ == "__main__":
    main()
