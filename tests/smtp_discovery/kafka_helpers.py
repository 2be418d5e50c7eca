"""Small async helpers for tests against the real broker: consume with a deadline, never sleep."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import ConsumerRecord


async def consume_until(
    bootstrap: str,
    topic: str | tuple[str, ...],
    count: int,
    *,
    timeout: float = 30.0,
    **consumer_options: Any,
) -> list[ConsumerRecord]:
    """Read ``topic`` (or several) from the beginning until ``count`` records arrived or the
    deadline passed.

    Returns what arrived either way, so the assertion (not this helper) says what was missing.
    """
    consumer = AIOKafkaConsumer(
        *((topic,) if isinstance(topic, str) else topic),
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        **consumer_options,
    )
    await consumer.start()
    records: list[ConsumerRecord] = []
    deadline = time.monotonic() + timeout
    try:
        while len(records) < count and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=200)
            for partition_records in batch.values():
                records.extend(partition_records)
    finally:
        await consumer.stop()
    return records


async def read_to_end(bootstrap: str, topics: tuple[str, ...]) -> list[ConsumerRecord]:
    """Every record on ``topics`` now: read from the beginning up to each partition's end
    offset, so that what is missing is known at once (no deadline to wait out)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        described = await admin.describe_topics(list(topics))
    finally:
        await admin.close()
    parts = [TopicPartition(t["topic"], p["partition"]) for t in described for p in t["partitions"]]
    assert len({tp.topic for tp in parts}) == len(topics), f"not every topic of {topics} exists"
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    records: list[ConsumerRecord] = []
    try:
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        ends = await consumer.end_offsets(parts)
        for tp in parts:
            while await consumer.position(tp) < ends[tp]:
                records.extend((await consumer.getmany(tp, timeout_ms=500)).get(tp, []))
    finally:
        await consumer.stop()
    return records


async def drain_for(
    bootstrap: str, topic: str, seconds: float, **options: Any
) -> list[ConsumerRecord]:
    """Everything readable on ``topic`` within ``seconds``: to assert nothing *more* came."""
    return await consume_until(bootstrap, topic, 10**9, timeout=seconds, **options)


def run(coro: Any) -> Any:
    return asyncio.run(coro)
