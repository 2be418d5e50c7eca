"""Publishing ingest's events: to Kafka when it answers, to the local spool when it does not.

``publish`` returns only when every event is either acknowledged by Kafka (acks=all,
idempotent producer) or fsync'd in the spool, so the SMTP client is never told 250 for an event
that could still be lost. Order is kept: once anything is spooled, new events queue behind it in
the spool until the drainer has delivered it. Only a full spool refuses work (SpoolFull -> 451).

A send not acknowledged within ``request_timeout_ms`` is spooled and the producer abandoned
with its retries, so an event is not both retried by the producer and replayed from the spool
(only a request the broker received but never answered can arrive twice; consumers drop the
repeat by event id).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from ingest.spool import Spool, SpoolRecord

log = logging.getLogger("smtp_discovery.ingest")


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
        delivered = await self._outcomes(futures, len(records))
        if all(delivered):
            return
        async with self._lock:
            if self._producer is producer:
                log.warning("Kafka failed %d event(s): spooling them", delivered.count(False))
                await self._disconnect()
            self._to_spool([r for r, ok in zip(records, delivered, strict=True) if not ok], True)

    def _to_spool(self, records: list[SpoolRecord], admitted: bool) -> None:
        self.spool.append(records, admitted=admitted)
        self.spooled += len(records)
        self._wake.set()

    async def _hand_over(
        self, producer: AIOKafkaProducer, records: list[SpoolRecord]
    ) -> list[asyncio.Future[Any]]:
        """Queue records on the producer in order (send() waits only when its buffer is full)."""
        futures = []
        try:
            for record in records:
                futures.append(
                    await producer.send(record.topic, key=record.key, value=record.value)
                )
        except KafkaError as exc:
            log.warning("Kafka refused an event (%s)", type(exc).__name__)
        return futures

    async def _outcomes(self, futures: list[asyncio.Future[Any]], count: int) -> list[bool]:
        """True per record Kafka acknowledged within the deadline.

        aiokafka retries a batch for as long as the broker is away; past our deadline the
        producer is abandoned (its retries with it) and the unacknowledged events spooled."""
        done, _pending = (
            await asyncio.wait(futures, timeout=self.request_timeout_ms / 1000)
            if futures
            else (set(), set())
        )
        delivered = [f in done and not f.cancelled() and f.exception() is None for f in futures]
        delivered += [False] * (count - len(delivered))
        self.sent += sum(delivered)
        return delivered

    async def _deliver(self, records: list[SpoolRecord]) -> list[bool]:
        """Send in order and wait for every outcome (the drainer, which holds the lock)."""
        assert self._producer is not None
        futures = await self._hand_over(self._producer, records)
        delivered = await self._outcomes(futures, len(records))
        if not all(delivered):
            log.warning("Kafka failed %d event(s): keeping them spooled", delivered.count(False))
            await self._disconnect()
        return delivered

    async def _connect(self) -> bool:
        producer = AIOKafkaProducer(
            **self.options,
            acks="all",
            enable_idempotence=True,
            request_timeout_ms=self.request_timeout_ms,
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
        """Deliver what the spool holds, in order; the number of records delivered."""
        delivered = 0
        async with self._lock:
            if self._producer is None and not await self._connect():
                return 0
            while True:
                batch = self.spool.peek(limit=500)
                if not batch:
                    return delivered
                outcome = await self._deliver([record for _, record in batch])
                # Acknowledge the delivered prefix only: a record after the first failure is
                # sent again later (a repeat consumers drop by event id), never lost.
                done = outcome.index(False) if False in outcome else len(outcome)
                if done:
                    self.spool.ack(batch[done - 1][0])
                    delivered += done
                if done < len(batch):
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
