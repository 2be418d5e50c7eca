"""The session's real broker: idempotent and transactional producers, topics, every schema."""

from __future__ import annotations

import dataclasses
import json
import time
from collections import defaultdict

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.client import AIOKafkaClient

from smtp_discovery.platform.config import RuntimeConfig
from smtp_discovery.platform.kafka import (
    client_options,
    ensure_topics,
    ensure_visible,
    idempotent_producer,
    topic_configs,
    transactional_producer,
)
from smtp_discovery.schemas.codec import decode, encode
from smtp_discovery.schemas.topics import REGISTRY, TopicSpec
from tests.schemas.samples import SAMPLES
from tests.smtp_discovery.kafka_helpers import consume_until, drain_for

pytestmark = pytest.mark.kafka


def _options(bootstrap: str) -> dict:
    return client_options(RuntimeConfig(), bootstrap)


def _prefixed(unique: str) -> list[TopicSpec]:
    return [dataclasses.replace(spec, name=f"t{unique}.{spec.name}") for spec in REGISTRY]


async def _create(bootstrap: str, name: str, partitions: int = 3) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, partitions, 1)])
    finally:
        await admin.close()


async def test_idempotent_producer_keeps_per_key_order(kafka_bootstrap: str, unique: str) -> None:
    name = f"idem-{unique}"
    await _create(kafka_bootstrap, name)
    producer = idempotent_producer(_options(kafka_bootstrap))
    await producer.start()
    try:
        for i in range(300):
            await producer.send(name, key=f"k{i % 7}".encode(), value=str(i).encode())
        await producer.flush()
    finally:
        await producer.stop()
    records = await consume_until(kafka_bootstrap, name, 300)
    assert len(records) == 300
    by_key: dict[bytes, list[int]] = defaultdict(list)
    for record in records:
        by_key[record.key].append(int(record.value))
    assert all(values == sorted(values) for values in by_key.values())
    assert sorted(v for values in by_key.values() for v in values) == list(range(300))


async def test_transactions_commit_and_abort(kafka_bootstrap: str, unique: str) -> None:
    name = f"txn-{unique}"
    await _create(kafka_bootstrap, name, partitions=1)
    producer = transactional_producer(_options(kafka_bootstrap), transactional_id=f"tx-{unique}")
    await producer.start()
    try:
        async with producer.transaction():
            await producer.send(name, key=b"k", value=b"committed-1")
            await producer.send(name, key=b"k", value=b"committed-2")
        await producer.begin_transaction()
        await producer.send(name, key=b"k", value=b"aborted")
        await producer.abort_transaction()
        async with producer.transaction():
            await producer.send(name, key=b"k", value=b"committed-3")
    finally:
        await producer.stop()

    committed = await consume_until(kafka_bootstrap, name, 3, isolation_level="read_committed")
    assert [r.value for r in committed] == [b"committed-1", b"committed-2", b"committed-3"]
    # read_uncommitted sees the aborted record too: proof the broker really ran a transaction.
    everything = await drain_for(kafka_bootstrap, name, 3.0, isolation_level="read_uncommitted")
    assert b"aborted" in [r.value for r in everything]
    committed_again = await drain_for(kafka_bootstrap, name, 2.0, isolation_level="read_committed")
    assert b"aborted" not in [r.value for r in committed_again]


async def test_every_schema_round_trips_through_kafka(kafka_bootstrap: str, unique: str) -> None:
    name = f"schemas-{unique}"
    await _create(kafka_bootstrap, name, partitions=4)
    producer = idempotent_producer(_options(kafka_bootstrap))
    await producer.start()
    try:
        for sample in SAMPLES:
            await producer.send(name, key=sample.kafka_key(), value=encode(sample))  # type: ignore[attr-defined]
        await producer.flush()
    finally:
        await producer.stop()
    records = await consume_until(kafka_bootstrap, name, len(SAMPLES))
    assert len(records) == len(SAMPLES)
    topic_of = {}
    for spec in REGISTRY:
        for sample in SAMPLES:
            try:
                decode(spec.name, encode(sample))
                topic_of.setdefault(sample.event_id, spec.name)  # type: ignore[attr-defined]
            except Exception:
                continue
    received = {}
    for record in records:
        event_id = json.loads(record.value)["event_id"]
        received[event_id] = decode(topic_of[event_id], record.value)
    for sample in SAMPLES:
        assert received[sample.event_id] == sample  # type: ignore[attr-defined]


async def test_topics_ensure_is_idempotent(kafka_bootstrap: str, unique: str) -> None:
    specs = _prefixed(unique)
    options = _options(kafka_bootstrap)
    first = await ensure_topics(options, partitions=6, replication=1, specs=specs)
    assert [o.action for o in first] == ["created"] * len(specs)
    second = await ensure_topics(options, partitions=6, replication=1, specs=specs)
    assert [o.action for o in second] == ["exists"] * len(specs)

    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        described = {
            t["topic"]: len(t["partitions"])
            for t in await admin.describe_topics([s.name for s in specs])
        }
    finally:
        await admin.close()
    for spec in specs:
        assert described[spec.name] == spec.partition_count(6)


async def test_topics_ensure_reports_a_mismatch_and_changes_nothing(
    kafka_bootstrap: str, unique: str
) -> None:
    specs = _prefixed(unique)
    mail = specs[0]
    await _create(kafka_bootstrap, mail.name, partitions=2)
    outcomes = await ensure_topics(
        _options(kafka_bootstrap), partitions=6, replication=1, specs=specs
    )
    by_name = {o.name: o for o in outcomes}
    assert by_name[mail.name].action == "mismatch"
    assert "has 2 partitions, the registry wants 6" in by_name[mail.name].detail
    assert all(o.action == "created" for o in outcomes if o.name != mail.name)


async def test_compacted_topics_are_created_compacted(kafka_bootstrap: str, unique: str) -> None:
    specs = _prefixed(unique)
    await ensure_topics(_options(kafka_bootstrap), partitions=2, replication=1, specs=specs)
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        configs: dict[str, dict[str, str]] = {}
        deadline = time.monotonic() + 30
        while len(configs) < len(specs) and time.monotonic() < deadline:
            configs = await topic_configs(admin, [s.name for s in specs])
    finally:
        await admin.close()
    for spec in specs:
        assert configs[spec.name]["cleanup.policy"] == str(spec.cleanup)
        assert configs[spec.name]["min.insync.replicas"] == "1"


async def test_replication_beyond_the_cluster_is_refused(kafka_bootstrap: str, unique: str) -> None:
    from smtp_discovery.platform.errors import InfrastructureError

    with pytest.raises(InfrastructureError, match="needs at least 3 brokers"):
        await ensure_topics(
            _options(kafka_bootstrap), partitions=1, replication=3, specs=_prefixed(unique)
        )


async def test_ensured_topics_are_in_a_new_clients_first_metadata(
    kafka_bootstrap: str, unique: str
) -> None:
    topic = NewTopic(
        name=f"t{unique}-records-changelog",
        num_partitions=4,
        replication_factor=1,
        topic_configs={"cleanup.policy": "compact"},
    )
    await ensure_visible(_options(kafka_bootstrap), [topic])
    await ensure_visible(_options(kafka_bootstrap), [topic])  # an existing topic is fine
    client = AIOKafkaClient(bootstrap_servers=kafka_bootstrap)
    await client.bootstrap()
    try:  # one metadata fetch: what a Faust worker starting now would see
        metadata = await client.fetch_all_metadata()
        assert metadata.partitions_for_topic(topic.name) == {0, 1, 2, 3}
    finally:
        await client.close()
