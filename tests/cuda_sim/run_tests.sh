#!/bin/bash
# run_tests.sh [BUILD_DIR] [ARGS] — runs the op-parity harness
# tests/test_cuda_ops.c against the real kernel sources of autograd/cuda/ on
# the CPU, through the fiber simulator in this folder (no GPU, no CUDA
# driver). It checks indexing, masking, tiling, barriers / shuffles and the
# host-side logic (GEMM layout mapping, plan cache, chunking, multi-tensor
# launches) against the CPU kernels; it says nothing about speed, occupancy,
# real cuBLASLt heuristics or GPU float details. First it runs the
# simulator's own checks (selftest.cu): a correct kernel set must pass and
# each injected wiring bug must be caught — a host pointer passed to a kernel
# (directly / inside a by-value lc_cuda_weight), three wrong cudaMemcpy kinds,
# cudaFree of a host pointer (all abort), a reduction without __syncthreads
# (random fiber order, LC_SIM_SEED; four seeds) and a read of unwritten
# __shared__ memory (NaN fill). The harness runs in the simulator's deferred
# mode (work runs at synchronisation points only).
# BUILD_DIR (default build-cuda) must hold a built liblorac_core.a.
# SAN="-fsanitize=address" adds AddressSanitizer (slower).
# Extra arguments after BUILD_DIR go to the test binary (e.g. --filter).
#
# run_tests.sh BUILD_DIR --bugs — with the binary the plain run built: the
# harness once per injected wiring bug (LC_INJECT_BUG), each of which must
# make it FAIL: host_arg (a host pointer passed to a kernel), no_sync (no
# stream synchronisation before the host reads the grad norm back),
# no_syncthreads (a barrier removed from the attention forward) and
# unzeroed_grad (gradient buffers never zeroed before the backward kernels
# accumulate into them).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
BUILD=${1:-build-cuda}
shift || true
case $BUILD in /*) ;; *) BUILD="$ROOT/$BUILD" ;; esac
OUT="$BUILD/cuda-sim"
SAN=${SAN:-}
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_stack_use_after_return=0:detect_leaks=0}
if [ "${1:-}" = --bugs ]; then
  [ -x "$OUT/test_cuda_ops_sim" ] || { echo "run_tests.sh --bugs: run run_tests.sh $BUILD first" >&2; exit 1; }
  bug() { # BUG OPS EXPECTED: the harness must fail, printing EXPECTED
    local out rc=0
    out=$(LC_INJECT_BUG=$1 LC_PARITY_OPS=$2 "$OUT/test_cuda_ops_sim" --jobs 1 --filter 'cuda/op_parity' 2>&1) || rc=$?
    if [ $rc = 0 ] || ! grep -qF -- "$3" <<<"$out"; then
      echo "injected bug $1 not caught by the harness (rc $rc, want \"$3\"):" >&2
      echo "$out" | tail -20 >&2
      exit 1
    fi
    echo "== injected bug $1 ($2): harness FAILED as it must (rc $rc)"
    grep -E "FAIL|host pointer|op parity" <<<"$out" | grep -v "^\[" | head -6
  }
  bug host_arg rmsnorm:1 "is a host pointer"
  bug no_sync grad_norm_clip:1 "FAIL"
  bug no_syncthreads attention:0 "FAIL"
  bug unzeroed_grad rmsnorm:1 "(fd)"
  # the same missing synchronisation passes unnoticed when work runs at once
  out=$(LC_SIM_DEFERRED=0 LC_INJECT_BUG=no_sync LC_PARITY_OPS=grad_norm_clip:1 \
        "$OUT/test_cuda_ops_sim" --jobs 1 --filter 'cuda/op_parity' 2>&1) && rc=0 || rc=$?
  echo "== no_sync with LC_SIM_DEFERRED=0 (immediate execution): rc $rc, $(grep "op parity" <<<"$out")"
  exit 0
fi
[ -f "$BUILD/liblorac_core.a" ] || { echo "run_tests.sh: build lorac_core in $BUILD first" >&2; exit 1; }
rm -rf "$OUT" && mkdir -p "$OUT/gen" "$OUT/obj"
for f in "$ROOT"/autograd/cuda/*.cu "$HERE/selftest.cu"; do
  python3 "$HERE/gen.py" "$f" "$OUT/gen/$(basename "$f" .cu).cpp"
done
pids=()
for f in "$OUT"/gen/*.cpp "$HERE/sim.cpp"; do
  g++ -std=c++17 -O1 -g $SAN -ffp-contract=off -Wall -Wextra -Wno-unknown-pragmas \
      -I"$HERE/include" -I"$ROOT" -c "$f" -o "$OUT/obj/$(basename "$f" .cpp).o" &
  pids+=($!)
done
# the backend table over the kernels (plain C, as in the real-CUDA build)
for f in "$ROOT"/autograd/cuda/*.c; do
  gcc -std=c11 -O1 -g $SAN -D_GNU_SOURCE -Wall -Wextra -Werror -I"$ROOT" $(pkg-config --cflags openblas) \
      -c "$f" -o "$OUT/obj/$(basename "$f" .c).o" &
  pids+=($!)
done
for p in "${pids[@]}"; do wait "$p"; done
# the simulator's own checks: every injected bug of selftest.cu must be caught
g++ -std=c++17 -O1 -g $SAN -o "$OUT/selftest" "$OUT/obj/selftest.o" "$OUT/obj/sim.o"
selftest() { # CASE EXPECTED-MESSAGE: nonzero exit and the message on stderr
  local out rc=0
  out=$("$OUT/selftest" "$1" 2>&1) || rc=$?
  if [ "$1" = ok ]; then
    [ $rc = 0 ] || { echo "sim selftest ok failed: $out" >&2; exit 1; }
  elif [ $rc = 0 ] || ! grep -qF "$2" <<<"$out"; then
    echo "sim selftest $1: injected bug not caught (rc $rc, want \"$2\"): $out" >&2; exit 1
  fi
  echo "sim selftest $1: $(grep -F "$2" <<<"$out" | head -1)"
}
selftest ok "passed"
selftest host_arg "kernel twice_k argument 0 is a host pointer"
selftest host_in_struct "kernel weight_k argument 0 is a host pointer"
selftest memcpy_kind "cudaMemcpyHostToDevice: destination"
selftest memcpy_d2h "cudaMemcpyDeviceToHost: destination"
selftest memcpy_d2d "cudaMemcpyDeviceToDevice: source"
selftest free_host "cudaFree of"
selftest no_syncthreads "wrong result (reduce_k)"
selftest smem_uninit "wrong result (accum_k)"
for seed in 2 3 12345; do LC_SIM_SEED=$seed selftest ok "passed"; LC_SIM_SEED=$seed selftest no_syncthreads "wrong result (reduce_k)"; done
gcc -std=c11 -O1 -g $SAN -D_GNU_SOURCE -DLORAC_HAVE_CUDA=1 -DLORAC_SOURCE_DIR="\"$ROOT\"" -DLORAC_BINARY="\"$BUILD/lorac\"" \
    -I"$ROOT" -I"$ROOT/tests" -Wall -Wextra -Werror $(pkg-config --cflags criterion openblas) \
    "$ROOT/tests/test_cuda_ops.c" "$ROOT/tests/helpers.c" $(ls "$OUT"/obj/*.o | grep -v /selftest.o) "$BUILD/liblorac_core.a" \
    $(pkg-config --libs criterion openblas yaml-0.1) -lcjson -fopenmp -lstdc++ -lm \
    -o "$OUT/test_cuda_ops_sim"
"$OUT/test_cuda_ops_sim" --jobs 1 "$@" 2>&1 | grep -v "ASan doesn't fully support makecontext"
