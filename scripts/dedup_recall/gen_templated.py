#!/usr/bin/env python3
"""Corpus C, "messages": short-to-medium documents sharing boilerplate,
near copies made by ONE kind of edit each, target Jaccard spread evenly
over [0.60, 1.0].

- vocabulary: 5,000 made-up words, Zipf exponent 1.0 (frequent words, so
  unrelated documents share more 3-grams than in the other corpora);
- 300 boilerplate openings of 4-10 words and 100 sign-offs of 3-6 words;
  a document is an opening (60% of documents) + a body of 8-40 words
  (uniform) + a sign-off (30%): lengths about 8-56 words;
- of the documents, 5% exact copies after normalisation, 25% near copies,
  the rest originals;
- a near copy's source is an earlier original or near copy (uniformly);
  its edit kind is one of word substitution, insertion, deletion,
  adjacent swap, cutting words from the end, deleting a block of words
  (uniformly), applied repeatedly while Jaccard with the source stays at
  or above a target drawn uniformly from [0.60, 1.0];
- documents are shuffled; ids doc-NNNNNNNNN in file order.

    gen_templated.py --out DIR [--docs 60000] [--seed 11]
"""
import argparse
import random

import gencommon as g

KINDS = ["sub", "ins", "del", "swap", "trunc_end", "block_del"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--docs", type=int, default=60000)
    ap.add_argument("--seed", type=int, default=11)
    a = ap.parse_args()
    rng = random.Random(a.seed)
    vocab = g.Vocab(rng, 5000, 1.0)
    openings = [vocab.draw(rng.randint(4, 10)) for _ in range(300)]
    signoffs = [vocab.draw(rng.randint(3, 6)) for _ in range(100)]
    items, n_orig, n_near = [], 0, 0
    for _ in range(a.docs):
        r = rng.random()
        if r < 0.05 and items:
            j = rng.randrange(len(items))
            items.append((g.surface_variant(rng, items[j][0]), items[j][1], "exact", j))
        elif r < 0.30 and items:
            j = rng.randrange(len(items))
            while items[j][2] == "exact":
                j = rng.randrange(len(items))
            words = g.normalize(items[j][0]).split(" ")
            new = g.edit_to_target(rng, vocab, words, [rng.choice(KINDS)], rng.uniform(0.60, 1.0))
            n_near += 1
            items.append((" ".join(new), items[j][1], "near", j))
        else:
            w = []
            if rng.random() < 0.6:
                w += rng.choice(openings)
            w += vocab.draw(rng.randint(8, 40))
            if rng.random() < 0.3:
                w += rng.choice(signoffs)
            n_orig += 1
            items.append((" ".join(w), len(items), "original", -1))
    order = list(range(len(items)))
    rng.shuffle(order)
    ids = {old: f"doc-{new:09d}" for new, old in enumerate(order)}
    docs = [(ids[o], items[o][0]) for o in order]
    truth = [(ids[o], ids[items[o][1]], items[o][2], ids.get(items[o][3], "")) for o in order]
    g.write(a.out, docs, truth, vars(a) | {"generator": "gen_templated.py"})
    print(f"wrote {len(docs)} docs: {n_orig} originals, {n_near} near, {len(docs) - n_orig - n_near} exact")


if __name__ == "__main__":
    main()
