"""Where "now" comes from for the worker's timer. Rules never read a clock; only the timer does.

The timer's clock is the platform's (``platform.clock.Clock``) told two more things: its ``now``
takes an optional partition, and it is shown every event the worker applies (``observe``).

``system`` is wall-clock time, for production. ``event-time`` is, per partition, the newest
event time the worker has processed there (a watermark): replaying or simulating weeks of
traffic then expires addresses exactly as living through them would, in seconds. It is kept
per partition because partitions advance independently: a partition that is behind must not
expire addresses before it has applied the events that precede the deadline.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Protocol

from smtp_discovery.platform import clock as platform_clock

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class PartitionClock(platform_clock.Clock, Protocol):
    def now(self, partition: int | None = None) -> datetime:
        """The time on ``partition``; without one, the newest time of any partition."""
        ...

    def observe(self, partition: int, event_time: datetime) -> None: ...


class SystemClock(platform_clock.SystemClock):
    """Wall-clock time, the same on every partition; events do not move it."""

    def now(self, partition: int | None = None) -> datetime:
        return super().now()

    def observe(self, partition: int, event_time: datetime) -> None:
        return None


class EventTimeClock:
    def __init__(self) -> None:
        self._watermarks: dict[int, datetime] = {}

    def now(self, partition: int | None = None) -> datetime:
        if partition is None:
            return max(self._watermarks.values(), default=EPOCH)
        return self._watermarks.get(partition, EPOCH)

    def monotonic(self) -> float:
        """The newest event time of any partition, as a POSIX timestamp (it never goes back)."""
        return self.now().timestamp()

    def observe(self, partition: int, event_time: datetime) -> None:
        if event_time > self._watermarks.get(partition, EPOCH):
            self._watermarks[partition] = event_time


def make_clock(kind: str) -> PartitionClock:
    if kind == "system":
        return SystemClock()
    if kind == "event-time":
        return EventTimeClock()
    raise ValueError(f"unknown clock {kind!r}: system or event-time")
