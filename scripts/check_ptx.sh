#!/usr/bin/env bash
# check_ptx.sh — checks the PTX nvcc generates for the CUDA backend against a table of
# rules (issue #11): the elementwise kernels move 16 bytes per global load and store
# (their lc_map fast path, autograd/cuda/cuda_common.cuh) and keep their arrays in
# registers; the NF4 dequantization has no 64-bit integer division. The compiler
# decides these, not the source, so only the PTX shows them; no GPU is needed.
#
# usage: scripts/check_ptx.sh [--nvcc NVCC] [--arch sm_90] [--flags "FLAGS"] [--pending]
#                             [FILE.cu ...]
#   --nvcc    the build's nvcc (default: nvcc on PATH, else /usr/local/cuda/bin/nvcc)
#   --flags   nvcc flags before -ptx (default: the lorac_cuda target's: C++17, -O3, the
#             repository as include path, LORAC_HAVE_CUDA=1); ctest passes the build's
#   --pending also checks the PENDING rules (kernels another change will add)
#   FILE.cu   check these files instead of the table's: a rule applies to a given file
#             whose name (basename) is the rule's file, e.g. an older cuda_pointwise.cu
#             from git checks the pointwise rules against it
# Prints one line per rule, "file kernel rule PASS|FAIL (detail)", and exits 1 when a
# rule fails (a rule whose kernel is not in the PTX fails: "kernel K not found"), 2 on
# bad usage or a failed compilation.
#
# Each .entry of the PTX is one kernel instantiation (device functions are inlined,
# __forceinline__); a kernel is matched by its C++ name through its mangled name
# (_Z<length><name>), and a rule must hold for every instantiation (f32, bf16, ...).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)

# FILE KERNEL RULE... Rules: vec128 = a 128-bit global load (ld.global[.nc].v4 of 32-bit
# words, or .v2 of 64-bit) and a 128-bit global store; no_local = no local memory (the
# chunk arrays stay in registers); no_div64 = none of div/rem .u64/.s64.
RULES='
cuda_pointwise.cu rmsnorm_fwd_k vec128 no_local
cuda_pointwise.cu rmsnorm_bwd_k vec128 no_local
cuda_pointwise.cu gated_fwd_k vec128 no_local
cuda_pointwise.cu gated_bwd_k vec128 no_local
cuda_pointwise.cu axpy_k vec128 no_local
cuda_pointwise.cu add_k vec128 no_local
cuda_pointwise.cu add_bias_k vec128 no_local
cuda_pointwise.cu scale_k vec128 no_local
cuda_pointwise.cu div_k vec128 no_local
cuda_pointwise.cu softcap_k vec128 no_local
cuda_pointwise.cu dropout_k vec128 no_local
cuda_dora.cu dora_combine_k vec128 no_local
cuda_dora.cu col_scale_k vec128 no_local
cuda_runtime.cu convert_k vec128 no_local
cuda_gemm.cu nf4_dequant_k no_div64 vec128 no_local
'
# Rules of kernels not written yet (none now); --pending checks them too, and a line
# moves into RULES when its kernel lands.
PENDING='
'

NVCC=""
ARCH=sm_90
FLAGS="-std=c++17 -O3 -DNDEBUG -I$ROOT -DLORAC_HAVE_CUDA=1"
FILES=()
while [ $# -gt 0 ]; do
    case "$1" in
    --nvcc) NVCC=$2; shift 2 ;;
    --arch) ARCH=$2; shift 2 ;;
    --flags) FLAGS=$2; shift 2 ;;
    --pending) RULES="$RULES$PENDING"; shift ;;
    -h|--help) sed -n '2,24p' "$0"; exit 0 ;;
    -*) echo "check_ptx.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    *) FILES+=("$1"); shift ;;
    esac
done
if [ -z "$NVCC" ]; then
    NVCC=$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)
fi
if [ ! -x "$NVCC" ]; then
    echo "check_ptx.sh: nvcc not found ($NVCC): give --nvcc PATH" >&2
    exit 2
fi

