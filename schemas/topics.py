"""The topic registry: every topic the system uses, what it carries, and how it is laid out.

``smtp-discovery topics ensure`` creates topics from this table, producers look up their keys
here, and decoders their value types: one place to change a topic.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

from smtp_discovery.schemas.admin import AdminTokensTopicValue
from smtp_discovery.schemas.commands import CommandResult, CommandsTopicValue
from smtp_discovery.schemas.deadletter import DeadLetter
from smtp_discovery.schemas.mail import MailEvent, OutboundSent, RecipientDelivered
from smtp_discovery.schemas.state import (
    SETTLED_STATUSES,
    AddressStateSnapshot,
    AddressStatus,
    StateChange,
)
from smtp_discovery.schemas.tenant import TenantsTopicValue

DAY_MS = 86_400_000


class Cleanup(StrEnum):
    DELETE = "delete"
    COMPACT = "compact"


class KeyKind(StrEnum):
    ROUTE = "route"
    """tenant:normalised-base-local-part: every message about an address and its aliases."""
    RECORD = "record"
    """tenant:normalised-address, for compaction per address; partitioned by the route key."""
    TENANT = "tenant"
    """tenant id (or the provider-defaults key)."""
    ORIGINAL = "original"
    """The key of the message that failed, unchanged."""
    TOKEN = "token"
    """An admin token's id."""


@dataclass(frozen=True, slots=True)
class TopicSpec:
    name: str
    value_type: Any
    key: KeyKind
    cleanup: Cleanup
    description: str
    co_partitioned: bool = True
    """True: partitioned like discovery.mail (the route partition count), so state and events
    about one address meet in one worker. False: ``partitions`` is fixed."""
    partitions: int = 1
    retention_ms: int | None = None
    extra_configs: dict[str, str] = field(default_factory=dict)

    def partition_count(self, route_partitions: int) -> int:
        return route_partitions if self.co_partitioned else self.partitions

    def configs(self, replication: int) -> dict[str, str]:
        configs = {
            "cleanup.policy": str(self.cleanup),
            "min.insync.replicas": str(min(2, replication)),
        }
        if self.retention_ms is not None:
            configs["retention.ms"] = str(self.retention_ms)
        configs.update(self.extra_configs)
        return configs


MAIL = "discovery.mail"
MAIL_SETTLED = "discovery.mail-settled"
COMMANDS = "discovery.commands"
COMMAND_RESULTS = "discovery.command-results"
ADDRESS_STATE = "discovery.address-state"
STATE_CHANGES = "discovery.state-changes"
TENANTS = "discovery.tenants"
DEAD_LETTER = "discovery.dead-letter"
ADMIN_TOKENS = "discovery.admin-tokens"

_COMPACTION = {"min.cleanable.dirty.ratio": "0.1", "segment.ms": str(DAY_MS)}

