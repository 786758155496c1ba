#!/bin/sh
# End-to-end tests of the rankd binary: demo, import (bad rows, strict mode,
# re-import), export round trip, config errors, and SIGKILL in the middle of
# an import followed by a re-run that must neither lose nor duplicate events.
# Prints one line per case and "# N passed, N failed".
set -u
RANKD=${RANKD:-build/rankd}
case "$RANKD" in /*) ;; *) RANKD="$(pwd)/$RANKD" ;; esac
T=$(mktemp -d "${TMPDIR:-/tmp}/rk-cli-XXXXXX")
trap 'rm -rf "$T"' EXIT
pass=0
fail=0
ok() { echo "ok   $1"; pass=$((pass + 1)); }
bad() { echo "FAIL $1"; shift; for l in "$@"; do echo "  $l"; done; fail=$((fail + 1)); }
events_in() { "$RANKD" stats --data "$1" | awk '/^  events/ {print $2}'; }

# --- demo ------------------------------------------------------------------
if "$RANKD" demo --data "$T/demo" --users 50 --items 200 --sessions 300 >"$T/demo.out" 2>&1 &&
   grep -q "store summary" "$T/demo.out" && grep -q "CTR" "$T/demo.out"; then
    ok demo
else
    bad demo "$(tail -n 20 "$T/demo.out")"
fi
if "$RANKD" demo --data "$T/demo" >"$T/demo2.out" 2>&1; then
    bad demo_refuses_existing_store
else
    grep -q "already holds a store" "$T/demo2.out" && ok demo_refuses_existing_store ||
        bad demo_refuses_existing_store "$(cat "$T/demo2.out")"
fi

# --- bad rows are reported as file:line: reason and skipped ------------------
cat >"$T/ev.csv" <<'CSV'
id,type,user,item,ts,value
e1,click,u1,i1,1700000000,
e2,click,u1,i2,1700000001,
e3,watch,u2,i1,not-a-time,5
e4,teleport,u2,i1,1700000002,
e5,watch,u2,i2,1700000003,12.5
e6,watch,u3,i2,1700000004,nan
CSV
"$RANKD" import --data "$T/d1" --no-progress "$T/ev.csv" >"$T/imp.out" 2>&1
rc=$?
if [ $rc -eq 0 ] && grep -q "ev.csv:4:" "$T/imp.out" && grep -q "ev.csv:5:" "$T/imp.out" &&
   grep -q "ev.csv:7:" "$T/imp.out" && grep -q "3 rejected" "$T/imp.out" &&
   [ "$(events_in "$T/d1")" = 3 ]; then
    ok import_skips_bad_rows
else
    bad import_skips_bad_rows "exit $rc" "$(cat "$T/imp.out")"
fi

# --- strict mode: first bad row aborts, nothing written ----------------------
"$RANKD" import --data "$T/d2" --strict --no-progress "$T/ev.csv" >"$T/strict.out" 2>&1
rc=$?
if [ $rc -ne 0 ] && grep -q "ev.csv:4:" "$T/strict.out" &&
   [ "$(events_in "$T/d2")" = 0 ]; then
    ok strict_writes_nothing
else
    bad strict_writes_nothing "exit $rc" "$(cat "$T/strict.out")"
fi

# --- re-import of events with ids adds nothing -------------------------------
"$RANKD" import --data "$T/d1" --no-progress "$T/ev.csv" >"$T/re.out" 2>&1
if [ "$(events_in "$T/d1")" = 3 ] && grep -q "3 duplicate" "$T/re.out"; then
    ok reimport_no_duplicates
else
    bad reimport_no_duplicates "$(cat "$T/re.out")" "events: $(events_in "$T/d1")"
fi

# --- export round trip: export, import elsewhere, export again, compare -------
for what in events users items; do
    "$RANKD" export "$what" --data "$T/demo" -o "$T/x1.$what.jsonl" || bad "export_$what"
done
"$RANKD" import --data "$T/rt" --config "$T/demo/rankd.yaml" --no-progress --kind items \
    "$T/x1.items.jsonl" >/dev/null 2>&1 &&
"$RANKD" import --data "$T/rt" --config "$T/demo/rankd.yaml" --no-progress --kind users \
    "$T/x1.users.jsonl" >/dev/null 2>&1 &&
"$RANKD" import --data "$T/rt" --config "$T/demo/rankd.yaml" --no-progress --kind events \
    "$T/x1.events.jsonl" >/dev/null 2>&1
rt_ok=1
for what in events users items; do
    "$RANKD" export "$what" --data "$T/rt" -o "$T/x2.$what.jsonl" || rt_ok=0
    cmp -s "$T/x1.$what.jsonl" "$T/x2.$what.jsonl" || rt_ok=0
done
if [ $rt_ok = 1 ] && [ -s "$T/x1.events.jsonl" ]; then
    ok export_roundtrip
else
    bad export_roundtrip "$(diff "$T/x1.items.jsonl" "$T/x2.items.jsonl" | head -5)"
fi

# --- importing an export into the same store adds nothing --------------------
before=$(events_in "$T/demo")
"$RANKD" import --data "$T/demo" --config "$T/demo/rankd.yaml" --no-progress --kind events \
    "$T/x1.events.jsonl" >"$T/self.out" 2>&1
if [ "$(events_in "$T/demo")" = "$before" ] && grep -q "$before duplicate" "$T/self.out"; then
    ok export_reimport_idempotent
else
    bad export_reimport_idempotent "$(cat "$T/self.out")"
fi

# --- config errors name file and line -----------------------------------------
printf 'store:\n  fsync: sometimes\n' >"$T/bad.yaml"
"$RANKD" stats --config "$T/bad.yaml" --data "$T/d1" >"$T/conf.out" 2>&1
if [ $? -ne 0 ] && grep -q "bad.yaml:2:" "$T/conf.out" && grep -q "store.fsync" "$T/conf.out"; then
    ok config_error_has_line
else
    bad config_error_has_line "$(cat "$T/conf.out")"
fi

# --- a missing file is a clear error -------------------------------------------
"$RANKD" import --data "$T/d3" --no-progress "$T/nope.csv" >"$T/miss.out" 2>&1
if [ $? -ne 0 ] && grep -q "nope.csv" "$T/miss.out"; then
    ok missing_file
else
    bad missing_file "$(cat "$T/miss.out")"
fi

# --- SIGKILL mid-import, then re-run: exactly every event once ------------------
n=300000
awk -v n=$n 'BEGIN { print "id,type,user,item,ts"
    for (i = 0; i < n; i++) printf "k%d,click,u%d,i%d,%d\n", i, i % 5000, (i * 7) % 20000, 1700000000 + i }' \
    >"$T/big.csv"
"$RANKD" import --data "$T/k" --batch 2000 --no-progress "$T/big.csv" >/dev/null 2>&1 &
pid=$!
sleep 0.4
kill -9 $pid 2>/dev/null
wait $pid 2>/dev/null
mid=$(events_in "$T/k")
"$RANKD" import --data "$T/k" --no-progress "$T/big.csv" >"$T/k.out" 2>&1
final=$(events_in "$T/k")
if [ -n "$mid" ] && [ "$final" = "$n" ]; then
    ok "sigkill_import_rerun (killed at $mid of $n events)"
else
    bad sigkill_import_rerun "mid=$mid final=$final" "$(cat "$T/k.out")"
fi

echo "# $pass passed, $fail failed"
[ $fail -eq 0 ]
