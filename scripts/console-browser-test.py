#!/usr/bin/env python3
"""The web console in a real browser: headless Chromium driven by Playwright.

Starts a 3-node cluster of real `drover coordinator` processes and one worker
on loopback, submits a job through the CLI, and then, on the console of a
*follower* (so every read and the cancel are forwarded to the leader):

1. finds the job in the jobs list;
2. opens it and checks the DAG picture (one box per template, one curve per
   dependency, the running template coloured as running);
3. opens a blocked task and reads why it is pending, then a running task and
   its attempt's log, which the worker stores as the attempt runs;
4. cancels the job from the page and sees the state change, on the page and
   through the CLI;
5. checks the schedules, workers and cluster pages show what the cluster
   says (a registered schedule, the worker with its running tasks, three
   members each answering with its own term and indexes).

Screenshots of every step are saved under the artifacts directory.

Usage: console-browser-test.py DROVER_BINARY [ARTIFACTS_DIR]
Chromium: $CHROMIUM, default /usr/bin/chromium (Debian's package).
"""

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from playwright.sync_api import expect, sync_playwright

ROOT = Path(__file__).resolve().parent.parent
# Generous: a 2-core CI machine runs debug binaries.
WAIT_MS = 30_000
# Chromium flags for a closed network: no background connections at all.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_json(url):
    with urllib.request.urlopen(url, timeout=5) as r:
        return json.load(r)


class Cluster:
    """Three coordinators and one worker, stopped on exit."""

    def __init__(self, drover, work):
        self.drover = drover
        self.work = work
        self.procs = []

    def start(self):
        """A port found free can be taken before a coordinator binds it; the
        cluster then starts again on new ports rather than a member short."""
        for attempt in range(3):
            if self.try_start(attempt):
                return
            self.stop()
        raise SystemExit("the cluster did not become ready in 3 tries; logs in " + str(self.work))

    def try_start(self, attempt):
        self.procs = []
        self.grpc = [f"127.0.0.1:{free_port()}" for _ in range(3)]
        self.http = [f"127.0.0.1:{free_port()}" for _ in range(3)]
        self.dir = self.work / f"try-{attempt}"
        self.dir.mkdir()
        peers = ",".join(f"{i + 1}={a}" for i, a in enumerate(self.grpc))
        for i in range(3):
            self.spawn(f"node-{i + 1}", [
                "coordinator", "--node-id", str(i + 1), "--listen", self.grpc[i],
                "--http", self.http[i], "--peers", peers,
                "--data-dir", str(self.dir / f"node-{i + 1}"),
                "--task-logs", str(self.dir / "task-logs"),
            ])
        self.spawn("worker", [
            "--coordinators", self.coordinators(), "worker", "--slots", "4",
            "--data-root", str(self.dir / "outputs"), "--work-dir", str(self.dir / "worker"),
        ])
        deadline = time.time() + 60
        while time.time() < deadline:
            if any(p.poll() is not None for p in self.procs):
                return False
            if self.leader() and all(self.ready(i) for i in range(3)):
                return True
            time.sleep(0.2)
        return False

    def spawn(self, name, args):
        log = open(self.dir / f"{name}.log", "wb")
        self.procs.append(subprocess.Popen([self.drover, *args], stdout=log, stderr=log))

    def coordinators(self):
        return ",".join(self.grpc)

    def ready(self, i):
        try:
            return http_json(f"http://{self.http[i]}/readyz")["ready"]
        except OSError:
            return False

    def leader(self):
        for i in range(3):
            try:
                leader = http_json(f"http://{self.http[i]}/api/v1/node")["leader_id"]
                if leader:
                    return leader
            except OSError:
                continue
        return 0

    def cli(self, *args):
        out = subprocess.run(
            [self.drover, "--coordinators", self.coordinators(), *args],
            capture_output=True, text=True, timeout=120,
        )
        if out.returncode != 0:
            raise SystemExit(f"drover {' '.join(args)} failed: {out.stderr}")
        return out.stdout

    def stop(self):
        for p in self.procs:
            p.terminate()
        for p in self.procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()


