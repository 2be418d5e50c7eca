"""An ingest node on the session's real broker, with its own topics, tenants and state.

Each test names the tenants and address states it needs; the harness publishes them on a fresh
topic prefix, starts the node on a free loopback port once its views are complete, and reads the
events it produced back from Kafka.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiosmtplib
from aiokafka import AIOKafkaProducer

from smtp_discovery.ingest.node import IngestNode
from smtp_discovery.platform.clock import Clock
from smtp_discovery.platform.config import RuntimeConfig
from smtp_discovery.platform.kafka import ensure_topics
from smtp_discovery.schemas.base import Message
from smtp_discovery.schemas.codec import decode, encode
from smtp_discovery.schemas.state import AddressRecord, AddressStateSnapshot, AddressStatus
from smtp_discovery.schemas.tenant import Destination, TenantConfig
from smtp_discovery.schemas.topics import ADDRESS_STATE, MAIL, MAIL_SETTLED, TENANTS
from tests.smtp_discovery.kafka_helpers import consume_until, read_to_end

NOW = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


def tenant(
    tenant_id: str,
    domains: Sequence[str],
    port: int | None,
    *,
    settings: dict[str, Any] | None = None,
    **fields: Any,
) -> TenantConfig:
    destinations = () if port is None else (Destination(host="127.0.0.1", port=port),)
    return TenantConfig(
        tenant_id=tenant_id,
        event_time=NOW,
        name=tenant_id.title(),
        domains=tuple(domains),
        destinations=destinations,
        settings={"discovery_enabled": True, **(settings or {})},
        **fields,
    )


def state(tenant_id: str, address: str, status: AddressStatus) -> AddressStateSnapshot:
    record = AddressRecord(
        tenant_id=tenant_id,
        address=address,
        status=status,
        status_since=NOW,
        status_reason="import",
    )
    return AddressStateSnapshot(tenant_id=tenant_id, address=address, event_time=NOW, record=record)


@dataclass
class Ingest:
    node: IngestNode
    config: RuntimeConfig
    bootstrap: str
    delays: list[float] = field(default_factory=list)

    @property
    def port(self) -> int:
        return self.node.port

    def client(self, **options: Any) -> aiosmtplib.SMTP:
        return aiosmtplib.SMTP(
            hostname="127.0.0.1", port=self.port, start_tls=False, timeout=30, **options
        )

    async def events(
        self, count: int, timeout: float = 30.0, topics: tuple[str, ...] = (MAIL, MAIL_SETTLED)
    ) -> list[Any]:
        """The first ``count`` mail events, whichever topic they were routed to (fewer if the
        deadline passes: the test says so)."""
        names = tuple(self.config.topics(t) for t in topics)
        records = await consume_until(self.bootstrap, names, count, timeout=timeout)
        events = [decode(MAIL, r.value) for r in records]
        return sorted(events, key=lambda e: e.event_time)

    async def all_events(self, topics: tuple[str, ...] = (MAIL, MAIL_SETTLED)) -> list[Any]:
        """Every mail event on the topics now (after the node stopped: all it published)."""
        names = tuple(self.config.topics(t) for t in topics)
        records = await read_to_end(self.bootstrap, names)
        return sorted((decode(MAIL, r.value) for r in records), key=lambda e: e.event_time)

    async def publish(self, base_topic: str, messages: Sequence[Message]) -> None:
        await _publish(self.bootstrap, self.config.topics(base_topic), messages)

    def count(self, metric: str, **labels: str) -> float:
        value = self.node.metrics.registry.get_sample_value(metric, labels)
        return value or 0.0


async def _publish(bootstrap: str, topic: str, messages: Sequence[Message]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for message in messages:
            await producer.send_and_wait(topic, encode(message), key=message.kafka_key())
    finally:
        await producer.stop()


@contextlib.asynccontextmanager
async def running_ingest(
    bootstrap: str,
    tmp_path: Path,
    tenants: Sequence[TenantConfig],
    states: Sequence[AddressStateSnapshot] = (),
    env: dict[str, str] | None = None,
    clock: Clock | None = None,
    serve_metrics: bool = False,
) -> AsyncIterator[Ingest]:
    config = RuntimeConfig.from_env(
        {
            "KAFKA_BOOTSTRAP": bootstrap,
            "DISCOVERY_TOPIC_PREFIX": f"t{uuid.uuid4().hex[:8]}.",
            "DISCOVERY_TOPIC_PARTITIONS": "3",
            "DISCOVERY_DATA_DIR": str(tmp_path),
            "DISCOVERY_INGEST_LISTEN": "127.0.0.1:0",
            "DISCOVERY_INGEST_HOSTNAME": "ingest.test",
            "DISCOVERY_INGEST_NODE_ID": "node-1",
            **(env or {}),
        }
    )
    options = {"bootstrap_servers": bootstrap}
    await ensure_topics(options, partitions=3, replication=1, specs=config.topics.specs())
    await _publish(bootstrap, config.topics(TENANTS), tenants)
    await _publish(bootstrap, config.topics(ADDRESS_STATE), states)
    delays: list[float] = []

    async def tarpit(seconds: float) -> None:
        delays.append(seconds)

    node = IngestNode(
        config,
        options,
        clock=clock,
        tarpit=tarpit,
        serve_metrics=serve_metrics,
    )
    await node.start()
    try:
        yield Ingest(node, config, bootstrap, delays)
    finally:
        await node.stop()
