#!/usr/bin/env python3
"""Checks an annotation export with independent readers.

    check_annotation_export.py EXPORT_DIR [--truth ANNOTATIONS_DIR]

- every file the export's _manifest.json names has the size and SHA-256 it
  records;
- pyarrow reads the labels and annotations Parquet with the documented
  schema, and their row counts match the manifest; no dropped field and no
  raw annotator id is in them;
- pycocotools loads every COCO file, and its image, annotation and category
  counts match the quality report; with --truth (the `drover datagen
  annotations` directory) COCOeval scores the consensus boxes against the
  generator's true boxes;
- every JSONL line parses, one per exported item.

Prints what it checked; exits non-zero on the first mismatch.
"""

import argparse
import contextlib
import hashlib
import io
import json
import os
import re
import sys

import pyarrow as pa
import pyarrow.compute  # noqa: F401 (pa.compute)
import pyarrow.dataset as ds
import pyarrow.parquet as pq
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

LABELS_SCHEMA = [
    ("project", pa.string()),
    ("task_type", pa.string()),
    ("item_id", pa.string()),
    ("image_width", pa.int32()),
    ("image_height", pa.int32()),
    ("label", pa.string()),
    ("confidence", pa.float64()),
    ("bbox_x", pa.float64()),
    ("bbox_y", pa.float64()),
    ("bbox_w", pa.float64()),
    ("bbox_h", pa.float64()),
    ("annotators", pa.int32()),
    ("support", pa.int32()),
    ("vote_annotators", pa.list_(pa.string())),
    ("vote_labels", pa.list_(pa.string())),
]


def fail(message):
    sys.exit(f"check_annotation_export: {message}")


def check(condition, message):
    if not condition:
        fail(message)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("export")
    parser.add_argument("--truth")
    args = parser.parse_args()
    root = args.export
    manifest = json.load(open(os.path.join(root, "_manifest.json")))
    # A published result's files carry the publishing lease's token in
    # their names (report.r41.json); the checks use the plain names.
    files = {re.sub(r"\.r\d+(?=\.|$)", "", f["path"], count=1): f for f in manifest["files"]}

    def at(name):
        return os.path.join(root, files[name]["path"])

    for path, f in files.items():
        data = open(at(path), "rb").read()
        check(len(data) == f["bytes"], f"{path}: {len(data)} bytes, manifest says {f['bytes']}")
        check(hashlib.sha256(data).hexdigest() == f["sha256"], f"{path}: SHA-256 differs from the manifest")
    print(f"manifest: {len(files)} files, sizes and SHA-256 match")

    report = json.load(open(at("quality/report.json")))
    projects = {p["project"]: p for p in report["projects"]}

    label_files = sorted(p for p in files if p.startswith("parquet/labels/"))
    labels = ds.dataset([at(p) for p in label_files], format="parquet")
    expected = pa.schema([pa.field(n, t) for n, t in LABELS_SCHEMA])
    got = [(f.name, f.type) for f in labels.schema]
    check(
        [n for n, _ in got] == [n for n, _ in LABELS_SCHEMA],
        f"labels columns {[n for n, _ in got]}",
    )
    for (name, t), (_, want) in zip(got, LABELS_SCHEMA):
        check(t == want, f"labels column {name} is {t}, documented {want}")
    table = labels.to_table()
    check(table.num_rows == sum(files[p]["rows"] for p in label_files), "labels rows differ from the manifest")
    print(f"pyarrow: labels {table.num_rows} rows in {len(label_files)} files, schema as documented ({expected.names[:3]}...)")

    annotation_files = sorted(p for p in files if p.startswith("parquet/annotations/"))
    annotations = pq.ParquetDataset([at(p) for p in annotation_files]).read()
    names = annotations.schema.names
    for dropped in report["droppedFields"]:
        check(dropped not in names, f"dropped field {dropped} is in the annotations")
    ids = set(annotations.column("annotator_id").to_pylist())
    check(all(i.startswith("a_") and len(i) == 34 for i in ids), "an annotator id is not a pseudonym")
    check(annotations.num_rows == sum(files[p]["rows"] for p in annotation_files), "annotation rows differ")
    voters = set(v for vs in table.column("vote_annotators").to_pylist() for v in vs)
    check(voters <= ids, "a vote names an annotator not in the annotations")
    if args.truth:
        raw = {a["annotatorId"] for a in json.load(open(os.path.join(args.truth, "_truth/annotators.json")))}
        check(not (raw & (ids | voters)), "a raw annotator id is in the export")
    print(f"pyarrow: annotations {annotations.num_rows} rows, {len(ids)} pseudonymised annotators, no {report['droppedFields']}")

    for name, p in projects.items():
        exported = p["items"] - p["excludedItems"]
        lines = [json.loads(l) for l in open(at(f"jsonl/{name}.jsonl"))]
        check(len(lines) == exported, f"{name}: {len(lines)} JSONL lines, {exported} items exported")
        check(all(l["project"] == name for l in lines), f"{name}: a JSONL line of another project")
        if p["taskType"] != "bbox":
            if args.truth:
                truth = pq.read_table(os.path.join(args.truth, f"_truth/project={name}/truth.parquet"))
                true_label = dict(zip(truth.column("item_id").to_pylist(), truth.column("label").to_pylist()))
                rows = table.filter(pa.compute.equal(table.column("project"), name)).select(["item_id", "label"]).to_pylist()
                right = sum(true_label[r["item_id"]] == r["label"] for r in rows)
                print(f"pyarrow: {name}: {p['consensus']} labels match the truth for {right / len(rows):.4f} of {len(rows)} items")
            continue
        path = at(f"coco/{name}.json")
        with contextlib.redirect_stdout(io.StringIO()):
            coco = COCO(path)
        objects = sum(l["items"] for l in p["labels"])
        check(len(coco.getImgIds()) == exported, f"{name}: COCO has {len(coco.getImgIds())} images, {exported} exported")
        check(len(coco.getAnnIds()) == objects, f"{name}: COCO has {len(coco.getAnnIds())} boxes, report {objects}")
        check(files[f"coco/{name}.json"]["rows"] == objects, f"{name}: manifest rows differ from the boxes")
        print(
            f"pycocotools: {name}: {len(coco.getImgIds())} images, {len(coco.getAnnIds())} boxes,"
            f" {len(coco.getCatIds())} categories, as the report says"
        )
        if args.truth:
            score_against_truth(coco, name, args.truth)


