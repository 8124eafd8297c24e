#!/usr/bin/env bash
# Runs the worker's s3:// tests (worker/tests/worker/s3.rs) against moto's
# S3-compatible server on loopback: starts it on a free port, creates a
# bucket, runs the ignored tests with the endpoint and credentials in the
# environment, and stops it.
#
#   scripts/s3-interop.sh [PYTHON]
#
# PYTHON is an interpreter with `moto[server]` installed (default: the CI
# virtualenv, target/ci-venv/bin/python; see scripts/requirements-ci.txt).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${1:-target/ci-venv/bin/python}
"$PYTHON" -c 'import moto.server, boto3' 2>/dev/null ||
  { echo "s3-interop: $PYTHON lacks moto[server] (pip install -r scripts/requirements-ci.txt)" >&2; exit 1; }

PORT=$("$PYTHON" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
LOG=$(mktemp)
"$PYTHON" -m moto.server -H 127.0.0.1 -p "$PORT" >"$LOG" 2>&1 &
MOTO=$!
trap 'kill $MOTO 2>/dev/null || true; wait $MOTO 2>/dev/null || true; rm -f "$LOG"' EXIT

export AWS_ENDPOINT_URL="http://127.0.0.1:$PORT"
export AWS_ACCESS_KEY_ID=drover-test AWS_SECRET_ACCESS_KEY=drover-test AWS_REGION=us-east-1
BUCKET_READY=false
for _ in $(seq 1 150); do
  if "$PYTHON" - <<'PY' 2>/dev/null; then BUCKET_READY=true; break; fi
import os, boto3
boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"]).create_bucket(Bucket="drover-test")
PY
  sleep 0.2
done
$BUCKET_READY || { echo "s3-interop: moto did not start; its log:" >&2; cat "$LOG" >&2; exit 1; }
export DROVER_S3_TEST_URL="s3://drover-test/run-$$"
cargo test -p drover-worker --test worker -- --ignored --nocapture s3::
