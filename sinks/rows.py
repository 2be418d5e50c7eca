"""Kafka records as ClickHouse rows: one pure function per source topic.

Each row carries the record's partition and offset (what orders versions of an address, and
what a batch's deduplication token is built from) and the batch's ingestion time. A table's
columns are those the migrations leave (``address_state``: ``schema.ADDRESS_STATE_V2``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from schemas.codec import decode
from schemas.mail import (
    CalloutRejected,
    CalloutTempfailed,
    CalloutVerified,
    CatchAllChecked,
    OutboundSent,
    RecipientDelivered,
)
from schemas.state import AddressStateSnapshot, StateChange
from schemas.tenant import PROVIDER_DEFAULTS_KEY, ProviderDefaults, TenantConfig
from schemas.topics import ADDRESS_STATE, MAIL, MAIL_SETTLED, STATE_CHANGES, TENANTS
from sinks import schema
from sinks.once import EventIdentity


@dataclass(frozen=True, slots=True)
class Source:
    """Where a topic's rows go and how one record becomes one row."""

    topic: str
    table: str
    columns: tuple[str, ...]
    to_row: Callable[[bytes | None, Any, int, int, datetime], list[Any]]
    identity: EventIdentity | None = None
    """For tables of events: each event id is stored once (``sinks.once``)."""


def _columns(table: schema.Table) -> tuple[str, ...]:
    return tuple(column.split(" ", 1)[0] for column in table.columns)


def _address_state(
    key: bytes | None,
    message: AddressStateSnapshot | None,
    partition: int,
    offset: int,
    at: datetime,
) -> list[Any]:
    if message is None:  # a tombstone: the address no longer exists
        record_key = (key or b"").decode("utf-8", "replace")
        tenant = record_key.split(":", 1)[0]
        return [tenant, record_key, "", "", "", "", "", "", at, "", None, "", [], 0, 1, partition,
                offset, at]  # fmt: skip
    r = message.record
    return [
        r.tenant_id,
        message.parsed_address().record_key(r.tenant_id),
        r.address,
        r.status.value,
        r.role.value if r.role else "",
        r.primary or "",
        r.first_name,
        r.surname,
        r.status_since,
        r.status_reason,
        r.discovered_at,
        r.discovered_reason or "",
        list(r.aliases),
        r.version,
        0,
        partition,
        offset,
        at,
    ]


def _state_change(
    key: bytes | None, m: StateChange, partition: int, offset: int, at: datetime
) -> list[Any]:
    return [
        m.event_id,
        m.tenant_id,
        m.address,
        m.from_status.value if m.from_status else "",
        m.to_status.value if m.to_status else "",
        m.reason,
        m.actor,
        m.role.value if m.role else "",
        m.primary or "",
        m.version,
        list(m.cause_event_ids),
        m.event_time,
        partition,
        offset,
        at,
    ]


def _mail_event(key: bytes | None, m: Any, partition: int, offset: int, at: datetime) -> list[Any]:
    destination = getattr(m, "destination", None) or ""
    reply_code = getattr(m, "reply_code", None) or 0
    reason = getattr(m, "reason", "") if isinstance(m, CalloutTempfailed) else ""
    verdict = m.verdict if isinstance(m, RecipientDelivered) else ""
    catch_all = int(bool(getattr(m, "catch_all", False)))
    client_ip = str(m.client_ip) if isinstance(m, (RecipientDelivered, OutboundSent)) else ""
    size = m.size if isinstance(m, RecipientDelivered) else 0
    recipients = m.recipient_count if isinstance(m, OutboundSent) else 0
    latency = (
        m.latency_ms
        if isinstance(m, (CalloutVerified, CalloutRejected, CalloutTempfailed))
        else 0.0
    )
    assert isinstance(
        m,
        (CalloutVerified, CalloutRejected, CalloutTempfailed, RecipientDelivered, OutboundSent,
         CatchAllChecked),
    )  # fmt: skip
    return [
        m.event_id,
        m.type,
        m.tenant_id,
        m.address,
        m.event_time,
        m.node_id,
        destination,
        reply_code,
        reason,
        verdict,
        catch_all,
        client_ip,
        size,
        recipients,
        latency,
        partition,
        offset,
        at,
    ]


def _tenant(key: bytes | None, m: Any, partition: int, offset: int, at: datetime) -> list[Any]:
    name = (key or b"").decode("utf-8", "replace")
    if m is None:
        return [name, "", [], "", "", "{}", 1, partition, offset, at]
    if isinstance(m, ProviderDefaults):
        settings = m.settings.model_dump(mode="json")
        return [PROVIDER_DEFAULTS_KEY, "provider defaults", [], "", "", json.dumps(settings), 0,
                partition, offset, at]  # fmt: skip
    assert isinstance(m, TenantConfig)
    return [
        m.tenant_id,
        m.name,
        list(m.domains),
        m.tech_contact or "",
        m.admin_contact or "",
        json.dumps(m.settings, default=str, sort_keys=True),
        0,
        partition,
        offset,
        at,
    ]


SOURCES: dict[str, Source] = {
    source.topic: source
    for source in (
        Source(ADDRESS_STATE, "address_state", _columns(schema.ADDRESS_STATE_V2), _address_state),
        Source(
            STATE_CHANGES,
            "state_changes",
            _columns(schema.STATE_CHANGES),
            _state_change,
            EventIdentity.of(_columns(schema.STATE_CHANGES)),
        ),
        *(
            # The worker's input and the settled addresses' mail: one table of mail events.
            Source(
                topic,
                "mail_events",
                _columns(schema.MAIL_EVENTS),
                _mail_event,
                EventIdentity.of(_columns(schema.MAIL_EVENTS)),
            )
            for topic in (MAIL, MAIL_SETTLED)
        ),
        Source(TENANTS, "tenants", _columns(schema.TENANTS), _tenant),
    )
}


def to_row(
    topic: str, key: bytes | None, value: bytes | None, partition: int, offset: int, at: datetime
) -> list[Any]:
    """One record as one row of its table; raises MessageDecodeError for a bad record."""
    source = SOURCES[topic]
    return source.to_row(key, decode(topic, value), partition, offset, at)
