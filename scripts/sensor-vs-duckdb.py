#!/usr/bin/env python3
"""Drover's sensor features against DuckDB + h3 doing the same work on the
same day of readings.

Generates one day with `drover datagen sensors` (about 3,000 readings per
device), then:

- runs the example spec for that date (`drover job submit --once`, with
  `recompute: true` so every run computes) on `drover dev` with one worker
  of one slot, timed by the job's own start and finish and by the CPU
  time the whole `drover dev` process used meanwhile;
- runs scripts/sensor_reference.py's reference (DuckDB SQL for cleaning,
  windows and aggregates; the h3 package for cells, as a vectorised UDF)
  on the same files with the same settings, timed in this process by the
  clock and by CPU time (DuckDB's threads included);
- checks both give the same rows (counts equal, floats within 1e-9
  relative).

    scripts/sensor-vs-duckdb.py [--devices 3400] [--repeat 3] [--drover target/release/drover]

A side's time is the larger of its wall and CPU times, so work on other
threads counts, and readings/s/core divides by it. With --repeat N, each
side runs N times, alternating, and the medians are compared.

Needs `pip install duckdb h3 pyarrow` (scripts/requirements-ci.txt).
"""

import argparse
import json
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
import sensor_reference  # noqa: E402
from devbench import Dev  # noqa: E402

DATE = "2026-01-05"
# The example's settings.
RESOLUTION, WINDOW_MS, K, MAX_ACCURACY, MAX_SPEED = 8, 3_600_000, 5, 100.0, 70.0


def run_duckdb(files):
    start, cpu_start = time.perf_counter(), time.process_time()
    con = sensor_reference.connect(RESOLUTION)
    table = sensor_reference.reference(con, files, WINDOW_MS, K, MAX_ACCURACY, MAX_SPEED)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    con.close()
    return wall, cpu, table


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--devices", type=int, default=3400)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--drover", default=str(ROOT / "target/release/drover"))
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        data = work / "data"
        subprocess.run(
            [args.drover, "datagen", "sensors", "--out", str(data / "sensors"), "--devices",
             str(args.devices), "--start", DATE, "--days", "1", "--seed", "1"],
            check=True, capture_output=True,
        )
        files = sorted((data / "sensors" / f"date={DATE}").glob("*.parquet"))
        readings = json.loads((data / "sensors/_manifest.json").read_text())["rows"]
        key = work / "key"
        key.write_text(secrets.token_hex(32))
        spec = work / "spec.yaml"
        spec.write_text(
            (ROOT / "jobspecs/examples/sensor-backfill.yaml").read_text().replace(
                "        pseudonymize:", "        recompute: true\n        pseudonymize:"
            )
        )
        params = {"data": f"file://{data}", "keyFile": str(key), "start": DATE, "end": DATE}
        print(f"{readings:,} readings of {args.devices} devices on {DATE} in {len(files)} files", flush=True)

        dev = Dev(args.drover, work)
        ours, theirs, table = [], [], None
        try:
            for i in range(args.repeat):
                wall, cpu, _ = dev.run(spec, params, once=True)
                ours.append((max(wall, cpu), wall, cpu))
                print(f"run {i + 1}: drover {wall:.2f} s wall, {cpu:.2f} s CPU; ", end="", flush=True)
                wall, cpu, table = run_duckdb(files)
                theirs.append((max(wall, cpu), wall, cpu))
                print(f"duckdb+h3 {wall:.2f} s wall, {cpu:.2f} s CPU", flush=True)
        finally:
            dev.stop()

        problems = sensor_reference.compare(sensor_reference.published(data / "features", DATE), table)
        if problems:
            print("the outputs differ:", *problems, sep="\n  ", file=sys.stderr)
            sys.exit(1)
        print(f"same {table.num_rows} feature rows (counts equal, floats within 1e-9 relative)")

    def median(runs):
        return tuple(statistics.median(r[i] for r in runs) for i in range(3))

    print(f"median of {args.repeat} runs each, alternating; seconds = max(wall, CPU)")
    print(f"{'':14}{'seconds':>9}{'wall':>7}{'CPU':>7}{'readings/s/core':>17}")
    rates = {}
    for name, runs in (("drover", ours), ("duckdb+h3", theirs)):
        s, w, c = median(runs)
        rates[name] = readings / s
        print(f"{name:14}{s:9.2f}{w:7.2f}{c:7.2f}{rates[name]:17,.0f}")
    print(f"throughput per core: drover / duckdb+h3 = {rates['drover'] / rates['duckdb+h3']:.1f}x")


if __name__ == "__main__":
    main()
