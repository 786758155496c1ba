#!/bin/sh
# The learning loop inside a real `rankd serve` on loopback: with
# `loop: {every_labels: 5}`, served traffic whose clicks come back as
# events triggers a retraining (`rankd train --ranker --from-log` as a
# child process), the promotion gate decides, and every decision is in
# GET /v1/monitor/events, /metrics and DIR/audit.jsonl; an HTTP rollback
# is recorded too. Prints one line per case and "# N passed, N failed".
set -u
. "$(dirname "$0")/lib/harness.sh"
rk_harness loop
D="$T/data"

"$RANKD" demo --data "$D" --users 200 --items 300 --sessions 2000 >"$T/setup.out" 2>&1 &&
    "$RANKD" train --data "$D" --config "$D/rankd.yaml" >>"$T/setup.out" 2>&1
rc=$?
cat >>"$D/rankd.yaml" <<'YAML'
features:
  hash_bits: 16
  defs:
    duration: {kind: attribute, entity: item, attr: duration, log1p: true}
    item_ctr: {kind: rate, key: item, num: [click], den: [impression], windows: [1d], prior: {mean: 0.05, strength: 20}}
    hour: {kind: context, field: hour}
labels:
  window: 1s
serve:
  ranker: feed
loop:
  every_labels: 5
  cooldown_minutes: 0
  drift_check_s: 1
  args: [--trees, "20", --depth, "3"]
YAML
if [ $rc -eq 0 ] && "$RANKD" train --data "$D" --config "$D/rankd.yaml" --ranker gbdt \
        --name feed --trees 20 --depth 3 >>"$T/setup.out" 2>&1; then
    ok setup
else
    bad setup "$(tail -5 "$T/setup.out")"
    echo "# $pass passed, $fail failed"
    exit 1
fi

rk_serve "$D" "$D/rankd.yaml" || { bad server_starts "$(cat "$T/serve.log")"; finish; }

for u in u1 u2 u3 u4 u5 u6 u7 u8 u9 u10; do
    r=$(curl -s "$URL/v1/recommend" -d "{\"user\": \"$u\", \"n\": 4}")
    rid=$(echo "$r" | jq -r .request_id)
    it=$(echo "$r" | jq -r '.items[0].id')
    curl -s "$URL/v1/events" -d "[{\"type\": \"impression\", \"user\": \"$u\", \"item\": \"$it\", \"request_id\": \"$rid\"}, {\"type\": \"click\", \"user\": \"$u\", \"item\": \"$it\", \"request_id\": \"$rid\"}]" >/dev/null
done

# The retraining runs in the background; wait for its verdict.
i=0
while [ $i -lt 600 ]; do
    curl -s "$URL/v1/monitor/events" >"$T/events.json"
    jq -e '[.events[].kind] | (index("promoted") != null or index("rejected") != null
           or index("failed") != null)' "$T/events.json" >/dev/null 2>&1 && break
    sleep 0.2
    i=$((i + 1))
done
if jq -e '.loop.enabled and ([.events[].kind] | index("training") != null and
          index("trained") != null and (index("promoted") != null or
          index("rejected") != null))' "$T/events.json" >/dev/null 2>&1; then
    ok labels_trigger_a_gated_retraining
else
    bad labels_trigger_a_gated_retraining "$(cat "$T/events.json")" "$(tail -5 "$D/loop.log" 2>/dev/null)"
fi
if curl -s "$URL/metrics" | grep -qE "^rankd_loop_decisions_total\{kind=\"trained\"\} [1-9]"; then
    ok decisions_in_metrics
else
    bad decisions_in_metrics
fi
# A rollback over HTTP is an audited decision too.
curl -s "$URL/v1/models" | jq -r '.registry[] | select(.name == "feed") | .current' >"$T/cur"
if [ "$(cat "$T/cur")" -ge 2 ] 2>/dev/null; then
    curl -s -X POST "$URL/v1/models/feed/rollback" >/dev/null
    curl -s "$URL/v1/monitor/events" | jq -e '.events[0].kind == "rolled_back"' >/dev/null 2>&1 &&
        ok rollback_is_audited || bad rollback_is_audited
else
    ok rollback_is_audited # the gate rejected the new version: nothing to roll back
fi
stop_server
if [ -s "$D/audit.jsonl" ] && jq -s -e 'length >= 3' "$D/audit.jsonl" >/dev/null 2>&1; then
    ok audit_file_survives
else
    bad audit_file_survives "$(cat "$D/audit.jsonl" 2>/dev/null)"
fi
echo "# $pass passed, $fail failed"
[ $fail -eq 0 ]
