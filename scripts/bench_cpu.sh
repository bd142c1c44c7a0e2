#!/usr/bin/env bash
# bench_cpu.sh — issue #18's CPU benchmark: lorac against today's PyTorch +
# PEFT in one sitting. Forward + backward + AdamW on a random
# SmolLM-135M-shaped model (hidden 576, 30 layers, 9/3 heads, intermediate
# 1536, vocab 49152, tied; LoRA r 16 on all 7 linears), micro-batch 4 x 256
# tokens, 2 threads, in alternating rounds of four runs (each round starts one
# run later in this list than the one before, so no side always runs first):
#   lorac f32     build/lorac bench --compute-dtype float32 (auto would take bf16
#                 on a CPU with bf16 units)
#   lorac bf16    build/lorac bench --bf16 --compute-dtype bfloat16 (bf16 weights,
#                 bf16 frozen-weight GEMMs; "not available: <lorac's reason>" when
#                 lorac refuses, and lorac's note when it falls back to float32)
#   PyTorch f32   scripts/bench_cpu_peft.py --dtype f32 (transformers + PEFT)
#   PyTorch bf16  scripts/bench_cpu_peft.py --dtype bf16 (bf16 base, autocast),
#                 only where the CPU has bf16 units (AVX512-BF16 or AMX) or with
#                 --torch-bf16: without them PyTorch emulates bf16 GEMMs, far
#                 slower than its f32 (AMD EPYC, AVX2: 4.9 against 154 tokens/s,
#                 ~210 s a step), so its fastest configuration is f32 there
# then medians (tokens/s from each run's median step), peak RSS, the GEMM
# kernels each side used, and issue #18's targets as PASS / FAIL lines:
#   lorac bf16 >= 2x PyTorch's fastest at <= 1.5 GiB peak RSS; lorac f32 >= 1.5x
#   PyTorch f32.
# In every round, `lorac bench --gemm-peak` measures the machine's GEMM rate
# at the step's shapes (f32 on OpenBLAS and on oneDNN; bf16 where the CPU has
# bf16 units), scripts/bench_cpu_torch_gemm.py PyTorch's own (torch.mm: MKL) at
# the same shapes, and the report says at what fraction of each library's peak
# and of the fastest library's per shape each side's GEMM work ran (bench's
# gemm_gflop per step). The same call measures the cores' float32 multiply-add
# peak (no GEMM runs faster), and the report bounds lorac f32 / PyTorch f32 by
# it: PyTorch's step over lorac's GEMM work at that peak. With bf16 units it also
# times q/k/v's and gate/up's GEMMs in the shared forms of LORAC_CPU_BF16_GROUPS
# (forward batched by shape, backward one product) against their members' GEMMs
# (GEMM time only; --env-ab LORAC_CPU_BF16_GROUPS=on,off times whole steps).
# lorac's f32 GEMMs run on oneDNN by default;
# LORAC_CPU_GEMM=openblas in the environment runs them on OpenBLAS instead.
#
#   scripts/bench_cpu.sh [--rounds 3] [--steps 3] [--warmup 2] [--layers 30]
#                        [--python PATH] [--no-torch] [--torch-bf16] [--nf4]
#   scripts/bench_cpu.sh --native [--rounds 3] [--nf4] [--dtype bf16|f32]
#   scripts/bench_cpu.sh --against REF [--rounds 3] [--nf4] [--dtype bf16|f32]
#   scripts/bench_cpu.sh --env-ab NAME=A,B [--rounds 3] [--nf4] [--dtype bf16|f32]
# --python: the PyTorch to compare with (default $LORAC_BENCH_PYTHON, else
# scripts/.venv-bench/bin/python, made on first use with python3 -m venv and
# pip install torch transformers peft: the newest from PyPI). --layers: fewer
# layers to iterate faster (the targets are for 30). --nf4: lorac's f32 row with
# an NF4 base.
# --native: the portable build (build/, kernels dispatched at run time)
# against a -DLORAC_NATIVE=ON build (build-native/, everything -march=native)
# in alternating rounds, medians and their ratio (target: within 5%).
# --against REF: this checkout's build/ against git REF (a commit, branch or
# tag, checked out as a worktree in build-ref/src and built there), lorac
# only, in alternating rounds (each round the other one first): every run's
# median step, the medians of tokens/s and the fastest steps, and their
# ratios: how a change moves the whole step, measured in one sitting.
# --env-ab NAME=A,B: this checkout's build/ with the environment variable NAME
# set to A against the same with B, the same rounds and summary (a runtime
# choice such as LORAC_CPU_BF16_GROUPS=on,off).
# --dtype for these three: bf16 (bf16 weights, --compute-dtype bfloat16; the
# default on a CPU with bf16 units) or f32 (the default elsewhere).
# Logs and JSON go to $OUT when set, else build/bench-cpu-logs. Run it on a
# quiet machine: every run measures wall time on 2 cores (each run's line says
# what share of the cores other processes used meanwhile, from /proc/stat; the
# summary warns when that exceeded 10%).
set -euo pipefail
cd "$(dirname "$0")/.."
STEPS=3
# two untimed steps: in a sitting PyTorch's bf16 autocast ran its first step
# after one warm-up 1.5-1.8x slower than its third (AMD EPYC Zen 5,
# 2026-12-01: 3.96 / 2.74 / 2.18, 3.53 / 2.02 / 1.96, 3.85 / 3.06 / 2.57 s)
WARMUP=2
TORCH=1
TORCH_BF16=auto
NATIVE=0
AGAINST=
ENV_AB=
PAIR_DTYPE=
ROUNDS=3
PY=${LORAC_BENCH_PYTHON:-}
BENCH_ARGS=()
SHAPE=()
while [ $# -gt 0 ]; do
  case "$1" in
    --steps) STEPS=$2; shift 2 ;;
    --warmup) WARMUP=$2; shift 2 ;;
    --no-torch) TORCH=0; shift ;;
    --torch-bf16) TORCH_BF16=1; shift ;;
    --native) NATIVE=1; shift ;;
    --against) AGAINST=$2; shift 2 ;;
    --env-ab) ENV_AB=$2; shift 2 ;;
    --dtype)
      case "$2" in bf16 | f32) PAIR_DTYPE=$2 ;; *) echo "$0: --dtype $2: use bf16 or f32" >&2; exit 2 ;; esac
      shift 2 ;;
    --rounds) ROUNDS=$2; shift 2 ;;
    --layers) SHAPE=(--layers "$2"); shift 2 ;;
    --python) PY=$2; shift 2 ;;
    --nf4) BENCH_ARGS+=(--nf4); shift ;;
    *) echo "usage: $0 [--rounds N] [--steps N] [--warmup N] [--layers N] [--python PATH]" \
            "[--no-torch] [--torch-bf16] [--nf4] | --native|--against REF|--env-ab NAME=A,B" \
            "[--rounds N] [--nf4]" \
            "[--dtype bf16|f32]" >&2; exit 2 ;;
  esac
