"""The three-broker cluster for fault tests: replication 3, min ISR 2, survives losing a broker."""

from __future__ import annotations

import dataclasses

import pytest

from smtp_discovery.localkafka import LocalKafka
from smtp_discovery.platform.config import RuntimeConfig
from smtp_discovery.platform.kafka import (
    client_options,
    ensure_topics,
    idempotent_producer,
    topic_configs,
)
from smtp_discovery.schemas.topics import topic
from tests.smtp_discovery.kafka_helpers import consume_until

pytestmark = pytest.mark.cluster


async def test_cluster_replicates_and_survives_a_killed_broker(
    kafka_cluster: LocalKafka, unique: str
) -> None:
    from aiokafka.admin import AIOKafkaAdminClient

    bootstrap = kafka_cluster.bootstrap
    options = client_options(RuntimeConfig(), bootstrap)
    spec = dataclasses.replace(topic("discovery.mail"), name=f"c{unique}.discovery.mail")
    outcomes = await ensure_topics(options, partitions=3, specs=[spec])
    assert [o.action for o in outcomes] == ["created"]

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        described = (await admin.describe_topics([spec.name]))[0]
        configs = (await topic_configs(admin, [spec.name]))[spec.name]
    finally:
        await admin.close()
    assert all(len(p["replicas"]) == 3 for p in described["partitions"])
    assert configs["min.insync.replicas"] == "2"

    producer = idempotent_producer(options, request_timeout_ms=15000)
    await producer.start()
    try:
        for i in range(50):
            await producer.send_and_wait(spec.name, key=f"k{i % 5}".encode(), value=b"%d" % i)
        kafka_cluster.kill_node(2)
        for i in range(50, 100):
            await producer.send_and_wait(spec.name, key=f"k{i % 5}".encode(), value=b"%d" % i)
    finally:
        await producer.stop()
        kafka_cluster.start_node(2)

    records = await consume_until(kafka_cluster.bootstrap, spec.name, 100, timeout=60)
    assert sorted(int(r.value) for r in records) == list(range(100))
