from __future__ import annotations

import asyncio

import pytest
from aiokafka import AIOKafkaProducer

from schemas.codec import encode
from schemas.tenant import PROVIDER_DEFAULTS_KEY, DiscoverySettings, ProviderDefaults, TenantConfig
from schemas.topics import TENANTS, TopicNames
from smtp_discovery.config import RuntimeConfig
from smtp_discovery.kafka import client_options, ensure_topics
from smtp_discovery.views import TenantDirectory
from tests.schemas.samples import T0


def tenant(tenant_id: str = "acme", **settings: object) -> TenantConfig:
    return TenantConfig(tenant_id=tenant_id, event_time=T0, name=tenant_id, settings=settings)


def test_directory_layers_tenant_overrides_on_provider_defaults() -> None:
    d = TenantDirectory()
    d.apply(b"acme", encode(tenant(inbound_detection_threshold=5)))
    assert d.settings("acme").inbound_detection_threshold == 5  # type: ignore[union-attr]
    assert d.settings("acme").discovery_enabled is False  # type: ignore[union-attr]
    d.apply(
        PROVIDER_DEFAULTS_KEY.encode(),
        encode(ProviderDefaults(event_time=T0, settings=DiscoverySettings(discovery_enabled=True))),
    )
    assert d.settings("acme").discovery_enabled is True  # type: ignore[union-attr]
    d.apply(b"acme", None)  # tombstone: the tenant is gone
    assert d.tenant("acme") is None
    assert d.settings("acme") is None


def test_directory_ignores_undecodable_records() -> None:
    d = TenantDirectory()
    d.apply(b"acme", b"{not json")
    d.apply(None, encode(tenant()))
    assert d.tenants == {}


@pytest.mark.kafka
async def test_follower_is_ready_after_the_existing_records_and_then_follows(
    kafka_bootstrap: str, unique: str
) -> None:
    names = TopicNames(f"v{unique}.")
    options = client_options(RuntimeConfig(), kafka_bootstrap)
    await ensure_topics(options, partitions=2, replication=1, specs=names.specs())
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    await producer.start()
    for i in range(20):
        await producer.send(names(TENANTS), key=f"t{i}".encode(), value=encode(tenant(f"t{i}")))
    await producer.flush()
    directory = TenantDirectory()
    follower = directory.follower(options, names(TENANTS))
    await follower.start()
    try:
        await asyncio.wait_for(follower.ready.wait(), 30)
        assert len(directory.tenants) == 20
        await producer.send_and_wait(names(TENANTS), key=b"late", value=encode(tenant("late")))
        for _ in range(100):
            if directory.tenant("late"):
                break
            await asyncio.sleep(0.05)
        assert directory.tenant("late") is not None
    finally:
        await follower.stop()
        await producer.stop()


def test_domains_map_to_their_tenant_first_claim_wins() -> None:
    d = TenantDirectory()
    d.apply(
        b"acme", encode(tenant().model_copy(update={"domains": ("a.example", "shared.example")}))
    )
    d.apply(
        b"beta",
        encode(tenant("beta").model_copy(update={"domains": ("shared.example", "b.example")})),
    )
    assert d.tenant_for_domain("a.example").tenant_id == "acme"  # type: ignore[union-attr]
    assert d.tenant_for_domain("shared.example").tenant_id == "acme"  # type: ignore[union-attr]
    assert d.tenant_for_domain("b.example").tenant_id == "beta"  # type: ignore[union-attr]
    # acme gives a.example up; removing acme frees nothing beta did not claim first.
    d.apply(b"acme", encode(tenant().model_copy(update={"domains": ("shared.example",)})))
    assert d.tenant_for_domain("a.example") is None
    d.apply(b"acme", None)
    assert d.tenant_for_domain("shared.example") is None
    assert d.tenant_for_domain("nowhere.example") is None
