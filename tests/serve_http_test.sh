#!/bin/sh
# End-to-end test of `rankd serve` over real HTTP on 127.0.0.1: a demo data
# directory with iALS and a GBDT ranker "feed", the server on a free port
# (--port 0 --port-file), the endpoints through curl (answers, error codes
# and content types, X-Request-Id), a body over serve.max_body_bytes with
# and without Content-Length (413), keep-alive, concurrent requests
# (xargs -P), SIGTERM exiting 0, and a restart on the same data directory
# (with API keys this time) that still has every acknowledged event.
# Every server started here is stopped by the EXIT trap. Prints one line
# per case and "# N passed, N failed".
set -u
. "$(dirname "$0")/lib/harness.sh"
rk_harness servehttp
D="$T/data"

# start_server CONFIG: rk_serve on the test's data directory.
start_server() { rk_serve "$D" "$1"; }

# req METHOD PATH [BODY [CURL-ARGS...]]: the body goes to $T/body, the
# headers to $T/hdr; prints the status code.
req() {
    m=$1
    p=$2
    shift 2
    if [ $# -gt 0 ]; then
        b=$1
        shift
        curl -s -o "$T/body" -D "$T/hdr" -w '%{http_code}' -X "$m" \
            -H 'Content-Type: application/json' --data-binary "$b" "$@" "$URL$p"
    else
        curl -s -o "$T/body" -D "$T/hdr" -w '%{http_code}' -X "$m" "$URL$p"
    fi
}

# wait_labelled: the server labels a request once its window has passed
# (a background tick); waits (at most 20 s) until GET /v1/monitor/drift
# has labels and nothing pending, its answer in $T/body.
wait_labelled() {
    i=0
    while [ $i -lt 100 ]; do
        sleep 0.2
        req GET /v1/monitor/drift >/dev/null
        jq -e '.concept.pending_requests == 0 and .concept.labelled > 0' "$T/body" \
            >/dev/null 2>&1 && return 0
        i=$((i + 1))
    done
    return 1
}

# expect_error METHOD PATH BODY STATUS CODE NAME
expect_error() {
    st=$(req "$1" "$2" "$3")
    if [ "$st" = "$4" ] && jq -e --arg c "$5" '.error == $c and (.detail | length) > 0 and
            (.request_id | test("^[0-9a-f]{16}$")) and (keys | length) == 3' \
            "$T/body" >/dev/null 2>&1 &&
       grep -qi '^content-type: application/json' "$T/hdr"; then
        ok "$6"
    else
        bad "$6" "status $st" "$(cat "$T/body")"
    fi
}

"$RANKD" demo --data "$D" --users 300 --items 400 --sessions 3000 >"$T/demo.out" 2>&1 &&
    "$RANKD" train --data "$D" --config "$D/rankd.yaml" >"$T/train.out" 2>&1
rc=$?
cat >>"$D/rankd.yaml" <<'YAML'
features:
  hash_bits: 18
  defs:
    duration: {kind: attribute, entity: item, attr: duration, log1p: true}
    category: {kind: attribute, entity: item, attr: category}
    item_ctr: {kind: rate, key: item, num: [click], den: [impression], windows: [1d], prior: {mean: 0.05, strength: 20}}
    user_cat_ctr: {kind: rate, key: [user, item.category], num: [click], den: [impression], half_life: 3d}
    hour: {kind: context, field: hour}
serve:
  ranker: feed
  max_body_bytes: 4096
  threads: 4
YAML
if [ $rc -eq 0 ] &&
   "$RANKD" train --data "$D" --config "$D/rankd.yaml" --ranker gbdt --name feed \
       --trees 30 --depth 4 >>"$T/train.out" 2>&1 &&
   [ -d "$D/models/ials/1" ] && [ -d "$D/models/feed/1" ]; then
    ok demo_data_and_models
else
    bad demo_data_and_models "$(cat "$T/demo.out" "$T/train.out")"
    echo "# $pass passed, $fail failed"
    exit 1
fi

if start_server "$D/rankd.yaml" && [ "$(req GET /healthz)" = 200 ] &&
   [ "$(req GET /readyz)" = 200 ] &&
   jq -e '.status == "ready" and .models.feed == 1 and .models.ials == 1' "$T/body" >/dev/null; then
    ok starts_on_a_free_port
else
    bad starts_on_a_free_port "$(cat "$T/serve.log" "$T/body" 2>/dev/null)"
    echo "# $pass passed, $fail failed"
    exit 1
fi

st=$(req POST /v1/recommend '{"user": "u1", "n": 5}')
rid=$(grep -i '^x-request-id:' "$T/hdr" | tr -d '\r' | awk '{print $2}')
if [ "$st" = 200 ] && jq -e --arg r "$rid" '(.items | length) == 5 and .model.name == "feed" and
        .model.version == 1 and .request_id == $r and all(.items[]; .id | type == "string")' \
        "$T/body" >/dev/null; then
    ok recommend
else
    bad recommend "status $st, X-Request-Id '$rid'" "$(cat "$T/body")"
fi

cands=$(jq -c '[.items[].id]' "$T/body")
st=$(req POST /v1/rank "{\"user\": \"u2\", \"candidates\": $cands, \"n\": 3}")
if [ "$st" = 200 ] && jq -e --argjson c "$cands" '(.items | length) == 3 and
        all(.items[]; .id as $i | $c | index($i) != null) and
        .items[0].score >= .items[1].score and .items[1].score >= .items[2].score' \
        "$T/body" >/dev/null; then
    ok rank_caller_candidates
else
    bad rank_caller_candidates "status $st" "$(cat "$T/body")"
fi

item=$(echo "$cands" | jq -r '.[0]')
st=$(req GET "/v1/similar/$item?n=4")
if [ "$st" = 200 ] && jq -e --arg i "$item" '.item == $i and (.items | length) >= 1 and
        (.items | length) <= 4 and all(.items[]; .id != $i)' "$T/body" >/dev/null; then
    ok similar
else
    bad similar "status $st" "$(cat "$T/body")"
fi

expect_error POST /v1/recommend '{"user": ' 400 BAD_JSON error_bad_json
expect_error POST /v1/recommend '{"user": "u1", "n": NaN}' 400 BAD_JSON error_nan
expect_error POST /v1/recommend '{"user": "u1", "colour": 1}' 400 BAD_REQUEST error_unknown_field
expect_error POST /v1/recommend '{"user": "u1", "ts": 1700000000000}' 400 BAD_REQUEST \
    error_ts_needs_the_event_clock
expect_error GET /v1/nope '' 404 NOT_FOUND error_unknown_route
expect_error DELETE /v1/recommend '' 405 METHOD_NOT_ALLOWED error_wrong_method
expect_error GET /v1/items/no-such-item '' 404 UNKNOWN_ITEM error_unknown_item
expect_error GET /v1/users/no-such-user '' 404 UNKNOWN_USER error_unknown_user

# A body over serve.max_body_bytes (4096) is refused with 413, whether the
# client announces its length or streams it chunked.
awk 'BEGIN { printf "{\"user\": \"u1\", \"context\": {\"pad\": \""; for (i = 0; i < 9000; i++) printf "x"; printf "\"}}" }' \
    >"$T/big.json"
st1=$(curl -s -o "$T/big1" -w '%{http_code}' -X POST -H 'Content-Type: application/json' \
    --data-binary @"$T/big.json" "$URL/v1/recommend")
st2=$(curl -s -o "$T/big2" -w '%{http_code}' -X POST -H 'Content-Type: application/json' \
    -H 'Transfer-Encoding: chunked' --data-binary @"$T/big.json" "$URL/v1/events")
if [ "$st1" = 413 ] && [ "$st2" = 413 ] &&
   jq -e '.error == "PAYLOAD_TOO_LARGE"' "$T/big1" >/dev/null 2>&1 &&
   jq -e '.error == "PAYLOAD_TOO_LARGE"' "$T/big2" >/dev/null 2>&1; then
    ok body_over_max_body_bytes_is_413
else
    bad body_over_max_body_bytes_is_413 "$st1 $(cat "$T/big1")" "$st2 $(cat "$T/big2")"
fi

# Keep-alive: three requests in one curl run share one connection.
curl -s -o /dev/null -o /dev/null -o /dev/null -w '%{num_connects} %{http_code}\n' \
    "$URL/healthz" "$URL/readyz" "$URL/metrics" >"$T/ka.out" 2>&1
if [ "$(cat "$T/ka.out" | tr '\n' ' ')" = "1 200 0 200 0 200 " ]; then
    ok keep_alive
else
    bad keep_alive "$(cat "$T/ka.out")"
fi

# 300 requests from 16 parallel clients: every one answered 200.
seq 0 299 | xargs -P 16 -I{} curl -s -o /dev/null -w '%{http_code}\n' -X POST \
    -H 'Content-Type: application/json' --data-binary '{"user": "u{}", "n": 10}' \
    "$URL/v1/recommend" >"$T/par.out" 2>&1
n200=$(grep -c '^200$' "$T/par.out")
if [ "$n200" -eq 300 ] && [ "$(wc -l <"$T/par.out")" -eq 300 ]; then
    ok concurrent_requests
else
    bad concurrent_requests "$n200 of 300 answered 200" "$(sort "$T/par.out" | uniq -c)"
fi

# Acknowledged events: five clicks of a new user, one request.
evs='{"events": ['
for i in 1 2 3 4 5; do
    [ $i -gt 1 ] && evs="$evs,"
    evs="$evs{\"type\": \"click\", \"user\": \"http-user\", \"item\": \"$item\", \"id\": \"http-ev-$i\"}"
done
evs="$evs]}"
st=$(req POST /v1/events "$evs")
st_again=$(req POST /v1/events "$evs")
dups=$(jq -r '.duplicates' "$T/body" 2>/dev/null)
st_user=$(req GET /v1/users/http-user)
if [ "$st" = 200 ] && [ "$st_again" = 200 ] && [ "$dups" = 5 ] && [ "$st_user" = 200 ] &&
   jq -e '.recent_events == 5' "$T/body" >/dev/null; then
    ok events_acknowledged
else
    bad events_acknowledged "status $st, retry $st_again ($dups duplicates), user $st_user" \
        "$(cat "$T/body")"
fi

st=$(req GET /metrics)
if [ "$st" = 200 ] && grep -qi '^content-type: text/plain; version=0.0.4' "$T/hdr" &&
   awk '/^rankd_requests_total\{endpoint="recommend",code="2xx"\}/ { n = $2 } END { exit !(n >= 301) }' \
       "$T/body" &&
   grep -q '^rankd_errors_total{code="PAYLOAD_TOO_LARGE"} 2$' "$T/body" &&
   grep -q '^rankd_events_ingested_total 5$' "$T/body"; then
    ok metrics
else
    bad metrics "status $st" "$(head -n 30 "$T/body")"
fi

# SIGTERM: the server stops and exits 0.
kill -TERM "$PID"
wait "$PID"
rc=$?
PID=""
if [ $rc -eq 0 ]; then
    ok sigterm_exits_0
else
    bad sigterm_exits_0 "exit $rc" "$(tail -n 20 "$T/serve.log")"
fi

# Restart on the same data directory, now with API keys.
sed 's/^serve:$/serve:\n  api_keys:\n    - {key: reader-key-0123456789, roles: [read]}\n    - {key: admin-key-0123456789, roles: [admin]}/' \
    "$D/rankd.yaml" >"$T/keys.yaml"
if start_server "$T/keys.yaml"; then
    st_none=$(req GET /v1/users/http-user)
    st_read=$(curl -s -o "$T/body" -w '%{http_code}' -H 'X-API-Key: reader-key-0123456789' \
        "$URL/v1/users/http-user")
    if [ "$st_none" = 401 ] && [ "$st_read" = 200 ] &&
       jq -e '.recent_events == 5' "$T/body" >/dev/null; then
        ok restart_keeps_acknowledged_events
    else
        bad restart_keeps_acknowledged_events "no key $st_none, read key $st_read" \
            "$(cat "$T/body")"
    fi
    st_bearer=$(curl -s -o /dev/null -w '%{http_code}' -X POST \
        -H 'Authorization: Bearer reader-key-0123456789' --data-binary '{"user": "u3"}' \
        "$URL/v1/recommend")
    st_forbidden=$(curl -s -o "$T/body" -w '%{http_code}' -X POST \
        -H 'X-API-Key: reader-key-0123456789' --data-binary "$evs" "$URL/v1/events")
    st_admin=$(curl -s -o /dev/null -w '%{http_code}' -H 'X-API-Key: admin-key-0123456789' \
        "$URL/v1/models")
    if [ "$st_bearer" = 200 ] && [ "$st_forbidden" = 403 ] && [ "$st_admin" = 200 ] &&
       jq -e '.error == "FORBIDDEN"' "$T/body" >/dev/null; then
        ok api_key_headers
    else
        bad api_key_headers "bearer $st_bearer, read key posting events $st_forbidden," \
            "admin $st_admin"
    fi
    kill -TERM "$PID"
    wait "$PID"
    rc=$?
    PID=""
    [ $rc -eq 0 ] && ok second_sigterm_exits_0 || bad second_sigterm_exits_0 "exit $rc"
else
    bad restart_keeps_acknowledged_events "did not start" "$(tail -n 20 "$T/serve.log")"
fi

# The event log has each acknowledged event exactly once.
n=$("$RANKD" export events --data "$D" 2>/dev/null | grep -c '"http-user"')
if [ "$n" -eq 5 ]; then
    ok export_has_events_once
else
    bad export_has_events_once "$n events of http-user exported"
fi

# Served rankings are logged with their features; once the label window
# has passed, the next version trains on them (rankd train --from-log).
cp "$D/rankd.yaml" "$T/loop.yaml"
printf 'labels:\n  window: 1s\n' >>"$T/loop.yaml"
if start_server "$T/loop.yaml"; then
    for u in u1 u2 u3 u4 u5 u6 u7 u8; do
        req POST /v1/recommend "{\"user\": \"$u\", \"n\": 5}" >/dev/null
        rid=$(jq -r .request_id "$T/body")
        it=$(jq -r '.items[0].id' "$T/body")
        req POST /v1/events "[{\"type\": \"impression\", \"user\": \"$u\", \"item\": \"$it\", \"request_id\": \"$rid\"}, {\"type\": \"click\", \"user\": \"$u\", \"item\": \"$it\", \"request_id\": \"$rid\"}]" >/dev/null
    done
    stop_server
fi
sleep 1.5
"$RANKD" train --data "$D" --config "$T/loop.yaml" --ranker ftrl --from-log feed \
    --name feed-log --json >"$T/fromlog.json" 2>"$T/fromlog.err"
rc=$?
if [ $rc -eq 0 ] && jq -e '.train_rows > 0 and .promoted == true' "$T/fromlog.json" \
        >/dev/null 2>&1; then
    ok train_from_feature_log
else
    bad train_from_feature_log "exit $rc" "$(cat "$T/fromlog.json" "$T/fromlog.err")"
fi

# rankd drift: what feed served (its feature log) against its training
# reference, as a table and a self-contained HTML report.
"$RANKD" drift --data "$D" --config "$D/rankd.yaml" --model feed \
    --html "$T/drift.html" >"$T/drift.out" 2>&1
rc=$?
if [ $rc -eq 0 ] && grep -q "^dataset drift: " "$T/drift.out" &&
   grep -q "^prediction " "$T/drift.out" && grep -q "<svg" "$T/drift.html" &&
   ! grep -qE "(src|href)=\"http" "$T/drift.html" &&
   head -2 "$T/drift.out" | grep -q " deff$" &&
   "$RANKD" drift --data "$D" --model feed --json | jq -e '.rows > 0 and
        (.report.features | length) > 1 and
        ([.report.features[] | select(.method != "none") | .deff >= 1] | all)' \
        >/dev/null 2>&1; then
    ok drift_report_from_feature_log
else
    bad drift_report_from_feature_log "exit $rc" "$(cat "$T/drift.out")"
fi

# rankd drift reads the server's detector options from monitor: (the
# server's own keys, such as window, are ignored): a JS threshold of 2 (a
# base-2 JS distance is at most 1) with every reference judged by distance
# and a PSI alarm of 1e9 leave no feature drifting where the defaults flag
# some, exclude leaves hour out of the verdict, and a bad value stops it
# with the key and its line named.
cp "$D/rankd.yaml" "$T/calm.yaml"
printf 'monitor:\n  window: 500\n  small_reference: 0\n  js: 2\n  psi: 1000000000\n  exclude: [hour]\n' \
    >>"$T/calm.yaml"
cp "$D/rankd.yaml" "$T/badmon.yaml"
printf 'monitor:\n  js: 0\n' >>"$T/badmon.yaml"
badline=$(wc -l <"$T/badmon.yaml")
"$RANKD" drift --data "$D" --config "$D/rankd.yaml" --model feed --json \
    >"$T/drift-default.json" 2>&1
"$RANKD" drift --data "$D" --config "$T/calm.yaml" --model feed --json \
    >"$T/drift-calm.json" 2>&1
rc=$?
"$RANKD" drift --data "$D" --config "$T/badmon.yaml" --model feed >"$T/badmon.out" 2>&1
brc=$?
if jq -e '.report.dataset.drifted > 0' "$T/drift-default.json" >/dev/null 2>&1 &&
   [ $rc -eq 0 ] && jq -e '.report | .dataset.drift == false and .dataset.drifted == 0 and
        ([.features[] | select(.name == "hour") | .method == "none"] == [true]) and
        ([.features[] | select(.method == "jensenshannon")] | length > 1) and
        ([.features[] | select(.method != "none") | .method == "jensenshannon" and
          .threshold == 2 and .drift == false and .psi_alarm == false] | all)' \
        "$T/drift-calm.json" >/dev/null 2>&1 &&
   [ $brc -eq 1 ] &&
   grep -q "^rankd: drift: .*badmon.yaml:$badline: monitor.js: thresholds must be" \
       "$T/badmon.out"; then
    ok drift_reads_monitor_options
else
    bad drift_reads_monitor_options "exit $rc, $brc" "$(cat "$T/drift-default.json")" \
        "$(cat "$T/drift-calm.json" "$T/badmon.out")"
fi

# Concept drift in rankd drift: the served items of one server run, joined
# with the events that carried their request ids by the training path's
# label rules (exposure required: the fifth item of each ranking is never
# shown), against (a) the log loss, binned AUC and calibration computed
# here from the scores the server returned, (b) the server's own online
# metrics in GET /v1/monitor/drift and (c) the offline values in meta.json.
# The requests and events carry their times (serve.clock: event): request
# k at base + 100k ms, its events 1 ms later, then an event a minute on
# closes every 2 s window — no dependence on how fast this machine runs
# the loop. A generous per-request deadline keeps the rankings undegraded.
sed 's/^serve:$/serve:\n  clock: event/' "$D/rankd.yaml" >"$T/concept.yaml"
printf 'labels:\n  window: 2s\n  require_exposure: true\n' >>"$T/concept.yaml"
cp "$D/rankd.yaml" "$T/concept-long.yaml"
printf 'labels:\n  window: 1h\n' >>"$T/concept-long.yaml"
from=$(($(date +%s) * 1000))
base=$((from + 1000))
: >"$T/served.jsonl"
if start_server "$T/concept.yaml"; then
    k=0
    for u in u11 u12 u13 u14 u15 u16 u17 u18; do
        ts=$((base + 100 * k))
        req POST /v1/recommend "{\"user\": \"$u\", \"n\": 5, \"ts\": $ts, \"deadline_ms\": 60000}" >/dev/null
        # Items 0-3 shown; the first six rankings get a click on item k % 3.
        jq -c --arg u "$u" --argjson k $k --argjson t $((ts + 1)) '.request_id as $r |
            [.items[0:4][] | {type: "impression", user: $u, item: .id, request_id: $r, ts: $t}] +
            (if $k < 6 then [.items[$k % 3] | {type: "click", user: $u, item: .id,
             request_id: $r, ts: $t}] else [] end)' "$T/body" >"$T/ev.json"
        # The served scores are kept before the events are posted (req
        # overwrites the body); the events go at once: the server's clock
        # also runs with the wall clock between the times it is given.
        cp "$T/body" "$T/served-body.json"
        req POST /v1/events "$(cat "$T/ev.json")" >/dev/null
        jq -c --argjson k $k '[.items[0:4] | to_entries[] |
            {p: .value.score, y: (if $k < 6 and .key == $k % 3 then 1 else 0 end)}]' \
            "$T/served-body.json" >>"$T/served.jsonl"
        k=$((k + 1))
    done
    req POST /v1/events "{\"type\": \"impression\", \"user\": \"u19\", \"item\": \"i1\", \"ts\": $((base + 60000))}" >/dev/null
    wait_labelled
    jq -c '.concept.versions[] | select(.model == "feed")' "$T/body" >"$T/online.json"
    stop_server
