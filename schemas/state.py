"""Address state: the lifecycle vocabulary, the per-address record and its transitions.

The record is what the streams topology keeps per address; its state (status and the facts that
go with it, not the traffic it counts) is published, when it changes, to the compacted
``discovery.address-state`` topic; every change of status is also a :class:`StateChange` on the
append-only ``discovery.state-changes`` topic.
"""

from __future__ import annotations

from datetime import date
from enum import StrEnum
from operator import attrgetter
from typing import Annotated, Literal

from pydantic import AfterValidator, Field

from smtp_discovery.schemas.address import parse_address, record_key
from smtp_discovery.schemas.base import AddressMessage, Contract, MailAddress, TenantId, UtcDatetime


class AddressStatus(StrEnum):
    PENDING = "pending"
    DISCOVERED = "discovered"
    USER = "user"
    FUNCTIONAL = "functional"
    ALIAS = "alias"
    INVALID = "invalid"


MANAGED_STATUSES = frozenset({AddressStatus.USER, AddressStatus.FUNCTIONAL, AddressStatus.ALIAS})
"""Statuses only an admin (or an import) changes; mail events never touch them."""

SETTLED_STATUSES = MANAGED_STATUSES | {AddressStatus.INVALID}
"""Statuses mail changes nothing about: the worker skips mail to and from these addresses,
and ingest sends their deliveries and outbound mail past it (``schemas.topics.mail_route``)."""


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


def is_transition_reason(value: str) -> bool:
    """A system reason, or ``admin:<action>``: the one rule every decoder of a reason applies."""
    if value in SYSTEM_REASONS:
        return True
    prefix, _, action = value.partition(":")
    return prefix == "admin" and action in ADMIN_ACTIONS


def _check_reason(value: str) -> str:
    if is_transition_reason(value):
        return value
    raise ValueError(
        f"unknown transition reason {value!r}: expected one of {', '.join(SYSTEM_REASONS)} "
        f"or admin:<{'|'.join(ADMIN_ACTIONS)}>"
    )


TransitionReason = Annotated[str, AfterValidator(_check_reason)]


class AddressState(Contract):
    """What other roles act on about one address: its status and the facts that go with it.

    This is what ``discovery.address-state`` carries, and it is published only when one of
    these fields changes (``version`` aside): mail that changes nothing about an address costs
    no record on the topic, no cache drop on the ingest nodes and no row in the sink. Message
    counts and first/last seen are traffic, not state: they stay in the worker's
    :class:`AddressRecord`, and ClickHouse rolls them up from the mail events itself.

    The expiry day is not a field: it follows from ``discovered_at`` and the tenant's settings
    *now* (``streams.rules.expiry_deadline``), so a settings change moves it without a record.
    """

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
    discovered_at: UtcDatetime | None = None
    discovered_reason: TransitionReason | None = None
    aliases: tuple[MailAddress, ...] = Field(
        default=(), description="Normalised addresses linked to this user as aliases."
    )

    def key(self) -> str:
        return record_key(self.tenant_id, parse_address(self.address).normalized)


STATE_FIELDS: tuple[str, ...] = tuple(AddressState.model_fields)
"""The published fields, in order."""

_COMPARED = tuple(name for name in STATE_FIELDS if name != "version")


def state_of(record: AddressState) -> AddressState:
    """The published part of a record (the record itself when it is already just that)."""
    if type(record) is AddressState:
        return record
    return AddressState.model_construct(**{name: getattr(record, name) for name in STATE_FIELDS})


_compared = attrgetter(*_COMPARED)


def same_state(before: AddressState, after: AddressState) -> bool:
    """True when publishing ``after`` would tell other roles nothing ``before`` did not (asked
    for every message a record counts: the fields are read at C speed)."""
    return _compared(before) == _compared(after)


class AddressRecord(AddressState):
    """Everything the worker knows about one address: its state, and the traffic it counts
    (kept in the worker's table, never published)."""

    first_seen: UtcDatetime | None = None
    last_seen: UtcDatetime | None = None
    clean_by_day: dict[date, int] = Field(
        default_factory=dict, description="Clean inbound messages per event-time day."
    )
    clean_ids: dict[date, tuple[str, ...]] = Field(
        default_factory=dict,
        description="Ids of the clean messages counted each day, so that a redelivered one is "
        "never counted again however many events came between (a day's count stops at the "
        "threshold, and so does its list).",
    )
    late_dropped: int = Field(default=0, ge=0)
    applied_event_ids: tuple[str, ...] = Field(
        default=(), description="Recent event ids already applied, for idempotence."
    )


class AddressStateSnapshot(AddressMessage):
    """Latest state of one address; a Kafka tombstone (null value) means it no longer exists.

    Keyed by the record key (tenant + full normalised address) so that compaction keeps one
    snapshot per address, and partitioned by the route key like every other address message.
    """

    type: Literal["address_state"] = "address_state"
    record: AddressState

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
