#!/usr/bin/env bash
# The annotation export as a user runs it, read back by independent tools:
# `drover dev --demo` generates two projects and exports them, then
# scripts/check_annotation_export.py checks the export with pyarrow and
# pycocotools (and scores it against the generator's truth).
#
#   scripts/annotation-interop.sh [PYTHON] [DROVER]
#
# PYTHON has pyarrow and pycocotools (scripts/requirements-ci.txt; default
# the CI virtualenv); DROVER defaults to the debug build.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${1:-target/ci-venv/bin/python}
DROVER=${2:-${CARGO_TARGET_DIR:-target}/debug/drover}
"$PYTHON" -c 'import pyarrow, pycocotools' 2>/dev/null ||
  { echo "annotation-interop: $PYTHON lacks pyarrow or pycocotools (pip install -r scripts/requirements-ci.txt)" >&2; exit 1; }

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
free_port() { "$PYTHON" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

"$DROVER" dev --demo --data-dir "$WORK/data" \
  --listen "127.0.0.1:$(free_port)" --http "127.0.0.1:$(free_port)" 2> "$WORK/demo.log" ||
  { echo "annotation-interop: the demo failed:" >&2; cat "$WORK/demo.log" >&2; exit 1; }
EXPORT=$(sed -n 's/^ *annotation-export.yaml: output in //p' "$WORK/demo.log")
[ -n "$EXPORT" ] || { echo "annotation-interop: no export in the demo's output:" >&2; cat "$WORK/demo.log" >&2; exit 1; }
"$PYTHON" scripts/check_annotation_export.py "$EXPORT" --truth "$WORK/data/annotations"
