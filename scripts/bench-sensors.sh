#!/usr/bin/env bash
# Sensor feature backfill throughput: generates DAYS days of readings from
# DEVICES devices (about 3,000 readings per device per day), backfills
# them with the example spec (`drover job submit --once` over the range)
# on `drover dev` with one worker of SLOTS slots, and prints the job's
# time, readings per second overall and per slot, and the process's peak
# memory. Then it submits the same backfill again and prints how long the
# second run, which finds every date unchanged and skips it, took.
#
#   scripts/bench-sensors.sh [DEVICES] [DAYS] [SLOTS]
#
# Defaults: 1,000 devices, 90 days, 2 slots. Uses target/release/drover
# (build it first) or $DROVER. KEEP=1 keeps the work directory.
set -euo pipefail

DEVICES=${1:-1000}
DAYS=${2:-90}
SLOTS=${3:-2}
START=2026-01-01
DROVER=${DROVER:-$(dirname "$0")/../target/release/drover}
# shellcheck source=scripts/dev-lib.sh
. "$(dirname "$0")/dev-lib.sh"
make_work

END=$(date -u -d "$START + $((DAYS - 1)) days" +%F)
echo "generating $DAYS days ($START to $END) of readings from $DEVICES devices"
"$DROVER" datagen sensors --out "$WORK/data/sensors" --devices "$DEVICES" \
    --start "$START" --days "$DAYS" --seed 1 2> "$WORK/datagen.log"
READINGS=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["rows"])' "$WORK/data/sensors/_manifest.json")
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$WORK/key"

start_dev "$WORK/dev" "$SLOTS" "$WORK/dev.log"

SPEC=$(dirname "$0")/../jobspecs/examples/sensor-backfill.yaml
backfill() {
    "$DROVER" job submit --once --coordinators "$GRPC" --wait "$SPEC" \
        --param "data=file://$WORK/data" --param "keyFile=$WORK/key" \
        --param "start=$START" --param "end=$END" > "$WORK/submit.out" 2> "$WORK/$1.progress"
    JOB=$(grep -o 'j[0-9]*' "$WORK/submit.out" | head -1)
    "$DROVER" job status --coordinators "$GRPC" --json "$JOB" > "$WORK/$1.json"
}
backfill first
PEAK=$(awk '/VmHWM/ {print int($2 / 1024)}' "/proc/$DEV/status")
backfill again
python3 - "$WORK/first.json" "$WORK/again.json" "$READINGS" "$DAYS" "$SLOTS" "$DEVICES" <<'PY'
import json, sys
from datetime import datetime
first, again = (json.load(open(p)) for p in sys.argv[1:3])
readings, days, slots, devices = (int(a) for a in sys.argv[3:])
def seconds(job):
    if job.get("state") != "succeeded" or not job.get("startedAt") or not job.get("finishedAt"):
        sys.exit(f"job did not succeed: {json.dumps(job)[:400]}")
    return (datetime.fromisoformat(job["finishedAt"]) - datetime.fromisoformat(job["startedAt"])).total_seconds()
s, t = seconds(first), seconds(again)
skipped = again["counts"]["skipped"]
print(f"sensor backfill: {days} days, {devices} devices, {readings:,} readings, 1 worker x {slots} slots")
print(f"  job time {s:.1f} s: {readings / s:,.0f} readings/s, {readings / s / slots:,.0f} readings/s per slot")
print(f"  again, unchanged: {t:.1f} s, {skipped} of {days} dates skipped")
PY
echo "  peak RSS of drover dev (coordinator and worker): $PEAK MiB"
