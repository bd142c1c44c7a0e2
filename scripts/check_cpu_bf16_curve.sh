#!/usr/bin/env bash
# check_cpu_bf16_curve.sh — does a bfloat16 run on the CPU learn like a
# float32 one? Trains the quickstart (configs/quickstart.yaml) for N steps
# (default 200) twice, compute_dtype float32 and bfloat16, and prints both
# loss curves side by side, the final train and eval losses and their
# relative difference; exits 1 when the final losses differ by more than 2%
# (issue #18's bound).
#
#   scripts/check_cpu_bf16_curve.sh [--steps 200] [--engine emulate|onednn|auto]
#
# --engine sets LORAC_CPU_BF16 for the bfloat16 run (autograd/cpu/gemm_bf16.h):
# emulate runs the bf16 rounding on any CPU; onednn and auto use oneDNN (auto
# only on a CPU with AMX or AVX512-BF16, else lorac falls back to float32 and
# says so, and the two curves are then the same run twice). Default: auto on a
# CPU with bf16 units (the kernels a user gets there), emulate elsewhere.
set -euo pipefail
cd "$(dirname "$0")/.."
STEPS=200
if grep -qwE 'avx512_bf16|amx_bf16' /proc/cpuinfo 2>/dev/null; then
  ENGINE=auto
else
  ENGINE=emulate
fi
while [ $# -gt 0 ]; do
  case "$1" in
    --steps) STEPS=$2; shift 2 ;;
    --engine) ENGINE=$2; shift 2 ;;
    *) echo "usage: $0 [--steps N] [--engine emulate|onednn|auto]" >&2; exit 2 ;;
  esac
done
[ -x build/lorac ] || scripts/build.sh build -DLORAC_TESTS=OFF
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
for dt in float32 bfloat16; do
  echo "training $STEPS steps, compute_dtype $dt ..."
  LORAC_CPU_BF16=$ENGINE build/lorac train configs/quickstart.yaml --set compute_dtype=$dt \
    --set max_steps="$STEPS" --set output_dir="$OUT/$dt" >"$OUT/$dt.log" 2>&1 ||
    { cat "$OUT/$dt.log"; exit 1; }
  grep -m1 '^backend:' "$OUT/$dt.log" | sed 's/^/  /'
  grep 'compute_dtype bfloat16' "$OUT/$dt.log" | sed 's/^/  /' || true
done
python3 - "$OUT" <<'EOF'
import json, sys
out = sys.argv[1]
def runs(dt):
    rows = [json.loads(l) for l in open(f"{out}/{dt}/metrics.jsonl")]
    train = [(r["step"], r["loss"]) for r in rows if "loss" in r]
    ev = [(r["step"], r["eval_loss"]) for r in rows if "eval_loss" in r]
    return train, ev
(ta, ea), (tb, eb) = runs("float32"), runs("bfloat16")
print(f"{'step':>6} {'float32':>9} {'bfloat16':>9} {'rel':>8}")
for (s, a), (_, b) in zip(ta, tb):
    print(f"{s:>6} {a:9.4f} {b:9.4f} {(b - a) / a:+8.2%}")
ok = True
for what, (s, a), (_, b) in (("train", ta[-1], tb[-1]),) + ((("eval", ea[-1], eb[-1]),) if ea else ()):
    rel = (b - a) / a
    ok &= abs(rel) <= 0.02
    print(f"final {what} loss (step {s}): float32 {a:.4f}, bfloat16 {b:.4f}: {rel:+.2%} "
          f"({'PASS' if abs(rel) <= 0.02 else 'FAIL'}: within 2%)")
sys.exit(0 if ok else 1)
EOF
