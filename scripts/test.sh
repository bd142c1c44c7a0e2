#!/usr/bin/env bash
# test.sh — the README's second command: installs what is needed, builds, and
# runs every test (ctest over the Criterion suites).
#   scripts/test.sh             release build in build/, then the CUDA backend on
#                               the CPU simulator in build-sim/ (its tests: label cuda)
#   scripts/test.sh --sanitize  ASan + UBSan build in build-asan/ (no simulator: its
#                               fibers and the sanitizers do not mix)
# LORAC_TESTS=ON is passed explicitly: build/ may come from quickstart.sh,
# which configures it without tests (and CMake would keep that cached).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install_deps.sh --test
# TensorBoard's own event-file loader, the independent reference of
# tests/test_tfevents.c, from PyPI in a venv of its own (once; ~20 s)
TB_VENV=scripts/.venv-test
if [ ! -x "$TB_VENV/bin/python" ] ||
   ! "$TB_VENV/bin/python" -c 'import tensorboard' 2>/dev/null; then
  echo "== making $TB_VENV: python3 -m venv + pip install tensorboard (the tests' reference reader)"
  python3 -m venv "$TB_VENV"
  "$TB_VENV/bin/python" -m pip install --quiet tensorboard
fi
export LORAC_TB_PYTHON=$PWD/$TB_VENV/bin/python
if [ "${1:-}" = "--sanitize" ]; then
  scripts/build.sh build-asan -DCMAKE_BUILD_TYPE=Debug -DLORAC_SANITIZE=ON -DLORAC_TESTS=ON
  cd build-asan
  export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
  ctest --output-on-failure -j1 --no-tests=error
  exit 0
fi
scripts/build.sh build -DLORAC_TESTS=ON
(cd build && ctest --output-on-failure -j1 --no-tests=error)
# The real .cu kernels through the simulator (no GPU needed): only what the
# device tests need is built (target cuda_tests); the CPU tests ran above.
cmake -S . -B build-sim -DCMAKE_BUILD_TYPE=Release -DLORAC_CUDA_SIM=ON -DLORAC_TESTS=ON >/dev/null
cmake --build build-sim -j"$(nproc)" --target cuda_tests
cd build-sim
ctest --output-on-failure -j1 --no-tests=error -L cuda
