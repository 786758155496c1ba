#!/bin/sh
# End-to-end tests of `rankd eval` and `rankd train`: the table and a valid
# JSON report on a demo store under every protocol, model artifacts
# published under DIR/models, option and config errors, and (when
# ../shared/data exists and the build is not sanitized) the one-command
# MovieLens-100k quality table.
# Prints one line per case and "# N passed, N failed".
set -u
RANKD=${RANKD:-build/rankd}
case "$RANKD" in /*) ;; *) RANKD="$(pwd)/$RANKD" ;; esac
T=$(mktemp -d "${TMPDIR:-/tmp}/rk-evalcli-XXXXXX")
trap 'rm -rf "$T"' EXIT
pass=0
fail=0
ok() { echo "ok   $1"; pass=$((pass + 1)); }
bad() { echo "FAIL $1"; shift; for l in "$@"; do echo "  $l"; done; fail=$((fail + 1)); }
# Valid JSON with the fields every report has.
json_ok() {
    jq -e '.rankd_eval == 1 and (.models | length) > 0 and
           (.models[0].mean | length) > 0 and .protocol.name != null and
           .protocol.seed != null and (.splits | length) > 0 and
           .wall_seconds != null' "$1" >/dev/null 2>&1
}

"$RANKD" demo --data "$T/demo" --users 50 --items 200 --sessions 300 >/dev/null 2>&1 ||
    bad demo_store "rankd demo failed"

# --- heldout on the demo store: table on stdout, JSON file ---------------------
"$RANKD" eval --data "$T/demo" --config "$T/demo/rankd.yaml" --protocol heldout \
    --folds 3 --models popularity,ease,ials --ials-factors 16 --json "$T/h.json" \
    >"$T/h.out" 2>"$T/h.err"
rc=$?
if [ $rc -eq 0 ] && grep -q "Recall@K" "$T/h.out" && grep -q "^popularity" "$T/h.out" &&
   grep -q "^ease" "$T/h.out" && grep -q "^ials" "$T/h.out" &&
   grep -q "protocol  heldout" "$T/h.out" && json_ok "$T/h.json" &&
   [ "$(jq -r '.models[2].params.factors' "$T/h.json")" = 16 ] &&
   [ "$(jq -r '.models[0].splits | length' "$T/h.json")" = 3 ]; then
    ok eval_heldout_table_and_json
else
    bad eval_heldout_table_and_json "exit $rc" "$(cat "$T/h.out" "$T/h.err" | tail -20)"
fi

# --- the same run twice gives the same numbers (fixed seeds) --------------------
"$RANKD" eval --data "$T/demo" --config "$T/demo/rankd.yaml" --folds 3 \
    --models popularity,ease,ials --ials-factors 16 --json "$T/h2.json" >/dev/null 2>&1
if [ "$(jq -c '[.models[].mean]' "$T/h.json")" = "$(jq -c '[.models[].mean]' "$T/h2.json")" ]; then
    ok eval_deterministic
else
    bad eval_deterministic
fi

# --- the other protocols ---------------------------------------------------------
for p in temporal loo; do
    "$RANKD" eval --data "$T/demo" --config "$T/demo/rankd.yaml" --protocol $p \
        --models popularity,ease --k 10,20 --json "$T/$p.json" >"$T/$p.out" 2>&1
    rc=$?
    if [ $rc -eq 0 ] && grep -q "protocol  $p" "$T/$p.out" && json_ok "$T/$p.json" &&
       [ "$(jq -r '.ks | join(",")' "$T/$p.json")" = "10,20" ]; then
        ok "eval_$p"
    else
        bad "eval_$p" "exit $rc" "$(tail -20 "$T/$p.out")"
    fi
done

# --- JSON to stdout ----------------------------------------------------------------
"$RANKD" eval --data "$T/demo" --config "$T/demo/rankd.yaml" --protocol loo \
    --models popularity --json - --log-level warn 2>/dev/null | sed -n '/^{/,$p' >"$T/stdout.json"
if json_ok "$T/stdout.json"; then ok eval_json_stdout; else bad eval_json_stdout; fi

# --- eval: and retrieval: config sections ---------------------------------------------
cp "$T/demo/rankd.yaml" "$T/cfg.yaml"
cat >>"$T/cfg.yaml" <<'YAML'
retrieval:
  interactions: {valued_min: 1}
  ials: {factors: 8, iterations: 3, unobserved_weight: 0.2}
  ease: {lambda: 50}
eval:
  protocol: loo
  k: [5, 10]
  models: [popularity, ials]
  seed: 7
YAML
"$RANKD" eval --data "$T/demo" --config "$T/cfg.yaml" --json "$T/c.json" >"$T/c.out" 2>&1
rc=$?
if [ $rc -eq 0 ] && [ "$(jq -r '.protocol.name' "$T/c.json")" = loo ] &&
   [ "$(jq -r '.protocol.seed' "$T/c.json")" = 7 ] &&
   [ "$(jq -r '.models[1].params.factors' "$T/c.json")" = 8 ] &&
   [ "$(jq -r '.data.valued_min' "$T/c.json")" = 1 ] &&
   [ "$(jq -r '.ks | join(",")' "$T/c.json")" = "5,10" ]; then
    ok eval_config_sections
else
    bad eval_config_sections "exit $rc" "$(tail -20 "$T/c.out")"
fi

# --- errors: bad option values exit 2, bad config names file:line ------------------------
"$RANKD" eval --data "$T/demo" --protocol sideways >"$T/e1.out" 2>&1
rc1=$?
"$RANKD" eval --data "$T/demo" --k 50,20 >"$T/e2.out" 2>&1
rc2=$?
"$RANKD" eval --data "$T/demo" --models popularity,magic >"$T/e3.out" 2>&1
rc3=$?
if [ $rc1 -eq 2 ] && grep -q "sideways" "$T/e1.out" && [ $rc2 -eq 2 ] &&
   [ $rc3 -eq 2 ] && grep -q "magic" "$T/e3.out"; then
    ok eval_usage_errors
else
    bad eval_usage_errors "$rc1 $rc2 $rc3" "$(cat "$T/e1.out" "$T/e2.out" "$T/e3.out")"
fi
printf 'eval:\n  folds: 1\n' >"$T/bad.yaml"
printf 'retrieval:\n  ials:\n    factor: 8\n' >"$T/bad2.yaml"
"$RANKD" eval --data "$T/demo" --config "$T/bad.yaml" >"$T/e4.out" 2>&1
rc4=$?
"$RANKD" eval --data "$T/demo" --config "$T/bad2.yaml" >"$T/e5.out" 2>&1
rc5=$?
if [ $rc4 -ne 0 ] && grep -q "bad.yaml:2:" "$T/e4.out" && [ $rc5 -ne 0 ] &&
   grep -q "bad2.yaml:3:" "$T/e5.out" && grep -q "factor" "$T/e5.out"; then
    ok eval_config_errors
else
    bad eval_config_errors "$(cat "$T/e4.out" "$T/e5.out")"
fi

# --- rankd train publishes versions with a current link -------------------------------------
"$RANKD" train --data "$T/demo" --config "$T/demo/rankd.yaml" --ials-factors 16 \
    >"$T/t.out" 2>&1
rc=$?
"$RANKD" train --data "$T/demo" --config "$T/demo/rankd.yaml" --models popularity \
    >"$T/t2.out" 2>&1
rc2=$?
M="$T/demo/models"
if [ $rc -eq 0 ] && [ $rc2 -eq 0 ] && [ -s "$M/ials/current/ials.bin" ] &&
   [ -s "$M/ease/current/ease.bin" ] && [ -s "$M/popularity/2/popularity.bin" ] &&
   [ "$(readlink "$M/popularity/current")" = 2 ] &&
   [ "$(jq -r '.params.factors' "$M/ials/current/meta.json")" = 16 ] &&
   [ "$(jq -r '.data.users' "$M/ials/current/meta.json")" = 50 ] &&
   ! ls -a "$M/ials" | grep -q '^\.tmp'; then
    ok train_publishes_models
else
    bad train_publishes_models "exit $rc $rc2" "$(cat "$T/t.out" "$T/t2.out")" "$(ls -laR "$M" 2>&1 | head -30)"
fi

# --- eval --import: one command from the raw file (MovieLens-100k) --------------------------
DATA=${RK_SHARED_DATA:-../shared/data}
case "${BUILD:-build}" in *san*) sanitized=1 ;; *) sanitized=${RK_SANITIZE:+1} ;; esac
if [ ! -f "$DATA/movielens-100k/u.data" ]; then
    echo "skip: ../shared/data not found"
    ok eval_import_movielens_100k
elif [ -n "${sanitized:-}" ]; then
    echo "skip: MovieLens-100k evaluation under sanitizers"
    ok eval_import_movielens_100k
else
    "$RANKD" eval --import "$DATA/movielens-100k/u.data" --protocol heldout --folds 5 \
        --models popularity,ease --json "$T/ml.json" >"$T/ml.out" 2>&1
    rc=$?
    r_pop=$(jq -r '.models[0].mean["20"].recall' "$T/ml.json" 2>/dev/null)
    r_ease=$(jq -r '.models[1].mean["20"].recall' "$T/ml.json" 2>/dev/null)
    n_ease=$(jq -r '.models[1].mean["100"].ndcg' "$T/ml.json" 2>/dev/null)
    if [ $rc -eq 0 ] && awk -v p="$r_pop" -v e="$r_ease" -v n="$n_ease" \
        'BEGIN { exit !(p > 0.18 && p < 0.25 && e > 0.37 && e < 0.44 && n > 0.42 && n < 0.50) }'; then
        ok "eval_import_movielens_100k (popularity R@20 $r_pop, EASE R@20 $r_ease NDCG@100 $n_ease)"
    else
        bad eval_import_movielens_100k "exit $rc pop $r_pop ease $r_ease $n_ease" "$(tail -20 "$T/ml.out")"
    fi
fi

echo "# $pass passed, $fail failed"
[ $fail -eq 0 ]
