"""The envelope every message on every topic shares, and the field types reused across models."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from smtp_discovery.schemas.address import Address, AddressError, is_plain_address, parse_address

SCHEMA_VERSION = 1

TENANT_ID_PATTERN = r"[a-z0-9][a-z0-9_-]{0,62}"
"""What a tenant id is, matched against the whole id (every decoder of one uses this)."""

_TENANT_ID = re.compile(TENANT_ID_PATTERN)


def _check_tenant_id(value: str) -> str:
    if not _TENANT_ID.fullmatch(value):
        raise ValueError(
            "tenant id must be 1-63 characters of lower-case letters, digits, '-' or '_', "
            "starting with a letter or digit"
        )
    return value


def _check_address(value: str) -> str:
    if is_plain_address(value):
        return value
    try:
        parse_address(value)
    except AddressError as exc:
        raise ValueError(f"invalid address {value!r}: {exc.message}") from None
    return value


def _check_aware(value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("timestamps must carry a time zone (use UTC)")
    return value.astimezone(UTC)


TenantId = Annotated[str, AfterValidator(_check_tenant_id)]
"""A tenant's id: safe in Kafka keys, file names, URLs and ClickHouse values as it is."""

MailAddress = Annotated[str, AfterValidator(_check_address)]
"""An address as received (kept for display); parse it with schemas.address for matching."""

UtcDatetime = Annotated[datetime, AfterValidator(_check_aware)]
"""An aware timestamp, normalised to UTC: every rule runs on event time carried in messages."""


def new_event_id() -> str:
    return uuid.uuid4().hex


class Contract(BaseModel):
    """Base of every model on the wire.

    Unknown fields are ignored so that an older consumer keeps working when a newer producer
    adds a field; models are frozen because a message, once built, is a fact.
    """

    model_config = ConfigDict(extra="ignore", frozen=True, str_strip_whitespace=False)


class Message(Contract):
    """Fields every message carries: its contract version, its identity and when it happened.

    ``event_id`` is what makes at-least-once delivery effectively-once: consumers remember the
    ids they applied and ignore repeats.
    """

    schema_version: int = Field(default=SCHEMA_VERSION, ge=1)
    event_id: str = Field(default_factory=new_event_id, min_length=1, max_length=128)
    event_time: UtcDatetime

    def log_fields(self) -> dict[str, Any]:
        """What a structured log line may say about this message (never contents or secrets)."""
        return {
            "event_id": self.event_id,
            "tenant_id": getattr(self, "tenant_id", None),
            "type": getattr(self, "type", None),
        }


class Envelope(Message):
    """A message that belongs to one tenant."""

    tenant_id: TenantId


class AddressMessage(Envelope):
    """A message about one address: keyed and partitioned by the address's route key."""

    address: MailAddress

    def parsed_address(self) -> Address:
        return parse_address(self.address)

    def route_key(self) -> str:
        return self.parsed_address().route_key(self.tenant_id)

    def kafka_key(self) -> bytes:
        return self.route_key().encode("utf-8")