def main():
    drover = os.path.abspath(sys.argv[1])
    artifacts = Path(sys.argv[2] if len(sys.argv) > 2 else "target/browser-artifacts").resolve()
    shutil.rmtree(artifacts, ignore_errors=True)
    artifacts.mkdir(parents=True)
    chromium = os.environ.get("CHROMIUM", "/usr/bin/chromium")
    work = Path(tempfile.mkdtemp(prefix="drover-console-"))
    cluster = Cluster(drover, work)
    ok = False
    try:
        cluster.start()
        leader = cluster.leader()
        follower = next(i for i in range(3) if i + 1 != leader)
        base = f"http://{cluster.http[follower]}/ui/"
        print(f"cluster up: leader node {leader}; the browser uses node {follower + 1}'s console")

        # Long sleeps: the job is still running when the page cancels it.
        # Under a 10-minute timeout (the example's is 1 minute), so that no
        # second attempt starts however slowly the browser gets there.
        example = (ROOT / "jobspecs/examples/dag-sleep.yaml").read_text()
        assert "    timeout: 1m\n" in example
        long_sleeps = work / "dag-sleep.yaml"
        long_sleeps.write_text(example.replace("    timeout: 1m\n", "    timeout: 10m\n"))
        out = cluster.cli("job", "submit", str(long_sleeps), "--param", "sleepMs=120000")
        job_id = out.strip().splitlines()[-1]
        cluster.cli("job", "submit", str(ROOT / "jobspecs/examples/sensor-backfill.yaml"))
        print(f"submitted {job_id} and a schedule through the CLI")

        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            console_errors = []
            page.on("console", lambda m: m.type == "error" and console_errors.append(m.text))
            page.on("pageerror", lambda e: console_errors.append(str(e)))

            page.goto(base + "#/jobs")
            row = page.locator(f'[data-job-row="{job_id}"]')
            expect(row).to_be_visible(timeout=WAIT_MS)
            expect(page.locator("#node-banner")).to_contain_text("follower", timeout=WAIT_MS)
            expect(page.locator("#node-banner")).to_contain_text(f"forwarded to leader {leader}")
            page.screenshot(path=str(artifacts / "1-jobs.png"), full_page=True)
            print("jobs list: the job is there; the banner says the reads are forwarded")

            row.locator(f'a[data-job-id="{job_id}"]').click()
            dag = page.locator("svg.dag")
            expect(dag).to_be_visible(timeout=WAIT_MS)
            expect(dag.locator("g.node")).to_have_count(4)
            expect(dag.locator("path.edge")).to_have_count(4)
            for template in ["extract", "transform", "flaky", "load"]:
                expect(dag.locator(f'g.node[data-template="{template}"]')).to_be_visible()
            expect(dag.locator('path.edge[data-from="extract"][data-to="transform"]')).to_have_count(1)
            expect(dag.locator('g.node[data-template="extract"]')).to_have_attribute(
                "data-look", "running", timeout=WAIT_MS)
            expect(page.locator("#job-state [data-state]")).to_have_attribute("data-state", "running")
            page.screenshot(path=str(artifacts / "2-job-dag.png"), full_page=True)
            print("job page: 4 templates and 4 dependencies drawn; extract shown running")

            # A transform task waits for extract: the page says so.
            dag.locator('g.node[data-template="transform"]').click()
            task_row = page.locator('#tasks-table tr[data-task-id]').first
            expect(task_row).to_be_visible(timeout=WAIT_MS)
            task_row.click()
            why = page.locator("#why-pending")
            expect(why).to_contain_text("extract", timeout=WAIT_MS)
            page.screenshot(path=str(artifacts / "3-why-pending.png"), full_page=True)
            print(f"task panel: why pending = {why.inner_text()!r}")

            # A running extract task: its attempt's log opens from the
            # attempts table and fills in once the worker stores it.
            dag.locator('g.node[data-template="extract"]').click()
            extract_row = page.locator(f'#tasks-table tr[data-task-id="{job_id}/0/0"]')
            expect(extract_row).to_be_visible(timeout=WAIT_MS)
            extract_row.click()
            log_link = page.locator("#attempts a.log-link")
            expect(log_link).to_have_count(1, timeout=WAIT_MS)
            log_link.click()
            expect(page.locator("#log-text")).to_contain_text(
                f"drover: attempt 1 of task {job_id}/0/0", timeout=WAIT_MS)
            expect(page.locator("#task-log")).to_contain_text("running")
            page.screenshot(path=str(artifacts / "3b-task-log.png"), full_page=True)
            print("task panel: the running attempt's log, as its worker stored it")

            page.locator("#cancel-job").click()
            page.locator("#cancel-job-confirm").click()
            expect(page.locator("#job-state [data-state]")).to_have_attribute(
                "data-state", "cancelled", timeout=WAIT_MS)
            # The request (with the page's reason), then the job's end.
            expect(page.locator('#events [data-kind="job_cancelled"]')).to_have_count(2, timeout=WAIT_MS)
            expect(page.locator("#events")).to_contain_text("cancelled from the web console")
            expect(page.locator("#cancel-job")).to_have_count(0)
            page.screenshot(path=str(artifacts / "4-job-cancelled.png"), full_page=True)
            status = cluster.cli("job", "status", job_id)
            state_lines = [l for l in status.splitlines() if "cancelled" in l.lower()]
            assert state_lines, status
            print("cancelled from the page; the CLI agrees: " + state_lines[0].strip())

            page.goto(base + "#/schedules")
            schedule = page.locator("[data-schedule-row]")
            expect(schedule).to_have_count(1, timeout=WAIT_MS)
            expect(schedule.locator(".next-fires div")).to_have_count(3)
            expect(schedule).to_contain_text("America/Los_Angeles")
            page.screenshot(path=str(artifacts / "5-schedules.png"), full_page=True)
            print("schedules: the schedule with its next 3 fire times")

            page.goto(base + "#/workers")
            worker = page.locator("[data-worker-row]")
            expect(worker).to_have_count(1, timeout=WAIT_MS)
            expect(worker.locator("[data-state]")).to_have_attribute("data-state", "alive")
            page.screenshot(path=str(artifacts / "6-workers.png"), full_page=True)

            page.goto(base + "#/cluster")
            members = page.locator("#members-table tr[data-node]")
            expect(members).to_have_count(3, timeout=WAIT_MS)
            expect(page.locator("#members-table td.error")).to_have_count(0, timeout=WAIT_MS)
            expect(page.locator("#cluster-leader")).to_contain_text(f"node {leader}")
            page.screenshot(path=str(artifacts / "7-cluster.png"), full_page=True)
            print("workers and cluster pages: 1 alive worker, 3 members answering")

            browser.close()
            assert not console_errors, f"the page logged errors: {console_errors}"
        ok = True
        print(f"console browser test passed; screenshots in {artifacts}")
    finally:
        cluster.stop()
        if ok:
            shutil.rmtree(work, ignore_errors=True)
        else:
            for log in sorted(work.glob("*/*.log")):
                shutil.copy(log, artifacts / f"{log.parent.name}-{log.name}")
            print(f"logs copied to {artifacts}", file=sys.stderr)


if __name__ == "__main__":
    main()
