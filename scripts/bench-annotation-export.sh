#!/usr/bin/env bash
# Export throughput: generates annotation projects, runs the example
# annotation export on `drover dev` with one worker of SLOTS slots, and
# prints items per second per slot, from the job's own start and finish
# times.
#
#   scripts/bench-annotation-export.sh [ITEMS_PER_PROJECT] [PROJECTS] [SLOTS] [SHARDS]
#
# Defaults: 1,000,000 items, 1 project (classification; 2 adds a
# bounding-box project), 2 slots, 8 shards. Uses target/release/drover
# (build it first) or $DROVER.
set -euo pipefail

ITEMS=${1:-1000000}
PROJECTS=${2:-1}
SLOTS=${3:-2}
SHARDS=${4:-8}
DROVER=${DROVER:-$(dirname "$0")/../target/release/drover}
# shellcheck source=scripts/dev-lib.sh
. "$(dirname "$0")/dev-lib.sh"
make_work

echo "generating $PROJECTS project(s) of $ITEMS items"
"$DROVER" datagen annotations --out "$WORK/data/annotations" --projects "$PROJECTS" --items "$ITEMS" --seed 1
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$WORK/key"

start_dev "$WORK/dev" "$SLOTS" "$WORK/dev.log"

SPEC=$(dirname "$0")/../jobspecs/examples/annotation-export.yaml
sed "s/shards: 8/shards: $SHARDS/" "$SPEC" > "$WORK/spec.yaml"
"$DROVER" job submit --coordinators "$GRPC" --wait "$WORK/spec.yaml" \
    --param "data=file://$WORK/data" --param "keyFile=$WORK/key" > "$WORK/submit.out"
JOB=$(grep -o 'j[0-9]*' "$WORK/submit.out" | head -1)
"$DROVER" job status --coordinators "$GRPC" --json "$JOB" > "$WORK/status.json"
PEAK=$(awk '/VmHWM/ {print int($2 / 1024)}' "/proc/$DEV/status")
python3 - "$WORK/status.json" "$ITEMS" "$PROJECTS" "$SLOTS" "$SHARDS" <<'PY'
import json, sys
from datetime import datetime
job = json.load(open(sys.argv[1]))
items, projects, slots, shards = (int(a) for a in sys.argv[2:])
started, finished = job.get("startedAt"), job.get("finishedAt")
if job.get("state") != "succeeded" or not started or not finished:
    sys.exit(f"job did not succeed: {json.dumps(job)[:400]}")
seconds = (datetime.fromisoformat(finished) - datetime.fromisoformat(started)).total_seconds()
total = items * projects
print(f"annotation export: {total} items ({projects} project(s)), {shards} shards, 1 worker x {slots} slots")
print(f"  job time {seconds:.1f} s: {total / seconds:,.0f} items/s, {total / seconds / slots:,.0f} items/s per slot")
PY
echo "  peak RSS of drover dev (coordinator and worker): $PEAK MiB"
