#!/usr/bin/env python3
"""Checks that two published results hold the same files.

    same_result.py [--fields ID,REP] RESULT_A RESULT_B PREFIX...

Each RESULT is a directory whose _manifest.json names its files (a job's
`output`). The files whose names, without the publishing lease's tag
(`.r<token>`), start with one of the PREFIXes must be the same set in both,
with the same SHA-256 (the manifests' hashes, checked against the bytes);
with --fields, JSONL files must instead hold the same values of those
fields, line for line (a dedup's duplicate map: which document each
removed one was kept for, whatever the input's layout).
"""

import hashlib
import json
import os
import re
import sys


def files(root, prefixes, fields):
    m = json.load(open(os.path.join(root, "_manifest.json")))
    out = {}
    for f in m["files"]:
        name = re.sub(r"\.r\d+(?=\.|$)", "", f["path"], count=1)
        if not name.startswith(tuple(prefixes)):
            continue
        data = open(os.path.join(root, f["path"]), "rb").read()
        if hashlib.sha256(data).hexdigest() != f["sha256"]:
            sys.exit(f"same_result: {root}/{f['path']}: SHA-256 differs from its manifest")
        if fields:
            rows = [json.loads(line) for line in data.decode().splitlines()]
            out[name] = [tuple(r.get(k) for k in fields) for r in rows]
        else:
            out[name] = f["sha256"]
    return out


def main():
    args = sys.argv[1:]
    fields = []
    if args[:1] == ["--fields"]:
        fields, args = args[1].split(","), args[2:]
    a, b, prefixes = args[0], args[1], args[2:]
    fa, fb = files(a, prefixes, fields), files(b, prefixes, fields)
    if not fa:
        sys.exit(f"same_result: {a} has no file under {prefixes}")
    for name in sorted(set(fa) | set(fb)):
        if fa.get(name) != fb.get(name):
            sys.exit(f"same_result: {name} differs between {a} and {b}")
    print(f"same result: {len(fa)} files under {', '.join(prefixes)} identical in {a} and {b}")


if __name__ == "__main__":
    main()
