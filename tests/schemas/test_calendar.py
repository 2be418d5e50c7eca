"""Report weeks and the Thursday schedule, on injected times."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from smtp_discovery.schemas.calendar import Schedule, Week


def test_weeks_parse_and_bound_in_a_zone() -> None:
    week = Week.parse("2026-W47")
    assert str(week) == "2026-W47" and str(week.previous()) == "2026-W46"
    start, end = week.bounds(ZoneInfo("Europe/Berlin"))
    assert start.isoformat() == "2026-11-16T00:00:00+01:00"
    assert end.isoformat() == "2026-11-23T00:00:00+01:00"
    assert str(Week.parse("2027-W01").previous()) == "2026-W53"


@pytest.mark.parametrize("text", ["2026-47", "2026-W5", "2025-W53", "W47-2026"])
def test_bad_weeks_are_refused_with_a_sentence(text: str) -> None:
    with pytest.raises(ValueError, match=text):
        Week.parse(text)


@pytest.mark.parametrize(
    ("now", "slot", "week"),
    [
        ("2026-11-26T08:59:59+00:00", "2026-11-19T09:00:00+00:00", "2026-W46"),  # before Thu 9:00
        ("2026-11-26T09:00:00+00:00", "2026-11-26T09:00:00+00:00", "2026-W47"),  # the slot itself
        ("2026-11-29T23:00:00+00:00", "2026-11-26T09:00:00+00:00", "2026-W47"),  # Sunday after
        ("2026-11-30T00:00:00+00:00", "2026-11-26T09:00:00+00:00", "2026-W47"),  # next Monday
    ],
)
def test_the_latest_thursday_slot_and_the_week_it_covers(now: str, slot: str, week: str) -> None:
    schedule = Schedule.parse("09:00", "UTC")
    at, covered = schedule.latest_slot(datetime.fromisoformat(now))
    assert (at.astimezone(UTC).isoformat(), str(covered)) == (slot, week)


def test_the_slot_follows_the_providers_zone_across_daylight_saving() -> None:
    schedule = Schedule.parse("07:30", "America/New_York")
    summer, _ = schedule.latest_slot(datetime(2026, 10, 30, 12, tzinfo=UTC))
    winter, _ = schedule.latest_slot(datetime(2026, 11, 6, 13, tzinfo=UTC))
    assert summer.astimezone(UTC).hour == 11 and winter.astimezone(UTC).hour == 12


def test_notices_left_count_the_slots_before_expiry() -> None:
    schedule = Schedule.parse("09:00", "UTC")
    thursday = datetime(2026, 11, 26, 9, tzinfo=UTC)
    assert schedule.slots_from(thursday, datetime(2026, 11, 26, 9, tzinfo=UTC)) == 0
    assert schedule.slots_from(thursday, datetime(2026, 11, 26, 9, 1, tzinfo=UTC)) == 1
    assert schedule.slots_from(thursday, datetime(2026, 12, 17, tzinfo=UTC)) == 3
    friday = datetime(2026, 11, 27, tzinfo=UTC)
    assert schedule.slots_from(friday, datetime(2026, 12, 4, tzinfo=UTC)) == 1
