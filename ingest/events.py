"""Publishing ingest's events: to Kafka when it answers, to the local spool when it does not.

``publish`` returns only when every event is either acknowledged by Kafka (acks=all,
idempotent producer) or fsync'd in the spool, so the SMTP client is never told 250 for an event
that could still be lost. Order is kept: once anything is spooled, new events queue behind it in
the spool until the drainer has delivered it. Only a full spool refuses work (SpoolFull -> 451).

One path per event. An event the producer holds is never also sent from the spool: a send not
acknowledged within ``request_timeout_ms`` is written to the spool as its durable record (the
client gets its answer), but it stays the producer's to deliver; the spool entry is *held* by
the producer's outcome. An acknowledgement retires the entry; only a definite failure makes it
the drainer's to send again. So a frozen or slow broker causes no repeats. A repeat remains
possible only when the node stops or dies while Kafka is away: the spool then re-sends what was
never acknowledged, and consumers drop the repeat by event id (the worker's rules and the
ClickHouse sink both do).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from aiokafka.partitioner import DefaultPartitioner

from smtp_discovery.ingest.spool import Position, Spool, SpoolRecord

log = logging.getLogger("smtp_discovery.ingest")


class _CachedPartitioner:
    """Kafka's own key hash (murmur2, as every client computes it: the partitions must agree
    with the worker's), remembered per key: a route key recurs with every message to its
    address, and aiokafka's murmur2 is pure Python."""

    def __init__(self, size: int = 100_000) -> None:
        self.size = size
        self._partitions: dict[tuple[bytes, int], int] = {}

    def __call__(self, key: bytes | None, all_partitions: list[int], available: list[int]) -> int:
        if key is None:
            return int(DefaultPartitioner()(key, all_partitions, available))
        known = self._partitions.get((key, len(all_partitions)))
        if known is None:
            if len(self._partitions) >= self.size:
                self._partitions.clear()
            known = int(DefaultPartitioner()(key, all_partitions, available))
            self._partitions[(key, len(all_partitions))] = known
        return known


