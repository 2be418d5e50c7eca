"""Decoded Kafka records as ClickHouse columns: one pure function per source topic.

A record's fields are appended to its table's columns the moment it is decoded, while the message
is still in the CPU's cache; the batch keeps columns, not messages, and is inserted as an Arrow
table of those columns (``Source.arrow``, ``sinks.arrow``). Built at the insert instead, the first
pass over ten thousand messages decoded a second earlier cost more than decoding them (py-spy,
``bench.sink``). No row is ever built, and a value the whole batch shares (its partition, its
ingestion time) is one repeated object. Each row carries the record's partition and offset (what
orders versions of an address, and what a batch's deduplication token is built from) and the
batch's ingestion time. A table's columns are those the migrations leave (``address_state``:
``schema.ADDRESS_STATE_V2``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa

from smtp_discovery.schemas.tenant import PROVIDER_DEFAULTS_KEY, ProviderDefaults
from smtp_discovery.schemas.topics import ADDRESS_STATE, MAIL, MAIL_SETTLED, STATE_CHANGES, TENANTS
from smtp_discovery.sinks import schema
from smtp_discovery.sinks.arrow import arrow_schema, arrow_table
from smtp_discovery.sinks.once import Events

Columns = list[list[Any]]
Append = Callable[[Columns, bytes | None, Any], None]
"""Appends one record (its key and decoded value, None for a tombstone) to the columns."""

NO_STATUS_SINCE = datetime(1970, 1, 1, tzinfo=UTC)
"""``status_since`` of a removed address's row (is_deleted = 1): it has no status."""

TRAILING = ("kafka_partition", "kafka_offset", "ingested_at")
"""The columns every table ends with, which the sink fills per batch."""


@dataclass(frozen=True, slots=True)
class Source:
    """Where a topic's records go and how each becomes a row of that table's columns."""

    topic: str
    table: str
    columns: tuple[str, ...]
    append: Append
    arrow_schema: pa.Schema
    """The table's columns as Arrow types: what an insert hands ClickHouse (``sinks.arrow``)."""
    events: bool = False
    """A table of events: each event id is stored once (``sinks.once``)."""

    def arrow(self, columns: Columns) -> pa.Table:
        """Every column of the table (``Taken.to_columns``) as the Arrow table to insert."""
        return arrow_table(self.arrow_schema, columns)

    def taken(self, partition: int) -> Taken:
        """An empty batch of this topic's records from ``partition``."""
        return Taken(self, partition, [[] for _ in self.columns[: -len(TRAILING)]], [])


@dataclass(slots=True)
class Taken:
    """One partition's records, in offset order, as the columns of their table (all but the
    trailing three). Records that did not decode went to the dead-letter topic instead."""

    source: Source
    partition: int
    columns: Columns
    offsets: list[int]

    def __len__(self) -> int:
        return len(self.offsets)

    def add(self, key: bytes | None, message: Any, offset: int) -> None:
        self.source.append(self.columns, key, message)
        self.offsets.append(offset)

    def events(self) -> Events:
        """The events' ids, tenants and event times (tables of events only)."""
        names = self.source.columns
        column = self.columns.__getitem__
        return Events(column(names.index("event_id")), column(names.index("tenant_id")),
                      column(names.index("event_time")))  # fmt: skip

    def only(self, positions: list[int]) -> Taken:
        """The records at ``positions`` (in that order)."""
        if len(positions) == len(self.offsets):
            return self
        return Taken(
            self.source,
            self.partition,
            [[column[i] for i in positions] for column in self.columns],
            [self.offsets[i] for i in positions],
        )

    def to_columns(self, at: datetime) -> Columns:
        """Every column of the table, ``at`` being the batch's ingestion time."""
        count = len(self.offsets)
        return [*self.columns, [self.partition] * count, self.offsets, [at] * count]


def _source(topic: str, table: schema.Table, append: Append, *, events: bool = False) -> Source:
    names = tuple(column.split(" ", 1)[0] for column in table.columns)
    assert names[-len(TRAILING) :] == TRAILING, table.name
    return Source(topic, table.name, names, append, arrow_schema(table.columns), events=events)


