#!/usr/bin/env python3
"""Writes the demo's data again as users' own tools would: pyarrow files
with no _manifest.json, the string encodings other writers choose, a CSV.

    user_files.py DEMO_DATA_DIR OUT_DIR

- OUT_DIR/large/annotations/project=P/part-0.parquet: the annotations with
  every string column `large_string` (polars, Spark) and `label` a
  dictionary (a pandas categorical), plus Spark's `_SUCCESS` marker;
- OUT_DIR/csv/annotations/annotations.csv: the same rows as CSV
  (pyarrow.csv), with a header;
- OUT_DIR/texts/part-0.parquet: the dedup corpus as Parquet, its text
  `large_string`;
- OUT_DIR/sensors/date=D/part-0.parquet for every date of the demo's
  readings: one file per date, `device_id` a dictionary, `source` a
  `string_view`.
"""

import json
import os
import sys

import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq


def manifest_files(root, suffix):
    m = json.load(open(os.path.join(root, "_manifest.json")))
    return [os.path.join(root, f["path"]) for f in m["files"] if f["path"].endswith(suffix)]


def main():
    data, out = sys.argv[1], sys.argv[2]
    rows = pa.concat_tables(pq.read_table(p) for p in manifest_files(os.path.join(data, "annotations"), ".parquet"))

    large = pa.schema(
        [
            pa.field(f.name, pa.large_string()) if f.type == pa.string() else f
            for f in rows.schema
        ]
    )
    recoded = rows.cast(large)
    label = recoded.schema.get_field_index("label")
    recoded = recoded.set_column(label, "label", recoded.column(label).cast(pa.string()).dictionary_encode())
    for project in sorted(set(rows.column("project").to_pylist())):
        d = os.path.join(out, "large", "annotations", f"project={project}")
        os.makedirs(d, exist_ok=True)
        mask = pa.compute.equal(rows.column("project"), project)
        pq.write_table(recoded.filter(mask), os.path.join(d, "part-0.parquet"))
    open(os.path.join(out, "large", "annotations", "_SUCCESS"), "w").close()

    d = os.path.join(out, "csv", "annotations")
    os.makedirs(d, exist_ok=True)
    pcsv.write_csv(rows, os.path.join(d, "annotations.csv"))

    texts = [json.loads(line) for p in sorted(manifest_files(os.path.join(data, "texts"), ".jsonl")) for line in open(p)]
    d = os.path.join(out, "texts")
    os.makedirs(d, exist_ok=True)
    table = pa.table(
        {
            "id": pa.array([t["id"] for t in texts], pa.string()),
            "text": pa.array([t["text"] for t in texts], pa.large_string()),
        }
    )
    pq.write_table(table, os.path.join(d, "part-0.parquet"), row_group_size=4096)
    readings = 0
    sensors = os.path.join(data, "sensors")
    for day in sorted(d for d in os.listdir(sensors) if d.startswith("date=")):
        files = sorted(
            os.path.join(sensors, day, f) for f in os.listdir(os.path.join(sensors, day)) if f.endswith(".parquet")
        )
        table = pa.concat_tables(pq.read_table(f) for f in files)
        device = table.schema.get_field_index("device_id")
        table = table.set_column(device, "device_id", table.column(device).cast(pa.string()).dictionary_encode())
        source = table.schema.get_field_index("source")
        table = table.set_column(source, "source", table.column(source).cast(pa.string_view()))
        d = os.path.join(out, "sensors", day)
        os.makedirs(d, exist_ok=True)
        pq.write_table(table, os.path.join(d, "part-0.parquet"))
        readings += table.num_rows
    print(
        f"user files: {rows.num_rows} annotation rows as large_string Parquet and CSV, {len(texts)} texts as Parquet,"
        f" {readings} readings with dictionary ids and string_view sources, no manifests"
    )


if __name__ == "__main__":
    import pyarrow.compute  # noqa: F401 (pa.compute)

    main()
