#!/bin/sh
# The whole test suite, as CI runs it:
#   1. the normal build and every test (unit, integration, crash, fault,
#      fuzz-corpus replay, bench smoke runs);
#   2. the same suite built with AddressSanitizer + UndefinedBehaviorSanitizer;
#   3. a short libFuzzer run of every fuzz target (FUZZ_SECONDS each, default 10).
# Ends with one line "N passed, N failed" summing all three.
set -u
cd "$(dirname "$0")/.."
JOBS=${JOBS:-$(nproc 2>/dev/null || echo 2)}
FUZZ_SECONDS=${FUZZ_SECONDS:-10}
total_p=0
total_f=0

tally() { # file with run-tests output
    line=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$1" | tail -n 1)
    if [ -z "$line" ]; then
        total_f=$((total_f + 1))
        return
    fi
    total_p=$((total_p + $(echo "$line" | awk '{print $1}')))
    total_f=$((total_f + $(echo "$line" | awk '{print $3}')))
}

out=$(mktemp)
trap 'rm -f "$out"' EXIT

echo "== build and test (build/)"
if make -j"$JOBS" all >/dev/null && make -j"$JOBS" test | tee "$out"; then :; fi
tally "$out"

echo "== build and test under ASan+UBSan (build-san/)"
: >"$out"
if make -j"$JOBS" SANITIZE=1 all >/dev/null; then
    ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
    UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
        make -j"$JOBS" SANITIZE=1 test | tee "$out"
fi
tally "$out"

echo "== libFuzzer, ${FUZZ_SECONDS}s per target (build-fuzz/)"
if make -j"$JOBS" fuzz >/dev/null 2>&1; then
    for f in build-fuzz/fuzz_*; do
        name=${f##*/fuzz_}
        work=$(mktemp -d)
        if "$f" -max_total_time="$FUZZ_SECONDS" -rss_limit_mb=2048 \
               -print_final_stats=0 "$work" "fuzz/corpus/$name" \
               >"$out" 2>&1; then
            total_p=$((total_p + 1))
            echo "ok   fuzz $name"
        else
            total_f=$((total_f + 1))
            echo "FAIL fuzz $name (crash input kept in $work)"
            tail -n 30 "$out"
            continue
        fi
        rm -rf "$work"
    done
else
    echo "FAIL: libFuzzer build (make fuzz)"
    total_f=$((total_f + 1))
fi

echo "$total_p passed, $total_f failed"
[ "$total_f" -eq 0 ]
