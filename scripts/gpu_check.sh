#!/usr/bin/env bash
# gpu_check.sh — the device checks of the CUDA backend as one command for a GPU
# machine (H100 / H200, CUDA 13, cmake, gcc, no network), made to fit a
# ~10-minute device slot (each step has its own timeout, all of them 9 min):
#   1. build for the card present only (CMAKE_CUDA_ARCHITECTURES from
#      nvidia-smi, LORAC_CUDA=ON): lorac and the device tests (target cuda_tests);
#   2. the op-parity harness (tests/test_cuda_ops.c) on the device, every row;
#   3. the other device tests of that build (ctest -L cuda: the device training
#      tests, float32 and bfloat16; none is not a failure);
#   4. two training steps of `lorac train` with `device: cuda` on the tiny Llama
#      fixture (tests/fixtures/tiny-llama) in float32 and in bfloat16;
#   5. compute-sanitizer memcheck, racecheck, synccheck and initcheck, each over
#      those two steps in bfloat16 (the default on a GPU), printing each ERROR
#      SUMMARY line.
# Exit 0 when everything passed, 1 when a check failed, 2 without a GPU
# (nothing checked). Logs go to $OUT when it is set (the device runner's result
# folder), else to build-gpu/logs.
#
# Run from anywhere: scripts/gpu_check.sh
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
ROOT=$PWD
. scripts/gpu_env.sh
if ! gpu_detect; then
    echo "no GPU (nvidia-smi failed): nothing checked"
    exit 2
fi
BUILD=build-gpu
LOG=${OUT:-$BUILD/logs}
mkdir -p "$LOG"
echo "GPU: $GPU (sm_$ARCH); logs in $LOG"
rc=0
fail() { echo "FAILED: $*"; rc=1; }
# the whole check may take 540 s (limit: scripts/gpu_env.sh)
DEADLINE=$((SECONDS + 540))

echo "== build (sm_$ARCH)"
timeout "$(limit 60)" cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DLORAC_CUDA=ON -DLORAC_TESTS=ON -DLORAC_DEVICE_TESTS=ON \
        -DCMAKE_CUDA_ARCHITECTURES="$ARCH" >"$LOG/configure.log" 2>&1 \
    || { tail -20 "$LOG/configure.log"; echo "FAILED: configure"; exit 1; }
timeout "$(limit 200)" cmake --build "$BUILD" -j"$(nproc)" --target cuda_tests >"$LOG/build.log" 2>&1 \
    || { tail -40 "$LOG/build.log"; echo "FAILED: build"; exit 1; }

echo "== op-parity harness on the device (test_cuda_ops)"
timeout "$(limit 90)" "$BUILD/test_cuda_ops" --jobs 1 --verbose >"$LOG/op_parity.log" 2>&1 \
    || fail "test_cuda_ops (op_parity.log)"
grep -E "FAIL|op parity|Synthesis|SKIP" "$LOG/op_parity.log" | head -40
# every test skipping (no device, a driver the runtime refuses) is no pass here
grep -q "^op parity on .*, 0 FAIL" "$LOG/op_parity.log" || fail "the op-parity table did not run on the device"

echo "== device tests (ctest -L cuda)"
(cd "$BUILD" && timeout "$(limit 120)" ctest -L cuda -E '^test_cuda_ops$' --no-tests=ignore \
        --output-on-failure -j1) >"$LOG/ctest_cuda.log" 2>&1 || fail "ctest -L cuda (ctest_cuda.log)"
grep -E "tests passed|tests failed|Test +#" "$LOG/ctest_cuda.log" | tail -20 \
    || echo "(no device tests in this build yet)"

# Two training steps on the device: configs/fixture_3step.yaml (the tiny Llama fixture:
# 2 layers, hidden 64, vocab 512; 16-token rows, 2 a step), cut to 2 steps.
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
TWO_STEPS=(train "$ROOT/configs/fixture_3step.yaml" --set device=cuda --set max_steps=2
           --set output_dir="$TMP/out")
for dt in float32 bfloat16; do
    echo "== lorac train, 2 steps on the device, $dt"
    rm -rf "$TMP/out"
    timeout "$(limit 45)" "$BUILD/lorac" "${TWO_STEPS[@]}" --set compute_dtype=$dt >"$LOG/train-$dt.log" 2>&1 \
        || fail "lorac train $dt (train-$dt.log)"
    tail -4 "$LOG/train-$dt.log"
done
TWO_STEPS+=(--set compute_dtype=bfloat16)

SAN=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
if [ ! -x "$SAN" ]; then
    fail "compute-sanitizer not found: memcheck, racecheck, synccheck, initcheck not run"
else
    for tool in memcheck racecheck synccheck initcheck; do
        echo "== compute-sanitizer --tool $tool: lorac train, 2 steps"
        rm -rf "$TMP/out"
        # LORAC_CUDA_SYNC=1: a sync after every launch, so a fault names its kernel;
        # --target-processes all: lorac may re-execute itself (OPENBLAS_CORETYPE)
        LORAC_CUDA_SYNC=1 timeout "$(limit 75)" "$SAN" --tool "$tool" --target-processes all --error-exitcode 9 \
            "$BUILD/lorac" "${TWO_STEPS[@]}" >"$LOG/$tool.log" 2>&1
        trc=$?
        summary=$(grep -E "ERROR SUMMARY" "$LOG/$tool.log" | tail -1)
        echo "${summary:-(no ERROR SUMMARY line: exit $trc, see $tool.log)}"
        if [ $trc != 0 ]; then
            grep -E "RACECHECK SUMMARY|Invalid|Uninitialized|Barrier|hazard|error" "$LOG/$tool.log" | head -10
            fail "$tool (exit $trc, $tool.log)"
        fi
    done
fi
if [ $rc = 0 ]; then echo "gpu_check: all passed"; else echo "gpu_check: FAILED"; fi
exit $rc
