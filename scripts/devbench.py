"""Shared by the Python comparison scripts: `drover dev` with one worker of
one slot on free loopback ports, a job submitted to it and timed by the
job's own start and finish and by the CPU time the whole `drover dev`
process used meanwhile."""

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from datetime import datetime
from pathlib import Path


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def cpu_seconds(pid):
    """User and system CPU time a process has used, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Dev:
    """`drover dev --workers 1 --slots 1` with its state under `work/dev`."""

    def __init__(self, drover, work):
        self.drover = drover
        self.grpc, self.http = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
        self.log = open(Path(work) / "dev.log", "w")
        self.proc = subprocess.Popen(
            [drover, "dev", "--data-dir", str(Path(work) / "dev"), "--workers", "1", "--slots", "1",
             "--listen", self.grpc, "--http", self.http],
            stderr=self.log,
        )
        for _ in range(200):
            try:
                urllib.request.urlopen(f"http://{self.http}/readyz", timeout=1)
                return
            except OSError:
                time.sleep(0.1)
        self.stop()
        sys.exit("drover dev did not become ready")

    def run(self, spec, params, once=False):
        """Submits `spec` with `params` and waits for it; exits unless it
        succeeded. Returns (wall seconds, CPU seconds, the job's status)."""
        cpu_before = cpu_seconds(self.proc.pid)
        args = [self.drover, "job", "submit", "--coordinators", self.grpc, "--wait", str(spec)]
        if once:
            args.append("--once")
        for k, v in params.items():
            args += ["--param", f"{k}={v}"]
        out = subprocess.run(args, check=True, capture_output=True, text=True).stdout
        cpu = cpu_seconds(self.proc.pid) - cpu_before
        job = next(w for w in out.split() if w.startswith("j") and w[1:].isdigit())
        status = json.loads(subprocess.run(
            [self.drover, "job", "status", "--coordinators", self.grpc, "--json", job],
            check=True, capture_output=True, text=True,
        ).stdout)
        if status.get("state") != "succeeded":
            sys.exit(f"job {job} did not succeed: {json.dumps(status)[:400]}")
        wall = (datetime.fromisoformat(status["finishedAt"])
                - datetime.fromisoformat(status["startedAt"])).total_seconds()
        return wall, cpu, status

    def stop(self):
        self.proc.terminate()
        self.proc.wait()
