"""One message through the worker: decode, find the tenant, apply the rules, publish, store.

Transitions, command results and system messages are acknowledged by Kafka *before* the tables
are written. If the worker dies in between, the message is redelivered and produces the same
outputs with the same ids (the rules are deterministic), which consumers drop as repeats; the
other order could lose a transition for good, because the redelivered message would find itself
already applied. Snapshot-only outcomes (a counted message) are not awaited: a redelivered
message republishes the record's current snapshot, and Faust flushes the producer before it
commits offsets, so the common path pays no round trip per message.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from schemas.codec import MessageDecodeError, dead_letter, decode, encode
from schemas.topics import ADDRESS_STATE, COMMAND_RESULTS, COMMANDS, DEAD_LETTER, STATE_CHANGES
from smtp_discovery.views import TenantDirectory
from streams import rules
from streams.clock import Clock
from streams.due import DueIndex
from streams.store import GroupStore

log = logging.getLogger("smtp_discovery.streams")

Send = Callable[[str, bytes | None, bytes | None, int | None], Awaitable[Any]]
"""send(topic, key, value, partition) -> a future that resolves when Kafka acknowledged it."""


@dataclass
class Incoming:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


class Processor:
    def __init__(
        self,
        *,
        store: GroupStore,
        directory: TenantDirectory,
        clock: Clock,
        send: Send,
        due: DueIndex,
        policy: rules.Policy,
    ) -> None:
        self.store = store
        self.directory = directory
        self.clock = clock
        self.send = send
        self.due = due
        self.policy = policy
        self.counts: Counter[str] = Counter()

    async def handle(self, incoming: Incoming) -> None:
        try:
            message = decode(incoming.topic, incoming.value)
        except MessageDecodeError as exc:
            await self._dead_letter(incoming, exc)
            return
        tenant = self.directory.tenant(message.tenant_id)
        settings = self.directory.settings(message.tenant_id)
        if tenant is None or settings is None:
            await self._dead_letter(
                incoming,
                LookupError(f"unknown tenant {message.tenant_id!r}: not on the tenants topic"),
            )
            return
        self.clock.observe(incoming.partition, message.event_time)
        route_key = message.route_key()
        try:
            group = self.store.load(route_key)
            outcome = rules.apply(group, message, rules.Context(tenant, settings, self.policy))
        except Exception as exc:  # a rule bug must not stop the partition: park the message
            log.exception(
                "rules failed on %s:%d@%d",
                incoming.topic,
                incoming.partition,
                incoming.offset,
                extra={"tenant": message.tenant_id, "event_id": message.event_id},
            )
            await self._dead_letter(incoming, exc)
            return
        await self._publish(outcome, incoming.partition)
        self.store.save(route_key, outcome.records)
        for key, record in outcome.records.items():
            self.due.update(key, record)
        self.counts[outcome.skipped or "applied"] += 1
        self.counts.update(f"transition:{c.reason}" for c in outcome.changes)
        for change in outcome.changes:
            log.info(
                "transition",
                extra={
                    "tenant": change.tenant_id,
                    "address": change.address,
                    "from_status": change.from_status.value if change.from_status else None,
                    "to_status": change.to_status.value if change.to_status else None,
                    "reason": change.reason,
                    "event_id": change.event_id,
                    "cause_event_id": message.event_id,
                },
            )

    async def _publish(self, outcome: rules.Outcome, partition: int) -> None:
        pending = []
        for key, snapshot in outcome.snapshots():
            value = None if snapshot is None else encode(snapshot)
            # Keyed per address for compaction, placed on the route key's partition.
            pending.append(await self.send(ADDRESS_STATE, key.encode(), value, partition))
        for change in outcome.changes:
            pending.append(await self.send(STATE_CHANGES, change.kafka_key(), encode(change), None))
        for result in outcome.results:
            pending.append(
                await self.send(COMMAND_RESULTS, result.kafka_key(), encode(result), None)
            )
        for message in outcome.messages:
            pending.append(await self.send(COMMANDS, message.kafka_key(), encode(message), None))
        if pending and outcome.must_confirm:
            await asyncio.gather(*pending)

    async def _dead_letter(self, incoming: Incoming, error: Exception) -> None:
        self.counts["dead_letter"] += 1
        log.warning(
            "dead-lettering %s:%d@%d: %s",
            incoming.topic,
            incoming.partition,
            incoming.offset,
            error,
        )
        letter = dead_letter(
            component="streams",
            topic_name=incoming.topic,
            partition=incoming.partition,
            offset=incoming.offset,
            key=incoming.key,
            value=incoming.value,
            error=error,
        )
        future = await self.send(DEAD_LETTER, incoming.key, encode(letter), None)
        await future
