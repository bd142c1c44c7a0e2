#!/usr/bin/env bash
# bench_tokenizer.sh [NAME ...] — tokenizer throughput: `lorac tokenize` against
# Hugging Face tokenizers (Rust, one thread) on the same few MB of mixed text
# (English prose, code with tabs and long indentation, digits, CJK, emoji,
# special tokens), in the same run. Prints MB/s of both and their ratio, and
# checks that both gave the same ids for every row.
#
# NAME: tokenizer fixtures of tests/fixtures/tokenizers/ (default: all four).
# Needs a built lorac (build/lorac, or LORAC=path) and `pip install tokenizers`.
# MB = 10^6 bytes of UTF-8 text; times are wall clock of the tokenizing only
# for HF (Python loop of encode() calls, TOKENIZERS_PARALLELISM=false,
# RAYON_NUM_THREADS=1) and of the whole process for lorac (loading
# tokenizer.json and writing the ids included), so the ratio favours HF.
set -euo pipefail
cd "$(dirname "$0")/.."
LORAC=${LORAC:-build/lorac}
MB=${BENCH_MB:-4}
names=("$@")
[ ${#names[@]} -gt 0 ] || names=(llama-bpe qwen2 llama-spm phi-3)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

python3 - "$work/text.jsonl" "$MB" <<'EOF'
import json, random, sys
random.seed(13)
words = ("the of and to in is was for on that with as by at from his her they we you it this "
         "model training data token language learning network layer weight gradient batch "
         "however although because therefore meanwhile I'm they'll we've don't it's").split()
cjk = "的一是不了人我在有他这为之大来以个中上们到说时地也子就道而要于下天日本語中文한국어"
emoji = ["😀", "👨‍👩‍👧‍👦", "🏳️‍🌈", "👍🏽", "🇩🇪", "🦙", "✨"]
specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|begin_of_text|>", "<|eot_id|>",
            "<s>", "</s>", "<|assistant|>", "<|end|>"]
def prose():
    out = []
    for _ in range(random.randint(20, 200)):
        w = random.choice(words)
        r = random.random()
        if r < 0.05: w = w.capitalize() + "."
        elif r < 0.08: w = str(random.randint(0, 10**random.randint(1, 9)))
        elif r < 0.10: w = "".join(random.choice(cjk) for _ in range(random.randint(1, 12)))
        elif r < 0.11: w = random.choice(emoji)
        elif r < 0.115: w = random.choice(specials)
        out.append(w)
    return " ".join(out)
def code():
    lines = []
    for i in range(random.randint(5, 40)):
        ind = random.choice(["", "\t", "\t\t", "    ", "        ", " " * 24])
        lines.append(ind + "x_%d = f(%d, '%s')  # %s" % (i, i * 37, random.choice(words), random.choice(words)))
    return "\n".join(lines) + "\n" * random.randint(1, 4)
with open(sys.argv[1], "w", encoding="utf-8") as f:
    total = 0
    while total < float(sys.argv[2]) * 1e6:
        t = prose() if random.random() < 0.7 else code()
        total += len(t.encode("utf-8"))
        f.write(json.dumps({"text": t}, ensure_ascii=False) + "\n")
EOF

for name in "${names[@]}"; do
  d="$work/$name"
  mkdir -p "$d"
  gzip -dc "tests/fixtures/tokenizers/$name/tokenizer.json.gz" > "$d/tokenizer.json"
  cp "tests/fixtures/tokenizers/$name/tokenizer_config.json" "$d/"
  t0=$(date +%s.%N)
  "$LORAC" tokenize --model "$d" --jsonl "$work/text.jsonl" > "$d/lorac.jsonl"
  t1=$(date +%s.%N)
  TOKENIZERS_PARALLELISM=false RAYON_NUM_THREADS=1 python3 - "$d" "$work/text.jsonl" "$t0" "$t1" "$name" <<'EOF'
import json, sys, time
from tokenizers import Tokenizer
d, path, t0, t1, name = sys.argv[1:]
tok = Tokenizer.from_file(d + "/tokenizer.json")
texts = [json.loads(l)["text"] for l in open(path, encoding="utf-8")]
nbytes = sum(len(t.encode("utf-8")) for t in texts)
start = time.perf_counter()
ids = [tok.encode(t, add_special_tokens=False).ids for t in texts]
hf = time.perf_counter() - start
lorac = float(t1) - float(t0)
ours = [json.loads(l)["input_ids"] for l in open(d + "/lorac.jsonl")]
same = sum(a == b for a, b in zip(ids, ours))
print("%-10s %6.2f MB  lorac %6.2f MB/s  HF tokenizers (1 thread) %6.2f MB/s  ratio %.2fx  "
      "rows equal %d/%d" % (name, nbytes / 1e6, nbytes / 1e6 / lorac, nbytes / 1e6 / hf,
                            hf / lorac, same, len(texts)))
if same != len(texts) or len(ours) != len(texts):
    sys.exit("%s: lorac and HF differ" % name)
EOF
done
