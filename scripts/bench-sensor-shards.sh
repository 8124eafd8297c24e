#!/usr/bin/env bash
# One day of sensor readings far larger than a task's memory budget, run
# by one task and then split over SHARDS part tasks and a merge on WORKERS
# real `drover worker` processes: prints each run's job time and every
# worker process's peak memory, and checks that both runs published the
# same features file, byte for byte.
#
#   scripts/bench-sensor-shards.sh [DEVICES] [SHARDS] [WORKERS] [MEMORY_MB]
#
# Defaults: 1,500 devices (about 4.5 million readings, 190 MiB of readings
# in memory at 45 bytes each), 8 shards, 4 workers of one slot, 16 MiB per
# task (`memoryMb`). Uses target/release/drover (build it first) or
# $DROVER. KEEP=1 keeps the work directory.
set -euo pipefail

DEVICES=${1:-1500}
SHARDS=${2:-8}
WORKERS=${3:-4}
MEMORY_MB=${4:-16}
DAY=2026-01-01
ROOT=$(cd "$(dirname "$0")/.." && pwd)
DROVER=${DROVER:-$ROOT/target/release/drover}
# shellcheck source=scripts/dev-lib.sh
. "$ROOT/scripts/dev-lib.sh"
make_work
PIDS=()
stop_workers() {
    for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    PIDS=()
}
trap 'stop_workers; cleanup_work' EXIT

"$DROVER" datagen sensors --out "$WORK/data/sensors" --devices "$DEVICES" \
    --start "$DAY" --days 1 --seed 1 2> "$WORK/datagen.log"
READINGS=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["rows"])' "$WORK/data/sensors/_manifest.json")
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$WORK/key"
echo "one day: $READINGS readings from $DEVICES devices, $((READINGS * 45 / 1048576)) MiB in memory at 45 bytes each; a task's budget: $MEMORY_MB MiB"

# The coordinator alone; the workers are separate processes.
GRPC=127.0.0.1:$(free_port)
HTTP=127.0.0.1:$(free_port)
"$DROVER" dev --data-dir "$WORK/dev" --workers 0 --listen "$GRPC" --http "$HTTP" 2> "$WORK/dev.log" &
DEV=$!
for _ in $(seq 100); do curl -fs "http://$HTTP/readyz" > /dev/null 2>&1 && break; sleep 0.1; done

run() { # NAME SHARDS: one backfill of the day into features-NAME
    local name=$1 shards=$2
    for w in $(seq "$WORKERS"); do
        "$DROVER" worker --coordinators "$GRPC" --slots 1 --id "w$w" \
            --work-dir "$WORK/worker-$name-$w" 2> "$WORK/worker-$name-$w.log" &
        PIDS+=($!)
    done
    sed -e "s|        maxSpeedMps: 70|        maxSpeedMps: 70\n        shards: $shards\n        memoryMb: $MEMORY_MB|" \
        -e "s|\${params.data}/features|\${params.data}/features-$name|" \
        "$ROOT/jobspecs/examples/sensor-backfill.yaml" > "$WORK/$name.yaml"
    "$DROVER" job submit --once --coordinators "$GRPC" --wait "$WORK/$name.yaml" \
        --param "data=file://$WORK/data" --param "keyFile=$WORK/key" \
        --param "start=$DAY" --param "end=$DAY" > "$WORK/$name.out" 2> "$WORK/$name.progress"
    local job
    job=$(grep -o 'j[0-9]*' "$WORK/$name.out" | head -1)
    "$DROVER" job status --coordinators "$GRPC" --json "$job" > "$WORK/$name.json"
    local peaks=()
    for p in "${PIDS[@]}"; do peaks+=("$(awk '/VmHWM/ {print int($2 / 1024)}' "/proc/$p/status") MiB"); done
    python3 - "$WORK/$name.json" "$name" "$shards" "$READINGS" "${peaks[*]}" <<'PY'
import json, sys
from datetime import datetime
job, name, shards, readings, peaks = json.load(open(sys.argv[1])), sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
if job.get("state") != "succeeded":
    sys.exit(f"{name}: the job did not succeed: {json.dumps(job)[:600]}")
s = (datetime.fromisoformat(job["finishedAt"]) - datetime.fromisoformat(job["startedAt"])).total_seconds()
tasks = "one task" if shards == 1 else f"{shards} parts and a merge"
print(f"  {name}: {tasks}, job time {s:.1f} s ({readings / s:,.0f} readings/s); worker peak RSS: {peaks}")
PY
    stop_workers
}
run whole 1
run sharded "$SHARDS"

a=$(ls "$WORK"/data/features-whole/date=$DAY/part-*.parquet)
b=$(ls "$WORK"/data/features-sharded/date=$DAY/part-*.parquet)
if cmp -s "$a" "$b"; then
    echo "  the same features, byte for byte: $(basename "$a") ($(stat -c %s "$a") bytes)"
else
    echo "the sharded features differ from the one task's: $a $b" >&2
    exit 1
fi
