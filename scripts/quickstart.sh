#!/usr/bin/env bash
# quickstart.sh — the README's first command: installs what is needed, builds
# lorac, and fine-tunes the small model shipped in configs/quickstart/ on the
# CPU (about a minute). The adapter lands in out/quickstart/.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install_deps.sh
scripts/build.sh build -DLORAC_TESTS=OFF
# Threads that wait at a barrier spin only briefly: on a machine that is busy
# with other work, long spinning costs more than it saves.
export GOMP_SPINCOUNT=${GOMP_SPINCOUNT:-10000}
exec build/lorac train configs/quickstart.yaml "$@"
