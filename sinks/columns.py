"""Decoded Kafka records as ClickHouse columns: one pure function per source topic.

The sink keeps a partition's records as it takes them (keys, decoded messages, offsets) and
builds each table's columns from them in one pass per column, for clickhouse-connect's
column-oriented insert: no row is ever built, and a value the whole batch shares (its
partition, its ingestion time) is one repeated object. Each row carries the record's partition
and offset (what orders versions of an address, and what a batch's deduplication token is
built from) and the batch's ingestion time. A table's columns are those the migrations leave
(``address_state``: ``schema.ADDRESS_STATE_V2``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from schemas.mail import CalloutTempfailed, OutboundSent, RecipientDelivered
from schemas.tenant import PROVIDER_DEFAULTS_KEY, ProviderDefaults
from schemas.topics import ADDRESS_STATE, MAIL, MAIL_SETTLED, STATE_CHANGES, TENANTS
from sinks import schema

Columns = list[list[Any]]


@dataclass(slots=True)
class Taken:
    """One partition's decoded records, in offset order, waiting for their insert.

    ``messages`` holds each record's decoded value (None for a tombstone); records that did not
    decode went to the dead-letter topic and are not here."""

    partition: int
    keys: list[bytes | None] = field(default_factory=list)
    messages: list[Any] = field(default_factory=list)
    offsets: list[int] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.messages)

    def add(self, key: bytes | None, message: Any, offset: int) -> None:
        self.keys.append(key)
        self.messages.append(message)
        self.offsets.append(offset)

    def only(self, positions: list[int]) -> Taken:
        """The records at ``positions`` (in that order)."""
        if len(positions) == len(self.messages):
            return self
        return Taken(
            self.partition,
            [self.keys[i] for i in positions],
            [self.messages[i] for i in positions],
            [self.offsets[i] for i in positions],
        )


@dataclass(frozen=True, slots=True)
class Source:
    """Where a topic's records go and how they become that table's columns."""

    topic: str
    table: str
    columns: tuple[str, ...]
    to_columns: Callable[[Taken, datetime], Columns]
    events: bool = False
    """A table of events: each event id is stored once (``sinks.once``)."""


def _columns(table: schema.Table) -> tuple[str, ...]:
    return tuple(column.split(" ", 1)[0] for column in table.columns)


def _where(taken: Taken, at: datetime) -> Columns:
    """The three columns every table ends with: partition, offset, ingestion time."""
    count = len(taken)
    return [[taken.partition] * count, taken.offsets, [at] * count]


def _address_state(taken: Taken, at: datetime) -> Columns:
    # A tombstone (None) says the address no longer exists: its key is all that is left.
    records = [m.record if m is not None else None for m in taken.messages]
    keys = [
        m.parsed_address().record_key(m.tenant_id)
        if m is not None
        else (key or b"").decode("utf-8", "replace")
        for key, m in zip(taken.keys, taken.messages, strict=True)
    ]
    return [
        [r.tenant_id if r else key.split(":", 1)[0] for r, key in zip(records, keys, strict=True)],
        keys,
        [r.address if r else "" for r in records],
        [r.status if r else "" for r in records],
        [(r.role or "") if r else "" for r in records],
        [(r.primary or "") if r else "" for r in records],
        [r.first_name if r else "" for r in records],
        [r.surname if r else "" for r in records],
        [r.status_since if r else at for r in records],
        [r.status_reason if r else "" for r in records],
        [r.discovered_at if r else None for r in records],
        [(r.discovered_reason or "") if r else "" for r in records],
        [list(r.aliases) if r else [] for r in records],
        [r.version if r else 0 for r in records],
        [0 if r else 1 for r in records],
        *_where(taken, at),
    ]


def _state_changes(taken: Taken, at: datetime) -> Columns:
    # Statuses and roles are StrEnum members, so the member is its text: reading ``.value``
    # through the enum's descriptor cost more than the rest of the row.
    ms = taken.messages
    return [
        [m.event_id for m in ms],
        [m.tenant_id for m in ms],
        [m.address for m in ms],
        [m.from_status or "" for m in ms],
        [m.to_status or "" for m in ms],
        [m.reason for m in ms],
        [m.actor for m in ms],
        [m.role or "" for m in ms],
        [m.primary or "" for m in ms],
        [m.version for m in ms],
        [list(m.cause_event_ids) for m in ms],
        [m.event_time for m in ms],
        *_where(taken, at),
    ]


_CALLOUTS = ("callout_verified", "callout_rejected", "callout_tempfailed")


def _mail_events(taken: Taken, at: datetime) -> Columns:
    ms = taken.messages
    return [
        [m.event_id for m in ms],
        [m.type for m in ms],
        [m.tenant_id for m in ms],
        [m.address for m in ms],
        [m.event_time for m in ms],
        [m.node_id for m in ms],
        [getattr(m, "destination", None) or "" for m in ms],
        [getattr(m, "reply_code", None) or 0 for m in ms],
        [m.reason if isinstance(m, CalloutTempfailed) else "" for m in ms],
        [m.verdict if isinstance(m, RecipientDelivered) else "" for m in ms],
        [int(getattr(m, "catch_all", False)) for m in ms],
        [str(m.client_ip) if isinstance(m, (RecipientDelivered, OutboundSent)) else "" for m in ms],
        [m.size if isinstance(m, RecipientDelivered) else 0 for m in ms],
        [m.recipient_count if isinstance(m, OutboundSent) else 0 for m in ms],
        [m.latency_ms if m.type in _CALLOUTS else 0.0 for m in ms],
        *_where(taken, at),
    ]


def _tenants(taken: Taken, at: datetime) -> Columns:
    """Tenants change rarely: one row at a time, turned into columns."""
    rows = [_tenant_row(key, m) for key, m in zip(taken.keys, taken.messages, strict=True)]
    return [list(column) for column in zip(*rows, strict=True)] + _where(taken, at)


def _tenant_row(key: bytes | None, m: Any) -> tuple[Any, ...]:
    if m is None:
        return ((key or b"").decode("utf-8", "replace"), "", [], "", "", "{}", 1)
    if isinstance(m, ProviderDefaults):
        settings = json.dumps(m.settings.model_dump(mode="json"))
        return (PROVIDER_DEFAULTS_KEY, "provider defaults", [], "", "", settings, 0)
    return (m.tenant_id, m.name, list(m.domains), m.tech_contact or "", m.admin_contact or "",
            json.dumps(m.settings, default=str, sort_keys=True), 0)  # fmt: skip


SOURCES: dict[str, Source] = {
    source.topic: source
    for source in (
        Source(ADDRESS_STATE, "address_state", _columns(schema.ADDRESS_STATE_V2), _address_state),
        Source(
            STATE_CHANGES,
            "state_changes",
            _columns(schema.STATE_CHANGES),
            _state_changes,
            events=True,
        ),
        *(
            # The worker's input and the settled addresses' mail: one table of mail events.
            Source(topic, "mail_events", _columns(schema.MAIL_EVENTS), _mail_events, events=True)
            for topic in (MAIL, MAIL_SETTLED)
        ),
        Source(TENANTS, "tenants", _columns(schema.TENANTS), _tenants),
    )
}
