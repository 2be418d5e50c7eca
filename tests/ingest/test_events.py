"""Events through a real broker that goes away and comes back: every event arrives once."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from smtp_discovery.ingest.events import EventPublisher
from smtp_discovery.ingest.spool import Spool, SpoolFull, SpoolRecord
from smtp_discovery.localkafka import LocalKafka
from smtp_discovery.platform.config import RuntimeConfig
from tests.smtp_discovery.kafka_helpers import consume_until

pytestmark = pytest.mark.kafka


def record(i: int) -> SpoolRecord:
    return SpoolRecord("events", f"k{i % 3}".encode(), f"event-{i}".encode())


async def until(condition, timeout: float = 60.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        if condition():
            return True
        await asyncio.sleep(0.1)
    return False


async def test_a_broker_outage_spools_events_and_delivers_each_once(tmp_path: Path) -> None:
    """Its own broker (the session's must stay up for the other tests)."""
    config = RuntimeConfig.from_env()
    kafka = LocalKafka(tmp_path / "kafka", cache_dir=config.kafka_cache_dir, heap=config.kafka_heap)
    await asyncio.to_thread(kafka.start)
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka.bootstrap)
    await admin.start()
    await admin.create_topics([NewTopic("events", 1, 1)])
    await admin.close()
    spool = Spool(tmp_path / "spool", max_bytes=1 << 20)
    publisher = EventPublisher(
        {"bootstrap_servers": kafka.bootstrap}, spool, request_timeout_ms=2000, retry_seconds=0.2
    )
    await publisher.start()
    try:
        await publisher.publish([record(i) for i in range(5)])
        assert (publisher.sent, spool.depth) == (5, 0)

        await asyncio.to_thread(kafka.stop)
        for i in range(5, 15):
            await publisher.publish([record(i)])
        assert spool.depth == 10  # on disk, fsync'd, before publish returned

        await asyncio.to_thread(kafka.start)
        assert await until(lambda: spool.depth == 0), "the spool was not drained"
        records = await consume_until(kafka.bootstrap, "events", 15, timeout=30)
        values = [r.value for r in records]
        assert values == [f"event-{i}".encode() for i in range(15)]  # each once, in order
    finally:
        await publisher.stop()
        await asyncio.to_thread(kafka.stop)


async def test_a_full_spool_refuses_and_keeps_what_it_has(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool", max_bytes=150)
    publisher = EventPublisher({"bootstrap_servers": "127.0.0.1:9"}, spool, request_timeout_ms=500)
    await publisher.start()  # nothing listens on port 9: straight to the spool
    try:
        await publisher.publish([record(0), record(1)])
        with pytest.raises(SpoolFull):
            await publisher.publish([record(i) for i in range(2, 10)])
        assert [r.value for _, r in spool.peek()] == [b"event-0", b"event-1"]
    finally:
        publisher._drainer.cancel()  # type: ignore[union-attr]
        await publisher._disconnect()
