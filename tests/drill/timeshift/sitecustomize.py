"""Simulated weeks for roles run as processes: loaded at interpreter start by a role whose
PYTHONPATH starts with this directory (tests/drill/deployment.py does that). Production code has
no hook for it.

With ``DISCOVERY_TEST_CLOCK_FILE`` set, the platform's system clock reads the machine's time plus
the seconds written in that file (0 while it is missing or empty), re-read whenever the file
changes: the drill moves every ingest node and the admin API a week on by rewriting one file, as
tests/test_end_to_end.py moves its in-process ManualClock. ``monotonic()`` (rate limits and
windows) stays the machine's. The streams workers follow the event time (DISCOVERY_CLOCK).
"""

from __future__ import annotations

import os

_FILE = os.environ.get("DISCOVERY_TEST_CLOCK_FILE", "")


def _install(path: str) -> None:
    from datetime import UTC, datetime, timedelta

    from smtp_discovery.platform import clock

    seen: list[object] = [None, timedelta(0)]

    def offset() -> timedelta:
        try:
            stat = os.stat(path)
        except FileNotFoundError:
            return timedelta(0)
        stamp = (stat.st_mtime_ns, stat.st_size)
        if stamp != seen[0]:
            with open(path) as handle:
                text = handle.read().strip()
            seen[0], seen[1] = stamp, timedelta(seconds=float(text or 0))
        return seen[1]  # type: ignore[return-value]

    def now(self: object) -> datetime:
        return datetime.now(UTC) + offset()

    clock.SystemClock.now = now  # type: ignore[method-assign]


if _FILE:
    _install(_FILE)
