#!/bin/sh
# `rankd init --template`: each of the four case-study configs is written,
# refuses to overwrite, loads, and a real `rankd serve` starts on it (on a
# free loopback port) and answers /readyz. With ../shared/data present, the
# ads, search and fraud templates are then taken end to end as
# docs/templates.md shows: import, train, serve, score a row over HTTP.
# Prints one line per case and "# N passed, N failed".
set -u
. "$(dirname "$0")/lib/harness.sh"
SHARED="$(pwd)/../shared/data"
rk_harness init

# start_server DIR: serves DIR with DIR/rankd.yaml (rk_serve; sets PORT).
start_server() { rk_serve "$1/data" "$1/rankd.yaml"; }

for t in video ads search fraud; do
    D="$T/$t"
    if "$RANKD" init --template "$t" "$D" >"$T/$t.out" 2>&1 && [ -s "$D/rankd.yaml" ] &&
       ! "$RANKD" init --template "$t" "$D" >/dev/null 2>&1 &&
       start_server "$D" &&
       [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT/readyz")" = 200 ]; then
        ok "template_${t}_serves"
    else
        bad "template_${t}_serves" "$(cat "$T/$t.out" "$T/serve.log" 2>/dev/null | tail -5)"
    fi
    stop_server
done

"$RANKD" init --template nope "$T/x" >/dev/null 2>&1
if [ $? -eq 2 ]; then ok unknown_template_is_usage_error; else bad unknown_template_is_usage_error; fi

# score_row DIR BODY: starts the server, posts BODY to /v1/score, stops it;
# succeeds when the answer holds one probability-like finite score.
score_row() {
    start_server "$1" || return 1
    curl -s "http://127.0.0.1:$PORT/v1/score" -d "$2" >"$1/score.json"
    stop_server
    jq -e '(.scores | length) == 1 and (.scores[0] | type) == "number"' \
        "$1/score.json" >/dev/null 2>&1
}

if [ ! -d "$SHARED" ]; then
    echo "skip end-to-end template runs: $SHARED not found (public datasets)"
else
    D="$T/ads"
    if "$RANKD" import --data "$D/data" --format criteo --dataset ctr-train \
           "$SHARED/criteo-kaggle-sample-8k/train.tsv" >"$T/e.out" 2>&1 &&
       "$RANKD" import --data "$D/data" --format criteo --dataset ctr-dev \
           "$SHARED/criteo-kaggle-sample-8k/dev.tsv" >>"$T/e.out" 2>&1 &&
       "$RANKD" train --data "$D/data" --config "$D/rankd.yaml" --ranker ftrl \
           --dataset ctr-train --valid-dataset ctr-dev --name ctr >>"$T/e.out" 2>&1 &&
       score_row "$D" '{"rows": [{"num": {"0": 1, "1": 5}, "cat": {"0": "68fd1e64"}}]}'; then
        ok ads_end_to_end
    else
        bad ads_end_to_end "$(tail -5 "$T/e.out")"
    fi
    D="$T/search"
    if "$RANKD" import --data "$D/data" --format svmlight --dataset mq-train \
           "$SHARED/letor4-mq2008/Fold1/train.txt" >"$T/e.out" 2>&1 &&
       "$RANKD" import --data "$D/data" --format svmlight --dataset mq-vali \
           "$SHARED/letor4-mq2008/Fold1/vali.txt" >>"$T/e.out" 2>&1 &&
       "$RANKD" train --data "$D/data" --config "$D/rankd.yaml" --ranker gbdt \
           --task rank --trees 50 --dataset mq-train --valid-dataset mq-vali \
           --name search >>"$T/e.out" 2>&1 &&
       score_row "$D" '{"rows": [{"num": {"0": 0.5, "1": 0.3}}]}'; then
        ok search_end_to_end
    else
        bad search_end_to_end "$(tail -5 "$T/e.out")"
    fi
    D="$T/fraud"
    if "$RANKD" import --data "$D/data" --kind rows --format csv --no-header --label 6 \
           --dataset tx "$SHARED/imbalanced-tabular/mammography.csv" >"$T/e.out" 2>&1 &&
       "$RANKD" train --data "$D/data" --config "$D/rankd.yaml" --ranker gbdt \
           --dataset tx --valid-frac 0.25 --split-seed 7 --downsample 0.2 \
           --calibration platt --trees 50 --name fraud >>"$T/e.out" 2>&1 &&
       score_row "$D" '{"rows": [{"num": {"0": 0.23, "1": 5.07}}]}'; then
        ok fraud_end_to_end
    else
        bad fraud_end_to_end "$(tail -5 "$T/e.out")"
    fi
fi

echo "# $pass passed, $fail failed"
[ $fail -eq 0 ]
