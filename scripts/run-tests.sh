#!/bin/sh
# Runs every test of a build directory and prints "N passed, N failed":
#  - unit and integration binaries  $BUILD/tests/*   (each prints "# p passed, f failed")
#  - fuzz corpus replays            $BUILD/fuzz/replay_<name> fuzz/corpus/<name>
#  - shell end-to-end tests         tests/*.sh       (one result each; get RANKD and BUILD)
#  - benchmark smoke runs           $BUILD/bench/* and bench/*.sh with --smoke (one result each)
# Usage: scripts/run-tests.sh BUILD_DIR
set -u
BUILD=${1:-build}
export BUILD RANKD="$BUILD/rankd"
passed=0
failed=0
failures=""
log=$(mktemp)
trap 'rm -f "$log"' EXIT

count() { # name rc log
    p=$(grep -E '^# [0-9]+ passed, [0-9]+ failed' "$3" | tail -n 1 | awk '{print $2}')
    f=$(grep -E '^# [0-9]+ passed, [0-9]+ failed' "$3" | tail -n 1 | awk '{print $4}')
    if [ -z "$p" ]; then
        # No summary: one result for the whole program.
        if [ "$2" -eq 0 ]; then p=1; f=0; else p=0; f=1; fi
    elif [ "$2" -ne 0 ] && [ "$f" -eq 0 ]; then
        f=1   # crashed or leaked after its last case
    fi
    passed=$((passed + p))
    failed=$((failed + f))
    if [ "$f" -ne 0 ]; then
        failures="$failures $1"
        echo "---- $1 failed (exit $2):"
        tail -n 40 "$3"
    fi
}

run() { # name cmd...
    name=$1; shift
    start=$(date +%s)
    "$@" >"$log" 2>&1
    rc=$?
    count "$name" "$rc" "$log"
    echo "[$(( $(date +%s) - start ))s] $name: exit $rc"
}

for t in "$BUILD"/tests/*; do
    [ -x "$t" ] || continue
    run "$(basename "$t")" "$t"
done

for r in "$BUILD"/fuzz/replay_*; do
    [ -x "$r" ] || continue
    name=${r##*/replay_}
    run "fuzz-replay:$name" "$r" "fuzz/corpus/$name"
done

for s in tests/*.sh; do
    [ -f "$s" ] || continue
    run "$(basename "$s")" sh "$s"
done

for b in "$BUILD"/bench/*; do
    [ -x "$b" ] || continue
    run "bench-smoke:$(basename "$b")" "$b" --smoke
done
for b in bench/*.sh; do
    [ -f "$b" ] || continue
    run "bench-smoke:$(basename "$b")" sh "$b" --smoke
done

[ -n "$failures" ] && echo "failed:$failures"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
