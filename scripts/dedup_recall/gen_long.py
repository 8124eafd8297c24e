#!/usr/bin/env python3
"""Corpus B, "articles": long documents with near copies whose word-3-gram
Jaccard to their source is spread evenly over [0.70, 1.0], so many pairs
sit near a 0.8 or 0.85 threshold.

- vocabulary: 20,000 made-up words, Zipf exponent 1.1;
- lengths: log-normal, median 150 words, sigma 0.6, clipped to [40, 600];
- of the documents, 5% exact copies after normalisation (case, spacing,
  full-width letters changed), 30% near copies, the rest originals;
- a near copy's source is an earlier original (70%) or an earlier near
  copy (30%, so chains A -> A' -> A'' exist); a target Jaccard is drawn
  uniformly from [0.70, 1.0] and mixed edits (word substitution,
  insertion, deletion, adjacent swap, cutting 1-5% of words from the start
  or the end, deleting a block of 2..n/15 words, inserting a block of 2-5
  random words) are applied one at a time while Jaccard with the source
  stays at or above the target;
- documents are shuffled; ids doc-NNNNNNNNN in file order.

    gen_long.py --out DIR [--docs 30000] [--seed 7]
"""
import argparse
import random

import numpy as np

import gencommon as g

KINDS = ["sub", "ins", "del", "swap", "trunc_end", "trunc_start", "block_del", "block_ins"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--docs", type=int, default=30000)
    ap.add_argument("--seed", type=int, default=7)
    a = ap.parse_args()
    rng = random.Random(a.seed)
    vocab = g.Vocab(rng, 20000, 1.1)
    lens = np.clip(np.random.default_rng(a.seed).lognormal(np.log(150), 0.6, a.docs), 40, 600).astype(int)
    items = []  # (text, cluster_root, kind, source index)
    originals, nears = [], []
    for i in range(a.docs):
        r = rng.random()
        if r < 0.05 and items:
            j = rng.randrange(len(items))
            items.append((g.surface_variant(rng, items[j][0]), items[j][1], "exact", j))
        elif r < 0.35 and originals:
            j = rng.choice(nears) if (nears and rng.random() < 0.3) else rng.choice(originals)
            words = [w for w in g.normalize(items[j][0]).split(" ")]
            target = rng.uniform(0.70, 1.0)
            new = g.edit_to_target(rng, vocab, words, KINDS, target)
            nears.append(len(items))
            items.append((" ".join(new), items[j][1], "near", j))
        else:
            originals.append(len(items))
            items.append((" ".join(vocab.draw(int(lens[i]))), len(items), "original", -1))
    order = list(range(len(items)))
    rng.shuffle(order)
    ids = {old: f"doc-{new:09d}" for new, old in enumerate(order)}
    docs = [(ids[o], items[o][0]) for o in order]
    truth = [(ids[o], ids[items[o][1]], items[o][2], ids.get(items[o][3], "")) for o in order]
    g.write(a.out, docs, truth, vars(a) | {"generator": "gen_long.py"})
    print(f"wrote {len(docs)} docs: {len(originals)} originals, {len(nears)} near, "
          f"{len(docs) - len(originals) - len(nears)} exact")


if __name__ == "__main__":
    main()
