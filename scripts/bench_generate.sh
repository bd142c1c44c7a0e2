#!/usr/bin/env bash
# bench_generate.sh — decoding speed of `lorac generate` against transformers'
# generate() on the CPU, on a random SmolLM-135M-shaped Llama (hidden 576, 30
# layers, 9/3 heads, intermediate 1536, vocab 49152, tied; f32) written once to
# a temporary model directory that both load. Greedy, --ignore-eos / no eos,
# the same number of threads each (default 2), one after the other in one run, at two contexts: a 64-token
# prompt and a 1024-token prompt, 64 new tokens each. Prints prefill and decode
# tokens/s of both and the ratios. Not a test: wall time on shared cores is
# noisy (run it on a quiet machine and read it as ±20%).
#
#   scripts/bench_generate.sh [--new 64] [--threads 2] [--python /work/venv-torch/bin/python]
# Needs torch + transformers in that Python (the model dir is written with it).
set -euo pipefail
cd "$(dirname "$0")/.."
NEW=64
THREADS=2
PY=${PYTHON:-/work/venv-torch/bin/python}
while [ $# -gt 0 ]; do
  case "$1" in
    --new) NEW=$2; shift 2 ;;
    --threads) THREADS=$2; shift 2 ;;
    --python) PY=$2; shift 2 ;;
    *) echo "usage: $0 [--new N] [--threads N] [--python PYTHON]" >&2; exit 2 ;;
  esac
done
[ -x build/lorac ] || scripts/build.sh build -DLORAC_TESTS=OFF
export OMP_NUM_THREADS=$THREADS
DIR=$(mktemp -d /tmp/bench_generate.XXXXXX)
trap 'rm -rf "$DIR"' EXIT

"$PY" - "$DIR" <<'PY'
import sys, torch, transformers
torch.manual_seed(0)
cfg = transformers.LlamaConfig(vocab_size=49152, hidden_size=576, intermediate_size=1536,
                               num_hidden_layers=30, num_attention_heads=9, num_key_value_heads=3,
                               max_position_embeddings=2048, rope_theta=10000.0,
                               tie_word_embeddings=True, rms_norm_eps=1e-5)
m = transformers.LlamaForCausalLM(cfg).to(torch.float32)
m.save_pretrained(sys.argv[1], safe_serialization=True)
PY

ids() { # N: N ids, comma-separated
  python3 -c "import sys; print(','.join(str(3 + (i * 7919) % 49000) for i in range(int(sys.argv[1]))))" "$1"
}
declare -A LP LD TP TD
for CTX in 64 1024; do
  OUT=$(GOMP_SPINCOUNT=${GOMP_SPINCOUNT:-10000} OMP_PROC_BIND=${OMP_PROC_BIND:-close} \
        OMP_PLACES=${OMP_PLACES:-cores} build/lorac generate --model "$DIR" \
        --prompt-ids "$(ids $CTX)" --max-new-tokens "$NEW" --ignore-eos --json)
  LP[$CTX]=$(echo "$OUT" | python3 -c "import json,sys; print('%.1f' % json.load(sys.stdin)['prefill_tokens_per_s'])")
  LD[$CTX]=$(echo "$OUT" | python3 -c "import json,sys; print('%.1f' % json.load(sys.stdin)['decode_tokens_per_s'])")
  read -r TP[$CTX] TD[$CTX] < <("$PY" - "$DIR" "$CTX" "$NEW" "$THREADS" <<'PY'
import sys, time, torch, transformers
torch.set_num_threads(int(sys.argv[4]))
d, ctx, new = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
m = transformers.AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32).eval()
ids = torch.tensor([[3 + (i * 7919) % 49000 for i in range(ctx)]])
gc = dict(do_sample=False, eos_token_id=None, pad_token_id=0,
          attention_mask=torch.ones_like(ids))
with torch.no_grad():
    m.generate(ids[:, :8], max_new_tokens=2, **gc)          # warm-up
    t0 = time.perf_counter(); m(ids); t1 = time.perf_counter()
    out = m.generate(ids, max_new_tokens=new, **gc); t2 = time.perf_counter()
assert out.shape[1] == ctx + new
prefill = t1 - t0
print("%.1f %.1f" % (ctx / prefill, (new - 1) / max(t2 - t1 - prefill, 1e-9)))
PY
)
done
echo "random SmolLM-135M shape, f32, $THREADS thread(s), $NEW new tokens (greedy); tokens/s"
printf "%-8s %-22s %-22s %s\n" context "lorac prefill/decode" "HF prefill/decode" "lorac/HF decode"
for CTX in 64 1024; do
  printf "%-8s %-22s %-22s %s\n" "$CTX" "${LP[$CTX]} / ${LD[$CTX]}" "${TP[$CTX]} / ${TD[$CTX]}" \
    "$(python3 -c "print('%.2fx' % (${LD[$CTX]} / ${TD[$CTX]}))")"
done