# the source file for each rule file: the command line's, else the repository's
declare -A SRC=()
if [ ${#FILES[@]} -eq 0 ]; then
    for f in $(echo "$RULES" | awk 'NF { print $1 }' | sort -u); do
        SRC[$f]="$ROOT/autograd/cuda/$f"
    done
else
    for p in "${FILES[@]}"; do
        [ -f "$p" ] || { echo "check_ptx.sh: no file $p" >&2; exit 2; }
        SRC[$(basename "$p")]=$p
    done
fi

TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
# per file: one line per .entry, "mangled ld128 st128 div64 local" (instruction counts)
for f in "${!SRC[@]}"; do
    # shellcheck disable=SC2086 # FLAGS is a list of words
    if ! "$NVCC" $FLAGS -arch="$ARCH" -ptx "${SRC[$f]}" -o "$TMP/$f.ptx" 2>"$TMP/$f.err"; then
        echo "check_ptx.sh: $NVCC failed on ${SRC[$f]}:" >&2
        cat "$TMP/$f.err" >&2
        exit 2
    fi
    awk '
        function flush() { if (name != "") print name, ld, st, dv, lc }
        /^[ \t]*(\.visible[ \t]+|\.weak[ \t]+)?\.(entry|func)[ \t]/ {
            flush(); name = ""
            if ($0 ~ /\.entry/) {
                n = $0; sub(/.*\.entry[ \t]+/, "", n); sub(/\(.*/, "", n); name = n
            }
            ld = st = dv = lc = 0; next
        }
        name == "" { next }
        /ld\.global(\.[A-Za-z0-9_:]+)*\.v4\.[bsuf]32|ld\.global(\.[A-Za-z0-9_:]+)*\.v2\.[bsuf]64/ { ld++ }
        /st\.global(\.[A-Za-z0-9_:]+)*\.v4\.[bsuf]32|st\.global(\.[A-Za-z0-9_:]+)*\.v2\.[bsuf]64/ { st++ }
        /(div|rem)\.[us]64/ { dv++ }
        /(ld|st)\.local|\.local[ \t]/ { lc++ }
        END { flush() }
    ' "$TMP/$f.ptx" >"$TMP/$f.entries"
done

# check_rule FILE KERNEL RULE: prints the rule's line; returns 1 when it fails
check_rule() {
    local file=$1 kernel=$2 rule=$3 pat="^_Z${#2}$2" n=0 bad="" ok why
    local mangled ld st dv lc
    while read -r mangled ld st dv lc; do
        [[ $mangled =~ $pat ]] || continue
        n=$((n + 1))
        case $rule in
        vec128) ok=$((ld > 0 && st > 0)); why="128-bit loads $ld, stores $st" ;;
        no_local) ok=$((lc == 0)); why="local-memory lines $lc" ;;
        no_div64) ok=$((dv == 0)); why="64-bit div/rem $dv" ;;
        *) echo "check_ptx.sh: unknown rule $rule" >&2; exit 2 ;;
        esac
        if [ "$ok" != 1 ]; then
            bad="$bad $(echo "$mangled" | c++filt | sed -e "s/^void //" -e "s/(.*//"): $why;"
        fi
    done <"$TMP/$file.entries"
    if [ $n -eq 0 ]; then
        printf '%-18s %-16s %-9s FAIL (kernel %s not found in %s)\n' "$file" "$kernel" "$rule" \
            "$kernel" "${SRC[$file]}"
        return 1
    elif [ -n "$bad" ]; then
        printf '%-18s %-16s %-9s FAIL (%s)\n' "$file" "$kernel" "$rule" "${bad# }"
        return 1
    fi
    printf '%-18s %-16s %-9s PASS (%d instantiations)\n' "$file" "$kernel" "$rule" "$n"
}

fails=0
while read -r file kernel rules; do
    [ -n "$file" ] || continue
    [ -n "${SRC[$file]:-}" ] || continue # a file not given on the command line
    for rule in $rules; do
        check_rule "$file" "$kernel" "$rule" || fails=$((fails + 1))
    done
done <<<"$RULES"
if [ $fails -gt 0 ]; then
    echo "check_ptx.sh: $fails rule(s) failed ($ARCH)"
    exit 1
fi
echo "check_ptx.sh: all rules pass ($ARCH)"