done
[ -x build/lorac ] || scripts/build.sh build -DLORAC_TESTS=OFF
export OMP_NUM_THREADS=2
# lorac pins its two OpenMP threads to the cores and spins briefly at
# barriers; PyTorch runs with its defaults (both get 2 threads)
run_lorac() { # BINARY ARGS...
  local bin=$1
  shift
  GOMP_SPINCOUNT=${GOMP_SPINCOUNT:-10000} OMP_PROC_BIND=${OMP_PROC_BIND:-close} \
    OMP_PLACES=${OMP_PLACES:-cores} "$bin" bench "${SHAPE[@]}" "$@"
}
# Two lorac builds, A and B, in alternating rounds (odd rounds A first):
# each run's line, then medians of tokens/s and the fastest step of each.
# Other load on the machine only ever adds time, so the best step is the
# steadiest figure. ENV_A and ENV_B (NAME=VALUE or empty) are set for A's
# and B's runs.
compare_builds() { # DIR_A LABEL_A DIR_B LABEL_B [ENV_A ENV_B]
  local dirs=("$1" "$3") labels=("$2" "$4") envs=("${5:-}" "${6:-}") args=("${BENCH_ARGS[@]}")
  if [ -z "$PAIR_DTYPE" ]; then
    PAIR_DTYPE=f32
    grep -qw -e avx512_bf16 -e amx_bf16 /proc/cpuinfo && PAIR_DTYPE=bf16
  fi
  if [ "$PAIR_DTYPE" = bf16 ]; then
    args+=(--bf16 --compute-dtype bfloat16)
  else
    args+=(--compute-dtype float32)
  fi
  echo "== ${labels[0]} against ${labels[1]}, $PAIR_DTYPE, $ROUNDS rounds: $(grep -m1 '^model name' \
    /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), $(nproc) cores"
  local results=() r i
  for r in $(seq "$ROUNDS"); do
    for i in 0 1; do
      [ $((r % 2)) = 0 ] && i=$((1 - i))
      local j
      j=$([ -z "${envs[$i]}" ] || export "${envs[$i]}"
          run_lorac "${dirs[$i]}/lorac" --steps "$STEPS" --warmup "$WARMUP" "${args[@]}")
      /usr/bin/python3 -c 'import json, statistics, sys
r, name, j = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
print("  round {} {}: {:.1f} tokens/s, median step {:.3f} s (steps {})".format(
    r, name, j["tokens_per_s"], statistics.median(j["step_s"]), sorted(j["step_s"])))' \
        "$r" "${labels[$i]}" "$j"
      results+=("${labels[$i]}"$'\t'"$j")
    done
  done
  printf '%s\n' "${results[@]}" | /usr/bin/python3 -c '
import json, statistics, sys
a, b = sys.argv[1], sys.argv[2]
tps, best = {}, {}
for line in sys.stdin:
    name, j = line.split("\t", 1)
    j = json.loads(j)
    tps.setdefault(name, []).append(j["tokens_per_s"])
    best[name] = min(best.get(name, 1e30), min(j["step_s"]))
ma, mb = statistics.median(tps[a]), statistics.median(tps[b])
print(f"median tokens/s: {a} {ma:.1f}, {b} {mb:.1f}: ratio {ma / mb:.3f}")
print(f"fastest step: {a} {best[a]:.3f} s, {b} {best[b]:.3f} s: speed ratio {best[b] / best[a]:.3f}")' \
    "${labels[0]}" "${labels[1]}"
}
if [ "$NATIVE" = 1 ]; then
  [ -x build-native/lorac ] || scripts/build.sh build-native -DLORAC_NATIVE=ON -DLORAC_TESTS=OFF
  build/lorac --version | sed -n 2p
  compare_builds build "portable (dispatched)" build-native "-march=native"
  exit 0
