#!/bin/bash
# expect_fail.sh MESSAGE CMD [ARGS...] — the ctests of the simulator's injected
# bugs (CMakeLists.txt, label cuda): CMD must FAIL (exit nonzero, an abort
# included) and print MESSAGE (a fixed string) on stdout or stderr; then this
# passes and shows the lines that say so. A run that passes, or that fails
# for another reason, fails here with the end of its output.
set -uo pipefail
[ $# -ge 2 ] || { echo "usage: expect_fail.sh MESSAGE CMD [ARGS...]" >&2; exit 2; }
want=$1
shift
out=$("$@" 2>&1)
rc=$?
if [ $rc = 0 ] || ! grep -qF -- "$want" <<<"$out"; then
    echo "expect_fail.sh: $* (LC_INJECT_BUG=${LC_INJECT_BUG:-}) must fail with \"$want\"; it exited $rc:" >&2
    tail -20 <<<"$out" >&2
    exit 1
fi
echo "failed as it must (exit $rc): $*"
grep -F -- "$want" <<<"$out" | head -3
grep -E "op parity" <<<"$out" | head -3
exit 0
