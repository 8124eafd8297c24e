#!/usr/bin/env python3
"""Drover's dedup with chosen LSH (bands, rows) against datasketch and
rensa, on any JSONL corpus, scored against EXACT all-pairs truth.

Adapted from scripts/dedup-vs-datasketch.py:

- the corpus is a directory of part-*.jsonl (id, text) made by any
  generator; the truth is every pair whose word-3-gram Jaccard (Drover's
  normalisation) is >= the threshold, from truth.py's all-pairs file
  (_truth/pairs-<min>.npz), not just the generator's clusters;
- each Drover config (`default` = no bands/rows in the spec, so the
  job derives them; or `BxR`) runs on a fresh `drover dev --workers 1
  --slots 1`, one shard and one bucket partition; its removals come from
  the duplicate map (_dedup/duplicates.jsonl: removed id -> the kept
  representative) and its counts from _dedup/report.json, both found
  through the _manifest.json at the spec's output root (published names
  carry the lease's tag, `duplicates.r41.jsonl`);
- datasketch 2.0.0 (MinHash.bulk + MinHashLSH, as in the original
  script) and rensa (RMinHash.from_token_sets + RMinHashLSH, num_bands
  must divide numPerm) return LSH candidates, unioned, unverified, as the
  original script does for datasketch; each cluster keeps its first
  document in input order and removes the others for it;
- each side is scored three ways against the truth:
  pairwise precision/recall: the pairs inside its clusters (Drover's:
    its representatives' stars) against the true pairs;
  removal precision (remP): of the documents it removes, the share at or
    above the threshold to the representative kept in their place;
  pair recall (pairR): of the true pairs, the share it does not keep
    both documents of;
- every side runs --repeat times, the order rotated each round; time is
  max(wall, CPU) per run (Drover's: the job's start..finish and the CPU of
  the whole `drover dev`), the median is reported, and each side's docs/s
  per core relative to Drover's default config in the same invocation.

    study.py CORPUS_DIR --threshold 0.8 --configs default,12x5,16x6 \
        [--libs datasketch,rensa:8] [--repeat 3] [--perm 128] [--json out.jsonl]
"""

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import gencommon as g  # noqa: E402

ROOT = HERE.parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
from devbench import Dev  # noqa: E402


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
    for m in clusters:
        m = sorted(m)
        for i, a in enumerate(m):
            for b in m[i + 1:]:
                out.add((a, b))
    return out


class Scorer:
    def __init__(self, corpus, sets, threshold):
        f = sorted((corpus / "_truth").glob("pairs-*.npz"))
        f = [p for p in f if float(p.stem.split("-")[1]) <= threshold + 1e-12]
        if not f:
            sys.exit(f"run truth.py {corpus} --min {threshold} first")
        z = np.load(f[0])
        keep = z["s"] >= threshold - 1e-12
        # the true pairs: (lower index, higher index) -> Jaccard >= threshold
        self.sim = {(int(a), int(b)): float(s) for a, b, s in zip(z["a"][keep], z["b"][keep], z["s"][keep])}
        self.sets, self.t = sets, threshold

    def jaccard(self, a, b):
        """Word-3-gram Jaccard of documents a and b: from the truth when
        the pair is a true pair, computed from the shingles otherwise."""
        key = (min(a, b), max(a, b))
        if key in self.sim:
            return self.sim[key]
        s = g.jaccard(self.sets[a], self.sets[b])
        # a pair missing from the all-pairs truth must be below the threshold
        assert s < self.t, "truth file incomplete"
        return s

    def score(self, predicted):
        right, below = 0, []
        for a, b in predicted:
            if (a, b) in self.sim:
                right += 1
            else:
                below.append(g.jaccard(self.sets[a], self.sets[b]))
        # a pair missing from the all-pairs truth must be below the threshold
        assert all(s < self.t for s in below), "truth file incomplete"
        precision = right / len(predicted) if predicted else 1.0
        recall = right / len(self.sim) if self.sim else 1.0
        missed = [s for p, s in self.sim.items() if p not in predicted]
        return precision, recall, missed

    def removal_precision(self, removed):
        """`removed`: removed document -> the representative kept in its
        place. Returns the share of removed documents whose Jaccard to
        their representative is at or above the threshold (1.0 when none
        is removed), and the similarities of those below it."""
        below = [s for s in (self.jaccard(d, r) for d, r in removed.items()) if s < self.t]
        return (1 - len(below) / len(removed) if removed else 1.0), below

    def pair_recall(self, removed):
        """Share of the true pairs with at least one document removed (1.0
        when there are none), and the similarities of the pairs whose
        documents are both kept."""
        both_kept = [s for (a, b), s in self.sim.items() if a not in removed and b not in removed]
        return (1 - len(both_kept) / len(self.sim) if self.sim else 1.0), both_kept

    def closure_ceiling(self):
        """Cluster-pair precision of union-find over ALL true pairs: the
        best a closure can do at recall 1."""
        uf = UnionFind()
        for a, b in self.sim:
            uf.union(a, b)
        pred = pairs_of(uf.clusters())
        return sum(1 for p in pred if p in self.sim) / len(pred)


