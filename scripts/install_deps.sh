#!/usr/bin/env bash
# install_deps.sh [--test] — installs lorac's build dependencies from Debian
# packages (compiler, CMake, OpenBLAS (OpenMP build), libyaml, cJSON,
# Criterion, PCRE2 and utf8proc for the tokenizer, oneDNN for bf16 GEMMs on
# the CPU); with --test also what the test suite runs lorac under (valgrind for memcheck, qemu-user to run it as
# an older CPU).
# Skips apt-get when everything is already present. Uses sudo when not root.
set -euo pipefail
PKGS=(build-essential cmake pkg-config libopenblas-openmp-dev libyaml-dev libcjson-dev libcriterion-dev
      libpcre2-dev libutf8proc-dev libdnnl-dev)
if [ "${1:-}" = "--test" ]; then
  PKGS+=(valgrind qemu-user python3 python3-venv) # python3: tests/cuda_sim/gen.py of the simulator
  # build; python3-venv: test.sh's venv for TensorBoard's reader
fi
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
echo "installing: ${missing[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