REGISTRY: tuple[TopicSpec, ...] = (
    TopicSpec(
        MAIL,
        MailEvent,
        KeyKind.ROUTE,
        Cleanup.DELETE,
        "Callout, delivery and outbound events from the ingest nodes.",
        retention_ms=7 * DAY_MS,
    ),
    TopicSpec(
        MAIL_SETTLED,
        MailEvent,
        KeyKind.ROUTE,
        Cleanup.DELETE,
        "Deliveries to and outbound mail from settled addresses (users, functional accounts, "
        "aliases, invalid): analytics only; the streams worker does not read it "
        "(see mail_route).",
        retention_ms=7 * DAY_MS,
    ),
    TopicSpec(
        COMMANDS,
        CommandsTopicValue,
        KeyKind.ROUTE,
        Cleanup.DELETE,
        "Admin commands, and the streams worker's own (ticks, alias links), applied in order.",
        retention_ms=7 * DAY_MS,
    ),
    TopicSpec(
        COMMAND_RESULTS,
        CommandResult,
        KeyKind.ROUTE,
        Cleanup.DELETE,
        "Applied or rejected, with a reason, for every admin command.",
        retention_ms=7 * DAY_MS,
    ),
    TopicSpec(
        ADDRESS_STATE,
        AddressStateSnapshot,
        KeyKind.RECORD,
        Cleanup.COMPACT,
        "Every address's state (status, role, names, aliases, discovery), published when it "
        "changes, never for traffic alone; tombstone when removed. Ingest's view of state.",
        extra_configs=_COMPACTION,
    ),
    TopicSpec(
        STATE_CHANGES,
        StateChange,
        KeyKind.ROUTE,
        Cleanup.DELETE,
        "Every transition of every address (history for the sink and reports).",
        retention_ms=30 * DAY_MS,
    ),
    TopicSpec(
        TENANTS,
        TenantsTopicValue,
        KeyKind.TENANT,
        Cleanup.COMPACT,
        "Tenant configurations and the provider defaults; the source of truth for both.",
        co_partitioned=False,
        partitions=1,
        extra_configs=_COMPACTION,
    ),
    TopicSpec(
        ADMIN_TOKENS,
        AdminTokensTopicValue,
        KeyKind.TOKEN,
        Cleanup.COMPACT,
        "Admin API tokens (hashes only, signed with the admin role's key; a tombstone revokes "
        "one), and when each was last used (key used:<id>).",
        co_partitioned=False,
        partitions=1,
        extra_configs=_COMPACTION,
    ),
    TopicSpec(
        DEAD_LETTER,
        DeadLetter,
        KeyKind.ORIGINAL,
        Cleanup.DELETE,
        "Messages that could not be decoded or applied, with the error.",
        co_partitioned=False,
        partitions=3,
        retention_ms=30 * DAY_MS,
    ),
)

TOPICS: dict[str, TopicSpec] = {spec.name: spec for spec in REGISTRY}


ROUTED_PAST_WHEN_SETTLED = (RecipientDelivered, OutboundSent)
"""The mail events ``mail_route`` sends past the worker when their address is settled. The
worker treats those it does receive (the ingest view was a moment behind) alike: it skips them
and does not keep them for a late message's replay (``streams.reorder``), so that the outcome
does not depend on how fresh an ingest node's view was."""


def mail_route(event: MailEvent, status: AddressStatus | None) -> str:
    """Where ingest publishes a mail event, given the address's status in its view.

    A delivery to, or outbound mail from, a settled address can change no state: the streams
    worker would only skip it. Such events go to ``discovery.mail-settled``, which the sink
    stores like any mail event and the worker never reads; in a provider's steady state that
    is most of the mail. Everything else (callouts, mail to unknown, pending or discovered
    addresses, outbound from addresses not yet users) goes to ``discovery.mail``, the worker's
    input. The view may be a moment stale: an event that reaches the worker for an address
    that just settled is skipped there as before; one routed past the worker for an address an
    admin just removed is counted in the analytics, and that address is met again by its next
    callout or message.
    """
    if status in SETTLED_STATUSES and isinstance(event, ROUTED_PAST_WHEN_SETTLED):
        return MAIL_SETTLED
    return MAIL


def topic(name: str) -> TopicSpec:
    try:
        return TOPICS[name]
    except KeyError:
        raise KeyError(f"unknown topic {name!r}; known: {', '.join(TOPICS)}") from None


@dataclass(frozen=True, slots=True)
class TopicNames:
    """The registry's names under an optional prefix, so that several deployments (staging and
    production, or parallel test runs) can share one Kafka cluster without sharing topics."""

    prefix: str = ""

    def __call__(self, base: str) -> str:
        topic(base)  # only registry topics have names
        return self.prefix + base

    def base_of(self, name: str) -> str:
        if not name.startswith(self.prefix):
            raise KeyError(f"{name!r} is not a topic of prefix {self.prefix!r}")
        return name[len(self.prefix) :]

    def specs(self) -> list[TopicSpec]:
        return [replace(spec, name=self.prefix + spec.name) for spec in REGISTRY]
