#!/usr/bin/env bash
# The data jobs as a user runs them, read back by independent tools:
# `drover dev --demo` generates the demo data and runs the examples, then
# - scripts/check_annotation_export.py checks the annotation export with
#   pyarrow and pycocotools (and scores it against the generator's truth);
# - scripts/sensor_reference.py recomputes every backfilled date's sensor
#   features with DuckDB and the h3 package and compares them with the
#   published ones (same rows, counts equal, floats within 1e-9 relative);
# - scripts/user_files.py writes the demo's data again as users' tools do
#   (pyarrow, no manifest: large_string and dictionary Parquet, CSV, the
#   corpus as Parquet); each passes `drover job plan --check-input`, runs
#   on `drover dev`, and its result at the spec's output equals the demo's
#   (scripts/same_result.py).
#
#   scripts/demo-interop.sh [PYTHON] [DROVER]
#
# PYTHON has the packages of scripts/requirements-ci.txt (default the CI
# virtualenv); DROVER defaults to the debug build.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${1:-target/ci-venv/bin/python}
DROVER=${2:-${CARGO_TARGET_DIR:-target}/debug/drover}
"$PYTHON" -c 'import pyarrow, pycocotools, duckdb, h3' 2>/dev/null ||
  { echo "demo-interop: $PYTHON lacks pyarrow, pycocotools, duckdb or h3 (pip install -r scripts/requirements-ci.txt)" >&2; exit 1; }

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
free_port() { "$PYTHON" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
fail() { echo "demo-interop: $1:" >&2; cat "$WORK/demo.log" >&2; exit 1; }

"$DROVER" dev --demo --data-dir "$WORK/data" \
  --listen "127.0.0.1:$(free_port)" --http "127.0.0.1:$(free_port)" 2> "$WORK/demo.log" ||
  fail "the demo failed"

EXPORT=$(sed -n 's/^ *annotation-export.yaml: output in //p' "$WORK/demo.log")
[ -n "$EXPORT" ] || fail "no export in the demo's output"
"$PYTHON" scripts/check_annotation_export.py "$EXPORT" --truth "$WORK/data/annotations"

# The backfill's dates, from its line in the demo's output.
RANGE=$(sed -n 's/^submitted sensor-backfill.yaml backfill \([0-9-]*\)\.\.\([0-9-]*\) as .*/\1 \2/p' "$WORK/demo.log")
[ -n "$RANGE" ] || fail "no sensor backfill in the demo's output"
read -r FIRST LAST <<< "$RANGE"
DATES=()
d=$FIRST
while :; do
  DATES+=(--date "$d")
  [ "$d" = "$LAST" ] && break
  d=$(date -u -d "$d + 1 day" +%F)
done
grep -q "nightly run for $LAST .*succeeded 2/2 done (1 skipped)" "$WORK/demo.log" ||
  fail "the nightly run for $LAST did not skip the date the backfill had done"
# The example's settings: resolution 8, 1 h windows, k 5, 100 m, 70 m/s.
"$PYTHON" scripts/sensor_reference.py --input "$WORK/data/sensors" --features "$WORK/data/features" \
  --resolution 8 --window-ms 3600000 --k 5 --max-accuracy 100 --max-speed 70 "${DATES[@]}"

# Users' own files: the demo's data written again by pyarrow with no
# manifest (large_string and dictionary columns in Hive-style directories,
# a CSV, the dedup corpus as Parquet), checked by `drover job plan
# --check-input`, run on `drover dev`, and read back: each result, found at
# the spec's output, must equal the demo's own.
"$PYTHON" scripts/user_files.py "$WORK/data" "$WORK/user"
GRPC=127.0.0.1:$(free_port)
HTTP=127.0.0.1:$(free_port)
"$DROVER" dev --data-dir "$WORK/dev" --workers 1 --slots 4 --listen "$GRPC" --http "$HTTP" 2> "$WORK/dev.log" &
DEV=$!
trap 'kill $DEV 2>/dev/null || true; wait $DEV 2>/dev/null || true; [ -n "${KEEP_WORK:-}" ] || rm -rf "$WORK"' EXIT
for _ in $(seq 200); do curl -fs "http://$HTTP/readyz" > /dev/null 2>&1 && break; sleep 0.1; done
export DROVER_COORDINATORS=$GRPC
KEY=$WORK/data/secrets/annotator-key
run_user_job() { # SPEC DATA [--param K=V...]: check the input, then run the job to success
  local spec=$1 data=$2
  shift 2
  "$DROVER" job plan "$spec" --param "data=file://$data" "$@" --check-input ||
    { cat "$WORK/dev.log" >&2; echo "demo-interop: --check-input refused $data" >&2; exit 1; }
  "$DROVER" job submit "$spec" --param "data=file://$data" "$@" --wait > "$WORK/submit.log" 2>&1 ||
    { cat "$WORK/submit.log" "$WORK/dev.log" >&2; echo "demo-interop: the job on $data failed" >&2; exit 1; }
}
for variant in large csv; do
  run_user_job jobspecs/examples/annotation-export.yaml "$WORK/user/$variant" --param "keyFile=$KEY"
  OUT=$(ls -d "$WORK/user/$variant"/exports/*/)
  "$PYTHON" scripts/check_annotation_export.py "$OUT" --truth "$WORK/data/annotations"
  "$PYTHON" scripts/same_result.py "$EXPORT" "$OUT" 'jsonl/' 'coco/' 'parquet/labels/'
done
sed -e 's/format: jsonl/format: parquet/' jobspecs/examples/dedup.yaml > "$WORK/dedup-parquet.yaml"
run_user_job "$WORK/dedup-parquet.yaml" "$WORK/user"
"$PYTHON" scripts/same_result.py --fields id,representative "$WORK/data/dedup" "$WORK/user/dedup" '_dedup/duplicates'
# The readings, each date as 3 part tasks and a merge: the same features as
# the demo's one task per date, byte for byte.
sed -e 's/        maxSpeedMps: 70/        maxSpeedMps: 70\n        shards: 3/' jobspecs/examples/sensor-backfill.yaml > "$WORK/sensor-shards.yaml"
"$DROVER" job plan "$WORK/sensor-shards.yaml" --param "data=file://$WORK/user" \
  --param "start=$FIRST" --param "end=$LAST" --check-input > /dev/null ||
  { echo "demo-interop: --check-input refused the readings" >&2; exit 1; }
"$DROVER" job submit --once "$WORK/sensor-shards.yaml" --param "data=file://$WORK/user" \
  --param "keyFile=$WORK/data/secrets/device-key" --param "start=$FIRST" --param "end=$LAST" \
  --wait > "$WORK/submit.log" 2>&1 ||
  { cat "$WORK/submit.log" "$WORK/dev.log" >&2; echo "demo-interop: the sharded backfill failed" >&2; exit 1; }
SAME=0
for d in "${DATES[@]}"; do
  [ "$d" = --date ] && continue
  cmp "$(ls "$WORK/data/features/date=$d"/part-*.parquet)" "$(ls "$WORK/user/features/date=$d"/part-*.parquet)" ||
    { echo "demo-interop: the sharded features of $d differ from the demo's" >&2; exit 1; }
  SAME=$((SAME + 1))
done
echo "sensor backfill: $SAME dates of pyarrow-written readings, each in 3 parts and a merge: the demo's features, byte for byte"