fi
if [ -n "$ENV_AB" ]; then
  NAME=${ENV_AB%%=*} VALUES=${ENV_AB#*=}
  [[ "$NAME" =~ ^[A-Za-z_][A-Za-z0-9_]*$ && "$VALUES" == *,* && "$ENV_AB" == *=* ]] ||
    { echo "$0: --env-ab $ENV_AB: use NAME=A,B" >&2; exit 2; }
  cmake --build build --target lorac -j"$(nproc)" >/dev/null
  compare_builds build "$NAME=${VALUES%%,*}" build "$NAME=${VALUES#*,}" \
    "$NAME=${VALUES%%,*}" "$NAME=${VALUES#*,}"
  exit 0
fi
if [ -n "$AGAINST" ]; then
  REV=$(git rev-parse --verify --quiet "$AGAINST^{commit}") ||
    { echo "$0: --against $AGAINST: not a commit here" >&2; exit 2; }
  SRC=build-ref/src
  if [ ! -d "$SRC" ]; then
    git worktree add --detach "$SRC" "$REV" >/dev/null
  else
    git -C "$SRC" checkout --quiet --detach "$REV"
  fi
  (cd "$SRC" && scripts/build.sh build -DLORAC_TESTS=OFF)
  cmake --build build --target lorac -j"$(nproc)" >/dev/null # build/ as the working tree is now
  HERE=$(git rev-parse --short HEAD)
  git diff --quiet HEAD -- || HERE="$HERE+changes"
  compare_builds build "$HERE" "$SRC/build" "$(git rev-parse --short "$REV")"
  exit 0
fi

LOG=${OUT:-build/bench-cpu-logs}
mkdir -p "$LOG"
echo "== machine: $(grep -m1 '^model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), $(nproc) cores"
FLAGS=$(grep -m1 '^flags' /proc/cpuinfo)
for f in avx512f avx512_bf16 amx_bf16; do
  if grep -qw "$f" <<<"$FLAGS"; then printf '   %s: yes' "$f"; else printf '   %s: no' "$f"; fi
done
echo
if [ "$TORCH_BF16" = auto ]; then
  if grep -qw -e avx512_bf16 -e amx_bf16 <<<"$FLAGS"; then TORCH_BF16=1; else
    TORCH_BF16=0
    echo "   PyTorch bf16: not run (no bf16 units: PyTorch emulates bf16 GEMMs, far slower than" \
         "its f32; --torch-bf16 runs it)"
  fi
fi
echo "   load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
build/lorac --version 2>&1 | sed -n 2p | sed 's/^/   lorac /'
if [ "$TORCH" = 1 ]; then
  if [ -z "$PY" ]; then
    PY=scripts/.venv-bench/bin/python
    if [ ! -x "$PY" ]; then
      echo "== making scripts/.venv-bench: python3 -m venv + pip install torch transformers peft" \
           "(the newest from PyPI; once)"
      python3 -m venv scripts/.venv-bench
      "$PY" -m pip install --quiet torch transformers peft
    fi
  fi
  echo "   PyTorch: $PY: $("$PY" -c 'import torch, transformers, peft
print("torch", torch.__version__, "transformers", transformers.__version__, "peft", peft.__version__)' 2>&1 | tail -1)"
fi

# Seconds of CPU time the whole machine was busy, and this script and its finished runs
HZ=$(getconf CLK_TCK)
machine_busy() { awk -v hz="$HZ" '/^cpu /{printf "%.2f", ($2+$3+$4+$7+$8+$9)/hz}' /proc/stat; }
own_cpu() { awk -v hz="$HZ" '{printf "%.2f", ($14+$15+$16+$17)/hz}' "/proc/$$/stat"; }
# one run: NAME ROUND COMMAND...; its stdout (JSON) and stderr in $LOG, a line in the manifest
# with the share of the cores other processes used meanwhile (what makes a timing noisy)
MANIFEST="$LOG/runs.tsv"
: >"$MANIFEST"
run() {
  local name=$1 round=$2 base b0 o0 t0 other rc=0
  shift 2
  base="$LOG/r${round}_${name// /_}"
  b0=$(machine_busy) o0=$(own_cpu) t0=$(date +%s.%N)
  "$@" >"$base.json" 2>"$base.err" || rc=$?
  other=$(awk -v b="$(machine_busy)" -v o="$(own_cpu)" -v t="$(date +%s.%N)" -v b0="$b0" \
    -v o0="$o0" -v t0="$t0" -v n="$(nproc)" \
    'BEGIN { x = 100 * ((b - b0) - (o - o0)) / ((t - t0) * n); printf "%.0f", x < 0 ? 0 : x }')
  printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$round" "$rc" "$base.json" "$base.err" "$other" \
    >>"$MANIFEST"
  /usr/bin/python3 scripts/bench_cpu_report.py row "$name" "$round" "$rc" "$base.json" "$base.err" \
    "$other"
}
ARGS=(--steps "$STEPS" --warmup "$WARMUP")
PEAKS=()
for r in $(seq "$ROUNDS"); do
  echo "== round $r of $ROUNDS"
  # the GEMM ceiling in every round (this VM's rate drifts over minutes): the median counts
  echo "   GEMM ceiling: lorac bench --gemm-peak"
  run_lorac build/lorac --gemm-peak >"$LOG/gemm_peak_r$r.json"
  PEAKS+=("$LOG/gemm_peak_r$r.json")
  /usr/bin/python3 scripts/bench_cpu_report.py peak "$LOG/gemm_peak_r$r.json"
  if [ "$TORCH" = 1 ]; then # PyTorch's own GEMM (MKL) at the same shapes
    "$PY" scripts/bench_cpu_torch_gemm.py "$LOG/gemm_peak_r$r.json" \
      >"$LOG/torch_gemm_peak_r$r.json" 2>"$LOG/torch_gemm_peak_r$r.err" || true
    PEAKS+=("$LOG/torch_gemm_peak_r$r.json")
    /usr/bin/python3 scripts/bench_cpu_report.py peak "$LOG/torch_gemm_peak_r$r.json"
  fi
  # the runs of a round, started in an order rotated by one each round, so that no
  # side always runs first after the ceiling measurements (or last)
  KINDS=("lorac f32" "lorac bf16")
  if [ "$TORCH" = 1 ]; then
    KINDS+=("PyTorch f32")
    [ "$TORCH_BF16" = 1 ] && KINDS+=("PyTorch bf16")
  fi
  for i in $(seq 0 $((${#KINDS[@]} - 1))); do
    kind=${KINDS[$(((i + r - 1) % ${#KINDS[@]}))]}
    case "$kind" in
      "lorac f32") run "$kind" "$r" run_lorac build/lorac "${ARGS[@]}" --compute-dtype float32 "${BENCH_ARGS[@]}" ;;
      "lorac bf16") run "$kind" "$r" run_lorac build/lorac "${ARGS[@]}" --bf16 --compute-dtype bfloat16 ;;
      PyTorch*) run "$kind" "$r" "$PY" scripts/bench_cpu_peft.py "${SHAPE[@]}" "${ARGS[@]}" \
                  --dtype "${kind#PyTorch }" ;;
    esac
  done
done
echo "   load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "== summary (medians of $ROUNDS rounds)"
/usr/bin/python3 scripts/bench_cpu_report.py summary "$MANIFEST" "${PEAKS[@]}" "${SHAPE[@]}" \
  | tee "$LOG/summary.txt"
