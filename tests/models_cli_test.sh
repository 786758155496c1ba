#!/bin/sh
# End-to-end tests of `rankd models`: list (table and JSON), show (table,
# JSON, artifact verification), promote and rollback (links, messages,
# rolling back twice goes further back), and the errors for unknown
# names and versions. Ranking-model versions come from registry_test's
# cli_fixture case (published through the real registry and gate);
# retrieval-model versions from `rankd train`, as users make them.
# Prints one line per case and "# N passed, N failed".
set -u
RANKD=${RANKD:-build/rankd}
BUILD=${BUILD:-build}
case "$RANKD" in /*) ;; *) RANKD="$(pwd)/$RANKD" ;; esac
FIXTURE="$BUILD/tests/registry_test"
T=$(mktemp -d "${TMPDIR:-/tmp}/rk-modelscli-XXXXXX")
trap 'rm -rf "$T"' EXIT
pass=0
fail=0
ok() { echo "ok   $1"; pass=$((pass + 1)); }
bad() { echo "FAIL $1"; shift; for l in "$@"; do echo "  $l"; done; fail=$((fail + 1)); }
D="$T/data"
M="$D/models"
models() { "$RANKD" models "$@" --data "$D" --config "$D/rankd.yaml"; }

# --- fixtures: a demo store, two retrieval versions, three ranker versions ------
"$RANKD" demo --data "$D" --users 40 --items 120 --sessions 200 >/dev/null 2>&1 ||
    bad demo_store "rankd demo failed"
for i in 1 2; do
    "$RANKD" train --data "$D" --config "$D/rankd.yaml" --models popularity \
        >"$T/train$i.out" 2>&1 || bad "train_$i" "$(cat "$T/train$i.out")"
done
if [ -x "$FIXTURE" ] &&
   RK_MODELS_FIXTURE="$M" "$FIXTURE" cli_fixture >"$T/fx.out" 2>&1 &&
   grep -q "^ok   cli_fixture" "$T/fx.out"; then
    ok fixtures
else
    bad fixtures "$FIXTURE cli_fixture failed" "$(cat "$T/fx.out" 2>/dev/null)"
fi

# --- list: one row per version with its status ------------------------------------
models list >"$T/list.out" 2>&1
rc=$?
row() { grep -Eq "^$1 +$2 +$3 " "$T/list.out"; }
if [ $rc -eq 0 ] && grep -q "^MODEL" "$T/list.out" && row ctr 3 current &&
   row ctr 2 candidate && row ctr 1 previous && row fraud 1 current &&
   row popularity 2 current && row popularity 1 previous &&
   grep -Eq "^ctr +3 +current +gbdt +2026-03-01T01:00:00.000Z +1200000 +auc=0.81" "$T/list.out"; then
    ok list_table
else
    bad list_table "exit $rc" "$(cat "$T/list.out")"
fi

models list --json >"$T/list.json" 2>"$T/list.err"
if jq -e '(.models | map(.name)) == ["ctr", "fraud", "popularity"] and
          (.models[0].current == 3) and (.models[0].previous == 1) and
          (.models[0].versions | map(.status)) == ["current", "candidate", "previous"] and
          (.models[0].versions[1].gate.passed == false) and
          (.models[0].versions[0].metrics.auc == 0.81) and
          (.models[0].versions[0].feature_schema_hash == "0123456789abcdef") and
          (.models[0].versions[0].valid_window.from == "2026-02-22T00:00:00.000Z") and
          (.models[2].versions[0].kind == "popularity")' "$T/list.json" >/dev/null; then
    ok list_json
else
    bad list_json "$(cat "$T/list.json" "$T/list.err" | head -c 2000)"
fi

# --- show ------------------------------------------------------------------------------
models show ctr >"$T/show.out" 2>&1
rc=$?
if [ $rc -eq 0 ] && grep -q "^version   3 (current)" "$T/show.out" &&
   grep -Eq "^artifact  model.rk, [0-9]+ bytes, checksum [0-9a-f]{16}: ok" "$T/show.out" &&
   grep -Eq "^metrics +auc +0.81" "$T/show.out" &&
   grep -q "^gate      passed" "$T/show.out" &&
   grep -q "^reference 2 features and the prediction" "$T/show.out" &&
   grep -Eq "country +categorical" "$T/show.out"; then
    ok show_table
else
    bad show_table "exit $rc" "$(cat "$T/show.out")"
fi

models show ctr/2 --json >"$T/show2.json" 2>&1
if jq -e '.status == "candidate" and .version == 2 and .gate.passed == false and
          (.gate.reason | test("auc 0.79 vs 0.8")) and .artifact_check == "ok" and
          .meta.metrics.auc == 0.79 and (.meta.reference.features | length) == 2 and
          .meta.reference.prediction.kind == "numeric" and .meta.rankd_meta == 1' \
        "$T/show2.json" >/dev/null; then
    ok show_json
else
    bad show_json "$(head -c 2000 "$T/show2.json")"
fi

models show popularity >"$T/showp.out" 2>&1
rc=$?
if [ $rc -eq 0 ] && grep -q "^kind      popularity" "$T/showp.out" &&
   grep -q "popularity.bin" "$T/showp.out" && grep -q "(current)" "$T/showp.out"; then
    ok show_retrieval_model
else
    bad show_retrieval_model "exit $rc" "$(cat "$T/showp.out")"
fi

# --- promote and rollback ----------------------------------------------------------------
models promote ctr 2 >"$T/p.out" 2>&1
rc=$?
if [ $rc -eq 0 ] && grep -q "ctr: version 2 is now current (previous: 3)" "$T/p.out" &&
   [ "$(readlink "$M/ctr/current")" = 2 ] && [ "$(readlink "$M/ctr/previous")" = 3 ]; then
    ok promote
else
    bad promote "exit $rc" "$(cat "$T/p.out")" "$(ls -l "$M/ctr")"
fi

models promote ctr 2 >"$T/p2.out" 2>&1
if [ $? -eq 0 ] && grep -q "already current" "$T/p2.out"; then
    ok promote_current_is_noop
else
    bad promote_current_is_noop "$(cat "$T/p2.out")"
fi

models rollback ctr >"$T/r1.out" 2>&1
rc1=$?
models rollback ctr >"$T/r2.out" 2>&1
rc2=$?
models rollback ctr >"$T/r3.out" 2>&1
rc3=$?
models list >"$T/list2.out" 2>&1
if [ $rc1 -eq 0 ] && grep -q "rolled back from 2 to 3 (a further rollback goes to 1)" "$T/r1.out" &&
   [ $rc2 -eq 0 ] && grep -q "rolled back from 3 to 1 (no earlier version left)" "$T/r2.out" &&
   [ $rc3 -eq 1 ] && grep -q "no earlier version to roll back to" "$T/r3.out" &&
   [ "$(readlink "$M/ctr/current")" = 1 ] && [ ! -e "$M/ctr/previous" ] &&
   grep -Eq "^ctr +3 +rolled_back" "$T/list2.out" &&
   grep -Eq "^ctr +2 +rolled_back" "$T/list2.out"; then
    ok rollback_twice_goes_further_back
else
    bad rollback_twice_goes_further_back "$rc1 $rc2 $rc3" "$(cat "$T/r1.out" "$T/r2.out" "$T/r3.out" "$T/list2.out")"
fi

# Retraining a retrieval model after a rollback promotes the new version.
models rollback popularity >/dev/null 2>&1
"$RANKD" train --data "$D" --config "$D/rankd.yaml" --models popularity >/dev/null 2>&1
models list --json >"$T/list3.json" 2>/dev/null
if [ "$(readlink "$M/popularity/current")" = 3 ] &&
   [ "$(readlink "$M/popularity/previous")" = 1 ] &&
   jq -e '.models[2].versions | map(.status) == ["current", "rolled_back", "previous"]' \
       "$T/list3.json" >/dev/null; then
    ok train_after_rollback
else
    bad train_after_rollback "$(ls -l "$M/popularity")" "$(cat "$T/list3.json")"
fi

# --- errors -----------------------------------------------------------------------------------
models show nosuch >"$T/e1.out" 2>&1
rc1=$?
models show ctr/9 >"$T/e2.out" 2>&1
rc2=$?
models promote ctr 9 >"$T/e3.out" 2>&1
rc3=$?
models promote ctr two >"$T/e4.out" 2>&1
rc4=$?
models frobnicate >"$T/e5.out" 2>&1
rc5=$?
models rollback >"$T/e6.out" 2>&1
rc6=$?
if [ $rc1 -eq 1 ] && grep -q "no model named 'nosuch'" "$T/e1.out" &&
   grep -q "models: ctr, fraud, popularity" "$T/e1.out" &&
   [ $rc2 -eq 1 ] && grep -q "model 'ctr' has no version 9 (versions: 3, 2, 1)" "$T/e2.out" &&
   [ $rc3 -eq 1 ] && grep -q "no version 9" "$T/e3.out" &&
   [ $rc4 -eq 2 ] && grep -q "VERSION" "$T/e4.out" &&
   [ $rc5 -eq 2 ] && grep -q "unknown subcommand 'frobnicate'" "$T/e5.out" &&
   [ $rc6 -eq 2 ]; then
    ok errors
else
    bad errors "$rc1 $rc2 $rc3 $rc4 $rc5 $rc6" "$(cat "$T"/e[1-6].out)"
fi

# A damaged artifact is reported by show, naming the damage.
printf 'X' | dd of="$M/ctr/1/model.rk" bs=1 seek=30 conv=notrunc 2>/dev/null
models show ctr/1 >"$T/dmg.out" 2>&1
if grep -q "checksum mismatch" "$T/dmg.out" && grep -q "ctr/1/model.rk" "$T/dmg.out"; then
    ok show_reports_damaged_artifact
else
    bad show_reports_damaged_artifact "$(cat "$T/dmg.out")"
fi

# No models yet: an empty list, nothing created.
mkdir -p "$T/empty"
"$RANKD" models list --data "$T/empty" >"$T/empty.out" 2>&1
rc1=$?
"$RANKD" models list --data "$T/empty" --json >"$T/empty.json" 2>&1
rc2=$?
if [ $rc1 -eq 0 ] && grep -q "no models in" "$T/empty.out" && [ $rc2 -eq 0 ] &&
   jq -e '.models == []' "$T/empty.json" >/dev/null && [ ! -e "$T/empty/models" ]; then
    ok list_without_models
else
    bad list_without_models "$rc1 $rc2" "$(cat "$T/empty.out" "$T/empty.json")"
fi

echo "# $pass passed, $fail failed"
[ $fail -eq 0 ]
