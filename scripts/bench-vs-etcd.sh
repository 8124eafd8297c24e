#!/usr/bin/env bash
# Drover's 3-node throughput next to a 3-member etcd on the same machine, in
# one run, so both figures share the disk, the cores and the moment.
#
#   scripts/bench-vs-etcd.sh
#
# etcd: installed from Debian (etcd-server, etcd-client) when missing, three
# members on loopback (clients 127.0.0.1:23791-23793, peers 23801-23803),
# measured with `etcdctl check perf --load=l`: 60 s of 1 KiB puts from 500
# clients, offered at 8,000 writes/s, so the figure never exceeds about
# 8,000 even on a machine that could do more.
#
# Drover: `drover bench --nodes 3 --scenario throughput`, after etcd has
# stopped. It is built with `cargo build --release -p drover` before etcd
# starts (unless DROVER_SKIP_BUILD is set), so a build failure costs no etcd
# run and the build never competes with either measurement.
#
# Environment:
#   BENCH_OUT          output directory (default ./target/bench)
#   DROVER             the drover binary (default
#                      ${CARGO_TARGET_DIR:-target}/release/drover)
#   DROVER_BENCH_ARGS  extra arguments for `drover bench`, split on spaces
#   DROVER_SCENARIO    its --scenario (default throughput; `all` runs every
#                      scenario, the throughput one first)
#   DROVER_SKIP_BUILD  set to skip the cargo build
#
# The ratio compares unlike units: an etcd write is one replicated 1 KiB put,
# a Drover task is at least a replicated lease and a replicated completion.
# It is a sanity check on the order of magnitude, not a ranking.
#
# Writes, in the output directory: etcd-check-perf.txt (etcdctl's output),
# etcd-<member>.log, drover.json and bench-vs-etcd.json (the summary).
set -euo pipefail

OUT=${BENCH_OUT:-./target/bench}
SCENARIO=${DROVER_SCENARIO:-throughput}
DROVER=${DROVER:-${CARGO_TARGET_DIR:-target}/release/drover}
MEMBERS=(e1 e2 e3)
CLIENT_PORTS=(23791 23792 23793)
PEER_PORTS=(23801 23802 23803)
# How long the members get to elect a leader and report healthy.
HEALTHY_WAIT_S=30

export ETCDCTL_API=3

die() {
  echo "bench-vs-etcd: $*" >&2
  exit 1
}

mkdir -p "$OUT"

# Reads a top-level number from a JSON file with python3, or jq if python3
# is missing; prints nothing if the key is absent or not a number.
json_number() {
  local file=$1 key=$2
  if command -v python3 >/dev/null; then
    python3 -c '
import json, math, sys
try:
    value = json.load(open(sys.argv[1])).get(sys.argv[2])
except (OSError, ValueError, AttributeError):
    sys.exit(0)
if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
    print(value)
' "$file" "$key"
  elif command -v jq >/dev/null; then
    jq -r --arg key "$key" '.[$key] | numbers' "$file" 2>/dev/null || true
  else
    die "need python3 or jq to read $file"
  fi
}

install_etcd() {
  if command -v etcd >/dev/null && command -v etcdctl >/dev/null; then
    return
  fi
  local sudo=()
  if [[ $(id -u) -ne 0 ]]; then
    sudo=(sudo)
  fi
  echo "installing etcd-server and etcd-client from Debian"
  "${sudo[@]}" apt-get update
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y etcd-server etcd-client
}

ETCD_TMP=
ETCD_PIDS=()

stop_etcd() {
  local pid
  for pid in "${ETCD_PIDS[@]}"; do
    kill "$pid" 2>/dev/null || true
  done
  for pid in "${ETCD_PIDS[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
  ETCD_PIDS=()
  if [[ -n $ETCD_TMP ]]; then
    rm -rf "$ETCD_TMP"
    ETCD_TMP=
  fi
}
trap stop_etcd EXIT

start_etcd() {
  ETCD_TMP=$(mktemp -d)
  local cluster="" i
  for i in "${!MEMBERS[@]}"; do
    cluster+="${cluster:+,}${MEMBERS[i]}=http://127.0.0.1:${PEER_PORTS[i]}"
  done
  for i in "${!MEMBERS[@]}"; do
    local name=${MEMBERS[i]}
    local client=http://127.0.0.1:${CLIENT_PORTS[i]}
    local peer=http://127.0.0.1:${PEER_PORTS[i]}
    etcd --name "$name" --logger=zap --data-dir "$ETCD_TMP/$name" \
      --listen-client-urls "$client" --advertise-client-urls "$client" \
      --listen-peer-urls "$peer" --initial-advertise-peer-urls "$peer" \
      --initial-cluster "$cluster" --initial-cluster-state new \
      --initial-cluster-token "drover-bench-$$" \
      >"$OUT/etcd-$name.log" 2>&1 &
    ETCD_PIDS+=($!)
  done
}

