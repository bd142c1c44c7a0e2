#!/usr/bin/env bash
# fuzz.sh — builds the libFuzzer targets (tests/fuzz/fuzz_*.c, with ASan +
# UBSan) in build-fuzz/ and runs each one in turn for a while.
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET]     (default 60)
#   FUZZ_TARGETS="fuzz_safetensors fuzz_adapter" scripts/fuzz.sh 300
#   scripts/fuzz.sh --replay    builds the targets and runs each once over its
#                               seeds and regressions, no mutation: the same
#                               inputs every time (CI: lorac builds with clang,
#                               and every target still accepts its own seeds)
#
# Each target starts from its seed corpus tests/fuzz/corpus/<target>/ and the
# inputs of bugs it found before, tests/fuzz/regressions/<target>/ (which
# tests/test_hostile.c replays through the normal API), copied
# into build-fuzz/corpus-<target>/ (which keeps growing from run to run; the
# repo's seeds are never written), with tests/fuzz/<target>.dict when there is
# one. Targets run one at a time, one process each (-jobs=1 -workers=1: the
# machine has two cores, shared). Findings (crash-*, leak-*, timeout-*, oom-*)
# land in build-fuzz/artifacts-<target>/; reproduce one with
#   build-fuzz/<target> build-fuzz/artifacts-<target>/crash-...
# Prints per target: executions, exec/s, new corpus units, findings; exits 1
# when any target found anything.
set -euo pipefail
cd "$(dirname "$0")/.."
REPLAY=0
if [ "${1:-}" = "--replay" ]; then REPLAY=1; set -- 0; fi
SECS="${1:-60}"
case "$SECS" in '' | *[!0-9]*) echo "usage: $0 [SECONDS_PER_TARGET | --replay]" >&2; exit 2 ;; esac

# ---- tools: the usual build deps, plus clang, its libFuzzer runtime and
# LLVM's OpenMP (find_package(OpenMP) with clang needs libomp).
scripts/install_deps.sh
need=()
for p in clang libclang-rt-14-dev libomp-14-dev; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  echo "installing: ${need[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# ---- build
# (no CUDA: the fuzzers exercise the file readers, which are plain C)
CC=clang cmake --no-warn-unused-cli -S . -B build-fuzz -DLORAC_FUZZ=ON -DLORAC_TESTS=OFF -DLORAC_CUDA=OFF \
  -DCMAKE_BUILD_TYPE=Debug >/dev/null
cmake --build build-fuzz -j2 >/dev/null

max_len() {
  case "$1" in
    fuzz_safetensors | fuzz_adapter | fuzz_gguf) echo 16384 ;;
    fuzz_spm_model) echo 20000 ;; # the spm-bpe fixture seed is 17 KB
    fuzz_gguf_vocab) echo 16384 ;; # vocab-only GGUF seeds of 2-7 KB
    fuzz_jsonl_row) echo 2048 ;;
    fuzz_row_encoder) echo 4096 ;; # one row; its tokenizer and templates load at start-up
    *) echo 4096 ;;
  esac
}

# UBSan is compiled recoverable (CMakeLists.txt): halt so a report is a crash.
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1"
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1:${ASAN_OPTIONS:-}"

targets="${FUZZ_TARGETS:-$(cd tests/fuzz && ls fuzz_*.c | sed 's/\.c$//')}"

