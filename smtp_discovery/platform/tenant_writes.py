"""Read-modify-write of the tenants topic, one writer at a time across every process.

The tenants topic is the source of truth for tenants and the provider defaults, and every writer
(each admin API replica, the ingest CLI) changes it by reading its own view, deciding, and
writing. Two writers that read the same version would each write an edit made without the
other's, and the second would silently undo the first; two replicas could each find a domain
free and give it to two tenants.

Kafka's transaction fencing makes the writers take turns, with no lock service beside Kafka:
every writer of one tenants topic uses the same transactional id. Starting a producer with that
id fences every earlier one (its open transaction is aborted and its commit fails), so between
its start and its commit a writer is the only one that can commit. Inside that turn it waits
until its view holds every committed record (``CompactedTopicFollower.catch_up``), decides on
that view, and commits. A writer fenced by another retries from the start, on a view that now
includes the other's write. Followers read committed records only, so an aborted write is seen
by no process.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka import TopicPartition
from aiokafka.errors import KafkaError

from smtp_discovery.platform.errors import InfrastructureError
from smtp_discovery.platform.kafka import transactional_producer
from smtp_discovery.platform.views import CompactedTopicFollower, TenantDirectory
from smtp_discovery.schemas.base import Message
from smtp_discovery.schemas.codec import encode

log = logging.getLogger("smtp_discovery.platform.tenant_writes")

ATTEMPTS = 8
"""Turns a writer tries before it gives up (each lost only to another writer's turn)."""
CATCH_UP_S = 30.0
"""How long a writer waits for its view to reach the end of the topic (Kafka unreachable)."""


@dataclass(frozen=True, slots=True)
class Removal:
    """A tombstone a change writes: the tenant (or record) under ``key`` is gone."""

    key: bytes

    def kafka_key(self) -> bytes:
        return self.key


Written = Message | Removal
Change = Callable[[TenantDirectory], Sequence[Written] | Awaitable[Sequence[Written]]]
"""Decides the records to write from a view that holds every committed write (may raise)."""


class WriteContended(InfrastructureError):
    """Other writers kept taking the turn, or the view could not catch up before deciding:
    nothing was written (try again)."""


def writer_id(topic: str) -> str:
    """The transactional id every writer of ``topic`` shares: one per tenants topic, so two
    deployments on one cluster (topic prefixes) do not fence each other."""
    return f"smtp-discovery.writer.{topic}"


class TenantWriter:
    """Applies a ``Change`` to the tenants topic as the only writer; the view follows."""

    def __init__(
        self,
        options: dict[str, Any],
        topic: str,
        directory: TenantDirectory,
        follower: CompactedTopicFollower,
        *,
        attempts: int = ATTEMPTS,
    ) -> None:
        self.options = options
        self.topic = topic
        self.directory = directory
        self.follower = follower
        self.attempts = attempts
        self._local = asyncio.Lock()

    async def write(self, change: Change) -> list[Written]:
        """Write what ``change`` decides; return it once committed. An exception from
        ``change`` (a failed precondition) writes nothing and propagates."""
        last: KafkaError | None = None
        async with self._local:  # turns taken within this process need no fencing
            for attempt in range(self.attempts):
                try:
                    messages, written = await self._turn(change)
                except KafkaError as exc:
                    # Fenced by another writer (ProducerFenced, or the broker's newer error
                    # codes for it), or a coordinator busy finishing the other's transaction:
                    # nothing of this turn was committed, so take another.
                    last = exc
                    log.info(
                        "lost the turn on %s (%s); trying again",
                        self.topic,
                        type(exc).__name__,
                    )
                    await asyncio.sleep(0.05 * (attempt + 1))
                    continue
                # Committed: from here on nothing may send the change round again.
                if messages and not await self._caught_up(written):
                    log.warning("wrote to %s; the local view has not caught up yet", self.topic)
                return messages
        raise WriteContended(
            f"{self.topic}: no turn in {self.attempts} tries (last: {type(last).__name__})"
        )

    async def _turn(self, change: Change) -> tuple[list[Written], dict[TopicPartition, int]]:
        """The messages written, and the offset of the last one on each partition."""
        producer = transactional_producer(self.options, writer_id(self.topic))
        try:
            await producer.start()  # fences every other writer of the topic
            try:  # a Kafka error reading to the end loses this turn (the caller takes another)
                await asyncio.wait_for(self.follower.catch_up(), CATCH_UP_S)
            except TimeoutError:
                raise WriteContended(
                    f"the view of {self.topic} did not reach the end of the topic in "
                    f"{CATCH_UP_S:g} s; nothing was written"
                ) from None
            decided = change(self.directory)
            messages = list(await decided if inspect.isawaitable(decided) else decided)
            if not messages:
                return [], {}
            written: dict[TopicPartition, int] = {}
            async with producer.transaction():
                sent = [
                    await producer.send(self.topic, _value(m), key=m.kafka_key()) for m in messages
                ]
                for outcome in await asyncio.gather(*sent, return_exceptions=True):
                    if isinstance(outcome, BaseException):
                        raise outcome  # another writer took the turn
                    tp = TopicPartition(outcome.topic, outcome.partition)
                    written[tp] = max(written.get(tp, -1), outcome.offset)
        finally:
            try:
                await producer.stop()
            except Exception:  # the turn's outcome is decided; a failing close changes nothing
                log.warning("closing the writer of %s failed", self.topic, exc_info=True)
        return messages, written

    async def _caught_up(self, written: dict[TopicPartition, int]) -> bool:
        """After a commit: the view holds it (read-your-writes, in the topic's order, so a
        later writer's record is never undone). False, logged, when it cannot tell: the write
        is made either way."""
        try:
            await asyncio.wait_for(self.follower.applied(written), CATCH_UP_S)
        except TimeoutError:
            return False
        except KafkaError:
            log.warning("reading %s to its end failed", self.topic, exc_info=True)
            return False
        return True


def _value(message: Message | Removal) -> bytes | None:
    return None if isinstance(message, Removal) else encode(message)
