#!/bin/sh
# End-to-end tests of `rankd train --ranker`: labelled rows imported from a
# generated JSON-lines file, FTRL and GBDT trained, evaluated and published
# through the gate (a much weaker model stays a candidate), the artifact
# listed by `rankd models`, and clear errors for unknown datasets and
# options. Needs no shared data. Prints one line per case and
# "# N passed, N failed".
set -u
RANKD=${RANKD:-build/rankd}
case "$RANKD" in /*) ;; *) RANKD="$(pwd)/$RANKD" ;; esac
T=$(mktemp -d "${TMPDIR:-/tmp}/rk-rankcli-XXXXXX")
trap 'rm -rf "$T"' EXIT
pass=0
fail=0
ok() { echo "ok   $1"; pass=$((pass + 1)); }
bad() { echo "FAIL $1"; shift; for l in "$@"; do echo "  $l"; done; fail=$((fail + 1)); }
D="$T/data"

# 3000 rows: two numeric features and one categorical; the label is a
# noisy logistic function of all three (fixed awk seed).
awk 'BEGIN { srand(7); for (i = 0; i < 3000; i++) {
    a = rand() * 2 - 1; b = rand() * 100; c = int(rand() * 8);
    z = 3 * a + 0.02 * b - 1 + (c < 3 ? 1.5 : -0.5);
    y = (rand() < 1 / (1 + exp(-z))) ? 1 : 0;
    printf "{\"label\":%d,\"num\":{\"0\":%.4f,\"1\":%.3f},\"cat\":{\"2\":\"c%d\"}}\n", y, a, b, c } }' \
    >"$T/rows.jsonl"
if "$RANKD" import --data "$D" --kind rows --dataset synth --no-progress "$T/rows.jsonl" \
    >"$T/imp.out" 2>&1 && grep -q "3000 imported" "$T/imp.out"; then
    ok import_rows
else
    bad import_rows "$(cat "$T/imp.out")"
fi

"$RANKD" train --data "$D" --ranker ftrl --dataset synth --name ctr --json \
    >"$T/ftrl.json" 2>"$T/ftrl.err"
rc=$?
if [ $rc -eq 0 ] && jq -e '.ranker == "ftrl" and .valid.rows == 600 and .valid.auc > 0.75 and
                           .valid.logloss < 0.6 and .version == 1 and .promoted == true' \
        "$T/ftrl.json" >/dev/null; then
    ok train_ftrl_publishes
else
    bad train_ftrl_publishes "exit $rc" "$(cat "$T/ftrl.json" "$T/ftrl.err")"
fi

"$RANKD" train --data "$D" --ranker gbdt --dataset synth --name trees --trees 50 \
    --depth 3 --eta 0.2 --calibration platt >"$T/gbdt.out" 2>&1
rc=$?
if [ $rc -eq 0 ] && grep -q "^gbdt (binary) on synth: 2400 training rows" "$T/gbdt.out" &&
   grep -Eq "^  valid +rows 600 +auc 0\.[789]" "$T/gbdt.out" &&
   grep -q "published trees version 1: promoted to current" "$T/gbdt.out"; then
    ok train_gbdt_table
else
    bad train_gbdt_table "exit $rc" "$(cat "$T/gbdt.out")"
fi

# A one-stump model is far worse: the gate keeps it as a candidate.
"$RANKD" train --data "$D" --ranker gbdt --dataset synth --name trees --trees 1 \
    --depth 1 >"$T/weak.out" 2>&1
rc=$?
if [ $rc -eq 0 ] && grep -q "published trees version 2: kept as a candidate (gate failed" \
        "$T/weak.out"; then
    ok gate_keeps_weaker_candidate
else
    bad gate_keeps_weaker_candidate "exit $rc" "$(cat "$T/weak.out")"
fi

"$RANKD" models list --data "$D" >"$T/list.out" 2>&1
if grep -Eq "^trees +1 +current +gbdt" "$T/list.out" &&
   grep -Eq "^trees +2 +candidate +gbdt" "$T/list.out" &&
   grep -Eq "^ctr +1 +current +ftrl" "$T/list.out"; then
    ok models_list
else
    bad models_list "$(cat "$T/list.out")"
fi

# --gate-metrics: the gate compares only the named metrics; an unknown
# name is a usage error before any training.
"$RANKD" train --data "$D" --ranker gbdt --dataset synth --name trees --trees 1 \
    --depth 1 --gate-metrics auc >"$T/gm.out" 2>&1
rc=$?
"$RANKD" train --data "$D" --ranker gbdt --dataset synth --name trees \
    --gate-metrics auc,aucc >"$T/gm_bad.out" 2>&1
rc_bad=$?
if [ $rc -eq 0 ] && grep -q "kept as a candidate (gate failed (1 of 1 metrics worse" "$T/gm.out" &&
   ! grep -q "logloss .* vs .*than" "$T/gm.out" && [ $rc_bad -eq 2 ] &&
   grep -q "'aucc' is not a metric the gate can compare" "$T/gm_bad.out"; then
    ok gate_metrics_subset
else
    bad gate_metrics_subset "exit $rc / $rc_bad" "$(cat "$T/gm.out" "$T/gm_bad.out")"
fi

"$RANKD" models show trees/1 --data "$D" --json >"$T/show.json" 2>&1
if jq -e '.meta.kind == "gbdt" and .meta.rows.train == 2400 and (.meta.reference.features | length) == 2 and .artifact_check == "ok"' \
        "$T/show.json" >/dev/null 2>&1; then
    ok artifact_has_reference_histograms
else
    bad artifact_has_reference_histograms "$(cat "$T/show.json")"
fi

# SIGKILL in the middle of `rankd train` (a big model, killed at several
# points of its run) never leaves a half-written version behind and never
# moves `current`: version 1 stays current, every numbered version that
# exists is complete.
killed_ok=1
for delay in 0.2 0.5 0.9 1.4; do
    "$RANKD" train --data "$D" --ranker gbdt --dataset synth --name trees \
        --trees 3000 --depth 8 --eta 0.01 >/dev/null 2>&1 &
    pid=$!
    sleep $delay
    kill -9 $pid 2>/dev/null
    wait $pid 2>/dev/null
    cur=$(readlink "$D/models/trees/current" 2>/dev/null)
    case "$cur" in 1|*/1) ;; *) killed_ok=0; echo "  current -> '$cur' after kill at $delay s" ;; esac
    for v in "$D"/models/trees/[0-9]*; do
        [ -f "$v/model.rk" ] && [ -f "$v/meta.json" ] || { killed_ok=0; echo "  incomplete $v"; }
    done
