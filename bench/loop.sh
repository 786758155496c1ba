#!/bin/sh
# loop.sh — the learning loop against a taste shift, at a larger scale than
# tests/acceptance_test.sh: for each retraining policy a fresh `rankd
# serve` (FTRL ranker, learning loop on) is driven by `rankd simulate
# --scenario taste_shift` (at --event-hour every user's favourite
# categories move half the category circle on, or with --shift latent the
# taste space rotates by --shift-deg), and the online CTR per simulated
# hour is compared with the CTR before the shift and with the best CTR the
# world allows (the simulator's best_ctr).
#
# Policies: none (the first version serves throughout), periodic
# (`loop.every_minutes`), drift (`loop.on_drift` and `loop.on_concept_drift`:
# the inputs' drift or the served version's online calibration and AUC
# against its first labels), online (`loop.online`:
# one FTRL step per labelled example, snapshot every simulated minute). Every server runs on the
# simulation's clock (serve.clock: event), so label windows, half-lives,
# recency and the periodic schedule (--every-minutes, simulated) are in
# simulated time.
#
# Prints one JSON line per policy on stdout (pre-shift CTR, CTR in the
# first and last four hours after the shift, recovery = last / pre, the
# first hour whose 3-hour mean reaches 90% of the pre-shift CTR or null,
# the best attainable CTR before and in the last four hours, and
# recovery_of_best = (last / best last) / (pre / best pre): how much of
# its pre-shift share of the attainable the policy regains)
# and a table with the CTR curve of every policy on stderr; the curves are
# kept as CSV under --out. Traffic goes to 127.0.0.1 only and every run
# stops by itself.
#
#   sh bench/loop.sh                        # about 5 minutes on 2 cores
#   sh bench/loop.sh --policies none,online --shift-deg 45 --hours 30
#   sh bench/loop.sh --shift latent         # the attainable CTR falls too
#   sh bench/loop.sh --window 8h --seed 11  # retraining on the last 8 h only
#   sh bench/loop.sh --noise-alpha 0.05     # the monitor's noise gate on
#   sh bench/loop.sh --online-half-life 2h  # the online learner forgets
#   sh bench/loop.sh --smoke                # the `make test` run (seconds)
set -u
# The end-to-end tests' harness: $RANKD, $T, rk_serve, stop_server.
. "$(dirname "$0")/../tests/lib/harness.sh"
POLICIES=none,periodic,drift,online
USERS=500 ITEMS=2000 SPH=400 HOURS=24 EVENT=8 DEG=90 SHIFT=categories
SPEED=1800 HIST=4000
EVERY_MIN=120 OUT="" SEED=7 WINDOW="" NOISE="" HALF_LIFE=0
while [ $# -gt 0 ]; do
    case "$1" in
    --policies) POLICIES=$2; shift ;;
    --users) USERS=$2; shift ;;
    --items) ITEMS=$2; shift ;;
    --sessions-per-hour) SPH=$2; shift ;;
    --hours) HOURS=$2; shift ;;
    --event-hour) EVENT=$2; shift ;;
    --shift-deg) DEG=$2; shift ;;
    --shift) SHIFT=$2; shift ;;
    --speed) SPEED=$2; shift ;;
    --history-sessions) HIST=$2; shift ;;
    --every-minutes) EVERY_MIN=$2; shift ;;
    --seed) SEED=$2; shift ;;
    --window) WINDOW=$2; shift ;;
    --noise-alpha) NOISE=$2; shift ;;
    --online-half-life) HALF_LIFE=$2; shift ;;
    --out) OUT=$2; shift ;;
    --smoke) USERS=60 ITEMS=150 SPH=40 HOURS=4 EVENT=2 SPEED=max HIST=300
             POLICIES=none,online ;;
    -h|--help) sed -n '2,36p' "$0"; exit 0 ;;
    *) echo "loop.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done
[ -x "$RANKD" ] || { echo "loop.sh: $RANKD not built (make)" >&2; exit 2; }
rk_harness bench-loop
[ -n "$OUT" ] || OUT="$T/out"
mkdir -p "$OUT"
WORLD="--users $USERS --items $ITEMS --seed $SEED"
SIM="$WORLD --sessions-per-hour $SPH --requests-per-session 2 --n 8"

# run_policy NAME: one server, one simulation; the curve in $OUT/NAME.csv.
run_policy() {
    name=$1
    every=0 drift=false online=false
    case "$name" in
    none) ;;
    periodic) every=$EVERY_MIN ;;
    drift) drift=true ;;
    online) online=true ;;
    *) echo "loop.sh: unknown policy $name" >&2; return 1 ;;
    esac
    d="$T/$name"
    mkdir -p "$d"
    "$RANKD" simulate --write-config "$d/sim.yaml" $WORLD >/dev/null 2>&1 || return 1
    # The written config runs the server on the simulation's clock
    # (serve.clock: event): label windows, half-lives, recency and the
    # loop's schedules are in simulated time.
    cp "$d/sim.yaml" "$d/cfg.yaml"
    cat >>"$d/cfg.yaml" <<YAML
