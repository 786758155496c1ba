#!/bin/sh
# `rankd playground` end to end at a small scale: it creates the data
# directory from the video template, starts a server on a free loopback
# port, simulates a catalog and history, trains retrieval and a ranker,
# runs simulated traffic with a live status line, and stops by itself
# (--duration) with the server shut down cleanly; a second run reuses the
# directory. Prints one line per case and "# N passed, N failed".
set -u
RANKD=${RANKD:-build/rankd}
case "$RANKD" in /*) ;; *) RANKD="$(pwd)/$RANKD" ;; esac
T=$(mktemp -d "${TMPDIR:-/tmp}/rk-playground-XXXXXX")
trap 'rm -rf "$T"' EXIT
pass=0
fail=0
ok() { echo "ok   $1"; pass=$((pass + 1)); }
bad() { echo "FAIL $1"; shift; for l in "$@"; do echo "  $l"; done; fail=$((fail + 1)); }

D="$T/pg"
timeout 300 "$RANKD" playground --data "$D" --port 0 --users 150 --items 400 \
    --ranker-trees 20 --duration 6 >"$T/out" 2>&1
rc=$?
tr '\r' '\n' <"$T/out" >"$T/lines"
if [ $rc -eq 0 ] && [ -s "$D/rankd.yaml" ] && [ -d "$D/models/feed" ] &&
   [ -d "$D/models/ials" ] && grep -q "req/s .*p99 .*CTR .*model feed@1" "$T/lines" &&
   grep -q "^playground: stopping" "$T/lines"; then
    ok playground_runs_the_loop
else
    bad playground_runs_the_loop "exit $rc" "$(tail -n 15 "$T/lines")" \
        "$(tail -n 15 "$D/playground.log" 2>/dev/null)"
fi
# Traffic reached the server: the served rankings are in the feature log.
if "$RANKD" drift --data "$D" --config "$D/rankd.yaml" --model feed --json \
        2>/dev/null | jq -e '.rows > 0' >/dev/null 2>&1; then
    ok playground_traffic_logged
else
    bad playground_traffic_logged
fi
# A second run reuses the directory (no new setup, same model).
timeout 120 "$RANKD" playground --data "$D" --port 0 --users 150 --items 400 \
    --duration 2 >"$T/out2" 2>&1
rc=$?
if [ $rc -eq 0 ] && ! grep -q "simulating a catalog" "$T/out2"; then
    ok playground_reuses_its_directory
else
    bad playground_reuses_its_directory "exit $rc" "$(tail -n 5 "$T/out2")"
fi
echo "# $pass passed, $fail failed"
[ $fail -eq 0 ]
