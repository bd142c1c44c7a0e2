#!/usr/bin/env bash
# bench_moe.sh — issue #15's MoE speed target: a Mixtral-shaped model (8
# experts, top-2) against a dense model with the same active parameters
# (one MLP of 2 x the expert width), same run, same everything else: random
# weights, LoRA r 16 on every linear and expert, micro-batch 4 x 256,
# forward + backward + AdamW on 2 threads. The two run alternately for
# --rounds rounds; prints each step time, the medians and their ratio.
# Target: MoE step time <= 1.5 x the dense one.
#
#   scripts/bench_moe.sh [--rounds 3] [--layers 8] [--hidden 576] [--ff 768]
# Run it on a quiet machine: it measures wall time.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=3 LAYERS=8 HIDDEN=576 FF=768
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) ROUNDS=$2; shift 2 ;;
    --layers) LAYERS=$2; shift 2 ;;
    --hidden) HIDDEN=$2; shift 2 ;;
    --ff) FF=$2; shift 2 ;;
    *) echo "usage: $0 [--rounds N] [--layers N] [--hidden C] [--ff expert-width]" >&2; exit 2 ;;
  esac
done
[ -x build/lorac ] || scripts/build.sh build -DLORAC_TESTS=OFF
export OMP_NUM_THREADS=2 GOMP_SPINCOUNT=${GOMP_SPINCOUNT:-10000} OMP_PROC_BIND=close OMP_PLACES=cores
COMMON=(bench --layers "$LAYERS" --hidden "$HIDDEN" --steps 3 --warmup 1)
moe=() dense=()
step_s() { python3 -c 'import json,sys; s=json.loads(sys.stdin.read())["step_s"]; print(sum(s)/len(s))'; }
for r in $(seq "$ROUNDS"); do
  m=$(build/lorac "${COMMON[@]}" --experts 8 --top-k 2 --intermediate "$FF" | step_s)
  d=$(build/lorac "${COMMON[@]}" --intermediate $((2 * FF)) | step_s)
  echo "round $r: MoE 8 x $FF top-2 ${m}s/step, dense $((2 * FF)) ${d}s/step"
  moe+=("$m"); dense+=("$d")
done
python3 - "${moe[*]}" "${dense[*]}" <<'PY'
import statistics, sys
m = statistics.median(map(float, sys.argv[1].split()))
d = statistics.median(map(float, sys.argv[2].split()))
print(f"median step: MoE {m:.3f}s, dense {d:.3f}s, ratio {m / d:.2f} (target <= 1.5)")
PY
