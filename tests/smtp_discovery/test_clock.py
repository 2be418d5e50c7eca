"""The one clock type: the system's, one a test moves, and the streams worker's clocks as the
same type."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from smtp_discovery.platform.clock import Clock, ManualClock, SystemClock
from smtp_discovery.streams.clock import EventTimeClock, make_clock

T0 = datetime(2026, 3, 2, 9, 0, 0, 123456, tzinfo=UTC)


def test_the_system_clock_is_aware_utc_and_its_monotonic_seconds_never_go_back() -> None:
    clock = SystemClock()
    before = datetime.now(UTC)
    now = clock.now()
    assert now.tzinfo is UTC and before <= now <= datetime.now(UTC)
    first = clock.monotonic()
    assert clock.monotonic() >= first


def test_a_manual_clock_moves_only_when_told_and_both_readings_move_together() -> None:
    clock = ManualClock(T0)
    assert (clock.now(), clock.monotonic()) == (T0, 0.0)
    clock.advance(60)
    assert (clock.now(), clock.monotonic()) == (T0 + timedelta(seconds=60), 60.0)
    clock.advance(timedelta(days=1))
    assert clock.monotonic() == 86_460.0
    clock.set(datetime(2026, 3, 3, 11, 0, 0, 123456, tzinfo=timezone(timedelta(hours=1))))
    assert clock.now() == T0 + timedelta(days=1, hours=1) and clock.now().tzinfo is UTC
    with pytest.raises(ValueError, match="aware"):
        clock.set(datetime(2026, 3, 2, 9))
    assert ManualClock().now().tzinfo is UTC


def test_the_streams_clocks_are_platform_clocks() -> None:
    for kind in ("system", "event-time"):
        assert isinstance(make_clock(kind), Clock)
    clock = EventTimeClock()
    clock.observe(0, T0)
    clock.observe(1, T0 + timedelta(seconds=5))
    assert clock.now() == T0 + timedelta(seconds=5)
    assert clock.monotonic() == (T0 + timedelta(seconds=5)).timestamp()
