"""An event id is one row: repeats of an event are dropped before they reach ClickHouse.

Delivery is at least once. An ingest node re-sends its spool after a crash, a producer may retry
a request the broker took but never answered, and a streams worker re-emits a transition (with
the same id) when it dies between its send and its commit. The batch deduplication token covers
only the replay of a whole batch; these repeats arrive singly, in another batch, minutes or
hours later. Counting them would inflate ``mail_events``, ``state_changes`` and every rollup fed
from them, so the sink inserts only rows whose event id is not already stored.

A repeat carries its original's event time and key, so it lands on the same partition (one sink
at a time, batches in order) and can be found cheaply: the lookup names the batch's tenants and
event-time range, which the tables' sort keys ``(tenant_id, event_time, …)`` prune to a few
granules. The window covered is therefore everything the table still holds (the
``mail_events`` TTL; ``state_changes`` keeps all), far beyond the longest spool outage or
producer retry. Repeats inside one batch are dropped in memory first.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any


@dataclass(frozen=True, slots=True)
class EventIdentity:
    """Where a table's rows keep the event id, the tenant and the event time."""

    event_id: int
    tenant_id: int
    event_time: int

    @classmethod
    def of(cls, columns: Sequence[str]) -> EventIdentity:
        return cls(columns.index("event_id"), columns.index("tenant_id"),
                   columns.index("event_time"))  # fmt: skip


def first_of_each(rows: list[list[Any]], identity: EventIdentity) -> list[list[Any]]:
    """The rows in order, each event id kept at its first appearance."""
    seen: set[str] = set()
    kept = []
    for row in rows:
        event_id = row[identity.event_id]
        if event_id not in seen:
            seen.add(event_id)
            kept.append(row)
    return kept


def stored_query(
    table: str, rows: list[list[Any]], identity: EventIdentity
) -> tuple[str, dict[str, Any]]:
    """SQL and parameters that return which of ``rows``' event ids ``table`` already holds."""
    times = [row[identity.event_time] for row in rows]
    return (
        f"SELECT event_id FROM {table} WHERE tenant_id IN {{tenants:Array(String)}} "
        "AND event_time BETWEEN {lo:DateTime64(3, 'UTC')} AND {hi:DateTime64(3, 'UTC')} "
        "AND event_id IN {ids:Array(String)}",
        {
            "tenants": sorted({row[identity.tenant_id] for row in rows}),
            # A second either side: parameters may be sent without the milliseconds.
            "lo": min(times) - timedelta(seconds=1),
            "hi": max(times) + timedelta(seconds=1),
            "ids": [row[identity.event_id] for row in rows],
        },
    )


def not_stored(rows: list[list[Any]], stored: set[str], identity: EventIdentity) -> list[list[Any]]:
    return [row for row in rows if row[identity.event_id] not in stored]
