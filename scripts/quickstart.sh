#!/usr/bin/env bash
# quickstart.sh — the README's first command: installs what is needed, builds
# lorac, and fine-tunes the small chat model shipped in configs/quickstart_chat/
# on its chat JSONL with its own tokenizer and chat template, on the CPU (about
# a minute). The adapter lands in out/quickstart_chat/.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install_deps.sh
scripts/build.sh build -DLORAC_TESTS=OFF
# Threads that wait at a barrier spin only briefly: on a machine that is busy
# with other work, long spinning costs more than it saves.
export GOMP_SPINCOUNT=${GOMP_SPINCOUNT:-10000}
# The demo starts over each time it is run (a run refuses a directory that
# holds another run's outputs unless told to overwrite them).
exec build/lorac train configs/quickstart_chat.yaml --set overwrite_output_dir=true "$@"