if [ "$REPLAY" = 1 ]; then
  failed=0
  for t in $targets; do
    dirs=()
    for d in "tests/fuzz/corpus/$t" "tests/fuzz/regressions/$t"; do [ -d "$d" ] && dirs+=("$d"); done
    log="build-fuzz/replay-$t.log"
    if "build-fuzz/$t" -runs=0 -max_len="$(max_len "$t")" -timeout=10 -rss_limit_mb=2048 \
        -artifact_prefix="build-fuzz/replay-$t-" "${dirs[@]}" >"$log" 2>&1; then
      printf '  %-20s %5s inputs: ok\n' "$t" "$(find "${dirs[@]}" -type f | wc -l)"
    else
      printf '  %-20s FAILED (%s):\n' "$t" "$log"
      grep -m5 -E 'ERROR|runtime error|invariant failed|bad error message' "$log" | sed 's/^/    /' || true
      failed=$((failed + 1))
    fi
  done
  [ "$failed" -eq 0 ] || { echo "fuzz replay: $failed target(s) failed" >&2; exit 1; }
  echo "fuzz replay: every target ran its seeds and regressions cleanly"
  exit 0
fi
summary=()
total_findings=0
for t in $targets; do
  bin="build-fuzz/$t"
  [ -x "$bin" ] || { echo "$t: not built" >&2; exit 1; }
  corpus="build-fuzz/corpus-$t"
  arts="build-fuzz/artifacts-$t"
  work="build-fuzz/run-$t"
  mkdir -p "$corpus" "$arts" "$work"
  for seeds in "tests/fuzz/corpus/$t" "tests/fuzz/regressions/$t"; do
    if [ -d "$seeds" ]; then cp -n "$seeds"/* "$corpus"/ 2>/dev/null || true; fi
  done
  dict=()
  [ -f "tests/fuzz/$t.dict" ] && dict=(-dict="$PWD/tests/fuzz/$t.dict")
  echo "== $t: ${SECS}s, max_len $(max_len "$t")"
  rm -f "$work"/fuzz-*.log
  touch "$work/.start"
  sleep 1 # artifacts newer than .start are this run's
  # -jobs=1 runs the fuzzer in a child whose output goes to $work/fuzz-0.log.
  (cd "$work" && "../$t" -jobs=1 -workers=1 -max_total_time="$SECS" \
      -max_len="$(max_len "$t")" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
      -artifact_prefix="$PWD/../artifacts-$t/" "${dict[@]}" "$PWD/../corpus-$t" \
      >"$PWD/parent.log" 2>&1) || true
  log="$work/fuzz-0.log"
  [ -f "$log" ] || log="$work/parent.log"
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1 || true)
  rate=$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1 || true)
  if [ -z "$execs" ]; then # killed before the final stats: use the last status line
    last=$(grep -E '^#[0-9]+' "$log" | tail -1 || true)
    execs=$(echo "$last" | sed -n 's/^#\([0-9]*\).*/\1/p')
    rate=$(echo "$last" | sed -n 's/.*exec\/s: \([0-9]*\).*/\1/p')
  fi
  newu=$(grep -o 'stat::new_units_added: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1 || true)
  found=$(find "$arts" -maxdepth 1 -type f -newer "$work/.start" | wc -l)
  crashes=$(find "$arts" -maxdepth 1 -type f -name 'crash-*' | wc -l)
  total_findings=$((total_findings + found))
  if [ "$found" -gt 0 ]; then
    echo "   FOUND $found new artifact(s) in $arts:"
    find "$arts" -maxdepth 1 -type f -newer "$work/.start" | head -5 | sed 's/^/     /'
    grep -m3 -E 'ERROR|runtime error|invariant failed|ABORTING' "$log" | sed 's/^/     /' || true
  fi
  line=$(printf '%-20s executions %10s  exec/s %6s  new units %5s  corpus %5s files  new findings %d  (crash-* total %d)' \
    "$t" "${execs:-?}" "${rate:-?}" "${newu:-?}" "$(ls "$corpus" | wc -l)" "$found" "$crashes")
  echo "   $line"
  summary+=("$line")
done

echo
echo "fuzz summary (${SECS}s per target):"
printf '  %s\n' "${summary[@]}"
if [ "$total_findings" -gt 0 ]; then
  echo "FAILED: $total_findings finding(s); see build-fuzz/artifacts-*/" >&2
  exit 1
fi
echo "no crashes, leaks, timeouts or OOMs"
