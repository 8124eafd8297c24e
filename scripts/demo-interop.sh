#!/usr/bin/env bash
# The data jobs as a user runs them, read back by independent tools:
# `drover dev --demo` generates the demo data and runs the examples, then
# - scripts/check_annotation_export.py checks the annotation export with
#   pyarrow and pycocotools (and scores it against the generator's truth);
# - scripts/sensor_reference.py recomputes every backfilled date's sensor
#   features with DuckDB and the h3 package and compares them with the
#   published ones (same rows, counts equal, floats within 1e-9 relative).
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
