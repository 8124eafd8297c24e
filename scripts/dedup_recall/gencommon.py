"""Shared by the corpus generators: a Zipfian synthetic vocabulary, the
edit operations, the word-3-gram Jaccard (Drover's normalisation), and
the JSONL + _truth writer (the layout `drover datagen texts` uses)."""

import json
import random
import unicodedata
from pathlib import Path

import numpy as np

SYLLABLES = ["ka", "ru", "mi", "zo", "ne", "shi", "ta", "lo", "po", "ge", "an", "ve", "ba", "el",
             "tri", "in", "ku", "ya", "fi", "or", "sto", "wa", "de", "mu", "ng", "the", "ri", "so"]


def normalize(text):
    return " ".join(unicodedata.normalize("NFKC", text).lower().split())


def shingles(text, n=3):
    words = [w for w in normalize(text).split(" ") if w]
    if len(words) <= n:
        return {" ".join(words)}
    return {" ".join(words[i:i + n]) for i in range(len(words) - n + 1)}


def jaccard(a, b):
    return len(a & b) / len(a | b) if (a or b) else 1.0


class Vocab:
    """`size` distinct made-up words, drawn with Zipf exponent `s`."""

    def __init__(self, rng, size, s):
        words, seen = [], set()
        while len(words) < size:
            w = "".join(rng.choice(SYLLABLES) for _ in range(rng.choice((1, 2, 2, 3, 3, 4))))
            if w not in seen:
                seen.add(w)
                words.append(w)
        self.words = words
        p = 1.0 / np.arange(1, size + 1) ** s
        self.cdf = np.cumsum(p / p.sum())
        self.np = np.random.default_rng(rng.randrange(1 << 30))

    def draw(self, k):
        idx = np.searchsorted(self.cdf, self.np.random(k))
        return [self.words[min(i, len(self.words) - 1)] for i in idx]


def edit_once(rng, vocab, words, kinds):
    """One edit of a kind drawn from `kinds`; returns a new list."""
    w = list(words)
    kind = rng.choice(kinds)
    if kind == "sub" and w:
        w[rng.randrange(len(w))] = vocab.draw(1)[0]
    elif kind == "ins":
        w.insert(rng.randrange(len(w) + 1), vocab.draw(1)[0])
    elif kind == "del" and len(w) > 1:
        del w[rng.randrange(len(w))]
    elif kind == "swap" and len(w) > 1:
        i = rng.randrange(len(w) - 1)
        w[i], w[i + 1] = w[i + 1], w[i]
    elif kind == "trunc_end" and len(w) > 4:
        del w[-rng.randint(1, max(1, len(w) // 20)):]
    elif kind == "trunc_start" and len(w) > 4:
        del w[:rng.randint(1, max(1, len(w) // 20))]
    elif kind == "block_del" and len(w) > 6:
        k = rng.randint(2, max(2, len(w) // 15))
        i = rng.randrange(len(w) - k)
        del w[i:i + k]
    elif kind == "block_ins":
        k = rng.randint(2, 5)
        i = rng.randrange(len(w) + 1)
        w[i:i] = vocab.draw(k)
    return w


def edit_to_target(rng, vocab, words, kinds, target, max_steps=400):
    """Applies edits one at a time while word-3-gram Jaccard with `words`
    stays >= `target`; returns the last version at or above it (the
    original if even one edit falls below, in which case the caller
    retries with another draw)."""
    src = shingles(" ".join(words))
    cur = list(words)
    for _ in range(max_steps):
        nxt = edit_once(rng, vocab, cur, kinds)
        if jaccard(src, shingles(" ".join(nxt))) < target:
            break
        cur = nxt
    return cur


def surface_variant(rng, text):
    """The same text once normalised: case, spacing, full-width letters."""
    out = []
    for ch in text:
        r = rng.random()
        if ch == " " and r < 0.1:
            out.append(rng.choice(("  ", "\t", " \n ")))
        elif ch.isalpha() and r < 0.05:
            out.append(ch.upper())
        elif ch.isalpha() and r < 0.07:
            out.append(chr(ord(ch) - ord("a") + 0xFF41))  # full-width
        else:
            out.append(ch)
    return "".join(out)


def write(out, docs, truth, params):
    """docs: [(id, text)], truth: [(id, cluster, kind, source_id)]."""
    out = Path(out)
    (out / "_truth").mkdir(parents=True, exist_ok=True)
    with open(out / "part-00000.jsonl", "w") as f:
        for doc_id, text in docs:
            f.write(json.dumps({"id": doc_id, "text": text}) + "\n")
    with open(out / "_truth/clusters.jsonl", "w") as f:
        for doc_id, cluster, kind, src in truth:
            f.write(json.dumps({"id": doc_id, "cluster": cluster, "kind": kind, "source": src}) + "\n")
    (out / "_truth/params.json").write_text(json.dumps(params, indent=1))