fi
jq -s 'add | 1e-7 as $e | (map(.p | if . < $e then $e elif . > 1 - $e then 1 - $e
        else . end)) as $q | . as $r |
    {labels: length, positives: (map(.y) | add),
     logloss: ([range(length) | if $r[.].y == 1 then -($q[.] | log)
                else -(1 - $q[.] | log) end] | add / length),
     calibration: ((map(.p) | add) / (map(.y) | add)),
     auc: ([.[] | select(.y == 1) | .p * 1024 | floor] as $pos |
           [.[] | select(.y == 0) | .p * 1024 | floor] as $neg |
           [$pos[] as $a | $neg[] | if $a > . then 1 elif $a == . then 0.5 else 0 end]
           | add / (($pos | length) * ($neg | length)))}' \
    "$T/served.jsonl" >"$T/expect.json" 2>"$T/expect.err"
"$RANKD" drift --data "$D" --config "$T/concept.yaml" --model feed --from "$from" \
    --json >"$T/concept.json" 2>"$T/concept.err"
rc=$?
# |a - b| <= 1e-6 (1 + |b|), for each compared field.
near='def near($a; $b): ($a - $b | fabs) <= 1e-6 * (1 + ($b | fabs));'
if [ $rc -eq 0 ] && jq -e --slurpfile x "$T/expect.json" --slurpfile o "$T/online.json" \
        "$near"'.concept.versions[0] as $c | $x[0] as $x | $o[0] as $o |
        .concept.pending_requests == 0 and $c.labels == 32 and $x.labels == 32 and
        $c.positives == 6 and $x.positives == 6 and
        near($c.logloss; $x.logloss) and near($c.auc; $x.auc) and
        near($c.calibration; $x.calibration) and
        $o.labels == $c.labels and $o.positives == $c.positives and
        near($c.logloss; $o.logloss) and near($c.auc; $o.auc) and
        near($c.calibration; $o.calibration) and near($c.ctr; $o.ctr) and
        near($c.mean_prediction; $o.mean_prediction) and
        near($c.offline.logloss; $o.offline.logloss) and
        near($c.offline.auc; $o.offline.auc) and
        near($c.delta.logloss; $c.logloss - $c.offline.logloss) and
        near($c.delta.auc; $c.auc - $c.offline.auc)' "$T/concept.json" >/dev/null; then
    ok drift_concept_metrics
