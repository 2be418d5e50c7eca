"""The inbound detection window: clean messages per event-time day, kept inside the record.

Not a Faust hopping window: a 30-day window with a 1-day step would write 30 changelog entries per
event and expire on wall-clock time. Daily buckets in the record cost one write per event and
are evaluated on event time, so replaying history gives the same answer as living it.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime, timedelta
from typing import TypeVar

T = TypeVar("T")


def add_clean(
    buckets: Mapping[date, int],
    ids: Mapping[date, tuple[str, ...]],
    day: date,
    event_id: str,
    cap: int,
) -> tuple[dict[date, int], dict[date, tuple[str, ...]]]:
    """Count a clean message on its day, and remember its id there.

    A day's count stops at ``cap`` (the threshold): one day that reaches it completes every
    window that includes it, so counting further changes no crossing, and the ids a record
    keeps stay bounded by the threshold per day.
    """
    if buckets.get(day, 0) >= cap:
        return dict(buckets), dict(ids)
    out, seen = dict(buckets), dict(ids)
    out[day] = out.get(day, 0) + 1
    seen[day] = (*seen.get(day, ()), event_id)
    return out, seen


def window_sum(buckets: Mapping[date, int], end: date, period_days: int) -> int:
    """Clean messages on the ``period_days`` days ending with ``end`` (inclusive)."""
    start = end - timedelta(days=period_days - 1)
    return sum(count for day, count in buckets.items() if start <= day <= end)


def first_crossing(
    buckets: Mapping[date, int], since: date, period_days: int, threshold: int
) -> date | None:
    """The first day on or after ``since`` whose window reaches ``threshold``, if any.

    Only days that have messages can end a window with a new maximum, so only those are tried.
    Evaluating from ``since`` (the day of the event just added) rather than only at the newest
    day makes the outcome independent of arrival order: a late message completes the window it
    belongs to, exactly as if it had arrived on time.

    No window holds more than every day together: an address that far from the threshold
    (nearly every one, on nearly every message) is answered without trying a day.
    """
    if sum(buckets.values()) < threshold:
        return None
    for day in sorted(d for d in buckets if d >= since):
        if window_sum(buckets, day, period_days) >= threshold:
            return day
    return None


def prune(buckets: Mapping[date, T], newest: date, keep_days: int) -> dict[date, T]:
    """Drop buckets that no window ending at or after ``newest - grace`` can include (and the
    ids counted on those days: a message that old is dropped as late)."""
    oldest = newest - timedelta(days=keep_days - 1)
    return {day: value for day, value in buckets.items() if day >= oldest}


def day_of(moment: datetime) -> date:
    return moment.date()