monitor:
  window: 2000
  reference: served
  exclude: [hour]
  noise_alpha: ${NOISE:-0}
loop:
  ranker: feed
  kind: ftrl
  every_labels: 0
  every_minutes: $every
  on_drift: $drift
  on_concept_drift: $drift
  drift_check_s: 60
  min_drift_rows: 2000
  cooldown_minutes: $EVERY_MIN
  online: $online
  online_refresh_s: 60
  online_half_life: $HALF_LIFE
  rollback: false
  args: [--gate-metrics, "auc,logloss"]
YAML
    [ -z "$WINDOW" ] || echo "  window: $WINDOW" >>"$d/cfg.yaml"
    rk_serve "$d/data" "$d/cfg.yaml" || { tail -5 "$T/serve.log" >&2; return 1; }
    url=$URL
    "$RANKD" simulate --url "$url" --setup $SIM --history-sessions "$HIST" \
        --hours 0 >"$d/setup.out" 2>&1 &&
    "$RANKD" train --data "$d/data" --config "$d/cfg.yaml" >"$d/train.out" 2>&1 &&
    "$RANKD" train --data "$d/data" --config "$d/cfg.yaml" --ranker ftrl \
        --name feed >>"$d/train.out" 2>&1 || {
        tail -5 "$d/setup.out" "$d/train.out" >&2
        return 1
    }
    sleep 2 # the server picks the new versions up
    "$RANKD" simulate --url "$url" $SIM --hours "$HOURS" --scenario taste_shift \
        --event-hour "$EVENT" --shift "$SHIFT" --shift-deg "$DEG" --speed "$SPEED" \
        --csv "$OUT/$name.csv" >"$d/sim.out" 2>&1 || { tail -5 "$d/sim.out" >&2; return 1; }
    curl -s "$url/v1/monitor/events" >"$OUT/$name.events.json"
    stop_server
}

# summary NAME: one JSON line from the curve.
summary() {
    awk -F, -v name="$1" -v ev="$EVENT" -v deg="$DEG" -v kind="$SHIFT" '
        NR > 1 { h = $1; imp[h] = $5; clk[h] = $6; best[h] = $17; if (h > last) last = h }
        function ctr(a, b,   i, c, k) {
            for (k = a; k <= b; k++) { i += imp[k]; c += clk[k] }
            return i ? c / i : 0
        }
        function bestctr(a, b,   i, c, k) {
            for (k = a; k <= b; k++) { i += imp[k]; c += best[k] * imp[k] }
            return i ? c / i : 0
        }
        END {
            pre = ctr(ev > 4 ? ev - 4 : 0, ev - 1)
            bpre = bestctr(ev > 4 ? ev - 4 : 0, ev - 1)
            first = ctr(ev, ev + 3); lastc = ctr(last - 3, last)
            blast = bestctr(last - 3, last)
            reach = "null"
            for (k = ev; k + 2 <= last; k++)
                if (pre > 0 && ctr(k, k + 2) >= 0.9 * pre) { reach = k - ev; break }
            printf "{\"bench\":\"loop\",\"policy\":\"%s\",\"shift\":\"%s\",\"shift_deg\":%s," \
                   "\"pre_ctr\":%.4f,\"first4_ctr\":%.4f,\"last4_ctr\":%.4f,\"recovery\":%.3f," \
                   "\"hours_to_90pct\":%s,\"pre_best_ctr\":%.4f,\"last4_best_ctr\":%.4f," \
                   "\"recovery_of_best\":%.3f}\n", name, kind, deg, pre, first, lastc,
                   (pre > 0 ? lastc / pre : 0), reach, bpre, blast,
                   (pre > 0 && blast > 0 ? (lastc / blast) / (pre / bpre) : 0)
        }' "$OUT/$1.csv"
}

status=0
ran=""
for p in $(echo "$POLICIES" | tr ',' ' '); do
    echo "loop.sh: policy $p..." >&2
    if run_policy "$p"; then
        summary "$p"
        ran="$ran $p"
    else
        echo "loop.sh: policy $p failed" >&2
        stop_server
        status=1
    fi
done
# The curves side by side: CTR per simulated hour, one column per policy.
{
    printf "%4s" hour
    for p in $ran; do printf " %9s" "$p"; done
    echo
    h=0
    while [ $h -lt "$HOURS" ]; do
        printf "%4s" "$h$( [ $h -eq "$EVENT" ] && echo '*' )"
        for p in $ran; do
            awk -F, -v h=$h 'NR > 1 && $1 == h { printf " %9.4f", $5 ? $6 / $5 : 0 }' \
                "$OUT/$p.csv"
        done
        echo
        h=$((h + 1))
    done
    echo "(* the taste shift; curves in $OUT)"
} >&2
exit $status
