#!/usr/bin/env bash
# test.sh — the README's second command: installs what is needed, builds, and
# runs every test (ctest over the Criterion suites).
#   scripts/test.sh             release build in build/
#   scripts/test.sh --sanitize  ASan + UBSan build in build-asan/
# LORAC_TESTS=ON is passed explicitly: build/ may come from quickstart.sh,
# which configures it without tests (and CMake would keep that cached).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install_deps.sh --test
if [ "${1:-}" = "--sanitize" ]; then
  scripts/build.sh build-asan -DCMAKE_BUILD_TYPE=Debug -DLORAC_SANITIZE=ON -DLORAC_TESTS=ON
  cd build-asan
  export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
else
  scripts/build.sh build -DLORAC_TESTS=ON
  cd build
fi
ctest --output-on-failure -j1 --no-tests=error
