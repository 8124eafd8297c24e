#!/usr/bin/env python3
"""The sensor features of one date recomputed by DuckDB and the h3 package.

An independent reference for `sensor_feature_backfill`, written from the
job's documented rules (worker/src/sensors/clean.rs, features.rs), not from
its code:

1. drop readings off the globe or less accurate than --max-accuracy;
2. of a device's readings at one timestamp, keep the first by (lat, lon,
   accuracy, speed, source, rssi);
3. drop a reading when the speed implied from its previous reading and
   the speed implied to its next both exceed --max-speed (at a device's
   first or last reading the one speed there decides; a lone reading
   stays);
4. map to H3 cells (h3.latlng_to_cell) and windows of --window-ms;
5. per (cell, window): observations, distinct devices, speed mean and
   quantile_cont 0.5 / 0.9, dwell (time to the device's next reading when
   in the same cell within 300 s), mean accuracy, mean RSSI per source;
6. keep groups with at least --k distinct devices.

    scripts/sensor_reference.py --input DIR --features DIR --date YYYY-MM-DD [options]

compares the reference with Drover's published features of that date
(`DIR/date=YYYY-MM-DD/_manifest.json` and the file it names): the same
(cell, window) rows, counts equal, floats within 1e-9 relative. Exits 1 on
any difference. `reference()` is also what scripts/sensor-vs-duckdb.py
times.

Needs `pip install duckdb h3 pyarrow` (scripts/requirements-ci.txt).
"""

import argparse
import json
import math
import sys
from pathlib import Path

DWELL_GAP_MAX_MS = 300_000
FLOAT_COLUMNS = [
    "speed_mean",
    "speed_p50",
    "speed_p90",
    "dwell_seconds",
    "accuracy_mean",
    "rssi_mean_gps",
    "rssi_mean_wifi",
    "rssi_mean_cell",
]


def connect(resolution):
    """A DuckDB connection with `h3_cell(lat, lon)` from the h3 package and
    the haversine distance Drover uses (mean Earth radius, IUGG)."""
    import duckdb
    import h3.api.basic_int as h3
    import pyarrow as pa

    con = duckdb.connect()

    def h3_cell(lat, lon):
        return pa.array(
            [h3.latlng_to_cell(a, b, resolution) for a, b in zip(lat.to_pylist(), lon.to_pylist())],
            type=pa.uint64(),
        )

    con.create_function(
        "h3_cell", h3_cell, ["DOUBLE", "DOUBLE"], "UBIGINT", type="arrow", side_effects=False
    )
    con.execute(
        """
        CREATE MACRO hav(lat1, lon1, lat2, lon2) AS
          2 * 6371008.8 * asin(least(1.0, sqrt(
            pow(sin((radians(lat2) - radians(lat1)) / 2), 2)
            + cos(radians(lat1)) * cos(radians(lat2)) * pow(sin(radians(lon2 - lon1) / 2), 2))))
        """
    )
    return con


def reference(con, files, window_ms, k, max_accuracy, max_speed):
    """The features of the readings in `files` (a list of Parquet paths) as
    a pyarrow table, one row per (h3_cell, window_start_ms)."""
    paths = ", ".join("'" + str(f).replace("'", "''") + "'" for f in files)
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE raw AS
        SELECT device_id AS dev, epoch_ms(ts) AS ts, lat, lon,
               accuracy_m::DOUBLE AS acc, speed_mps::DOUBLE AS speed,
               CASE source WHEN 'gps' THEN 0 WHEN 'wifi' THEN 1 WHEN 'cell' THEN 2 ELSE 3 END AS src,
               rssi_dbm AS rssi
        FROM read_parquet([{paths}])
        WHERE device_id IS NOT NULL AND ts IS NOT NULL
        """
    )
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE kept AS
        WITH accurate AS (
          SELECT * FROM raw
          WHERE isfinite(lat) AND isfinite(lon)
            AND lat BETWEEN -90 AND 90 AND lon BETWEEN -180 AND 180
            AND acc <= {max_accuracy}
        ), firsts AS (
          SELECT * EXCLUDE (rn) FROM (
            SELECT *, row_number() OVER (
              PARTITION BY dev, ts
              ORDER BY lat, lon, acc, speed NULLS LAST, src, rssi NULLS FIRST) AS rn
            FROM accurate)
          WHERE rn = 1
        ), neighbours AS (
          SELECT *,
            lag(lat) OVER w AS plat, lag(lon) OVER w AS plon, lag(ts) OVER w AS pts,
            lead(lat) OVER w AS nlat, lead(lon) OVER w AS nlon, lead(ts) OVER w AS nts
          FROM firsts WINDOW w AS (PARTITION BY dev ORDER BY ts)
        )
        SELECT dev, ts, lat, lon, acc, speed, src, rssi FROM neighbours
        WHERE NOT (
          (pts IS NOT NULL OR nts IS NOT NULL)
          AND (pts IS NULL OR hav(plat, plon, lat, lon) / ((ts - pts) / 1000.0) > {max_speed})
          AND (nts IS NULL OR hav(lat, lon, nlat, nlon) / ((nts - ts) / 1000.0) > {max_speed}))
        """
    )
    return con.sql(
        f"""
        WITH celled AS (
          SELECT *, h3_cell(lat, lon) AS cell, ts - (ts % {window_ms}) AS win FROM kept
        ), dwelled AS (
          SELECT *,
            CASE WHEN lead(cell) OVER w = cell AND lead(ts) OVER w - ts <= {DWELL_GAP_MAX_MS}
                 THEN lead(ts) OVER w - ts ELSE 0 END AS dwell
          FROM celled WINDOW w AS (PARTITION BY dev ORDER BY ts)
        )
        SELECT cell AS h3_cell, win AS window_start_ms,
          count(*) AS observations,
          count(DISTINCT dev) AS distinct_devices,
          avg(speed) AS speed_mean,
          quantile_cont(speed, 0.5) AS speed_p50,
          quantile_cont(speed, 0.9) AS speed_p90,
          sum(dwell) / 1000.0 AS dwell_seconds,
          avg(acc) AS accuracy_mean,
          avg(rssi) FILTER (WHERE src = 0) AS rssi_mean_gps,
          avg(rssi) FILTER (WHERE src = 1) AS rssi_mean_wifi,
          avg(rssi) FILTER (WHERE src = 2) AS rssi_mean_cell
        FROM dwelled
        GROUP BY cell, win
        HAVING count(DISTINCT dev) >= {k}
        """
    ).to_arrow_table()


