"""Records sent to one Kafka partition as record batches, not one message at a time.

The worker waits for everything a batch of messages produced before it goes on (its outputs,
then each step of table writes: ``streams.processor``), so nothing is gained by handing records
to the producer one by one: each went through Faust's producer buffer and aiokafka's ``send``,
with a future and callbacks of its own, and that per-record path was the worker's largest cost
on mail to addresses being discovered (py-spy, bench/README.md). A partition's records are
appended to a record batch instead, in order, and sent as one; a batch that fills up is sent
and another begun.
"""

from __future__ import annotations

from collections.abc import Awaitable, Sequence
from typing import Any

Record = tuple[bytes | None, bytes | None]
"""(key, value); a value of None is a tombstone."""


async def send_batches(
    producer: Any, topic: str, partition: int, records: Sequence[Record]
) -> list[Awaitable[int]]:
    """Send ``records`` to ``topic``'s ``partition`` through ``producer`` (an aiokafka
    ``AIOKafkaProducer``), in order. Returns an awaitable per record batch sent, which gives the
    offset of its last record once Kafka acknowledged it (and raises what a failed one
    raised)."""
    sent = []
    batch, count = producer.create_batch(), 0
    for key, value in records:
        # A batch takes its first record whatever its size (the producer's request limit is
        # what refuses one too large), so a record refused here goes first into the next.
        if batch.append(key=key, value=value, timestamp=None) is None:
            sent.append(await _send(producer, batch, topic, partition, count))
            batch, count = producer.create_batch(), 0
            batch.append(key=key, value=value, timestamp=None)
        count += 1
    if count:
        sent.append(await _send(producer, batch, topic, partition, count))
    return sent


async def _send(
    producer: Any, batch: Any, topic: str, partition: int, count: int
) -> Awaitable[int]:
    return _last_offset(await producer.send_batch(batch, topic, partition=partition), count)


async def _last_offset(acknowledged: Awaitable[Any], count: int) -> int:
    """A batch's acknowledgement gives the offset of its first record."""
    metadata = await acknowledged
    return int(metadata.offset) + count - 1
