"""Changelogs read into a fresh worker's tables in bulk, before Faust's recovery reads them.

Faust restores a table one changelog record at a time through its stream machinery: each
record is turned into a Faust event, queued, awaited with a timeout, and counted against the
highwaters (``faust/tables/recovery.py``, ``_slurp_changelogs``). py-spy on a fresh worker
restoring 100,000 addresses showed that loop, asyncio's per-record tasks and timers, and the
consumer thread's hand-over taking the restore's time: about 250 µs a record on a loaded
2-core machine, four minutes for a million addresses.

Here a plain aiokafka consumer reads each changelog partition the worker was assigned, from
the offset its store holds up to the highwater Faust measured, in fetches of thousands of
records, and hands each fetch to the table's own ``apply_changelog_batch``: the store applies
a changelog record exactly as Faust's recovery would (a put, or a delete for a tombstone) and
moves its persisted offset along. Faust's recovery then starts from that offset, finds nothing
left, and goes on as after any restore. What the reader did not finish (its time budget ran
out, Kafka failed it, a rebalance cancelled it) Faust reads from where the store's offset
stands: the read-ahead can only save work, never change what a table holds.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from faust.types import TP, CollectionT

log = logging.getLogger("smtp_discovery.streams.readahead")

FETCH_RECORDS = 20_000
"""Records a fetch hands over at most: large enough that the per-fetch cost disappears."""


@dataclass(frozen=True, slots=True)
class _Message:
    """The fields of a Faust message that a store's ``apply_changelog_batch`` reads."""

    tp: TP
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


@dataclass(frozen=True, slots=True)
class _Change:
    message: _Message


@dataclass(frozen=True, slots=True)
class Span:
    """What to read of one changelog partition into ``table``: from the record after
    ``applied`` (the last offset its store holds, None for none) through ``last``."""

    table: CollectionT
    applied: int | None
    last: int


async def read_ahead(
    kafka_options: Mapping[str, Any],
    spans: Mapping[TP, Span],
    *,
    budget_s: float,
    clock: Callable[[], float] = time.monotonic,
) -> int:
    """Apply each span's records to its table; return how many records were applied.

    A partition read through its ``last`` offset has that offset persisted even where its log
    ends in a gap (compaction), so Faust finds nothing left of it. Reading stops at the budget,
    and a Kafka error ends it early (logged): Faust reads the rest."""
    todo = {
        TopicPartition(tp.topic, tp.partition): (tp, span)
        for tp, span in spans.items()
        if span.last > (span.applied if span.applied is not None else -1)
    }
    if not todo:
        return 0
    began = clock()
    log.info(
        "reading changelogs ahead: %d partitions, offsets up to %d",
        len(todo),
        max(span.last for _, span in todo.values()),
    )
    consumer = AIOKafkaConsumer(
        **kafka_options,
        group_id=None,
        enable_auto_commit=False,
        # An offset below the log's start (retention, compaction) reads from the start, as
        # Faust does; aiokafka's default ("latest") would skip every record.
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=8 * 1024 * 1024,
    )
    applied = 0
    try:
        await consumer.start()
        consumer.assign(list(todo))
        for part, (_, span) in todo.items():
            if span.applied is None:
                await consumer.seek_to_beginning(part)
            else:
                consumer.seek(part, span.applied + 1)
        while todo and clock() - began < budget_s:
            fetched = await consumer.getmany(*todo, timeout_ms=500, max_records=FETCH_RECORDS)
            for part, records in fetched.items():
                tp, span = todo[part]
                changes = [
                    _Change(_Message(tp, tp.partition, r.offset, r.key, r.value))
                    for r in records
                    if r.offset <= span.last
                ]
                if changes:
                    span.table.apply_changelog_batch(changes)
                    applied += len(changes)
            for part, (tp, span) in list(todo.items()):
                if await consumer.position(part) > span.last:
                    span.table.data.set_persisted_offset(tp, span.last)
                    del todo[part]
    except Exception as exc:  # Kafka refused or failed: Faust's recovery reads the rest
        log.warning("reading changelogs ahead failed (%s: %s); Faust reads the rest",
                    type(exc).__name__, exc)  # fmt: skip
    finally:
        await consumer.stop()
    log.info(
        "read %d changelog records ahead in %.1f s; %d partitions left to Faust",
        applied,
        clock() - began,
        len(todo),
    )
    return applied