class EventPublisher:
    def __init__(
        self,
        options: dict[str, Any],
        spool: Spool,
        *,
        request_timeout_ms: int = 5000,
        retry_seconds: float = 1.0,
    ) -> None:
        self.options = options
        self.spool = spool
        self.request_timeout_ms = request_timeout_ms
        self.retry_seconds = retry_seconds
        self._producer: AIOKafkaProducer | None = None
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._drainer: asyncio.Task[None] | None = None
        self._held: dict[Position, asyncio.Future[Any]] = {}
        """Spool entries whose send the producer has not decided yet, by position."""
        self.sent = 0
        self.spooled = 0

    async def start(self) -> None:
        await self._connect()
        self._drainer = asyncio.create_task(self._drain_forever(), name="spool-drainer")

    @property
    def admits_new_work(self) -> bool:
        """False once the spool is full: new transactions get 451 until Kafka drains it."""
        return self.spool.admits_new_work

    async def publish(self, records: list[SpoolRecord], *, admitted: bool = False) -> None:
        """Deliver or spool every record; raises SpoolFull when neither is possible (never for
        ``admitted`` records, which belong to mail already delivered).

        The lock covers only handing records to the producer (which keeps their order); the
        wait for acknowledgements happens outside it, so concurrent SMTP sessions share
        Kafka round trips instead of queueing for them one by one."""
        async with self._lock:
            producer = self._producer
            if producer is None or self.spool.size_bytes:
                self._to_spool(records, admitted)
                return
            futures = await self._hand_over(producer, records)
        delivered = await self._outcomes(futures)
        if len(delivered) == len(records) and all(delivered):
            return
        async with self._lock:
            # Looked at again under the lock: an acknowledgement that came meanwhile means the
            # event is delivered, and spooling it would send it twice.
            late = [i for i in range(len(records)) if i >= len(futures) or not _acked(futures[i])]
            log.warning(
                "Kafka did not acknowledge %d event(s) in time: spooled until it does", len(late)
            )
            positions = self._to_spool([records[i] for i in late], True)
            for position, i in zip(positions, late, strict=True):
                if i < len(futures) and not futures[i].done():
                    # The entry stays the producer's while its send is undecided.
                    self._held[position] = futures[i]

    def _to_spool(self, records: list[SpoolRecord], admitted: bool) -> list[Position]:
        positions = self.spool.append(records, admitted=admitted)
        self.spooled += len(records)
        self._wake.set()
        return positions

    async def _hand_over(
        self, producer: AIOKafkaProducer, records: list[SpoolRecord]
    ) -> list[asyncio.Future[Any]]:
        """Queue records on the producer in order (send() waits only when its buffer is full).
        Fewer futures than records: the producer refused the rest, which were never sent."""
        futures = []
        try:
            for record in records:
                futures.append(
                    await producer.send(record.topic, key=record.key, value=record.value)
                )
        except KafkaError as exc:
            log.warning("Kafka refused an event (%s)", type(exc).__name__)
        return futures

    async def _outcomes(self, futures: list[asyncio.Future[Any]]) -> list[bool]:
        """True per future Kafka acknowledged within the deadline (aiokafka retries a batch for
        as long as the broker is away; the wait for it here is bounded)."""
        if futures:
            await asyncio.wait(futures, timeout=self.request_timeout_ms / 1000)
        delivered = [_acked(f) for f in futures]
        self.sent += sum(delivered)
        return delivered

    async def _connect(self) -> bool:
        producer = AIOKafkaProducer(
            **self.options,
            acks="all",
            enable_idempotence=True,
            request_timeout_ms=self.request_timeout_ms,
            partitioner=_CachedPartitioner(),
        )
        try:
            await producer.start()
        except KafkaError as exc:
            log.warning("Kafka is unreachable (%s): events go to the spool", type(exc).__name__)
            with contextlib.suppress(Exception):
                await producer.stop()
            return False
        self._producer = producer
        return True

    async def _disconnect(self) -> None:
        """Drop the producer *without* letting it finish its retries (they would duplicate what
        the spool replays). Relies on aiokafka 0.14's sender, which the pin fixes."""
        producer, self._producer = self._producer, None
        if producer is None:
            return
        with contextlib.suppress(Exception):
            await producer._sender.close()  # cancels the retrying sender task
        with contextlib.suppress(Exception):
            await producer.client.close()
        producer._closed = True

    async def drain_once(self) -> int:
        """Deliver what the spool holds, in order; the number of records delivered.

        An entry the producer still holds is not sent again: its pending outcome is awaited
        like a new send's."""
        delivered = 0
        async with self._lock:
            if self._producer is None and not await self._connect():
                return 0
            producer = self._producer
            assert producer is not None
            while True:
                batch = self.spool.peek(limit=500)
                if not batch:
                    return delivered
                futures = []
                for position, record in batch:
                    held = self._held.get(position)
                    if held is None:
                        sent = await self._hand_over(producer, [record])
                        if not sent:
                            break
                        held = sent[0]
                    futures.append(held)
                outcome = await self._outcomes(futures)
                for (position, _), future in zip(batch, futures, strict=False):
                    if future.done() and (future.cancelled() or future.exception() is not None):
                        self._held.pop(position, None)  # failed for certain: send it again
                    else:  # undecided, or acknowledged behind an undecided one
                        self._held[position] = future
                # The spool retires a delivered prefix: an entry behind an undecided one keeps
                # its outcome (held) until the prefix reaches it, and is never sent twice.
                done = outcome.index(False) if False in outcome else len(outcome)
                if done:
                    through = batch[done - 1][0]
                    self.spool.ack(through)
                    self._held = {p: f for p, f in self._held.items() if p > through}
                    delivered += done
                if done < len(batch):
                    if done < len(outcome):
                        log.warning(
                            "Kafka has not acknowledged %d spooled event(s) yet",
                            len(outcome) - done,
                        )
                    return delivered

    async def _drain_forever(self) -> None:
        while True:
            if self.spool.size_bytes:
                await self.drain_once()
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.retry_seconds)

    async def stop(self) -> None:
        """Stop draining; try one last delivery of the spool (a clean shutdown flushes)."""
        if self._drainer is not None:
            self._drainer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._drainer
        if self.spool.size_bytes:
            await self.drain_once()
        await self._disconnect()


def _acked(future: asyncio.Future[Any]) -> bool:
    return future.done() and not future.cancelled() and future.exception() is None
