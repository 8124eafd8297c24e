#!/usr/bin/env python3
"""Checks the monitoring files against promtool and against real scrapes.

1. `promtool check rules` and `promtool test rules` on
   deploy/prometheus/alerts.yml (the unit tests make each alert fire on a
   made-up history and stay quiet on a healthy one), and `promtool check
   config` on deploy/prometheus/prometheus.yml.
2. Starts a real coordinator and worker, runs a job with a retried failure,
   scrapes both /metrics and lints them with `promtool check metrics`
   (Prometheus naming conventions: units, `_total` counters, help text).
3. Checks that every metric the alerts and the Grafana dashboard
   (deploy/grafana/drover.json) query is one the binaries really export,
   and that the dashboard is well formed.

Usage: check-monitoring.py DROVER_BINARY
"""

import json
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROMETHEUS = ROOT / "deploy/prometheus"
DASHBOARD = ROOT / "deploy/grafana/drover.json"


def run(*args, cwd=None):
    out = subprocess.run(args, cwd=cwd, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"{' '.join(map(str, args))} failed:\n{out.stdout}{out.stderr}")
    return out.stdout


def free_address():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"


def get(url):
    with urllib.request.urlopen(url, timeout=5) as r:
        return r.read().decode()


def as_prometheus_text(openmetrics):
    """OpenMetrics text as the classic text format promtool's linter reads:
    a counter's metadata is named after its `_total` samples, and `# UNIT`
    and `# EOF` lines do not exist there."""
    counters = {m for m in re.findall(r"^# TYPE (\S+) counter$", openmetrics, re.M)}
    out = []
    for line in openmetrics.splitlines():
        if line.startswith("# UNIT") or line == "# EOF":
            continue
        m = re.match(r"^# (HELP|TYPE) (\S+)(.*)$", line)
        if m and m.group(2) in counters:
            line = f"# {m.group(1)} {m.group(2)}_total{m.group(3)}"
        out.append(line)
    return "\n".join(out) + "\n"


