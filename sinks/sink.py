"""``smtp-discovery sink``: Kafka topics into ClickHouse, every row exactly once.

One consumer group over the state changes, the address snapshots, the mail events and the
tenants. Rows are batched per topic partition (by size and by time) and each batch is one
insert whose deduplication token names its offset range. Before the insert, the batch's range
is recorded (``sink_progress``); after it, the offset is committed. A sink that dies anywhere in
between is replaced by one that finds the recorded range beyond the committed offset and
inserts exactly that range again with the same token: ClickHouse drops what it already has
(rollups included) and writes what it missed. A ClickHouse outage stalls the sink (nothing new
is consumed) until inserts succeed again; a record that cannot be decoded goes to the
dead-letter topic and its offset still counts.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError
from aiokafka.structs import ConsumerRecord
from prometheus_client import CollectorRegistry

from smtp_discovery.platform.clock import Clock, SystemClock
from smtp_discovery.platform.kafka import idempotent_producer
from smtp_discovery.platform.ops import CounterView, GaugeView
from smtp_discovery.schemas.codec import MessageDecodeError, dead_letter, encode
from smtp_discovery.schemas.topics import (
    ADDRESS_STATE,
    DEAD_LETTER,
    MAIL,
    MAIL_SETTLED,
    STATE_CHANGES,
    TENANTS,
    TopicNames,
)
from smtp_discovery.sinks.columns import SOURCES, Columns, Source, Taken
from smtp_discovery.sinks.decode import decode_batch
from smtp_discovery.sinks.once import first_of_each, not_stored, stored_queries
from smtp_discovery.sinks.schema import Layout

log = logging.getLogger("smtp_discovery.sink")

SOURCE_TOPICS = (STATE_CHANGES, ADDRESS_STATE, MAIL, MAIL_SETTLED, TENANTS)
INSERT_SETTINGS = {"deduplicate_blocks_in_dependent_materialized_views": 1}


@dataclass(slots=True)
class Batch:
    start: int
    taken: Taken
    end: int = 0
    """Offset after the last record taken (rows may be fewer: dead letters, compaction gaps)."""
    opened: float = 0.0
    replay_end: int | None = None
    token: str | None = None


@dataclass(frozen=True, slots=True)
class SinkSettings:
    group: str
    batch_rows: int = 10_000
    batch_seconds: float = 1.0
    retry_initial_s: float = 0.5
    retry_max_s: float = 30.0


class Sink:
    def __init__(
        self,
        kafka_options: dict[str, Any],
        client: Any,
        layout: Layout,
        names: TopicNames,
        settings: SinkSettings,
        *,
        clock: Clock | None = None,
        topics: Sequence[str] = SOURCE_TOPICS,
    ) -> None:
        self.kafka_options = kafka_options
        self.client = client
        self.layout = layout
        self.names = names
        self.settings = settings
        self.clock: Clock = clock if clock is not None else SystemClock()
        self.topics = tuple(topics)
        self._batches: dict[TopicPartition, Batch] = {}
        self._writing: dict[TopicPartition, tuple[asyncio.Task[None], int]] = {}
        """Per partition, the batch being written (its task and rows), if any."""
        self._failed: Exception | None = None
        """A write that failed where only the main loop can stop the sink (a rebalance)."""
        self._taken: dict[TopicPartition, int] = {}
        """Offset after the last record taken per partition (in a batch or flushed)."""
        self._consumer: AIOKafkaConsumer | None = None
        self._producer = idempotent_producer(kafka_options)
        self.rows_written = 0
        self.dead_letters = 0
        self.batches = 0
        self.retries = 0
        self.repeats = 0
        """Events dropped because their id was already stored (at-least-once repeats)."""
        self.ready = asyncio.Event()
        """Set once the first assignment was prepared (tests wait for it)."""
        self._work = asyncio.Lock()
        """aiokafka rebalances in a task of its own, while a batch may be half flushed: the
        rebalance callbacks wait for the batch, and the batch never sees a rebalance."""

    def metrics(self) -> CollectorRegistry:
        """What the sink has done, for its ops endpoint."""
        registry = CollectorRegistry()
        registry.register(
            CounterView(
                "smtp_discovery_sink_work",
                "Rows written, batches inserted, dead letters, ClickHouse retries and repeated "
                "events dropped.",
                "kind",
                lambda: {
                    "rows": self.rows_written,
                    "batches": self.batches,
                    "dead_letters": self.dead_letters,
                    "retries": self.retries,
                    "repeats": self.repeats,
                },
            )
        )
        registry.register(
            GaugeView(
                "smtp_discovery_sink_lag_records",
                "Records on the sink's assigned partitions not yet written to ClickHouse.",
                self.lag,
            )
        )
        return registry

    def lag(self) -> float:
        consumer = self._consumer
        if consumer is None:
            return 0.0
        total = 0
        for tp in consumer.assignment():
            highwater = consumer.highwater(tp)
            committed = consumer.last_stable_offset(tp) if highwater is None else highwater
            position = self._taken.get(tp)
            if committed is not None and position is not None:
                total += max(0, committed - position)
        held = sum(len(b.taken) for b in self._batches.values())
        return float(total + held + sum(rows for _, rows in self._writing.values()))

    # ---- lifecycle ----------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        consumer = AIOKafkaConsumer(
            **self.kafka_options,
            group_id=self.settings.group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=self.settings.batch_rows,
            # The tenants topic is written in transactions; a write that lost its turn is
            # aborted and must not be stored (smtp_discovery.platform.tenant_writes).
            isolation_level="read_committed",
        )
        consumer.subscribe([self.names(t) for t in self.topics], listener=_Listener(self))
        self._consumer = consumer
        await self._producer.start()
        try:
            await consumer.start()
        except BaseException:
            await self._producer.stop()
            raise
        try:
            while not stop.is_set():
                batches = await consumer.getmany(
                    timeout_ms=200, max_records=self.settings.batch_rows
                )
                async with self._work:
                    for tp, records in batches.items():
                        if tp in consumer.assignment():  # not revoked since it was fetched
                            await self._take(tp, records)
                    await self._flush_due(force=False)
                    await self._reap()
            async with self._work:
                await self._flush_due(force=True)
                for tp in list(self._writing):
                    await self._written(tp)
        finally:
            # Stopped by an error: a write cut short is replayed from its recorded range by
            # whoever owns the partition next.
            for task, _ in self._writing.values():
                task.cancel()
            await asyncio.gather(*(task for task, _ in self._writing.values()),
                                 return_exceptions=True)  # fmt: skip
            self._writing.clear()
            await consumer.stop()
            await self._producer.stop()

    # ---- batching -----------------------------------------------------------------------------

    async def _take(self, tp: TopicPartition, records: list[ConsumerRecord]) -> None:
        base = self.names.base_of(tp.topic)
        messages, failed = decode_batch(base, [record.value for record in records])
        for position, record in enumerate(records):
            if record.offset < self._taken.get(tp, -1):
                continue  # delivered again after a seek: already taken
            self._taken[tp] = record.offset + 1
            batch = self._batches.get(tp)
            if batch is None:
                batch = self._batches[tp] = self._batch(tp, record.offset)
            if batch.replay_end is not None and record.offset >= batch.replay_end:
                # The replayed range is complete: flush it before taking anything newer.
                await self._flush(tp, batch)
                batch = self._batches[tp] = self._batch(tp, record.offset)
            error = failed.get(position)
            if error is None:
                batch.taken.add(record.key, messages[position], record.offset)
            else:
                await self._dead_letter(tp, record, error)
            batch.end = record.offset + 1
            if batch.replay_end is None and len(batch.taken) >= self.settings.batch_rows:
                await self._flush(tp, batch)
        await self._flush_replays_reached(tp)

    def _batch(self, tp: TopicPartition, start: int, **replay: Any) -> Batch:
        source = SOURCES[self.names.base_of(tp.topic)]
        return Batch(start, source.taken(tp.partition), opened=self.clock.monotonic(), **replay)

    async def _flush_replays_reached(self, tp: TopicPartition) -> None:
        batch = self._batches.get(tp)
        if batch is None or batch.replay_end is None:
            return
        assert self._consumer is not None
        if await self._consumer.position(tp) >= batch.replay_end:
            batch.end = batch.replay_end
            await self._flush(tp, batch)

    async def _flush_due(self, *, force: bool) -> None:
        now = self.clock.monotonic()
        for tp, batch in list(self._batches.items()):
            if batch.replay_end is not None:
                await self._flush_replays_reached(tp)
                continue
            writing = self._writing.get(tp)
            if writing is not None and not writing[0].done() and not force:
                continue  # its previous batch is still being written: no need to wait for it
            if batch.end > batch.start and (
                force or now - batch.opened >= self.settings.batch_seconds
            ):
                await self._flush(tp, batch)

    async def _flush(self, tp: TopicPartition, batch: Batch) -> None:
        """Hand the batch to its partition's writer, and go on taking records.

        The batch is written (range recorded, rows inserted, offset committed) in a task of its
        own while the next records are fetched and decoded: the insert runs in ClickHouse's
        thread, the decoding in this one. A partition has one write in flight at most, and its
        next batch waits for it: ranges are recorded and offsets committed in order, and what
        the sink holds while ClickHouse is down stays bounded (two batches a partition)."""
        if self._batches.get(tp) is batch:
            del self._batches[tp]
        await self._written(tp)
        self._writing[tp] = (asyncio.create_task(self._write(tp, batch)), len(batch.taken))

    async def _written(self, tp: TopicPartition) -> None:
        """Wait until the partition's batch in flight, if any, is written (or failed: then
        raise what it raised)."""
        writing = self._writing.get(tp)
        if writing is not None:
            try:
                await writing[0]
            finally:
                if self._writing.get(tp) is writing:
                    del self._writing[tp]

    async def _reap(self) -> None:
        """Forget the writes that are done; one that failed raises here, and stops the sink."""
        if self._failed is not None:
            raise self._failed
        for tp, (task, _) in list(self._writing.items()):
            if task.done():
                await self._written(tp)

    async def _write(self, tp: TopicPartition, batch: Batch) -> None:
        """Record the range, insert it (retrying until ClickHouse takes it), commit it."""
        base = self.names.base_of(tp.topic)
        token = (
            batch.token or f"{self.settings.group}/{base}/{tp.partition}/{batch.start}-{batch.end}"
        )
        if batch.token is None:
            await self._with_retry(
                self._record_range, base, tp.partition, batch.start, batch.end, token
            )
        source = SOURCES[base]
        taken = batch.taken
        if taken and source.events:
            taken = await self._with_retry(self._first_time, source.table, taken)
        if taken:
            columns = taken.to_columns(self.clock.now())
            await self._with_retry(self._insert, source, columns, token)
        assert self._consumer is not None
        try:
            await self._consumer.commit({tp: batch.end})
        except (CommitFailedError, IllegalStateError) as exc:
            # The partition moved away while ClickHouse was retried: its new owner replays the
            # recorded range with the same token, so nothing is lost or doubled.
            log.warning(
                "commit of %s failed (%s); the new owner replays it", tp, type(exc).__name__
            )
            return
        self.rows_written += len(taken)
        self.repeats += len(batch.taken) - len(taken)
        self.batches += 1

    # ---- ClickHouse ---------------------------------------------------------------------------

    def _record_range(self, topic: str, partition: int, start: int, end: int, token: str) -> None:
        self.client.insert(
            self.layout.name("sink_progress"),
            [[self.settings.group, topic, partition, start, end, token, datetime.now(UTC)]],
            column_names=["consumer_group", "topic", "partition", "start_offset", "end_offset",
                          "token", "at"],
        )  # fmt: skip

    def _insert(self, source: Source, columns: Columns, token: str) -> None:
        # Made here, in the write's thread, and not under the engine's lock (sinks.arrow).
        rows = source.arrow(columns)
        self.client.insert_arrow(
            self.layout.name(source.table),
            rows,
            settings={**INSERT_SETTINGS, "insert_deduplication_token": token},
        )

    def _first_time(self, table: str, taken: Taken) -> Taken:
        """The records whose event is neither repeated earlier in the batch nor already stored."""
        taken = taken.only(first_of_each(taken.events().ids))
        events = taken.events()
        candidates: set[str] = set()
        for sql, parameters in stored_queries(self.layout.name(table), events):
            result = self.client.query(sql, parameters=parameters)
            candidates.update(str(row[0]) for row in result.result_rows)
        return taken.only(not_stored(events.ids, candidates))

    def _recorded_range(self, topic: str, partition: int) -> tuple[int, int, str] | None:
        result = self.client.query(
            f"SELECT start_offset, end_offset, token FROM {self.layout.name('sink_progress')} "
            "FINAL WHERE consumer_group = {g:String} AND topic = {t:String} "
            "AND partition = {p:UInt16}",
            parameters={"g": self.settings.group, "t": topic, "p": partition},
        )
        rows = result.result_rows
        return (int(rows[0][0]), int(rows[0][1]), str(rows[0][2])) if rows else None

    async def _with_retry(self, call: Callable[..., Any], *args: Any) -> Any:
        delay = self.settings.retry_initial_s
        while True:
            try:
                return await asyncio.to_thread(call, *args)
            except Exception as exc:  # ClickHouse down, timing out, refusing: wait, try again
                log.warning(
                    "ClickHouse failed (%s: %s); retrying in %.1f s",
                    type(exc).__name__,
                    str(exc)[:200],
                    delay,
                )
                self.retries += 1
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.settings.retry_max_s)

    # ---- rebalancing --------------------------------------------------------------------------

    async def prepare(self, assigned: set[TopicPartition]) -> None:
        """A range recorded beyond the committed offset was maybe half written: replay it."""
        async with self._work:
            await self._prepare(assigned)
        self.ready.set()

    async def _prepare(self, assigned: set[TopicPartition]) -> None:
        assert self._consumer is not None
        for tp in assigned:
            self._taken.pop(tp, None)
            base = self.names.base_of(tp.topic)
            recorded = await self._with_retry(self._recorded_range, base, tp.partition)
            committed = await self._consumer.committed(tp) or 0
            if recorded is not None and recorded[1] > committed:
                start, end, token = recorded
                log.info("replaying %s:%d offsets %d-%d", tp.topic, tp.partition, start, end)
                self._consumer.seek(tp, start)
                self._batches[tp] = self._batch(tp, start, end=start, replay_end=end, token=token)

    async def forget(self, revoked: set[TopicPartition]) -> None:
        """Uncommitted rows of partitions that moved away are the new owner's to write."""
        async with self._work:
            for tp in revoked:
                # A batch handed over before the rebalance: its commit succeeds, or fails and
                # the new owner replays its recorded range.
                try:
                    await self._written(tp)
                except Exception as exc:  # aiokafka would only log it: the main loop raises it
                    self._failed = self._failed or exc
                self._batches.pop(tp, None)
                self._taken.pop(tp, None)

    async def _dead_letter(
        self, tp: TopicPartition, record: ConsumerRecord, error: MessageDecodeError
    ) -> None:
        letter = dead_letter(
            component="sink",
            topic_name=tp.topic,
            partition=tp.partition,
            offset=record.offset,
            key=record.key,
            value=record.value,
            error=error,
        )
        await self._producer.send_and_wait(
            self.names(DEAD_LETTER), encode(letter), key=letter.kafka_key()
        )
        self.dead_letters += 1
        log.warning(
            "dead letter from %s:%d@%d: %s", tp.topic, tp.partition, record.offset, error.reason
        )


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, sink: Sink) -> None:
        self.sink = sink

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self.sink.forget(set(revoked))

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        await self.sink.prepare(set(assigned))