def published(output, name):
    """The file of a Drover result at `output` that the job wrote as
    `name` (e.g. `_dedup/report.json`): the result's `_manifest.json`
    names the published files, each tagged with the lease that published
    it before its extension (`_dedup/report.r41.json`)."""
    manifest = json.loads((output / "_manifest.json").read_text())
    for f in manifest["files"]:
        d, _, base = f["path"].rpartition("/")
        if (d + "/" if d else "") + re.sub(r"^([^.]+)\.r\d+(?=\.|$)", r"\1", base) == name:
            return output / f["path"]
    sys.exit(f"{output}/_manifest.json names no {name}")


def run_drover(drover, work, corpus, threshold, perm, cfg, index):
    data = work / "data"
    subprocess.run(["rm", "-rf", str(data), str(work / "dev")], check=True)
    data.mkdir(parents=True)
    os.symlink(corpus, data / "texts")
    spec = (ROOT / "jobspecs/examples/dedup.yaml").read_text()
    spec = spec.replace("shards: 4", "shards: 1\n        bucketPartitions: 1")
    spec = spec.replace("threshold: 0.8", f"threshold: {threshold}")
    extra = ""
    if cfg != "default":
        b, r = cfg.split("x")
        extra = f"\n        bands: {int(b)}\n        rows: {int(r)}"
    spec = spec.replace("numPerm: 128", f"numPerm: {perm}{extra}")
    (work / "spec.yaml").write_text(spec)
    dev = Dev(drover, work)
    try:
        wall, cpu, status = dev.run(work / "spec.yaml", {"data": f"file://{data}"})
    finally:
        dev.stop()
    report = json.loads(published(data / "dedup", "_dedup/report.json").read_text())
    from datetime import datetime
    stages = {}
    for t in status.get("templates", []):
        if t.get("startedAt") and t.get("finishedAt"):
            stages[t.get("stage") or t["name"]] = (datetime.fromisoformat(t["finishedAt"])
                                                   - datetime.fromisoformat(t["startedAt"])).total_seconds()
    # one line per removed document; its representative is kept, so the
    # clusters are stars
    uf, removed = UnionFind(), {}
    with open(published(data / "dedup", "_dedup/duplicates.jsonl")) as f:
        for line in f:
            d = json.loads(line)
            uf.union(index[d["id"]], index[d["representative"]])
            removed[index[d["id"]]] = index[d["representative"]]
    info = {"bands": report["bands"], "rows": report["rows"], "candidates": report["pairs"]["candidatePairs"],
            "hotBuckets": report["pairs"]["hotBuckets"], "hotBucketDocs": report["pairs"]["hotBucketDocs"],
            "similarPairs": report["pairs"]["similarPairs"], "exactPairs": report["pairs"]["exactPairs"],
            "pAtT": report.get("candidateProbabilityAtThreshold"), "stages": stages}
    return wall, cpu, uf.clusters(), removed, info


