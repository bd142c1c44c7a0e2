#!/bin/bash
# gpu_check.sh — the device checks for the CUDA backend, as one run that fits
# a ~10-minute device slot: build for the GPU that is present only, run every
# CUDA-vs-CPU test, then the same tests under compute-sanitizer (memcheck
# with a sync after every launch so a fault names its kernel, and racecheck
# on the shared-memory kernels: attention and the loss). Logs go to $OUT when
# it is set (the device runner's result folder), else to build-gpu/.
#
# Run from anywhere: autograd/cuda/gpu_check.sh
set -uo pipefail
cd "$(dirname "$0")/../.."
LOG=${OUT:-build-gpu}
mkdir -p "$LOG"
ARCH=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader | head -1 | tr -d .)
echo "GPU: $(nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | head -1), sm_$ARCH"
cmake -S . -B build-gpu -DLORAC_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES="$ARCH" >"$LOG/configure.log" 2>&1 \
    || { tail -20 "$LOG/configure.log"; exit 1; }
cmake --build build-gpu -j"$(nproc)" --target test_cuda_ops >"$LOG/build.log" 2>&1 \
    || { tail -40 "$LOG/build.log"; exit 1; }
rc=0
echo "== test_cuda_ops (the op-parity table)"
timeout 180 ./build-gpu/test_cuda_ops --jobs 1 --verbose 2>&1 | tee "$LOG/tests.log" | grep -v "^\[RUN" || rc=1
SAN=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
if [ -x "$SAN" ]; then
    echo "== memcheck"
    LORAC_CUDA_SYNC=1 timeout 240 "$SAN" --tool memcheck --target-processes all --error-exitcode 9 \
        ./build-gpu/test_cuda_ops --jobs 1 >"$LOG/memcheck.log" 2>&1 || rc=1
    grep -E "ERROR SUMMARY|Synthesis|FAIL|Invalid" "$LOG/memcheck.log" | head -20
    echo "== racecheck (attention, lm_head_ce)"
    LC_PARITY_OPS=attention,lm_head_ce timeout 150 "$SAN" --tool racecheck --target-processes all \
        --error-exitcode 9 ./build-gpu/test_cuda_ops --jobs 1 --filter 'cuda/op_parity' \
        >"$LOG/racecheck.log" 2>&1 || rc=1
    grep -E "ERROR SUMMARY|RACECHECK SUMMARY|Synthesis|FAIL|hazard" "$LOG/racecheck.log" | head -20
else
    echo "compute-sanitizer not found: skipped memcheck / racecheck"
fi
exit $rc