def series_names(text):
    """Names of the series a scrape has or declares: a labelled family with
    no child yet (no stale token rejected so far, say) is still declared."""
    names = {m.group(1) for m in re.finditer(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)[{ ]", text, re.M)}
    suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"]}
    for name, kind in re.findall(r"^# TYPE (\S+) (\S+)$", text, re.M):
        names.update(name + s for s in suffixes.get(kind, [""]))
    return names


NAP_SPEC = """apiVersion: drover/v1
kind: Job
metadata: {name: nap, namespace: monitoring-check}
spec:
  defaults:
    retries: {max: 3, backoff: constant, initialDelay: 1s, maxDelay: 1s}
  tasks:
    - name: nap
      kind: sleep
      config: {ms: 4000}
"""


def wait_state(cli, job, state, limit=90):
    deadline = time.time() + limit
    while time.time() < deadline:
        status = json.loads(run(*cli, "job", "status", job, "--json"))
        if status["state"] == state:
            return
        time.sleep(0.3)
    sys.exit(f"job {job} did not reach {state} within {limit} s")


OUTSIDE_SPEC = """apiVersion: drover/v1
kind: Job
metadata: {name: outside, namespace: team-x}
spec:
  tasks:
    - {name: d, kind: dedup, config: {input: "s3://team-y/in", output: "s3://team-x/out"}}
"""


def scrape(drover, work):
    """A coordinator and a worker that have run a job with a retried
    failure, so failure and retry series exist too."""
    grpc, chttp, whttp = free_address(), free_address(), free_address()
    procs = []
    try:
        for name, args in [
            ("coordinator", ["coordinator", "--node-id", "1", "--listen", grpc, "--http", chttp,
                             "--data-dir", str(work / "node")]),
            ("worker", ["--coordinators", grpc, "worker", "--http", whttp, "--slots", "2",
                        "--data-root", str(work / "outputs"), "--work-dir", str(work / "scratch")]),
        ]:
            log = open(work / f"{name}.log", "wb")
            procs.append(subprocess.Popen([drover, *args], stdout=log, stderr=log))
        deadline = time.time() + 60
        while True:
            try:
                if json.loads(get(f"http://{chttp}/readyz"))["ready"]:
                    break
            except (OSError, ValueError):
                pass
            if time.time() > deadline:
                sys.exit(f"the coordinator did not become ready; logs in {work}")
            time.sleep(0.2)
        cli = [drover, "--coordinators", grpc]
        run(*cli, "job", "submit", ROOT / "jobspecs/examples/dag-sleep.yaml", "--param", "sleepMs=50",
            "--wait")
        # A worker paused past its lease: its late heartbeat is fenced off,
        # so the stale-token series exists too.
        run(*cli, "cluster", "settings", "--lease-ttl", "2s", "--heartbeat-interval", "500ms",
            "--worker-timeout", "60s")
        spec = work / "nap.yaml"
        spec.write_text(NAP_SPEC)
        job = run(*cli, "job", "submit", spec).strip().splitlines()[-1]
        wait_state(cli, job, "running")
        time.sleep(1)
        worker = procs[1]
        worker.send_signal(signal.SIGSTOP)
        time.sleep(5)
        worker.send_signal(signal.SIGCONT)
        wait_state(cli, job, "succeeded")
        # A spec outside its namespace's policy, so the refusal series
        # exists too.
        run(*cli, "policy", "set", "team-x", "--allow-url", "s3://team-x")
        outside = work / "outside.yaml"
        outside.write_text(OUTSIDE_SPEC)
        refused = subprocess.run([*cli, "job", "submit", outside], capture_output=True, text=True)
        if refused.returncode != 2 or "outside what namespace" not in refused.stderr:
            sys.exit(f"a spec outside its policy was not refused: {refused.stderr}")
        return get(f"http://{chttp}/metrics"), get(f"http://{whttp}/metrics")
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(timeout=15)


def main():
    drover = sys.argv[1]
    print(run("promtool", "check", "rules", "alerts.yml", cwd=PROMETHEUS).strip())
    print(run("promtool", "test", "rules", "alerts_test.yml", cwd=PROMETHEUS).strip())
    print(run("promtool", "check", "config", "prometheus.yml", cwd=PROMETHEUS).strip())

    work = Path(tempfile.mkdtemp(prefix="drover-monitoring-"))
    coordinator, worker = scrape(drover, work)
    shutil.rmtree(work, ignore_errors=True)
    for name, text in [("coordinator", coordinator), ("worker", worker)]:
        lint = subprocess.run(["promtool", "check", "metrics"], input=as_prometheus_text(text),
                              capture_output=True, text=True)
        if lint.returncode != 0 or lint.stdout.strip() or lint.stderr.strip():
            sys.exit(f"promtool check metrics on the {name}'s /metrics:\n{lint.stdout}{lint.stderr}")
        print(f"promtool check metrics: the {name}'s {len(series_names(text))} series names pass")

    exported = series_names(coordinator) | series_names(worker)
    alerts = (PROMETHEUS / "alerts.yml").read_text()
    dashboard = json.loads(DASHBOARD.read_text())
    queried = set(re.findall(r"\bdrover_[a-z_]+", alerts))
    exprs = []
    ids = set()
    for panel in dashboard["panels"]:
        assert panel["id"] not in ids, f"panel id {panel['id']} is used twice"
        ids.add(panel["id"])
        if panel["type"] == "row":
            continue
        assert panel["targets"], f"panel {panel['title']!r} has no query"
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        for target in panel["targets"]:
            exprs.append(target["expr"])
    queried |= set(re.findall(r"\bdrover_[a-z_]+", " ".join(exprs)))
    missing = sorted(q for q in queried if q not in exported)
    if missing:
        sys.exit(f"queried but not exported by drover: {missing}")
    print(f"alerts and dashboard query {len(queried)} metric names, all exported; "
          f"dashboard has {len(exprs)} queries in {len(ids)} panels")


if __name__ == "__main__":
    main()