def keep_first(clusters):
    """The removals of a side that reports clusters only: each cluster
    keeps its first document in input order and removes the others for
    it. Returns removed document -> representative."""
    removed = {}
    for m in clusters:
        first = min(m)
        removed.update((d, first) for d in m if d != first)
    return removed


def run_datasketch(texts, threshold, perm):
    from datasketch import MinHash, MinHashLSH
    start, c0 = time.perf_counter(), time.process_time()
    sets = [[s.encode() for s in g.shingles(t)] for t in texts]
    hashes = MinHash.bulk(sets, num_perm=perm)
    lsh = MinHashLSH(threshold=threshold, num_perm=perm)
    with lsh.insertion_session() as session:
        for i, m in enumerate(hashes):
            session.insert(i, m)
    uf, cand = UnionFind(), set()
    for i, m in enumerate(hashes):
        for o in lsh.query(m):
            if o != i:
                uf.union(i, o)
                cand.add((min(i, o), max(i, o)))
    clusters = uf.clusters()
    return time.perf_counter() - start, time.process_time() - c0, clusters, \
        {"bands": lsh.b, "rows": lsh.r, "candidates": len(cand)}


def run_rensa(texts, threshold, perm, bands):
    from rensa import RMinHash, RMinHashLSH
    start, c0 = time.perf_counter(), time.process_time()
    sets = [list(g.shingles(t)) for t in texts]
    ms = RMinHash.from_token_sets(sets, num_perm=perm, seed=42)
    lsh = RMinHashLSH(threshold=threshold, num_perm=perm, num_bands=bands)
    lsh.insert_many(ms)
    uf, cand = UnionFind(), set()
    for i, found in enumerate(lsh.query_all(ms)):
        for o in found:
            if o != i:
                uf.union(i, o)
                cand.add((min(i, o), max(i, o)))
    clusters = uf.clusters()
    return time.perf_counter() - start, time.process_time() - c0, clusters, \
        {"bands": bands, "rows": perm // bands, "candidates": len(cand)}


def hist_above(similarities, t):
    """Counts of `similarities` (all >= t) in [t, t+.05), [t+.05, t+.1),
    [t+.1, 1]."""
    return np.histogram(similarities, bins=[t, t + 0.05, t + 0.1, 1.0001])[0].tolist()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("corpus")
    ap.add_argument("--threshold", type=float, default=0.8)
    ap.add_argument("--perm", type=int, default=128)
    ap.add_argument("--configs", default="default")
    ap.add_argument("--libs", default="")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json", default=None)
    ap.add_argument("--drover", default=os.environ.get("DROVER", str(ROOT / "target/release/drover")))
    a = ap.parse_args()
    corpus = Path(a.corpus).resolve()
    docs = []
    for p in sorted(corpus.glob("part-*.jsonl")):
        with open(p) as f:
            docs += [(d["id"], d["text"]) for d in map(json.loads, filter(str.strip, f))]
    index = {d: i for i, (d, _) in enumerate(docs)}
    texts = [t for _, t in docs]
    sets = [g.shingles(t) for t in texts]
    scorer = Scorer(corpus, sets, a.threshold)
    sides = [("drover", c) for c in a.configs.split(",") if c] + \
            [(l.split(":")[0], l.split(":")[1] if ":" in l else None) for l in a.libs.split(",") if l]
    runs = defaultdict(list)
    stage_runs = defaultdict(list)
    quality = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for rep in range(a.repeat):
            k = rep % len(sides)
            for side in sides[k:] + sides[:k]:
                kind, cfg = side
                if kind == "drover":
                    wall, cpu, clusters, removed, info = run_drover(a.drover, work, corpus, a.threshold, a.perm,
                                                                    cfg, index)
                else:
                    if kind == "datasketch":
                        wall, cpu, clusters, info = run_datasketch(texts, a.threshold, a.perm)
                    else:
                        wall, cpu, clusters, info = run_rensa(texts, a.threshold, a.perm, int(cfg or 8))
                    removed = keep_first(clusters)
                runs[side].append((max(wall, cpu), wall, cpu))
                stage_runs[side].append(info.get("stages", {}))
                print(f"  run {rep + 1} {kind} {cfg}: {wall:.2f} s wall {cpu:.2f} s CPU", file=sys.stderr)
                if side not in quality:
                    p, r, missed = scorer.score(pairs_of(clusters))
                    rem_p, below = scorer.removal_precision(removed)
                    pair_r, both_kept = scorer.pair_recall(removed)
                    info.pop("stages", None)
                    quality[side] = {
                        "precision": p, "recall": r, "missed_hist": hist_above(missed, a.threshold),
                        "removed": len(removed), "removal_precision": rem_p,
                        # Jaccard to the representative of the removals below the threshold
                        "removed_below_hist": np.histogram(
                            below, bins=[0, a.threshold - 0.1, a.threshold - 0.05, a.threshold])[0].tolist(),
                        "pair_recall": pair_r, "kept_both_hist": hist_above(both_kept, a.threshold),
                        "info": info}
    n = len(docs)
    # the middle run by time (the slower of the middle two for an even count)
    mid = {side: sorted(r)[len(r) // 2] for side, r in runs.items()}
    base = mid[("drover", "default")][0] if ("drover", "default") in mid else None
    ceiling = scorer.closure_ceiling()
    print(f"{corpus} {n} docs, threshold {a.threshold}, numPerm {a.perm}, {len(scorer.sim)} true pairs; "
          f"median of {a.repeat}; time = max(wall, CPU); closure-precision ceiling {ceiling:.4f}")
    print("prec/recall: pairs in clusters; removed: documents removed; remP: share of them >= t to their "
          "representative; pairR: share of the true pairs not both kept")
    print(f"{'side':22} {'bxr':>6} {'cands':>9} {'sec':>6} {'wall':>6} {'cpu':>6} {'docs/s/core':>11} {'t/dflt':>7} "
          f"{'prec':>7} {'recall':>7} {'removed':>8} {'remP':>7} {'pairR':>7} {'hot':>4}  "
          f"by J [t,t+.05),[t+.05,t+.1),[t+.1,1]: missed, kept both")
    for side in sides:
        s, w, c = mid[side]
        q = quality[side]
        info = q["info"]
        name = f"{side[0]}:{side[1]}" if side[1] else side[0]
        print(f"{name:22} {info['bands']:>3}x{info['rows']:<3} {info['candidates']:>9} {s:6.2f} {w:6.2f} {c:6.2f} "
              f"{n / s:11,.0f} {s / base if base else float('nan'):7.2f} {q['precision']:7.4f} {q['recall']:7.4f} "
              f"{q['removed']:8} {q['removal_precision']:7.4f} {q['pair_recall']:7.4f} "
              f"{info.get('hotBuckets', '-')!s:>4}  {q['missed_hist']} {q['kept_both_hist']}")
        if a.json:
            with open(a.json, "a") as f:
                f.write(json.dumps({"corpus": str(corpus), "docs": n, "threshold": a.threshold, "perm": a.perm,
                                    "side": name, "seconds": s, "wall": w, "cpu": c, "all_runs": runs[side],
                                    "stage_runs": stage_runs[side], **q, "true_pairs": len(scorer.sim),
                                    "closure_ceiling": ceiling, "ratio_time_vs_default": s / base if base else None})
                        + "\n")


if __name__ == "__main__":
    main()
