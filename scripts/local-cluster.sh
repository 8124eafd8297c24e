#!/usr/bin/env bash
# A local 3-coordinator cluster with two workers, for trying Drover out.
#
#   scripts/local-cluster.sh start   # build, start, wait for a leader
#   scripts/local-cluster.sh stop    # SIGTERM everything (workers drain)
#
# Coordinators: gRPC 127.0.0.1:7071-7073, HTTP 127.0.0.1:8081-8083.
# Workers: /metrics on 127.0.0.1:9091-9092. State, outputs and logs live
# under ./drover-data/local. Override the binary with DROVER=path.
set -euo pipefail

ROOT=./drover-data/local
DROVER=${DROVER:-./target/release/drover}
PEERS=1=127.0.0.1:7071,2=127.0.0.1:7072,3=127.0.0.1:7073
export DROVER_COORDINATORS=127.0.0.1:7071,127.0.0.1:7072,127.0.0.1:7073

start() {
  if [[ -z ${DROVER_SKIP_BUILD:-} ]]; then
    cargo build --release -p drover
  fi
  mkdir -p "$ROOT"
  for i in 1 2 3; do
    "$DROVER" coordinator --node-id "$i" --listen "127.0.0.1:707$i" \
      --http "127.0.0.1:808$i" --peers "$PEERS" --data-dir "$ROOT/node-$i" \
      --task-logs "$ROOT/task-logs" >"$ROOT/node-$i.log" 2>&1 &
    echo $! >"$ROOT/node-$i.pid"
  done
  # Wait for an election (a leader id other than 0).
  for _ in $(seq 1 100); do
    if "$DROVER" cluster status --json 2>/dev/null | grep -q '"leader": [1-9]'; then break; fi
    sleep 0.2
  done
  "$DROVER" cluster status
  for w in 1 2; do
    "$DROVER" worker --id "local-worker-$w" --slots 4 --http "127.0.0.1:909$w" \
      --data-root "file://$ROOT/outputs" --work-dir "$ROOT/scratch-$w" \
      >"$ROOT/worker-$w.log" 2>&1 &
    echo $! >"$ROOT/worker-$w.pid"
  done
  echo "started; logs in $ROOT. export DROVER_COORDINATORS=$DROVER_COORDINATORS"
}

stop() {
  # Workers first, so they hand their tasks back while a leader exists.
  for f in "$ROOT"/worker-*.pid "$ROOT"/node-*.pid; do
    [[ -e $f ]] || continue
    kill -TERM "$(cat "$f")" 2>/dev/null || true
    rm -f "$f"
  done
  wait 2>/dev/null || true
  echo "stopped"
}

case ${1:-} in
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
