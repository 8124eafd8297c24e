#!/usr/bin/env bash
# What storing task logs costs: one `drover coordinator` and one worker of
# SLOTS slots run a TASKS-task `noop` job, without and then with
# `--task-logs` (a local directory), ROUNDS times interleaved, and the
# script prints each job's wall time from submit to its end (`job submit
# --wait`). Noop tasks make the per-attempt cost (one object write)
# as visible as it gets.
#
#   scripts/bench-task-logs.sh [TASKS] [SLOTS] [ROUNDS]
#
# Defaults: 3,000 tasks, 16 slots, 3 rounds. Uses target/release/drover
# (build it first) or $DROVER. KEEP=1 keeps the work directory.
set -euo pipefail

TASKS=${1:-3000}
SLOTS=${2:-16}
ROUNDS=${3:-3}
DROVER=${DROVER:-$(dirname "$0")/../target/release/drover}
# shellcheck source=scripts/dev-lib.sh
. "$(dirname "$0")/dev-lib.sh"
make_work

cat >"$WORK/noop.yaml" <<YAML
apiVersion: drover/v1
kind: Job
metadata: {name: many-noops}
spec:
  tasks:
    - name: n
      kind: noop
      partitions: {shards: $TASKS}
YAML

# One round: a fresh coordinator (extra flags in "$@") and worker, the job,
# then both stopped.
run() {
    local label=$1 dir
    shift
    dir=$(mktemp -d "$WORK/run.XXXX")
    local grpc http
    grpc=127.0.0.1:$(free_port)
    http=127.0.0.1:$(free_port)
    "$DROVER" coordinator --node-id 1 --listen "$grpc" --http "$http" \
        --data-dir "$dir/node" "$@" >"$dir/coordinator.log" 2>&1 &
    local coordinator=$!
    until curl -fsS -o /dev/null "http://$http/readyz" 2>/dev/null; do sleep 0.1; done
    "$DROVER" --coordinators "$grpc" worker --id bench --slots "$SLOTS" \
        --data-root "$dir/outputs" --work-dir "$dir/scratch" >"$dir/worker.log" 2>&1 &
    local worker=$!
    sleep 1
    local start end
    start=$(date +%s.%N)
    "$DROVER" --coordinators "$grpc" job submit "$WORK/noop.yaml" --wait >/dev/null 2>&1
    end=$(date +%s.%N)
    kill "$worker" "$coordinator"
    wait "$worker" "$coordinator" || true
    printf '%s %d noop tasks in %.2f s\n' "$label" "$TASKS" "$(echo "$end - $start" | bc)"
}

for _ in $(seq "$ROUNDS"); do
    run "no task logs:  "
    run "with task logs:" --task-logs "$WORK/task-logs"
done