def published(features_dir, date):
    """Drover's published features of `date`, as a pyarrow table."""
    import pyarrow.parquet as pq

    part = Path(features_dir) / f"date={date}"
    manifest = json.loads((part / "_manifest.json").read_text())
    tables = [pq.read_table(part / f["path"]) for f in manifest["files"]]
    import pyarrow as pa

    return pa.concat_tables(tables)


def rows_by_key(table, window_column):
    cols = table.to_pydict()
    out = {}
    for i in range(table.num_rows):
        w = cols[window_column][i]
        if hasattr(w, "timestamp"):
            w = round(w.timestamp() * 1000)
        out[(cols["h3_cell"][i], w)] = {c: cols[c][i] for c in cols}
    return out


def close(a, b, rel):
    if a is None or b is None:
        return a is None and b is None
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return abs(a - b) <= rel * max(abs(a), abs(b), 1e-300)


def compare(drover, ref, rel=1e-9):
    """Differences between Drover's table and the reference, as text."""
    ours = rows_by_key(drover, "window_start")
    theirs = rows_by_key(ref, "window_start_ms")
    problems = []
    only_ours = sorted(set(ours) - set(theirs))
    only_theirs = sorted(set(theirs) - set(ours))
    if only_ours:
        problems.append(f"{len(only_ours)} rows only in Drover's output, e.g. {only_ours[:3]}")
    if only_theirs:
        problems.append(f"{len(only_theirs)} rows only in the reference, e.g. {only_theirs[:3]}")
    for key in sorted(set(ours) & set(theirs)):
        a, b = ours[key], theirs[key]
        for c in ("observations", "distinct_devices"):
            if a[c] != b[c]:
                problems.append(f"{key} {c}: drover {a[c]}, reference {b[c]}")
        for c in FLOAT_COLUMNS:
            if not close(a[c], b[c], rel):
                problems.append(f"{key} {c}: drover {a[c]!r}, reference {b[c]!r}")
        if len(problems) > 20:
            break
    return problems


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--input", required=True, help="readings directory (date=YYYY-MM-DD/ inside)")
    ap.add_argument("--features", required=True, help="Drover's features directory")
    ap.add_argument("--date", action="append", required=True, help="date to check (repeatable)")
    ap.add_argument("--resolution", type=int, default=9)
    ap.add_argument("--window-ms", type=int, default=3_600_000)
    ap.add_argument("--k", type=int, default=5)
    ap.add_argument("--max-accuracy", type=float, default=100.0)
    ap.add_argument("--max-speed", type=float, default=70.0)
    args = ap.parse_args()

    con = connect(args.resolution)
    failed = False
    for date in args.date:
        files = sorted(
            p
            for p in (Path(args.input) / f"date={date}").glob("*.parquet")
            if not p.name.startswith(("_", "."))
        )
        if not files:
            sys.exit(f"no readings for {date} in {args.input}")
        ref = reference(con, files, args.window_ms, args.k, args.max_accuracy, args.max_speed)
        ours = published(args.features, date)
        problems = compare(ours, ref)
        readings = con.execute("SELECT count(*) FROM raw").fetchone()[0]
        if problems:
            failed = True
            print(f"{date}: {len(problems)} differences", file=sys.stderr)
            for p in problems:
                print(f"  {p}", file=sys.stderr)
        else:
            print(
                f"{date}: {ours.num_rows} feature rows from {readings} readings match "
                f"DuckDB {__import__('duckdb').__version__} + h3 {__import__('h3').__version__} "
                f"(counts equal, floats within 1e-9 relative)"
            )
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