def _address_state(c: Columns, key: bytes | None, m: Any) -> None:
    # The key is the record key (compaction keeps one snapshot per key): no address is parsed
    # again to find it.
    record_key = (key or b"").decode("utf-8", "replace")
    if m is None:  # a tombstone (rare): the address no longer exists, its key is all that is left
        values = (record_key.split(":", 1)[0], record_key, "", "", "", "", "", "",
                  NO_STATUS_SINCE, "", None, "", [], 0, 1)  # fmt: skip
        for column, value in zip(c, values, strict=True):
            column.append(value)
        return
    r = m.record
    c[0].append(r.tenant_id)
    c[1].append(record_key)
    c[2].append(r.address)
    c[3].append(r.status)
    c[4].append(r.role or "")
    c[5].append(r.primary or "")
    c[6].append(r.first_name)
    c[7].append(r.surname)
    c[8].append(r.status_since)
    c[9].append(r.status_reason)
    c[10].append(r.discovered_at)
    c[11].append(r.discovered_reason or "")
    c[12].append(list(r.aliases))
    c[13].append(r.version)
    c[14].append(0)


def _state_change(c: Columns, key: bytes | None, m: Any) -> None:
    # Statuses and roles are StrEnum members, so the member is its text: reading ``.value``
    # through the enum's descriptor cost more than the rest of the row.
    c[0].append(m.event_id)
    c[1].append(m.tenant_id)
    c[2].append(m.address)
    c[3].append(m.from_status or "")
    c[4].append(m.to_status or "")
    c[5].append(m.reason)
    c[6].append(m.actor)
    c[7].append(m.role or "")
    c[8].append(m.primary or "")
    c[9].append(m.version)
    c[10].append(list(m.cause_event_ids))
    c[11].append(m.event_time)


_CALLOUTS = frozenset({"callout_verified", "callout_rejected", "callout_tempfailed"})
_FROM_CLIENT = frozenset({"recipient_delivered", "outbound_sent"})


def _mail_event(c: Columns, key: bytes | None, m: Any) -> None:
    # By ``type``, not by class: a contract model and its mirror (``sinks.decode``) give the
    # same row.
    kind = m.type
    delivered = kind == "recipient_delivered"
    c[0].append(m.event_id)
    c[1].append(kind)
    c[2].append(m.tenant_id)
    c[3].append(m.address)
    c[4].append(m.event_time)
    c[5].append(m.node_id)
    c[6].append(getattr(m, "destination", None) or "")
    c[7].append(getattr(m, "reply_code", None) or 0)
    c[8].append(m.reason if kind == "callout_tempfailed" else "")
    c[9].append(m.verdict if delivered else "")
    c[10].append(int(getattr(m, "catch_all", False)))
    c[11].append(str(m.client_ip) if kind in _FROM_CLIENT else "")
    c[12].append(m.size if delivered else 0)
    c[13].append(m.recipient_count if kind == "outbound_sent" else 0)
    c[14].append(m.latency_ms if kind in _CALLOUTS else 0.0)


def _tenant(c: Columns, key: bytes | None, m: Any) -> None:
    if m is None:
        values: tuple[Any, ...] = ((key or b"").decode("utf-8", "replace"), "", [], "", "", "{}",
                                   1)  # fmt: skip
    elif isinstance(m, ProviderDefaults):
        settings = json.dumps(m.settings.model_dump(mode="json"))
        values = (PROVIDER_DEFAULTS_KEY, "provider defaults", [], "", "", settings, 0)
    else:
        values = (m.tenant_id, m.name, list(m.domains), m.tech_contact or "",
                  m.admin_contact or "", json.dumps(m.settings, default=str, sort_keys=True),
                  0)  # fmt: skip
    for column, value in zip(c, values, strict=True):
        column.append(value)


SOURCES: dict[str, Source] = {
    source.topic: source
    for source in (
        _source(ADDRESS_STATE, schema.ADDRESS_STATE_V2, _address_state),
        _source(STATE_CHANGES, schema.STATE_CHANGES, _state_change, events=True),
        *(
            # The worker's input and the settled addresses' mail: one table of mail events.
            _source(topic, schema.MAIL_EVENTS, _mail_event, events=True)
            for topic in (MAIL, MAIL_SETTLED)
        ),
        _source(TENANTS, schema.TENANTS, _tenant),
    )
}
