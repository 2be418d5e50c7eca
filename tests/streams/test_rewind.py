"""The worker's consumer rewinds a partition nobody has committed on (streams/rewind.py)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from smtp_discovery.streams.rewind import RewindingConsumerThread

pytestmark = pytest.mark.kafka


async def test_a_partition_with_no_committed_offset_is_rewound_to_its_beginning(
    kafka_bootstrap: str, unique: str
) -> None:
    """Records fetched and then dropped (as Faust drops them when its flow stops) come again
    after the seek, on a partition with a committed offset and on one without."""
    topic = f"rewind-{unique}"
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    await producer.start()
    try:
        for partition in (0, 1):
            for i in range(3):
                await producer.send_and_wait(topic, f"{i}".encode(), partition=partition)
    finally:
        await producer.stop()
    committed, fresh = TopicPartition(topic, 0), TopicPartition(topic, 1)
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka_bootstrap, group_id=f"g-{unique}",
                                enable_auto_commit=False, auto_offset_reset="earliest")  # fmt: skip
    await consumer.start()
    try:
        consumer.assign([committed, fresh])
        await consumer.commit({committed: 1})
        await consumer.seek_to_beginning(committed, fresh)
        while any([await consumer.position(tp) < 3 for tp in (committed, fresh)]):
            await consumer.getmany(timeout_ms=1000)  # fetched, then "dropped"

        plain = await consumer.seek_to_committed()  # what Faust's perform_seek relies on
        assert plain == {committed: 1, fresh: None}
        assert await consumer.position(fresh) == 3, "aiokafka alone leaves it past the records"

        thread = SimpleNamespace(_ensure_consumer=lambda: consumer)
        seek = RewindingConsumerThread._seek_to_committed_or_beginning
        # Faust has delivered records of the fresh partition: it stays where it is.
        assert await seek(thread, set()) == {committed: 1, fresh: None}  # type: ignore[arg-type]
        assert await consumer.position(fresh) == 3
        # Faust has delivered nothing from it (all it fetched was dropped): back to the start.
        seen = await seek(thread, {committed, fresh})  # type: ignore[arg-type]
        assert seen == {committed: 1, fresh: None}
        assert (await consumer.position(committed), await consumer.position(fresh)) == (1, 0)
    finally:
        await consumer.stop()
