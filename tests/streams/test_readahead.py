"""The changelog read-ahead against the real broker: each partition's records after the store's
offset through Faust's highwater, in order, tombstones included, and nothing past it."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic, RecordsToDelete
from faust.types import TP

from smtp_discovery.streams.readahead import Span, read_ahead

pytestmark = pytest.mark.kafka


@dataclass
class _Store:
    persisted: dict[TP, int] = field(default_factory=dict)

    def set_persisted_offset(self, tp: TP, offset: int) -> None:
        self.persisted[tp] = offset


@dataclass
class _Table:
    """What the read-ahead touches of a Faust table: its batch apply (which, in Faust's
    stores, also moves the persisted offset along) and its store's persisted offset."""

    data: _Store = field(default_factory=_Store)
    applied: list[tuple[TP, int, bytes | None, bytes | None]] = field(default_factory=list)

    def apply_changelog_batch(self, batch: list[Any]) -> None:
        for event in batch:
            m = event.message
            assert m.partition == m.tp.partition
            self.applied.append((m.tp, m.offset, m.key, m.value))
            self.data.persisted[m.tp] = m.offset


async def _changelog(bootstrap: str, topic: str, per_partition: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        # Deletable too: a store's offset may lie below the log's start (retention).
        configs = {"cleanup.policy": "compact,delete"}
        await admin.create_topics([NewTopic(topic, 4, 1, topic_configs=configs)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    await producer.start()
    try:
        for partition in range(4):
            for i in range(per_partition):
                value = None if i % 10 == 9 else f"v{i}".encode()  # every tenth a tombstone
                await producer.send(topic, value, key=f"k{i % 50}".encode(), partition=partition)
        await producer.flush()
    finally:
        await producer.stop()


async def _commit_marker(bootstrap: str, topic: str) -> None:
    """One transactional record on partition 2: its log then ends in a commit marker, an
    offset that holds no record (as a log whose last record was compacted away)."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, transactional_id=f"{topic}-tx")
    await producer.start()
    try:
        async with producer.transaction():
            await producer.send(topic, b"last", key=b"k-last", partition=2)
    finally:
        await producer.stop()


async def test_each_partition_is_read_from_its_stores_offset_through_the_highwater(
    kafka_bootstrap: str, unique: str
) -> None:
    topic = f"ra{unique}-records-changelog"
    await _changelog(kafka_bootstrap, topic, per_partition=3_000)
    await _commit_marker(kafka_bootstrap, topic)  # partition 2: offsets 0-2999, 3000, marker 3001
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        await admin.delete_records({TopicPartition(topic, 3): RecordsToDelete(500)})
    finally:
        await admin.close()
    table = _Table()
    tps = [TP(topic, p) for p in range(4)]
    spans = {
        tps[0]: Span(table, None, 2_999),  # a fresh store: everything
        tps[1]: Span(table, 1_499, 2_499),  # half held already; Faust's highwater below the end
        tps[2]: Span(table, 2_999, 3_001),  # the last record, then the marker
        tps[3]: Span(table, 99, 2_999),  # held through 99, and the log now starts at 500
    }
    applied = await read_ahead({"bootstrap_servers": kafka_bootstrap}, spans, budget_s=60)

    by_partition = {tp: [(o, k, v) for t, o, k, v in table.applied if t == tp] for tp in tps}
    assert [o for o, _, _ in by_partition[tps[0]]] == list(range(3_000))
    assert [o for o, _, _ in by_partition[tps[1]]] == list(range(1_500, 2_500))
    assert by_partition[tps[2]] == [(3_000, b"k-last", b"last")]
    assert [o for o, _, _ in by_partition[tps[3]]] == list(range(500, 3_000))
    assert applied == 3_000 + 1_000 + 1 + 2_500
    # Records arrive as written: key and value, a tombstone as None.
    assert by_partition[tps[0]][9] == (9, b"k9", None)
    assert by_partition[tps[0]][10] == (10, b"k10", b"v10")
    # A log ending in an offset without a record is read through it all the same, so Faust
    # finds nothing left of any partition.
    assert table.data.persisted == {tps[0]: 2_999, tps[1]: 2_499, tps[2]: 3_001, tps[3]: 2_999}


async def test_nothing_to_read_no_time_or_no_broker_leaves_the_rest_to_faust(
    kafka_bootstrap: str, unique: str, caplog: pytest.LogCaptureFixture
) -> None:
    topic = f"rb{unique}-records-changelog"
    await _changelog(kafka_bootstrap, topic, per_partition=100)
    table = _Table()
    tp = TP(topic, 0)
    options = {"bootstrap_servers": kafka_bootstrap}
    assert await read_ahead(options, {tp: Span(table, 99, 99)}, budget_s=60) == 0
    assert await read_ahead(options, {tp: Span(table, None, -1)}, budget_s=60) == 0  # empty
    assert await read_ahead(options, {tp: Span(table, None, 99)}, budget_s=0) == 0
    assert table.applied == [] and table.data.persisted == {}

    caplog.set_level(logging.WARNING, "smtp_discovery.streams.readahead")
    unreachable = {"bootstrap_servers": "127.0.0.1:9", "request_timeout_ms": 2_000}
    assert await read_ahead(unreachable, {tp: Span(table, None, 99)}, budget_s=60) == 0
    assert table.applied == [] and table.data.persisted == {}
    assert "Faust reads the rest" in caplog.text
