#!/bin/sh
# End-to-end test of the API description: a real `rankd serve` on a fresh
# data directory and a free loopback port serves /v1/openapi.json byte for
# byte as docs/openapi.json (src/serve/openapi_doc.c is generated from it by
# scripts/gen-openapi.sh), the document parses, and it describes exactly
# the routes of src/serve/router.c's table, each with the role the router
# enforces (x-rankd-role). Then the server stops cleanly on SIGTERM.
# Prints one line per case and "# N passed, N failed".
set -u
RANKD=${RANKD:-build/rankd}
BUILD=${BUILD:-build}
case "$RANKD" in /*) ;; *) RANKD="$(pwd)/$RANKD" ;; esac
DOC="$(pwd)/docs/openapi.json"
ROUTER="$(pwd)/src/serve/router.c"
T=$(mktemp -d "${TMPDIR:-/tmp}/rk-openapi-XXXXXX")
SPID=""
cleanup() {
    [ -n "$SPID" ] && kill "$SPID" 2>/dev/null && wait "$SPID" 2>/dev/null
    rm -rf "$T"
}
trap cleanup EXIT
pass=0
fail=0
ok() { echo "ok   $1"; pass=$((pass + 1)); }
bad() { echo "FAIL $1"; shift; for l in "$@"; do echo "  $l"; done; fail=$((fail + 1)); }

# --- the document parses ---------------------------------------------------------
if jq -e '.openapi == "3.0.3" and (.paths | length) > 0' "$DOC" >/dev/null 2>&1; then
    ok doc_parses
else
    bad doc_parses "$(jq . "$DOC" 2>&1 | tail -n 3)"
fi

# --- routes: router.c's table and the document name the same operations ----------
# Table rows look like {"GET", "/v1/items/*", SV_EP_ITEM_GET, RK_ROLE_READ, 0, ...}.
sed -n 's/^ *{"\([A-Z]*\)", "\([^"]*\)", SV_EP_[A-Z_]*, \([A-Z_0-9]*\),.*/\1 \2 \3/p' \
    "$ROUTER" | sed -e 's/RK_ROLE_READ$/read/' -e 's/RK_ROLE_WRITE$/write/' \
    -e 's/RK_ROLE_ADMIN$/admin/' -e 's/ 0$/ none/' | sort >"$T/router.txt"
jq -r '.paths | to_entries[] | .key as $p | .value | to_entries[] |
       select(.key != "parameters") |
       "\(.key | ascii_upcase) \($p) \(.value["x-rankd-role"])"' "$DOC" |
    sed 's/{[^}/]*}/*/g' | sort >"$T/doc.txt"
nroutes=$(wc -l <"$T/router.txt")
if [ "$nroutes" -ge 18 ] && cmp -s "$T/router.txt" "$T/doc.txt"; then
    ok routes_and_roles_match_router
else
    bad routes_and_roles_match_router "$nroutes routes in router.c; diff router doc:" \
        "$(diff "$T/router.txt" "$T/doc.txt")"
fi

# --- a real server on a bare data directory -----------------------------------------
mkdir -p "$T/data"
# Run from the temporary directory so no ./rankd.yaml is picked up.
(cd "$T" && exec "$RANKD" serve --data "$T/data" --port 0 --port-file "$T/port" \
    >"$T/serve.log" 2>&1) &
SPID=$!
i=0
while [ ! -s "$T/port" ] && [ $i -lt 200 ] && kill -0 "$SPID" 2>/dev/null; do
    sleep 0.1
    i=$((i + 1))
done
PORT=$(cat "$T/port" 2>/dev/null)
if [ -n "$PORT" ]; then
    ok server_started
else
    bad server_started "$(cat "$T/serve.log")"
fi

code=$(curl -s -o "$T/served.json" -D "$T/headers" -w '%{http_code}' \
    "http://127.0.0.1:$PORT/v1/openapi.json" 2>"$T/curl.err")
if [ "$code" = 200 ] && cmp -s "$T/served.json" "$DOC"; then
    ok served_document_is_docs_openapi_json
else
    bad served_document_is_docs_openapi_json "status $code" "$(cat "$T/curl.err")" \
        "$(cmp "$T/served.json" "$DOC" 2>&1)" \
        "(run scripts/gen-openapi.sh after editing docs/openapi.json)"
fi
if jq -e '.openapi == "3.0.3"' "$T/served.json" >/dev/null 2>&1 &&
   grep -qi '^content-type: application/json' "$T/headers" &&
   grep -Eqi '^x-request-id: [0-9a-f]{16}' "$T/headers"; then
    ok served_document_parses
else
    bad served_document_parses "$(cat "$T/headers")"
fi

# The error object is what the document says: {error, detail, request_id}.
code=$(curl -s -o "$T/err.json" -w '%{http_code}' "http://127.0.0.1:$PORT/v1/nosuch")
if [ "$code" = 404 ] &&
   jq -e '(keys == ["detail", "error", "request_id"]) and .error == "NOT_FOUND"' \
       "$T/err.json" >/dev/null 2>&1 &&
   jq -e --slurpfile e "$T/err.json" \
       '.components.schemas.Error.properties.error.enum | index($e[0].error) != null' \
       "$DOC" >/dev/null 2>&1; then
    ok error_object_as_documented
else
    bad error_object_as_documented "status $code" "$(cat "$T/err.json")"
fi

# --- stop: SIGTERM finishes cleanly -------------------------------------------------
if [ -n "$SPID" ]; then
    kill -TERM "$SPID" 2>/dev/null
    wait "$SPID"
    rc=$?
    SPID=""
    if [ $rc -eq 0 ]; then
        ok server_stops_on_sigterm
    else
        bad server_stops_on_sigterm "exit $rc" "$(cat "$T/serve.log")"
    fi
fi

echo "# $pass passed, $fail failed"
[ $fail -eq 0 ]
