"""Address state: the lifecycle vocabulary, the per-address record and its transitions.

The record is what the streams topology keeps per address and publishes, as its latest
snapshot, to the compacted ``discovery.address-state`` topic; every change of status is also a
:class:`StateChange` on the append-only ``discovery.state-changes`` topic.
"""

from __future__ import annotations

from datetime import date
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import AfterValidator, Field

from schemas.address import parse_address, record_key
from schemas.base import AddressMessage, Contract, MailAddress, TenantId, UtcDatetime


class AddressStatus(StrEnum):
    PENDING = "pending"
    DISCOVERED = "discovered"
    USER = "user"
    FUNCTIONAL = "functional"
    ALIAS = "alias"
    INVALID = "invalid"


MANAGED_STATUSES = frozenset({AddressStatus.USER, AddressStatus.FUNCTIONAL, AddressStatus.ALIAS})
"""Statuses only an admin (or an import) changes; mail events never touch them."""


class UserRole(StrEnum):
    END_USER = "end_user"
    SILENT_USER = "silent_user"


ADMIN_ACTIONS = (
    "create_user",
    "create_functional",
    "mark_invalid",
    "remove_invalid",
    "add_alias",
    "delete",
)

SYSTEM_REASONS = (
    "verified",
    "threshold",
    "outbound",
    "alias_detected",
    "expired",
    "destination_rejected",
    "pruned",
    "import",
)


def _check_reason(value: str) -> str:
    if value in SYSTEM_REASONS:
        return value
    prefix, _, action = value.partition(":")
    if prefix == "admin" and action in ADMIN_ACTIONS:
        return value
    raise ValueError(
        f"unknown transition reason {value!r}: expected one of {', '.join(SYSTEM_REASONS)} "
        f"or admin:<{'|'.join(ADMIN_ACTIONS)}>"
    )


TransitionReason = Annotated[str, AfterValidator(_check_reason)]


class AddressRecord(Contract):
    """Everything known about one address of one tenant."""

    tenant_id: TenantId
    address: MailAddress = Field(description="As first received, for display.")
    status: AddressStatus
    status_since: UtcDatetime
    status_reason: TransitionReason
    version: int = Field(default=1, ge=1, description="Increases with every change of the record.")
    role: UserRole | None = None
    first_name: str = Field(default="", max_length=100)
    surname: str = Field(default="", max_length=100)
    primary: MailAddress | None = Field(default=None, description="Primary user of an alias.")
    alias_candidates: tuple[MailAddress, ...] = Field(
        default=(), description="Possible primaries when alias detection was ambiguous."
    )
    first_seen: UtcDatetime | None = None
    last_seen: UtcDatetime | None = None
    discovered_at: UtcDatetime | None = None
    discovered_reason: TransitionReason | None = None
    clean_by_day: dict[date, int] = Field(
        default_factory=dict, description="Clean inbound messages per event-time day."
    )
    late_dropped: int = Field(default=0, ge=0)
    aliases: tuple[MailAddress, ...] = Field(
        default=(), description="Normalised addresses linked to this user as aliases."
    )
    applied_event_ids: tuple[str, ...] = Field(
        default=(), description="Recent event ids already applied, for idempotence."
    )

    def key(self) -> str:
        return record_key(self.tenant_id, parse_address(self.address).normalized)


class AddressStateSnapshot(AddressMessage):
    """Latest state of one address; a Kafka tombstone (null value) means it no longer exists.

    Keyed by the record key (tenant + full normalised address) so that compaction keeps one
    snapshot per address, and partitioned by the route key like every other address message.
    """

    type: Literal["address_state"] = "address_state"
    record: AddressRecord

    def kafka_key(self) -> bytes:
        return self.parsed_address().record_key(self.tenant_id).encode("utf-8")


class StateChange(AddressMessage):
    """One transition of one address; ``to_status`` None means the record was removed."""

    type: Literal["state_change"] = "state_change"
    from_status: AddressStatus | None
    to_status: AddressStatus | None
    reason: TransitionReason
    actor: str = Field(default="system", min_length=1, max_length=200)
    cause_event_ids: tuple[str, ...] = ()
    version: int = Field(ge=1)
    role: UserRole | None = None
    primary: MailAddress | None = None
