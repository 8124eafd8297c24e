#!/usr/bin/env python3
"""Exact all-pairs ground truth: every pair of documents whose word-3-gram
Jaccard similarity (Drover's normalisation) is >= --min, by prefix
filtering (exact: two sets with Jaccard >= t share a token among the
|x| - ceil(t|x|) + 1 rarest of each). Documents with identical shingle
sets are grouped first. Writes DIR/_truth/pairs-<min>.npz (index pairs
into the file order, and their similarity).

    truth.py DIR [--min 0.8]
"""
import argparse
import json
import math
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
import gencommon as g


def load(texts_dir):
    docs = []
    for p in sorted(Path(texts_dir).glob("part-*.jsonl")):
        with open(p) as f:
            for line in f:
                if line.strip():
                    d = json.loads(line)
                    docs.append((d["id"], d["text"]))
    return docs


def all_pairs(sets, t):
    # identical sets grouped
    groups = defaultdict(list)
    for i, s in enumerate(sets):
        groups[frozenset(s)].append(i)
    reps = [m[0] for m in groups.values()]
    members = list(groups.values())
    freq = defaultdict(int)
    for key in groups:
        for tok in key:
            freq[tok] += 1
    tid = {tok: (f, tok) for tok, f in freq.items()}
    ordered = [sorted(set(sets[r]), key=tid.__getitem__) for r in reps]
    order = sorted(range(len(reps)), key=lambda k: len(ordered[k]))
    index = defaultdict(list)
    out_a, out_b, out_s = [], [], []
    for k in order:
        x = ordered[k]
        n = len(x)
        p = n - math.ceil(t * n - 1e-9) + 1
        cands = set()
        for tok in x[:p]:
            for y in index[tok]:
                if len(ordered[y]) >= t * n - 1e-9:
                    cands.add(y)
        xs = set(x)
        for y in cands:
            ys = ordered[y]
            inter = len(xs.intersection(ys))
            s = inter / (n + len(ys) - inter)
            if s >= t:
                for a in members[k]:
                    for b in members[y]:
                        out_a.append(min(a, b)); out_b.append(max(a, b)); out_s.append(s)
        for tok in x[:p]:
            index[tok].append(k)
    for m in members:
        for i, a in enumerate(m):
            for b in m[i + 1:]:
                out_a.append(a); out_b.append(b); out_s.append(1.0)
    return np.array(out_a, dtype=np.int64), np.array(out_b, dtype=np.int64), np.array(out_s)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("--min", type=float, default=0.8)
    a = ap.parse_args()
    t0 = time.time()
    docs = load(a.dir)
    sets = [g.shingles(t) for _, t in docs]
    pa, pb, ps = all_pairs(sets, a.min)
    np.savez(Path(a.dir) / "_truth" / f"pairs-{a.min}.npz", a=pa, b=pb, s=ps)
    lens = np.array([len(s) for s in sets])
    print(f"{a.dir}: {len(docs)} docs, shingles/doc median {np.median(lens):.0f} "
          f"(p5 {np.percentile(lens, 5):.0f}, p95 {np.percentile(lens, 95):.0f}); "
          f"pairs >= {a.min}: {len(pa)}, >= 0.85: {(ps >= 0.85).sum()}, "
          f"in [t, t+0.05): {((ps >= a.min) & (ps < a.min + 0.05)).sum()}; {time.time() - t0:.1f} s")


if __name__ == "__main__":
    main()
