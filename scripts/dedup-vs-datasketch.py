#!/usr/bin/env python3
"""Drover's dedup against datasketch's MinHashLSH on the same documents.

Generates a corpus with `drover datagen texts`, then:

- runs the example dedup job on `drover dev` with one worker of one slot
  (one core's worth of work), timed by the job's own start and finish and
  by the CPU time the whole `drover dev` process used meanwhile;
- runs datasketch's MinHash (`MinHash.bulk`, its batch path) and
  MinHashLSH (an insertion session, then one query per document) on the
  same normalised word 3-grams with the same threshold and permutations,
  clustering the pairs it returns with union-find, timed in this process
  (one core), by the clock and by CPU time;
- scores both against the generator's ground truth: pairwise precision
  and recall over pairs whose true Jaccard similarity is at or above the
  threshold (pairs in one cluster count as found).

    scripts/dedup-vs-datasketch.py [--docs 100000] [--repeat 3] [--drover target/release/drover]

A side's time is the larger of its wall and CPU times, so work done on
other threads counts. With --repeat N, each side runs N times,
alternating, and the medians are compared: a shared machine's noise moves
single runs by tens of percent.

Needs `pip install datasketch` (see scripts/requirements-bench.txt).
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import unicodedata
from collections import defaultdict
from pathlib import Path

THRESHOLD = 0.8
NUM_PERM = 128
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
from devbench import Dev  # noqa: E402


def normalize(text):
    """Drover's normalisation: NFKC, lower case, whitespace runs to one space."""
    return " ".join(unicodedata.normalize("NFKC", text).lower().split())


def shingles(text, n=3):
    words = normalize(text).split(" ")
    words = [w for w in words if w]
    if len(words) <= n:
        return {" ".join(words)}
    return {" ".join(words[i : i + n]) for i in range(len(words) - n + 1)}


def read_docs(texts_dir):
    docs = []
    for path in sorted(texts_dir.glob("part-*.jsonl")):
        with open(path) as f:
            for line in f:
                if line.strip():
                    d = json.loads(line)
                    docs.append((d["id"], d["text"]))
    return docs


class UnionFind:
    def __init__(self):
        self.parent = {}

    def find(self, x):
        self.parent.setdefault(x, x)
        while self.parent[x] != x:
            self.parent[x] = self.parent[self.parent[x]]
            x = self.parent[x]
        return x

    def union(self, a, b):
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)

    def clusters(self):
        out = defaultdict(list)
        for x in list(self.parent):
            out[self.find(x)].append(x)
        return [m for m in out.values() if len(m) > 1]


def pairs_of(clusters):
    out = set()
    for members in clusters:
        members = sorted(members)
        for i, a in enumerate(members):
            for b in members[i + 1 :]:
                out.add((a, b))
    return out


def score(predicted, true_clusters, sets):
    """Pairwise precision and recall against true Jaccard >= THRESHOLD."""

    def jaccard(a, b):
        x, y = sets[a], sets[b]
        return len(x & y) / len(x | y) if x or y else 1.0

    truth = set()
    for members in true_clusters:
        for a, b in pairs_of([members]):
            if jaccard(a, b) >= THRESHOLD:
                truth.add((a, b))
    right = 0
    for a, b in predicted:
        if jaccard(a, b) >= THRESHOLD:
            right += 1
            truth.add((a, b))
    precision = right / len(predicted) if predicted else 1.0
    recall = right / len(truth) if truth else 1.0
    return precision, recall, len(truth)


def run_drover(drover, work, docs):
    dev = Dev(drover, work)
    try:
        spec = (ROOT / "jobspecs/examples/dedup.yaml").read_text()
        # One shard and one bucket partition: one slot does all the work.
        spec = spec.replace("shards: 4", "shards: 1\n        bucketPartitions: 1")
        (work / "spec.yaml").write_text(spec)
        seconds, cpu, _ = dev.run(work / "spec.yaml", {"data": f"file://{work}/data"})
    finally:
        dev.stop()
    reports = list((work / "data/dedup").rglob("_dedup/duplicates.jsonl"))
    if len(reports) != 1:
        sys.exit(f"expected one published duplicate map, found {reports}")
    uf = UnionFind()
    with open(reports[0]) as f:
        for line in f:
            d = json.loads(line)
            uf.union(d["id"], d["representative"])
    return seconds, cpu, uf.clusters()


