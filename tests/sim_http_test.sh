#!/bin/sh
# End-to-end test of `rankd simulate` against a real `rankd serve` on
# 127.0.0.1: the config written by --write-config, a small world written
# with --setup, two simulated hours with a CSV report (columns, rows, CTR in
# (0, 1)), then retrieval models and a GBDT ranker trained from the replayed
# events while the server runs, and one more hour served by that ranker.
# Also: an unreachable server and a bad option fail cleanly. Every server
# started here is stopped by the EXIT trap. Prints one line per case and
# "# N passed, N failed".
set -u
. "$(dirname "$0")/lib/harness.sh"
rk_harness simhttp

WORLD="--users 150 --items 300 --seed 7"
SIM="$WORLD --sessions-per-hour 40 --requests-per-session 2 --n 8"

if "$RANKD" simulate --write-config "$T/sim.yaml" $WORLD >"$T/out" 2>&1 &&
   grep -q 'bandwidth: {kind: context' "$T/sim.yaml" &&
   grep -q '^labels:' "$T/sim.yaml" && grep -q '^serve:' "$T/sim.yaml" &&
   grep -q '^  clock: event$' "$T/sim.yaml"; then
    ok write_config
else
    bad write_config "$(cat "$T/out")"
    finish
fi

# A generous per-request deadline: under the sanitizers on a busy machine
# a 50 ms deadline degrades the odd request to the trending fallback
# (served by "none"), and the hour below checks which ranker served it.
sed -i 's/^serve:$/serve:\n  deadline_ms: 2000/' "$T/sim.yaml"
if rk_serve "$T/data" "$T/sim.yaml"; then
    ok server_starts_with_the_written_config
else
    bad server_starts_with_the_written_config "$(cat "$T/serve.log")"
    finish
fi

# check_csv FILE ROWS: the header, ROWS data rows, CTR in (0, 1), no errors,
# the best attainable CTR in (0, 1) and above the CTR served by a system
# that learned little (an hour's sampling noise is far smaller than the gap).
HEADER='hour,sim_time,sessions,requests,impressions,clicks,ctr,watch_s_per_impression,watches,likes,empty,degraded,errors,p50_ms,p99_ms,models,best_ctr'
check_csv() {
    [ "$(head -n 1 "$1")" = "$HEADER" ] || return 1
    [ "$(tail -n +2 "$1" | wc -l)" -eq "$2" ] || return 1
    tail -n +2 "$1" | awk -F, '{ if (!($7 > 0 && $7 < 1) || $4 != 80 || $5 < 80 || $13 != 0 ||
                                      !($17 > $7 && $17 < 1)) bad = 1 }
                                END { exit bad }'
}

if "$RANKD" simulate --url "$URL" --setup $SIM --history-sessions 1500 --hours 2 \
       --csv "$T/a.csv" >"$T/sim1.out" 2>&1 &&
   grep -q 'setup: 300 items written' "$T/sim1.out" && check_csv "$T/a.csv" 2; then
    ok setup_and_two_hours
else
    bad setup_and_two_hours "$(cat "$T/sim1.out")" "$(cat "$T/a.csv" 2>/dev/null)"
fi

# After the history every user is written again with the profile it
# gives (fav_category: the category of most clicks); the config's
# fav_x_cat crosses it with the item's category.
favs=""
u=0
while [ $u -lt 20 ]; do
    favs="$favs$(curl -s "$URL/v1/users/u$u" | jq -r '.attributes.fav_category // empty')
"
    u=$((u + 1))
done
nfav=$(printf '%s' "$favs" | grep -c .)
ndistinct=$(printf '%s' "$favs" | grep . | sort -u | wc -l)
if [ "$nfav" -ge 15 ] && [ "$ndistinct" -ge 2 ] &&
   grep -q 'fav_x_cat: {kind: cross, of: \[user_fav_cat, category\]}' "$T/sim.yaml"; then
    ok users_carry_their_history_profile
