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
from typing import Any

from aiokafka.errors import ProducerFenced

from schemas.base import Message
from schemas.codec import encode
from smtp_discovery.errors import InfrastructureError
from smtp_discovery.kafka import transactional_producer
from smtp_discovery.views import CompactedTopicFollower, TenantDirectory

log = logging.getLogger("smtp_discovery.tenant_writes")

ATTEMPTS = 8
"""Turns a writer tries before it gives up (each lost only to another writer's turn)."""
CATCH_UP_S = 30.0
"""How long a writer waits for its view to reach the end of the topic (Kafka unreachable)."""

Change = Callable[[TenantDirectory], Sequence[Message] | Awaitable[Sequence[Message]]]
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

    async def write(self, change: Change) -> list[Message]:
        """Write what ``change`` decides; return it once committed. An exception from
        ``change`` (a failed precondition) writes nothing and propagates."""
        async with self._local:  # turns taken within this process need no fencing
            for attempt in range(self.attempts):
                try:
                    return await self._turn(change)
                except ProducerFenced:
                    log.info("another writer took the turn on %s; trying again", self.topic)
                    await asyncio.sleep(0.05 * (attempt + 1))
        raise WriteContended(
            f"{self.topic} was being written by other writers {self.attempts} times in a row"
        )

    async def _turn(self, change: Change) -> list[Message]:
        producer = transactional_producer(self.options, writer_id(self.topic))
        await producer.start()  # fences every other writer of the topic
        try:
            if not await self._caught_up():
                raise WriteContended(
                    f"the view of {self.topic} did not reach the end of the topic in "
                    f"{CATCH_UP_S:g} s; nothing was written"
                )
            decided = change(self.directory)
            messages = list(await decided if inspect.isawaitable(decided) else decided)
            if not messages:
                return []
            async with producer.transaction():
                sent = [
                    await producer.send(self.topic, encode(m), key=m.kafka_key()) for m in messages
                ]
                for outcome in await asyncio.gather(*sent, return_exceptions=True):
                    if isinstance(outcome, BaseException):
                        raise outcome  # ProducerFenced: another writer took the turn
        finally:
            await producer.stop()
        # Read-your-writes, in the topic's order (a later writer's record is never undone).
        if not await self._caught_up():
            log.warning("wrote to %s; the local view has not caught up with it yet", self.topic)
        return messages

    async def _caught_up(self) -> bool:
        try:
            await asyncio.wait_for(self.follower.catch_up(), CATCH_UP_S)
        except TimeoutError:
            return False
        return True