def score_against_truth(coco, name, truth_dir):
    """COCOeval of the consensus boxes (as detections) on the true boxes."""
    truth = pq.read_table(os.path.join(truth_dir, f"_truth/project={name}/truth.parquet")).to_pylist()
    image_of = {img["file_name"]: img["id"] for img in coco.dataset["images"]}
    category_of = {c["name"]: c["id"] for c in coco.dataset["categories"]}
    gt = {
        "images": coco.dataset["images"],
        "categories": coco.dataset["categories"],
        "annotations": [],
    }
    for row in truth:
        if row["item_id"] not in image_of:
            continue
        w, h = row["bbox_w"], row["bbox_h"]
        gt["annotations"].append({
            "id": len(gt["annotations"]) + 1,
            "image_id": image_of[row["item_id"]],
            "category_id": category_of[row["label"]],
            "bbox": [row["bbox_x"], row["bbox_y"], w, h],
            "area": w * h,
            "iscrowd": 0,
        })
    detections = [
        {"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": a["score"]}
        for a in coco.dataset["annotations"]
    ]
    with contextlib.redirect_stdout(io.StringIO()):
        truth_coco = COCO()
        truth_coco.dataset = gt
        truth_coco.createIndex()
        result = truth_coco.loadRes(detections)
        e = COCOeval(truth_coco, result, "bbox")
        e.evaluate()
        e.accumulate()
        e.summarize()
    ap, ap50 = e.stats[0], e.stats[1]
    print(f"pycocotools: {name}: consensus boxes against the true boxes: AP {ap:.3f}, AP@0.5 {ap50:.3f}")
    check(ap50 > 0.5, f"{name}: AP@0.5 {ap50:.3f} against the truth")


if __name__ == "__main__":
    main()
