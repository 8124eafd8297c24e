#!/usr/bin/env python3
"""Fire times from cronsim, the evaluator healthchecks.io runs (it follows
Debian cron's DST rules), for jobspecs/tests/cron/oracle.rs.

Usage: cronsim-oracle.py TZDB_RELEASE (chrono-tz's, e.g. 2025b). Reads
one case per line on stdin, {"expr", "tz", "from", "until"} with
Unix seconds, and writes one answer per line:
{"fires": [Unix seconds in [from, until)], "imaginary": [those of them
whose wall-clock time the zone never shows]}, {"rejected": why} for a
pattern cronsim refuses, or {"gave_up": seconds} when cronsim did not
finish within its limit (it loops on some patterns at transitions that are
not on the hour).

Zones come from the pinned `tzdata` package, the same tz database release
as Drover's chrono-tz, never from the machine's /usr/share/zoneinfo.
"""

import json
import signal
import sys
import zoneinfo
from datetime import datetime, timezone

import cronsim
import tzdata

zoneinfo.reset_tzpath(to=[])
# The caller names the tz database release Drover was built with.
if len(sys.argv) != 2:
    sys.exit("usage: cronsim-oracle.py TZDB_RELEASE < cases.jsonl")
if tzdata.IANA_VERSION != sys.argv[1]:
    sys.exit(
        f"the tzdata package is {tzdata.IANA_VERSION} and Drover's chrono-tz is {sys.argv[1]}: "
        "pin the tzdata release that matches in scripts/requirements-ci.txt"
    )

LIMIT_SECONDS = 5


class GaveUp(Exception):
    pass


def give_up(_signum, _frame):
    raise GaveUp()


def imaginary(t):
    """Whether the zone's clock never shows t's wall-clock time."""
    return t.replace(tzinfo=None) != t.astimezone(timezone.utc).astimezone(t.tzinfo).replace(tzinfo=None)


def answer(expr, tz, start, until):
    zone = zoneinfo.ZoneInfo(tz)
    # cronsim yields fire times strictly after its start, to the minute.
    first = datetime.fromtimestamp(start - 60, timezone.utc).astimezone(zone)
    fires, never_shown = [], []
    for t in cronsim.CronSim(expr, first):
        ts = int(t.timestamp())
        if ts >= until:
            break
        if ts >= start:
            fires.append(ts)
            if imaginary(t):
                never_shown.append(ts)
    return {"fires": fires, "imaginary": never_shown}


signal.signal(signal.SIGALRM, give_up)
for line in sys.stdin:
    case = json.loads(line)
    signal.alarm(LIMIT_SECONDS)
    try:
        result = answer(case["expr"], case["tz"], case["from"], case["until"])
    except GaveUp:
        result = {"gave_up": LIMIT_SECONDS}
    except cronsim.CronSimError as e:
        result = {"rejected": str(e)}
    finally:
        signal.alarm(0)
    print(json.dumps(result), flush=True)