else
    bad drift_concept_metrics "exit $rc" "$(cat "$T/concept.json" "$T/concept.err")" \
        "expected: $(cat "$T/expect.json" "$T/expect.err")" "server: $(cat "$T/online.json")"
fi

# The same requests with a label window of an hour: nothing labelled yet,
# said in words (table, HTML) and as nulls with the pending count (JSON).
"$RANKD" drift --data "$D" --config "$T/concept-long.yaml" --model feed --from "$from" \
    --html "$T/concept.html" >"$T/pending.out" 2>&1
rc=$?
if [ $rc -eq 0 ] &&
   grep -q "^no labelled predictions yet (8 requests still inside the label window)" \
       "$T/pending.out" && ! grep -qi "nan" "$T/pending.out" &&
   grep -q "<h2>Concept drift</h2>.*no labelled predictions yet" "$T/concept.html" &&
   "$RANKD" drift --data "$D" --config "$T/concept-long.yaml" --model feed \
       --from "$from" --json | jq -e '.concept | .pending_requests == 8 and
        .labelled == 0 and .versions[0].labels == 0 and .versions[0].logloss == null and
        .versions[0].auc == null' >/dev/null 2>&1 &&
   "$RANKD" drift --data "$D" --config "$T/concept.yaml" --model feed --from "$from" \
       >"$T/concept.out" 2>&1 &&
   grep -q "^concept drift (labels.window 2000 ms" "$T/concept.out" &&
   grep -qE "^logloss +[0-9.]+ +[0-9.]+ +[-+][0-9.]+$" "$T/concept.out"; then
    ok drift_concept_pending_and_table
