"""The one clock type: what time it is, and how much time has passed.

Code that needs the time takes a :class:`Clock` rather than reading the system's, so that tests
(and the streams worker's event-time mode, ``streams.clock``) decide what "now" is without
waiting.

``now()`` is wall-clock time, an aware UTC datetime: what events are stamped with and what
lifetimes are measured against (a verification cache entry, a catch-all recheck). ``monotonic()``
is seconds from an arbitrary origin that never go back: for rate limits and sliding windows,
which measure elapsed time and must neither stretch nor shrink when the wall clock is stepped
(NTP, an operator's ``date``). One clock answers both, so that a test moves both at once.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Protocol, runtime_checkable


@runtime_checkable
class Clock(Protocol):
    def now(self) -> datetime:
        """Wall-clock time, aware, in UTC."""
        ...

    def monotonic(self) -> float:
        """Seconds since an arbitrary origin; never smaller than at the previous call."""
        ...


class SystemClock:
    """The machine's clocks: production."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    def monotonic(self) -> float:
        return time.monotonic()


class ManualClock:
    """A clock that moves only when told to (tests): stopped at ``start``, by default the
    moment it was made. Its monotonic seconds are the time from ``start`` to its ``now`` (so
    that moving it by whole seconds moves them by exactly as many)."""

    def __init__(self, start: datetime | None = None) -> None:
        self._start = _utc(start) if start is not None else datetime.now(UTC)
        self._now = self._start

    def now(self) -> datetime:
        return self._now

    def monotonic(self) -> float:
        return (self._now - self._start).total_seconds()

    def set(self, when: datetime) -> None:
        self._now = _utc(when)

    def advance(self, by: timedelta | float) -> None:
        """Move forward by ``by`` (a timedelta, or seconds)."""
        self._now += by if isinstance(by, timedelta) else timedelta(seconds=by)


def _utc(when: datetime) -> datetime:
    if when.tzinfo is None:
        raise ValueError(f"a clock's time must be aware (UTC), not naive: {when!r}")
    return when.astimezone(UTC)
