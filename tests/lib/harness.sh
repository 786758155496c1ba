# harness.sh — sourced by the end-to-end shell tests that run a real
# `rankd serve`: the binary as an absolute path ($RANKD), a private
# temporary directory ($T, removed at exit, where the name given to
# rk_harness says which test made it), stop_server for the server whose
# pid is in $PID (also run at exit), and the ok/bad/finish reporting that
# scripts/run-tests.sh sums ("# N passed, N failed"), and rk_serve, which
# starts a server on a free port and sets PORT and URL.
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
# rk_serve DATA CONFIG [SERVE-OPTIONS...]: starts `rankd serve` on a free
# loopback port in the background (PID), its output appended to
# $T/serve.log, waits up to 60 s for the port file and sets PORT and URL.
# Returns 1, with the server stopped, when it does not come up.
rk_serve() {
    rk_data=$1 rk_conf=$2
    shift 2
    rm -f "$T/port"
    "$RANKD" serve --data "$rk_data" --config "$rk_conf" --bind 127.0.0.1 --port 0 \
        --port-file "$T/port" "$@" >>"$T/serve.log" 2>&1 &
    PID=$!
    rk_i=0
    while [ ! -s "$T/port" ] && [ $rk_i -lt 600 ]; do
        kill -0 "$PID" 2>/dev/null || break
        sleep 0.1
        rk_i=$((rk_i + 1))
    done
    if [ ! -s "$T/port" ]; then
        stop_server
        return 1
    fi
    PORT=$(cat "$T/port")
    URL="http://127.0.0.1:$PORT"
}