else
    bad drift_concept_pending_and_table "exit $rc" "$(cat "$T/pending.out" "$T/concept.out")"
fi

# serve.clock: event — the server's clock follows the newest time a
# request or an event carried (a simulation two days ahead): the label
# window, the online metrics and the feature log run on it, `rankd train
# --from-log` judges windows at the newest event's time (or --as-of), the
# drift monitor's monitor.span keeps the rows of the last 30 minutes of
# it, and a restarted server resumes from its newest event.
sed 's/^serve:$/serve:\n  clock: event/' "$D/rankd.yaml" >"$T/event.yaml"
printf 'labels:\n  window: 30m\nmonitor:\n  span: 30m\n' >>"$T/event.yaml"
if start_server "$T/event.yaml" && [ "$(req GET /healthz)" = 200 ] &&
   jq -e '.clock == "event"' "$T/body" >/dev/null; then
    t0=$(jq .now_ms "$T/body")
    fut=$((t0 + 2 * 86400000))
    later=$((fut + 3600000))
    req POST /v1/recommend "{\"user\": \"u21\", \"n\": 5, \"ts\": $fut, \"deadline_ms\": 60000}" >/dev/null
    rid=$(jq -r .request_id "$T/body")
    it=$(jq -r '.items[0].id' "$T/body")
    req GET /healthz >/dev/null
    jq -c . "$T/body" >"$T/clock1.json"
    # No ts: the events happen at the server's now, two days ahead.
    req POST /v1/events "[{\"type\": \"impression\", \"user\": \"u21\", \"item\": \"$it\", \"request_id\": \"$rid\"}, {\"type\": \"click\", \"user\": \"u21\", \"item\": \"$it\", \"request_id\": \"$rid\"}]" >/dev/null
    req GET /v1/monitor/drift >/dev/null
    jq -c '.concept' "$T/body" >"$T/pending.json"
    jq -c '.window' "$T/body" >"$T/span1.json"
    # An hour later on the event clock: the 30-minute window has passed.
    req POST /v1/events "{\"type\": \"impression\", \"user\": \"u22\", \"item\": \"$it\", \"ts\": $later}" >/dev/null
    wait_labelled
    jq -c '.concept' "$T/body" >"$T/labelled.json"
    jq -c '.window' "$T/body" >"$T/span2.json"
    stop_server
    start_server "$T/event.yaml" && req GET /healthz >/dev/null
    jq -c . "$T/body" >"$T/clock2.json"
    stop_server
