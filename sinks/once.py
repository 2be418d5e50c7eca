"""An event id is one row: repeats of an event are dropped before they reach ClickHouse.

Delivery is at least once. An ingest node re-sends its spool after a crash, a producer may retry
a request the broker took but never answered, and a streams worker re-emits a transition (with
the same id) when it dies between its send and its commit. The batch deduplication token covers
only the replay of a whole batch; these repeats arrive singly, in another batch, minutes or
hours later. Counting them would inflate ``mail_events``, ``state_changes`` and every rollup fed
from them, so the sink inserts only rows whose event id is not already stored.

A repeat carries its original's tenant and event time, so the stored ids a batch could repeat
are those of its tenants within its event-time window, which the tables' sort keys
``(tenant_id, event_time, …)`` prune to a few granules. The window covered is therefore
everything the table still holds (the ``mail_events`` TTL; ``state_changes`` keeps all), far
beyond the longest spool outage or producer retry. Repeats inside one batch are dropped in
memory first.

Asking ClickHouse about the ids themselves cost more than inserting them: each id is escaped
character by character into the query and parsed back (10 µs an id, against 4 µs a row
inserted, on the bench machine). The sink sends each id's ``CRC32`` instead, a number that
costs a fraction of that to send, and ClickHouse answers with the stored ids whose hash
matches; the sink keeps only exact matches, so a collision can never drop an event. (An MD5
of each id, the first choice, cost twice what the rest of the lookup does in Python.)
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

IDS_PER_QUERY = 10_000
"""Event ids per query: their hashes travel as a query parameter, which an HTTP ClickHouse
server limits in size (1 MiB of URI by default: 10,000 CRC32s take about 110 KB). A default
batch is one query: each query scans its tenants' event-time window once, whatever it asks."""


@dataclass(frozen=True, slots=True)
class Events:
    """The identity of a batch's events: ids, tenants and event times, position by position."""

    ids: Sequence[str]
    tenants: Sequence[str]
    times: Sequence[datetime]


def first_of_each(ids: Sequence[str]) -> list[int]:
    """Positions of the ids in order, each id kept at its first appearance."""
    seen: set[str] = set()
    kept = []
    for position, event_id in enumerate(ids):
        if event_id not in seen:
            seen.add(event_id)
            kept.append(position)
    return kept


def id_hash(event_id: str) -> int:
    """ClickHouse's ``CRC32`` of an id (zlib's): a tenth of the cost of an MD5 in Python, and
    half the digits to send. Its collisions only add candidates, which are compared exactly."""
    return zlib.crc32(event_id.encode("utf-8"))


def stored_queries(table: str, events: Events) -> list[tuple[str, dict[str, Any]]]:
    """SQL and parameters returning the stored ids that may be among ``events``' (a superset:
    compare exactly), a chunk of ids each."""
    sql = (
        f"SELECT event_id FROM {table} WHERE tenant_id IN {{tenants:Array(String)}} "
        "AND event_time BETWEEN {lo:DateTime64(3, 'UTC')} AND {hi:DateTime64(3, 'UTC')} "
        "AND CRC32(event_id) IN {hashes:Array(UInt32)}"
    )
    queries = []
    for start in range(0, len(events.ids), IDS_PER_QUERY):
        end = start + IDS_PER_QUERY
        times = events.times[start:end]
        queries.append((sql, {
            "tenants": sorted(set(events.tenants[start:end])),
            # A second either side: parameters may be sent without the milliseconds.
            "lo": min(times) - timedelta(seconds=1),
            "hi": max(times) + timedelta(seconds=1),
            "hashes": Numbers([id_hash(event_id) for event_id in events.ids[start:end]]),
        }))  # fmt: skip
    return queries


class Numbers:
    """Integers as the text ClickHouse reads for an array parameter, written at once.

    clickhouse-connect formats a list parameter element by element (2.4 µs a number: the
    lookup's largest cost once the ids were hashed cheaply); a value it does not know it binds
    as its ``str()``, which here is the whole array, joined in one call (0.2 µs a number).
    Only integers are held, so the text needs no escaping."""

    __slots__ = ("text",)

    def __init__(self, numbers: Sequence[int]) -> None:
        self.text = "[" + ",".join(map(str, map(int, numbers))) + "]"

    def __str__(self) -> str:
        return self.text


def not_stored(ids: Sequence[str], stored: set[str]) -> list[int]:
    """Positions of the ids ``stored`` does not hold."""
    return [position for position, event_id in enumerate(ids) if event_id not in stored]
