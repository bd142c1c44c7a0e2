#!/usr/bin/env bash
# bench_cpu.sh — the foundation benchmark: forward + backward + AdamW on a
# random SmolLM-135M-shaped model (hidden 576, 30 layers, 9/3 heads,
# intermediate 1536, vocab 49152, tied; LoRA r 16 on all 7 linears; f32),
# micro-batch 4 x 256 tokens, 2 threads: lorac and plain PyTorch (Debian's
# python3-torch, the reference of the issue) one after the other in one run,
# each reporting tokens/s and peak RSS (lorac: also its memory plan against it).
#
#   scripts/bench_cpu.sh [--steps 3] [--no-torch]
#   scripts/bench_cpu.sh --native [--rounds 3] [--nf4]
# Target (issue 2): lorac >= 2x PyTorch's tokens/s with <= 1.5 GiB peak RSS.
# --native: the portable build (build/, kernels dispatched at run time)
# against a -DLORAC_NATIVE=ON build (build-native/, everything -march=native)
# in alternating rounds, medians and their ratio (target: within 5%).
# Run it on a quiet machine: both measure wall time on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
STEPS=3
TORCH=1
NATIVE=0
ROUNDS=3
BENCH_ARGS=()
while [ $# -gt 0 ]; do
  case "$1" in
    --steps) STEPS=$2; shift 2 ;;
    --no-torch) TORCH=0; shift ;;
    --native) NATIVE=1; shift ;;
    --rounds) ROUNDS=$2; shift 2 ;;
    --nf4) BENCH_ARGS+=(--nf4); shift ;;
    *) echo "usage: $0 [--steps N] [--no-torch] | --native [--rounds N] [--nf4]" >&2; exit 2 ;;
  esac
done
[ -x build/lorac ] || scripts/build.sh build -DLORAC_TESTS=OFF
export OMP_NUM_THREADS=2
# lorac pins its two OpenMP threads to the cores and spins briefly at
# barriers; PyTorch runs with its defaults (both get 2 threads)
run_lorac() { # BINARY
  GOMP_SPINCOUNT=${GOMP_SPINCOUNT:-10000} OMP_PROC_BIND=${OMP_PROC_BIND:-close} \
    OMP_PLACES=${OMP_PLACES:-cores} "$1" bench --steps "$STEPS" --warmup 1 "${BENCH_ARGS[@]}"
}
if [ "$NATIVE" = 1 ]; then
  [ -x build-native/lorac ] || scripts/build.sh build-native -DLORAC_NATIVE=ON -DLORAC_TESTS=OFF
  build/lorac --version | sed -n 2p
  RESULTS=()
  for r in $(seq "$ROUNDS"); do
    for b in build build-native; do
      J=$(run_lorac "$b/lorac")
      echo "  round $r $b: $J"
      RESULTS+=("$b $J")
    done
  done
  # Medians of tokens/s, and the fastest step of each build: other load on
  # the machine only ever adds time, so the best step is the steadiest figure.
  printf '%s\n' "${RESULTS[@]}" | /usr/bin/python3 -c '
import json, statistics, sys
tps, best = {}, {}
for line in sys.stdin:
    name, j = line.split(" ", 1)
    j = json.loads(j)
    tps.setdefault(name, []).append(j["tokens_per_s"])
    best[name] = min(best.get(name, 1e30), min(j["step_s"]))
p, n = statistics.median(tps["build"]), statistics.median(tps["build-native"])
print(f"median tokens/s: portable (dispatched) {p:.1f}, -march=native {n:.1f}: ratio {p / n:.3f}")
bp, bn = best["build"], best["build-native"]
print(f"fastest step: portable {bp:.3f} s, -march=native {bn:.3f} s: speed ratio {bn / bp:.3f}")'
  exit 0
fi
echo "lorac:"
LORAC=$(run_lorac build/lorac)
echo "  $LORAC"
# the memory plan printed before a run (issue 10: within 5% of the measured peak RSS)
/usr/bin/python3 -c 'import json, sys; j = json.loads(sys.argv[1]); p, r = j["plan_mib"], j["peak_rss_gib"] * 1024
print(f"  memory plan {p:.1f} MiB vs peak RSS {r:.1f} MiB: {100 * (p - r) / r:+.1f}%")' "$LORAC"
if [ "$TORCH" = 1 ]; then
  if ! /usr/bin/python3 -c "import torch" 2>/dev/null; then
    echo "PyTorch baseline skipped: install Debian's python3-torch (apt-get install python3-torch)"
    exit 0
  fi
  echo "pytorch (Debian python3-torch, f32, 2 threads):"
  TORCHJ=$(/usr/bin/python3 scripts/bench_torch_baseline.py --steps "$STEPS" --warmup 1 2>/dev/null | tail -1)
  echo "  $TORCHJ"
  /usr/bin/python3 - "$LORAC" "$TORCHJ" <<'PY'
import json, sys
a, b = json.loads(sys.argv[1]), json.loads(sys.argv[2])
print(f"| impl | tokens/s | peak RSS GiB |\n|---|---|---|")
for x in (a, b):
    print(f"| {x['impl']} | {x['tokens_per_s']:.1f} | {x['peak_rss_gib']:.2f} |")
print(f"speed-up {a['tokens_per_s'] / b['tokens_per_s']:.2f}x, memory {a['peak_rss_gib'] / b['peak_rss_gib']:.2f}x")
PY
fi