fi
# Judged at the wall clock, every request is still inside its window; by
# default (the newest event's time, an hour after the last request) none is.
"$RANKD" train --data "$D" --config "$T/event.yaml" --ranker ftrl --from-log feed \
    --name feed-clock --no-publish --as-of "${t0:-0}" --json >"$T/clock-now.json" \
    2>"$T/clock-now.err"
rc1=$?
"$RANKD" train --data "$D" --config "$T/event.yaml" --ranker ftrl --from-log feed \
    --name feed-clock --no-publish --json >"$T/clock-asof.json" 2>"$T/clock-asof.err"
rc2=$?
# --window keeps the requests served within it before that time: none in
# the last minute, all of them in the last 30 days.
"$RANKD" train --data "$D" --config "$T/event.yaml" --ranker ftrl --from-log feed \
    --name feed-clock --no-publish --window 1m --json >/dev/null 2>"$T/clock-w1.err"
rc3=$?
"$RANKD" train --data "$D" --config "$T/event.yaml" --ranker ftrl --from-log feed \
    --name feed-clock --no-publish --window 30d --json >"$T/clock-w30.json" 2>"$T/clock-w30.err"
rc4=$?
if [ -n "${fut:-}" ] &&
   jq -e --argjson f "$fut" '.now_ms >= $f and .now_ms < $f + 60000' "$T/clock1.json" >/dev/null &&
   jq -e '.pending_requests >= 1' "$T/pending.json" >/dev/null &&
   jq -e '.span_s == 1800 and .current == 5 and .rows == 5' "$T/span1.json" >/dev/null &&
   jq -e '.current == 0 and .rows == 5' "$T/span2.json" >/dev/null &&
   jq -e '.pending_requests == 0 and .labelled > 0' "$T/labelled.json" >/dev/null &&
   jq -e --argjson l "$later" '.clock == "event" and .now_ms >= $l' "$T/clock2.json" >/dev/null &&
   [ $rc1 -ne 0 ] && grep -q "still inside the label window" "$T/clock-now.err" &&
   [ $rc2 -eq 0 ] && jq -e '.train_rows > 0' "$T/clock-asof.json" >/dev/null &&
   [ $rc3 -ne 0 ] && grep -q "no rows within --window" "$T/clock-w1.err" &&
   [ $rc4 -eq 0 ] && [ "$(jq .train_rows "$T/clock-w30.json")" = "$(jq .train_rows "$T/clock-asof.json")" ]; then
    ok event_clock
