"""The lifecycle's calendar, as pure functions of an injected time: the day a discovered address
expires, report weeks, the Thursday schedule, and the notices (warning reports) an address has
left. The one module behind the worker's expiry timer, the reports, the console and the admin API.

A report sent in ISO week W covers the previous ISO week (Monday 00:00 to Monday 00:00 in the
provider's time zone). Reports go out on Thursday at the provider's configured time; a missed
slot (the jobs were down) is caught up as soon as they run again.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

THURSDAY = 3
_WEEK = re.compile(r"^(\d{4})-W(\d{2})$")


def expires_at(discovered_at: datetime, notices_before_expiry: int) -> datetime:
    """When a discovered address expires: at the end of the UTC day N weeks after the day it
    was discovered (N, the tenant's Notices before expiry, read when asked, so that a settings
    change applies to addresses already waiting).

    Whole days, because the day of discovery is what event time determines exactly whatever
    order messages arrive in; the time within it is not. The one place this rule lives: the
    worker's timer, the admin API and the weekly warning report all call it.
    """
    day = discovered_at.astimezone(UTC).date() + timedelta(weeks=notices_before_expiry, days=1)
    return datetime.combine(day, time.min, UTC)


@dataclass(frozen=True, slots=True, order=True)
class Week:
    year: int
    number: int

    @classmethod
    def parse(cls, text: str) -> Week:
        match = _WEEK.match(text)
        if not match:
            raise ValueError(f"{text!r} is not an ISO week like 2026-W47")
        year, number = int(match[1]), int(match[2])
        try:
            date.fromisocalendar(year, number, 1)
        except ValueError:
            raise ValueError(f"{text!r}: {year} has no week {number}") from None
        return cls(year, number)

    @classmethod
    def of(cls, day: date) -> Week:
        year, number, _ = day.isocalendar()
        return cls(year, number)

    @property
    def monday(self) -> date:
        return date.fromisocalendar(self.year, self.number, 1)

    def bounds(self, zone: ZoneInfo) -> tuple[datetime, datetime]:
        """[start, end) of the week in ``zone``, as aware datetimes."""
        start = datetime.combine(self.monday, time(0), zone)
        return start, datetime.combine(self.monday + timedelta(days=7), time(0), zone)

    def previous(self) -> Week:
        return Week.of(self.monday - timedelta(days=7))

    def __str__(self) -> str:
        return f"{self.year}-W{self.number:02d}"


@dataclass(frozen=True, slots=True)
class Schedule:
    at: time
    zone: ZoneInfo

    @classmethod
    def parse(cls, hhmm: str, zone: str) -> Schedule:
        return cls(time.fromisoformat(hhmm), ZoneInfo(zone))

    def slot(self, week: Week) -> datetime:
        """When the reports sent in ``week`` go out."""
        return datetime.combine(week.monday + timedelta(days=THURSDAY), self.at, self.zone)

    def latest_slot(self, now: datetime) -> tuple[datetime, Week]:
        """The most recent Thursday slot at or before ``now``, and the week it reports on."""
        week = Week.of(now.astimezone(self.zone).date())
        if self.slot(week) > now:
            week = week.previous()
        return self.slot(week), week.previous()

    def expiry(
        self, discovered_at: datetime, notices_before_expiry: int, as_of: datetime
    ) -> tuple[datetime, int]:
        """When a discovered address expires, and its notices left as of ``as_of``: the weekly
        warning reports that list it from that moment on (a report at ``as_of`` included).

        The one computation behind the console's Discovered list (as of now), the admin API and
        the warning report (as of its own sending, so it counts itself): at any one moment they
        say the same. The day comes from ``expires_at`` above, as the worker's timer's.
        """
        expires = expires_at(discovered_at, notices_before_expiry)
        return expires, self.slots_from(as_of, expires)

    def slots_from(self, start: datetime, before: datetime) -> int:
        """How many slots fall in [start, before)."""
        week = Week.of(start.astimezone(self.zone).date())
        slot = self.slot(week)
        if slot < start:
            week = Week.of(week.monday + timedelta(days=7))
            slot = self.slot(week)
        count = 0
        while slot < before:
            count += 1
            week = Week.of(week.monday + timedelta(days=7))
            slot = self.slot(week)
        return count
