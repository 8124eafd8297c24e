#!/usr/bin/env python3
"""Span export over OTLP, received by a real OTLP/gRPC trace receiver.

Runs a receiver built on the official protobuf definitions
(opentelemetry-proto's TraceService), then a `drover coordinator` and a
`drover worker` with OTEL_EXPORTER_OTLP_ENDPOINT pointing at it, submits a
job of a retried task and two others after it under a caller's TRACEPARENT,
and checks the span tree the two processes sent:

    (caller's span) -> submit_job            [drover-coordinator]
        -> lease_task, one per attempt       [drover-coordinator]
            -> task (the attempt)            [drover-worker]
                -> complete_task / fail_task [drover-coordinator]

every span in the caller's trace.

Usage: otlp-trace-test.py DROVER_BINARY
"""

import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from concurrent import futures
from pathlib import Path

import grpc
from opentelemetry.proto.collector.trace.v1 import (
    trace_service_pb2,
    trace_service_pb2_grpc,
)

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"
SPEC = """apiVersion: drover/v1
kind: Job
metadata: {name: traced}
spec:
  tasks:
    - name: flaky
      kind: sleep
      retries: {max: 2, backoff: constant, initialDelay: 1s, maxDelay: 1s}
      config: {ms: 50, failTimes: 1}
    - name: after
      kind: sleep
      partitions: {shards: 2}
      dependsOn: [flaky]
      config: {ms: 50}
"""


def value(v):
    which = v.WhichOneof("value")
    return None if which is None else getattr(v, which)


class Receiver(trace_service_pb2_grpc.TraceServiceServicer):
    """Keeps every span received, decoded from the wire format."""

    def __init__(self):
        self.spans = []
        self.lock = threading.Lock()

    def Export(self, request, context):
        with self.lock:
            for rs in request.resource_spans:
                resource = {kv.key: value(kv.value) for kv in rs.resource.attributes}
                for ss in rs.scope_spans:
                    for span in ss.spans:
                        self.spans.append({
                            "service": resource.get("service.name"),
                            "name": span.name,
                            "trace_id": span.trace_id.hex(),
                            "span_id": span.span_id.hex(),
                            "parent": span.parent_span_id.hex(),
                            "attributes": {kv.key: value(kv.value) for kv in span.attributes},
                        })
        return trace_service_pb2.ExportTraceServiceResponse()


def free_address():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"


def fail(message, work):
    for log in sorted(Path(work).glob("*.log")):
        print(f"--- {log.name}\n{log.read_text()[-3000:]}", file=sys.stderr)
    sys.exit(message)


def main():
    drover = sys.argv[1]
    receiver = Receiver()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(receiver, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    work = tempfile.mkdtemp(prefix="drover-otlp-")
    grpc_addr, http, worker_http = free_address(), free_address(), free_address()
    env = dict(os.environ, OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{port}", DROVER_LOG="warn")
    env.pop("OTEL_SERVICE_NAME", None)
    procs = []
    try:
        for name, args in [
            ("coordinator", ["coordinator", "--node-id", "1", "--listen", grpc_addr, "--http", http,
                             "--data-dir", f"{work}/node"]),
            ("worker", ["--coordinators", grpc_addr, "worker", "--slots", "2", "--http", worker_http,
                        "--data-root", f"{work}/outputs", "--work-dir", f"{work}/scratch"]),
        ]:
            log = open(f"{work}/{name}.log", "w")
            procs.append(subprocess.Popen([drover, *args], stdout=log, stderr=log, env=env))
        deadline = time.time() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://{http}/readyz", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.time() > deadline:
                fail("the coordinator did not become ready", work)
            time.sleep(0.2)
        spec = Path(work) / "traced.yaml"
        spec.write_text(SPEC)
        cli = [drover, "--coordinators", grpc_addr]
        submitted = subprocess.run(
            [*cli, "job", "submit", str(spec), "--wait", "--json"], capture_output=True, text=True,
            env=dict(os.environ, TRACEPARENT=f"00-{TRACE_ID}-{CALLER_SPAN}-01"), timeout=120)
        if submitted.returncode != 0:
            fail(f"the job did not succeed: {submitted.stdout}{submitted.stderr}", work)
        job = json.loads(submitted.stdout)
        if job["traceId"] != TRACE_ID:
            fail(f"the job is in trace {job['traceId']}, not the caller's", work)
        # The exporters send in batches every few seconds, and at exit.
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(timeout=30)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    deadline = time.time() + 10
    while time.time() < deadline:
        with receiver.lock:
            names = {s["name"] for s in receiver.spans}
        if {"submit_job", "lease_task", "task", "complete_task", "fail_task"} <= names:
            break
        time.sleep(0.2)
    server.stop(grace=1)
    check(receiver.spans, job, work)


def check(spans, job, work):
    ours = [s for s in spans if s["trace_id"] == TRACE_ID]
    by_id = {s["span_id"]: s for s in ours}

    def named(name):
        return [s for s in ours if s["name"] == name]

    def parent(s):
        return by_id.get(s["parent"])

    submits = [s for s in named("submit_job") if s["attributes"].get("job_id") == job["id"]]
    if len(submits) != 1 or submits[0]["parent"] != CALLER_SPAN:
        fail(f"want one submit_job of {job['id']} under the caller's span: {submits}", work)
    submit = submits[0]
    leases, attempts = named("lease_task"), named("task")
    completes, fails = named("complete_task"), named("fail_task")
    # flaky: attempt 1 fails, attempt 2 succeeds; after: 2 tasks.
    if (len(leases), len(attempts), len(completes), len(fails)) != (4, 4, 3, 1):
        fail(f"want 4 leases, 4 attempts, 3 completions, 1 failure; got "
             f"{len(leases)}, {len(attempts)}, {len(completes)}, {len(fails)}: "
             f"{sorted(s['name'] for s in ours)}", work)
    for lease in leases:
        if lease["parent"] != submit["span_id"] or lease["service"] != "drover-coordinator":
            fail(f"a lease is not under the submit: {lease}", work)
    for attempt in attempts:
        lease = parent(attempt)
        if lease is None or lease["name"] != "lease_task" or attempt["service"] != "drover-worker":
            fail(f"an attempt is not under its lease: {attempt}", work)
        if lease["attributes"].get("task_id") != attempt["attributes"].get("task_id"):
            fail(f"an attempt under another task's lease: {attempt} / {lease}", work)
    for report in completes + fails:
        attempt = parent(report)
        if attempt is None or attempt["name"] != "task" or report["service"] != "drover-coordinator":
            fail(f"a report is not under its attempt: {report}", work)
        if report["attributes"].get("accepted") is not True:
            fail(f"a report was not accepted: {report}", work)
    if {s["service"] for s in spans} != {"drover-coordinator", "drover-worker"}:
        fail(f"unexpected services: {sorted({s['service'] for s in spans})}", work)
    print(f"job {job['id']}: {len(ours)} spans in trace {TRACE_ID}")
    print(f"  submit_job [drover-coordinator] under the caller's span {CALLER_SPAN}")
    for lease in sorted(leases, key=lambda s: (s["attributes"]["task_id"], s["attributes"]["attempt"])):
        a = lease["attributes"]
        print(f"    lease_task {a['task_id']} attempt {a['attempt']} [drover-coordinator]")
        for attempt in (s for s in attempts if s["parent"] == lease["span_id"]):
            print(f"      task {attempt['attributes']['task_id']} [drover-worker]")
            for report in (s for s in completes + fails if s["parent"] == attempt["span_id"]):
                print(f"        {report['name']} accepted [drover-coordinator]")


if __name__ == "__main__":
    main()
