#!/usr/bin/env bash
# Dedup throughput: generates a text corpus, runs the example dedup job
# (MinHash-LSH, threshold 0.8, 128 permutations, word 3-grams) on
# `drover dev` with one worker of SLOTS slots, and prints documents per
# second, overall and per slot, from the job's own start and finish times.
#
#   scripts/bench-dedup.sh [DOCS] [SLOTS] [SHARDS]
#
# Defaults: 1,000,000 documents, 2 slots, 8 shards. Uses
# target/release/drover (build it first) or $DROVER. KEEP=1 keeps the
# work directory and prints where it is.
set -euo pipefail

DOCS=${1:-1000000}
SLOTS=${2:-2}
SHARDS=${3:-8}
DROVER=${DROVER:-$(dirname "$0")/../target/release/drover}
# shellcheck source=scripts/dev-lib.sh
. "$(dirname "$0")/dev-lib.sh"
make_work

echo "generating $DOCS documents"
"$DROVER" datagen texts --out "$WORK/data/texts" --docs "$DOCS" --dup-rate 0.1 --near-dup-rate 0.1 --seed 1 > /dev/null

start_dev "$WORK/dev" "$SLOTS" "$WORK/dev.log"

SPEC=$(dirname "$0")/../jobspecs/examples/dedup.yaml
sed "s/shards: 4/shards: $SHARDS/" "$SPEC" > "$WORK/spec.yaml"
"$DROVER" job submit --coordinators "$GRPC" --wait "$WORK/spec.yaml" \
    --param "data=file://$WORK/data" > "$WORK/submit.out"
JOB=$(grep -o 'j[0-9]*' "$WORK/submit.out" | head -1)
"$DROVER" job status --coordinators "$GRPC" --json "$JOB" > "$WORK/status.json"
PEAK=$(awk '/VmHWM/ {print int($2 / 1024)}' "/proc/$DEV/status")
python3 - "$WORK/status.json" "$DOCS" "$SLOTS" "$SHARDS" <<'PY'
import json, sys
from datetime import datetime
job = json.load(open(sys.argv[1]))
docs, slots, shards = (int(a) for a in sys.argv[2:])
started, finished = job.get("startedAt"), job.get("finishedAt")
if job.get("state") != "succeeded" or not started or not finished:
    sys.exit(f"job did not succeed: {json.dumps(job)[:400]}")
seconds = (datetime.fromisoformat(finished) - datetime.fromisoformat(started)).total_seconds()
print(f"dedup: {docs} documents, {shards} shards, 1 worker x {slots} slots")
print(f"  job time {seconds:.1f} s: {docs / seconds:,.0f} docs/s, {docs / seconds / slots:,.0f} docs/s per slot")
PY
echo "  peak RSS of drover dev (coordinator and worker): $PEAK MiB"
