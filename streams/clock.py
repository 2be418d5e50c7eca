"""Where "now" comes from for the worker's timer. Rules never read a clock; only the timer does.

``system`` is wall-clock time, for production. ``event-time`` is the newest event time the worker
has seen (a watermark): replaying or simulating weeks of traffic then expires addresses exactly
as living through them would, in seconds, with no dependence on when the run happens.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Protocol

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class Clock(Protocol):
    def now(self) -> datetime: ...

    def observe(self, event_time: datetime) -> None: ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)

    def observe(self, event_time: datetime) -> None:
        return None


class EventTimeClock:
    def __init__(self) -> None:
        self._watermark = EPOCH

    def now(self) -> datetime:
        return self._watermark

    def observe(self, event_time: datetime) -> None:
        if event_time > self._watermark:
            self._watermark = event_time


def make_clock(kind: str) -> Clock:
    if kind == "system":
        return SystemClock()
    if kind == "event-time":
        return EventTimeClock()
    raise ValueError(f"unknown clock {kind!r}: system or event-time")
