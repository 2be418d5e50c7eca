"""The worker's consumer rewinds a partition nobody has committed on (streams/rewind.py)."""

from __future__ import annotations

import asyncio
from time import monotonic
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


async def test_the_livelock_check_skips_a_partition_while_its_position_is_reset(
    kafka_bootstrap: str, unique: str
) -> None:
    """A fetched partition being sought to its beginning has a highwater and no position until
    the broker answers. Faust's livelock check (the main thread, while the seek runs in the
    consumer's thread) read that position, aiokafka asserted it was known, and the worker
    crashed: the survivor of a SIGKILLed worker, taking its partitions over (cluster drill)."""
    topic = f"livelock-{unique}"
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    await producer.start()
    try:
        for i in range(3):
            await producer.send_and_wait(topic, f"{i}".encode(), partition=0)
    finally:
        await producer.stop()
    tp = TopicPartition(topic, 0)
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka_bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        while await consumer.position(tp) < 3:
            await consumer.getmany(timeout_ms=1000)
        # Faust's check, on the consumer above: the parts of the thread it reads, no more.
        thread = RewindingConsumerThread.__new__(RewindingConsumerThread)
        thread.__dict__.update(
            _ensure_consumer=lambda: consumer,
            _verify_aiokafka_event_path=lambda now, tp: False,
            consumer=SimpleNamespace(
                app=SimpleNamespace(
                    monitor=SimpleNamespace(stream_inbound_time={}),
                    topics=SimpleNamespace(acks_enabled_for=lambda topic: True),
                )
            ),
            time_started=monotonic(),
            tp_stream_timeout_secs=300.0,
        )
        state = consumer._fetcher._subscriptions.subscription.assignment.state_value(tp)
        seek = asyncio.ensure_future(consumer.seek_to_beginning(tp))
        await asyncio.sleep(0)  # the seek has begun and awaits the broker
        assert state.highwater == 3 and not state.has_valid_position, "not the crash's state"
        assert thread.verify_event_path(monotonic(), tp) is None  # raised AssertionError
        await seek
        assert await consumer.position(tp) == 0
        assert thread.verify_event_path(monotonic(), tp) is None  # Faust's own check again
    finally:
        await consumer.stop()