else
    bad event_clock "clock $(cat "$T/clock1.json" "$T/clock2.json" 2>/dev/null)" \
        "pending $(cat "$T/pending.json" 2>/dev/null) labelled $(cat "$T/labelled.json" 2>/dev/null)" \
        "window $(cat "$T/span1.json" "$T/span2.json" 2>/dev/null)" \
        "train --as-of wall: exit $rc1 $(cat "$T/clock-now.err")" \
        "train: exit $rc2 $(cat "$T/clock-asof.json" "$T/clock-asof.err")" \
        "train --window 1m: exit ${rc3:-?} $(cat "$T/clock-w1.err")" \
        "train --window 30d: exit ${rc4:-?} $(cat "$T/clock-w30.json" "$T/clock-w30.err")"
fi

# A non-loopback address without API keys is refused before binding.
"$RANKD" serve --data "$D" --config "$D/rankd.yaml" --bind 0.0.0.0 --port 0 \
    >"$T/open.out" 2>&1
rc=$?
if [ $rc -ne 0 ] && grep -q "api_keys" "$T/open.out"; then
    ok non_loopback_needs_keys
else
    bad non_loopback_needs_keys "exit $rc" "$(cat "$T/open.out")"
fi

echo "# $pass passed, $fail failed"
[ $fail -eq 0 ]
