#!/usr/bin/env python3
"""Checks `drover job schema` with an independent JSON Schema implementation.

Editors validate specs with their own JSON Schema engines, so the schema must
be valid draft 2020-12, accept every example spec, and reject specs that
Drover itself rejects for structural reasons (unknown fields, wrong kinds).

Usage: check_schema.py DROVER_BINARY EXAMPLES_DIR
"""

import json
import pathlib
import subprocess
import sys

import jsonschema
import yaml


def main() -> int:
    drover, examples = sys.argv[1], pathlib.Path(sys.argv[2])
    schema = json.loads(subprocess.run([drover, "job", "schema"], check=True, capture_output=True).stdout)
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)

    failures = 0
    specs = sorted(examples.glob("*.yaml"))
    if not specs:
        print(f"no example specs under {examples}")
        return 1
    for path in specs:
        errors = list(validator.iter_errors(yaml.safe_load(path.read_text())))
        for error in errors:
            print(f"{path}: {error.json_path}: {error.message}")
        failures += bool(errors)

    base = {"apiVersion": "drover/v1", "kind": "Job", "metadata": {"name": "t"}, "spec": {"tasks": [{"name": "a", "kind": "noop"}]}}
    rejected = {
        "unknown task field": {**base, "spec": {"tasks": [{"name": "a", "kind": "noop", "dependOn": []}]}},
        "unknown kind": {**base, "spec": {"tasks": [{"name": "a", "kind": "nop"}]}},
        "sleep without config": {**base, "spec": {"tasks": [{"name": "a", "kind": "sleep"}]}},
        "unknown dedup field": {**base, "spec": {"tasks": [{"name": "a", "kind": "dedup", "config": {"input": "file://i", "output": "file://o", "treshold": 0.8}}]}},
        "priority out of range": {**base, "spec": {"priority": 101, "tasks": [{"name": "a", "kind": "noop"}]}},
        "bad job name": {**base, "metadata": {"name": "Bad Name"}},
    }
    for what, spec in rejected.items():
        if validator.is_valid(spec):
            print(f"schema accepts a spec with {what}")
            failures += 1
    if not validator.is_valid(base):
        print("schema rejects the minimal valid spec")
        failures += 1

    checked = len(specs) + len(rejected) + 1
    print(f"schema: {checked - failures} passed, {failures} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
