# harness.sh — sourced by the end-to-end shell tests that run a real
# `rankd serve`: the binary as an absolute path ($RANKD), a private
# temporary directory ($T, removed at exit, where the name given to
# rk_harness says which test made it), stop_server for the server whose
# pid is in $PID (also run at exit), and the ok/bad/finish reporting that
# scripts/run-tests.sh sums ("# N passed, N failed").
# Usage:  . "$(dirname "$0")/lib/harness.sh"; rk_harness servehttp
RANKD=${RANKD:-build/rankd}
case "$RANKD" in /*) ;; *) RANKD="$(pwd)/$RANKD" ;; esac
PID=""
pass=0
fail=0
stop_server() {
    if [ -n "$PID" ]; then
        kill -TERM "$PID" 2>/dev/null
        wait "$PID" 2>/dev/null
        PID=""
    fi
}
ok() { echo "ok   $1"; pass=$((pass + 1)); }
bad() { echo "FAIL $1"; shift; for l in "$@"; do echo "  $l"; done; fail=$((fail + 1)); }
finish() { echo "# $pass passed, $fail failed"; [ "$fail" -eq 0 ]; exit $?; }
rk_harness() {
    T=$(mktemp -d "${TMPDIR:-/tmp}/rk-$1-XXXXXX")
    trap 'stop_server; rm -rf "$T"' EXIT
}