wait_healthy() {
  local deadline=$((SECONDS + HEALTHY_WAIT_S)) pid
  until etcdctl --endpoints="$ENDPOINTS" endpoint health >/dev/null 2>&1; do
    for pid in "${ETCD_PIDS[@]}"; do
      kill -0 "$pid" 2>/dev/null || die "an etcd member exited; see $OUT/etcd-*.log"
    done
    ((SECONDS < deadline)) || die "etcd not healthy after ${HEALTHY_WAIT_S} s; see $OUT/etcd-*.log"
    sleep 0.5
  done
  etcdctl --endpoints="$ENDPOINTS" endpoint health
}

ENDPOINTS=$(printf 'http://127.0.0.1:%s,' "${CLIENT_PORTS[@]}")
ENDPOINTS=${ENDPOINTS%,}

if [[ -z ${DROVER_SKIP_BUILD:-} ]]; then
  cargo build --release -p drover
fi
command -v "$DROVER" >/dev/null || die "no drover binary at $DROVER"

# --- etcd ---------------------------------------------------------------
install_etcd
ETCD_VERSION=$(etcd --version | sed -n 's/^etcd Version: //p')
echo "etcd ${ETCD_VERSION:-unknown}: 3 members on $ENDPOINTS"
start_etcd
wait_healthy

# check perf exits non-zero whenever one of its PASS criteria fails (too few
# writes/s for the load, a slow request, a high stddev), which on a small
# machine is the usual case; the figures are printed either way, so keep
# going and parse them.
perf_status=0
etcdctl --endpoints="$ENDPOINTS" check perf --load=l >"$OUT/etcd-check-perf.txt" 2>&1 ||
  perf_status=$?
# The progress bar redraws with carriage returns; show only the result lines.
tr '\r' '\n' <"$OUT/etcd-check-perf.txt" | grep -E '^(PASS|FAIL|Slowest|Stddev)' || true
ETCD_WRITES_PER_S=$(tr '\r' '\n' <"$OUT/etcd-check-perf.txt" |
  sed -nE 's/.*Throughput (is|too low:) ([0-9]+) writes\/s.*/\2/p' | head -n 1)
[[ -n $ETCD_WRITES_PER_S ]] ||
  die "no throughput in etcdctl check perf's output (exit $perf_status); see $OUT/etcd-check-perf.txt"
if ((perf_status == 0)); then ETCD_PASSED=true; else ETCD_PASSED=false; fi
stop_etcd

# --- drover -------------------------------------------------------------
rm -f "$OUT/drover.json"
# DROVER_BENCH_ARGS is split on spaces on purpose.
# shellcheck disable=SC2086
"$DROVER" bench --nodes 3 --scenario "$SCENARIO" --json "$OUT/drover.json" ${DROVER_BENCH_ARGS:-}
[[ -s $OUT/drover.json ]] || die "drover bench wrote no $OUT/drover.json"
DROVER_TASKS_PER_S=$(json_number "$OUT/drover.json" tasks_per_second)
# Checked here, whichever tool read it, because it goes into the summary as
# a bare JSON number.
[[ $DROVER_TASKS_PER_S =~ ^[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?$ ]] ||
  die "no numeric tasks_per_second in $OUT/drover.json"

# --- summary ------------------------------------------------------------
RATIO=$(awk -v d="$DROVER_TASKS_PER_S" -v e="$ETCD_WRITES_PER_S" \
  'BEGIN { if (e > 0) printf "%.3f", d / e; else print "null" }')
echo
printf '%-28s %10s\n' "etcd writes/s (check perf l)" "$ETCD_WRITES_PER_S"
printf '%-28s %10.0f\n' "drover tasks/s" "$DROVER_TASKS_PER_S"
printf '%-28s %10s\n' "drover / etcd" "$RATIO"
cat >"$OUT/bench-vs-etcd.json" <<EOF
{
  "etcd": {
    "version": "${ETCD_VERSION:-unknown}",
    "members": 3,
    "load": "l",
    "writes_per_second": $ETCD_WRITES_PER_S,
    "check_perf_passed": $ETCD_PASSED
  },
  "drover": {
    "nodes": 3,
    "scenario": "$SCENARIO",
    "tasks_per_second": $DROVER_TASKS_PER_S
  },
  "drover_per_etcd": $RATIO
}
EOF
echo "summary: $OUT/bench-vs-etcd.json"