else
    bad users_carry_their_history_profile "$nfav of 20 with fav_category, $ndistinct distinct"
fi

if grep -Eq '^ +1  [0-9T:-]+ +40 +80 ' "$T/sim1.out"; then
    ok table_on_stdout
else
    bad table_on_stdout "$(cat "$T/sim1.out")"
fi

# Train while the server runs; it hot-swaps the new versions in.
if "$RANKD" train --data "$T/data" --config "$T/sim.yaml" >"$T/train.out" 2>&1 &&
   "$RANKD" train --data "$T/data" --config "$T/sim.yaml" --ranker gbdt --name feed \
       --trees 30 --depth 4 >>"$T/train.out" 2>&1; then
    ok train_retrieval_and_ranker
else
    bad train_retrieval_and_ranker "$(cat "$T/train.out")"
fi
i=0
while [ $i -lt 100 ]; do
    curl -s "$URL/readyz" | grep -q '"feed":1' && break
    sleep 0.1
    i=$((i + 1))
done

if "$RANKD" simulate --url "$URL" $SIM --hours 1 --first-hour 2 --csv "$T/b.csv" \
       >"$T/sim2.out" 2>&1 && check_csv "$T/b.csv" 1 &&
   tail -n 1 "$T/b.csv" | grep -q ',feed@1,[0-9.]*$'; then
    ok hour_served_by_the_trained_ranker
else
    bad hour_served_by_the_trained_ranker "$(cat "$T/sim2.out")" "$(cat "$T/b.csv" 2>/dev/null)"
fi

if "$RANKD" simulate --url "$URL" $SIM --scenario taste_shift --event-hour 1 \
       --threads 2 --hours 2 --csv "$T/c.csv" >"$T/sim3.out" 2>&1 && check_csv "$T/c.csv" 2; then
    ok taste_shift_with_two_threads
else
    bad taste_shift_with_two_threads "$(cat "$T/sim3.out")"
fi

# The written config runs the server on the event clock, so the simulated
# hours carry their times: after a restart (the clock resumes from the
# newest event) two more hours at full speed leave the server's clock
# hours ahead of the wall clock, and the feature log holds the simulated
# times.
stop_server
wall=$(($(date +%s) * 1000))
if rk_serve "$T/data" "$T/sim.yaml" &&
   "$RANKD" simulate --url "$URL" $SIM --hours 2 --first-hour 4 --csv "$T/e.csv" \
       >"$T/sim4.out" 2>&1 && check_csv "$T/e.csv" 2 &&
   curl -s "$URL/healthz" | jq -e --argjson w "$wall" \
       '.clock == "event" and .now_ms >= $w + 5 * 3600000 and .now_ms < $w + 7 * 3600000' \
       >/dev/null &&
   "$RANKD" drift --data "$T/data" --config "$T/sim.yaml" --model feed \
       --from $((wall + 4 * 3600000 - 120000)) --json 2>/dev/null |
       jq -e '.rows >= 100' >/dev/null; then
    ok event_clock_runs_in_simulated_time
else
    bad event_clock_runs_in_simulated_time "$(cat "$T/sim4.out")" \
        "$(curl -s "$URL/healthz")"
fi

stop_server
"$RANKD" simulate --url "$URL" $SIM --hours 1 >"$T/down.out" 2>&1
rc=$?
if [ $rc -eq 1 ] && grep -q "cannot reach $URL" "$T/down.out"; then
    ok unreachable_server
else
    bad unreachable_server "exit $rc" "$(cat "$T/down.out")"
fi

"$RANKD" simulate --scenario sideways >"$T/bad.out" 2>&1
rc=$?
if [ $rc -eq 2 ] && grep -q "unknown 'sideways'" "$T/bad.out"; then
    ok bad_option_is_a_usage_error
else
    bad bad_option_is_a_usage_error "exit $rc" "$(cat "$T/bad.out")"
fi

finish