done
"$RANKD" models show trees --data "$D" >"$T/after.out" 2>&1 ||
    { killed_ok=0; cat "$T/after.out"; }
if [ $killed_ok -eq 1 ]; then ok sigkill_during_train; else bad sigkill_during_train; fi

# Without --dataset the rows come from replaying the event log with the
# config's features: the demo platform's impressions labelled by clicks.
E="$T/demo"
"$RANKD" demo --data "$E" --users 200 --items 500 --sessions 2000 >/dev/null 2>&1
cat >>"$E/rankd.yaml" <<'YAML'
features:
  hash_bits: 18
  defs:
    duration: {kind: attribute, entity: item, attr: duration, log1p: true}
    category: {kind: attribute, entity: item, attr: category}
    item_ctr: {kind: rate, key: item, num: [click], den: [impression], windows: [1d], prior: {mean: 0.05, strength: 20}}
    user_cat_ctr: {kind: rate, key: [user, item.category], num: [click], den: [impression], half_life: 3d}
    hour: {kind: context, field: hour}
YAML
"$RANKD" train --data "$E" --config "$E/rankd.yaml" --ranker ftrl --json --name feed \
    >"$T/replay.json" 2>"$T/replay.err"
rc=$?
if [ $rc -eq 0 ] && jq -e '.train_rows > 1000 and .valid.auc > 0.55 and .valid.gauc > 0 and
                           .promoted == true' "$T/replay.json" >/dev/null &&
   "$RANKD" models show feed --data "$E" --json | jq -e '.meta.feature_schema_hash != null' \
        >/dev/null 2>&1; then
    ok train_from_event_log_replay
else
    bad train_from_event_log_replay "exit $rc" "$(cat "$T/replay.json" "$T/replay.err")"
fi
sed -i 's/log1p: true/transforms: [log1p]/' "$E/rankd.yaml"
"$RANKD" train --data "$E" --config "$E/rankd.yaml" --ranker ftrl >"$T/badconf.out" 2>&1
rc=$?
if [ $rc -ne 0 ] && grep -q "rankd.yaml:[0-9]*: unknown key 'transforms' in features.defs.duration" \
        "$T/badconf.out"; then
    ok feature_config_error_names_line
else
    bad feature_config_error_names_line "exit $rc" "$(cat "$T/badconf.out")"
fi

"$RANKD" train --data "$D" --ranker fm --dataset nope --no-publish >"$T/nope.out" 2>&1
rc=$?
if [ $rc -ne 0 ] && grep -q "no dataset 'nope' in the store" "$T/nope.out"; then
    ok unknown_dataset
else
    bad unknown_dataset "exit $rc" "$(cat "$T/nope.out")"
fi

"$RANKD" train --data "$D" --ranker svm --dataset synth >"$T/svm.out" 2>&1
rc=$?
if [ $rc -eq 2 ] && grep -q "unknown ranker 'svm' (gbdt, ftrl, fm)" "$T/svm.out"; then
    ok unknown_ranker
else
    bad unknown_ranker "exit $rc" "$(cat "$T/svm.out")"
fi

"$RANKD" train --data "$D" --ranker ftrl --dataset synth --downsample 2 >"$T/ds.out" 2>&1
rc=$?
if [ $rc -eq 2 ] && grep -q "\-\-downsample: expected a number in" "$T/ds.out"; then
    ok bad_option_value
else
    bad bad_option_value "exit $rc" "$(cat "$T/ds.out")"
fi

echo "# $pass passed, $fail failed"
[ $fail -eq 0 ]