def run_datasketch(docs):
    from datasketch import MinHash, MinHashLSH

    start, cpu_start = time.perf_counter(), time.process_time()
    sets = [[s.encode() for s in shingles(text)] for _, text in docs]
    hashes = MinHash.bulk(sets, num_perm=NUM_PERM)
    lsh = MinHashLSH(threshold=THRESHOLD, num_perm=NUM_PERM)
    with lsh.insertion_session() as session:
        for (doc_id, _), m in zip(docs, hashes):
            session.insert(doc_id, m)
    uf = UnionFind()
    for (doc_id, _), m in zip(docs, hashes):
        for other in lsh.query(m):
            if other != doc_id:
                uf.union(doc_id, other)
    clusters = uf.clusters()
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    return seconds, cpu, clusters, (lsh.b, lsh.r)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--docs", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--drover", default=os.environ.get("DROVER", str(ROOT / "target/release/drover")))
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        subprocess.run(
            [args.drover, "datagen", "texts", "--out", str(work / "data/texts"), "--docs", str(args.docs),
             "--dup-rate", "0.1", "--near-dup-rate", "0.1", "--seed", "1"],
            check=True, capture_output=True,
        )
        docs = read_docs(work / "data/texts")
        sets = {doc_id: shingles(text) for doc_id, text in docs}
        true_clusters = defaultdict(list)
        with open(work / "data/texts/_truth/clusters.jsonl") as f:
            for line in f:
                t = json.loads(line)
                true_clusters[t["cluster"]].append(t["id"])
        true_clusters = list(true_clusters.values())

        ours_runs, theirs_runs, first_pairs = [], [], None
        for i in range(max(1, args.repeat)):
            # A fresh output and coordinator each time.
            subprocess.run(["rm", "-rf", str(work / "data/dedup"), str(work / "dev")], check=True)
            ours_s, ours_cpu, ours_clusters = run_drover(args.drover, work, docs)
            theirs_s, theirs_cpu, theirs_clusters, (b, r) = run_datasketch(docs)
            # Drover's answer does not change from run to run.
            if first_pairs is None:
                first_pairs = pairs_of(ours_clusters)
            elif pairs_of(ours_clusters) != first_pairs:
                sys.exit(f"run {i + 1}: drover's clusters differ from run 1's")
            # Per core: a side's time is the larger of its wall time and
            # the CPU time its process used (drover's counts the whole
            # `drover dev`, coordinator and I/O threads included).
            ours_runs.append((max(ours_s, ours_cpu), ours_s, ours_cpu))
            theirs_runs.append((max(theirs_s, theirs_cpu), theirs_s, theirs_cpu))
            print(f"run {i + 1}: drover {ours_s:.2f} s wall, {ours_cpu:.2f} s CPU; "
                  f"datasketch {theirs_s:.2f} s wall, {theirs_cpu:.2f} s CPU", file=sys.stderr)
        ours_runs.sort()
        theirs_runs.sort()
        ours_s, ours_wall, ours_cpu = ours_runs[len(ours_runs) // 2]
        theirs_s, theirs_wall, theirs_cpu = theirs_runs[len(theirs_runs) // 2]
        ours_p, ours_r, n_true = score(pairs_of(ours_clusters), true_clusters, sets)
        theirs_p, theirs_r, _ = score(pairs_of(theirs_clusters), true_clusters, sets)

    n = len(docs)
    print(f"{n} documents, threshold {THRESHOLD}, {NUM_PERM} permutations, word 3-grams, datasketch bands x rows {b}x{r}")
    print(f"{n_true} true pairs (Jaccard >= {THRESHOLD}) found by either or in the generator's clusters")
    print(f"median of {len(ours_runs)} runs each, alternating; seconds = max(wall, CPU)")
    print(f"{'':12} {'seconds':>8} {'wall':>6} {'CPU':>6} {'docs/s/core':>12} {'precision':>10} {'recall':>8}")
    print(f"{'drover':12} {ours_s:8.2f} {ours_wall:6.2f} {ours_cpu:6.2f} {n / ours_s:12,.0f} {ours_p:10.4f} {ours_r:8.4f}")
    print(f"{'datasketch':12} {theirs_s:8.2f} {theirs_wall:6.2f} {theirs_cpu:6.2f} {n / theirs_s:12,.0f} {theirs_p:10.4f} {theirs_r:8.4f}")
    print(f"throughput per core: drover / datasketch = {theirs_s / ours_s:.1f}x")


if __name__ == "__main__":
    main()
