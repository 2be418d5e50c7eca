from __future__ import annotations

import asyncio

import pytest
from aiokafka import AIOKafkaProducer

from smtp_discovery.platform.config import RuntimeConfig
from smtp_discovery.platform.kafka import client_options, ensure_topics, transactional_producer
from smtp_discovery.platform.tenant_writes import TenantWriter
from smtp_discovery.platform.views import TenantDirectory
from smtp_discovery.schemas.codec import encode
from smtp_discovery.schemas.tenant import (
    PROVIDER_DEFAULTS_KEY,
    DiscoverySettings,
    ProviderDefaults,
    TenantConfig,
    revised,
)
from smtp_discovery.schemas.topics import TENANTS, TopicNames
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


@pytest.mark.kafka
async def test_a_view_never_shows_an_aborted_write_and_catches_up_to_committed_ones(
    kafka_bootstrap: str, unique: str
) -> None:
    names = TopicNames(f"x{unique}.")
    options = client_options(RuntimeConfig(), kafka_bootstrap)
    await ensure_topics(options, partitions=1, replication=1, specs=names.specs())
    directory = TenantDirectory()
    follower = directory.follower(options, names(TENANTS))
    await follower.start()
    producer = transactional_producer(options, f"views-{unique}")
    await producer.start()
    try:
        await asyncio.wait_for(follower.ready.wait(), 30)
        await producer.begin_transaction()
        await producer.send(names(TENANTS), encode(tenant("lost")), key=b"lost")
        await producer.abort_transaction()
        async with producer.transaction():
            await producer.send(names(TENANTS), encode(tenant("kept")), key=b"kept")
        await asyncio.wait_for(follower.catch_up(), 30)
        # catch_up returned: everything committed before it is in the view, nothing aborted.
        assert set(directory.tenants) == {"kept"}
    finally:
        await producer.stop()
        await follower.stop()


@pytest.mark.kafka
async def test_a_writer_whose_turn_was_taken_retries_on_the_other_writers_result(
    kafka_bootstrap: str, unique: str
) -> None:
    """Two writers (as two admin replicas) raise one tenant's revision at once. The slow one
    decides on revision 0, then the fast one writes revision 1 before the slow one sends: the
    slow one's write, made on what it read, is never committed; its retry decides on revision 1."""
    names = TopicNames(f"w{unique}.")
    options = client_options(RuntimeConfig(), kafka_bootstrap)
    await ensure_topics(options, partitions=1, replication=1, specs=names.specs())
    topic = names(TENANTS)
    views = [TenantDirectory(), TenantDirectory(), TenantDirectory()]
    followers = [v.follower(options, topic) for v in views]
    for f in followers:
        await f.start()
    slow = TenantWriter(options, topic, views[0], followers[0])
    fast = TenantWriter(options, topic, views[1], followers[1])
    decided_on: list[tuple[str, int]] = []
    inside, gate = asyncio.Event(), asyncio.Event()

    def bump(who: str, view: TenantDirectory) -> list[TenantConfig]:
        current = view.tenant("acme")
        decided_on.append((who, current.revision if current else 0))
        return [revised(current or tenant(), T0, name=f"by {who}")]

    async def slow_bump(view: TenantDirectory) -> list[TenantConfig]:
        decision = bump("slow", view)
        if not gate.is_set():
            inside.set()
            await gate.wait()
        return decision

    try:
        slow_write = asyncio.create_task(slow.write(slow_bump))
        await asyncio.wait_for(inside.wait(), 30)
        await fast.write(lambda view: bump("fast", view))  # fences slow, inside its turn
        gate.set()
        await asyncio.wait_for(slow_write, 30)
        await asyncio.wait_for(followers[2].catch_up(), 30)
        assert decided_on == [("slow", 0), ("fast", 0), ("slow", 1)]
        final = views[2].tenant("acme")
        assert final is not None and (final.revision, final.name) == (2, "by slow")
    finally:
        for f in followers:
            await f.stop()


@pytest.mark.kafka
async def test_a_write_is_in_the_writers_own_view_as_soon_as_it_returns(
    kafka_bootstrap: str, unique: str
) -> None:
    """Read-your-writes through the writer's own follower. A transaction's commit returns before
    the broker has written its markers, and until then the records it committed lie past the
    partition's last stable offset: a writer that returned at the commit left a view without
    its own write (the admin API answered the tenant it had just created with a 500, in the
    cluster drill). The writer waits until its follower has applied the offsets it wrote
    (``CompactedTopicFollower.applied``); each write here is read back with no wait between."""
    names = TopicNames(f"r{unique}.")
    options = client_options(RuntimeConfig(), kafka_bootstrap)
    await ensure_topics(options, partitions=1, replication=1, specs=names.specs())
    directory = TenantDirectory()
    follower = directory.follower(options, names(TENANTS))
    await follower.start()
    writer = TenantWriter(options, names(TENANTS), directory, follower)

    def rename(view: TenantDirectory, tenant_id: str) -> list[TenantConfig]:
        current = view.tenant(tenant_id)
        assert current is not None
        return [revised(current, T0, name="renamed")]

    try:
        await asyncio.wait_for(follower.ready.wait(), 30)
        for n in range(4):
            name = f"t{n}"
            written = await asyncio.wait_for(writer.write(lambda _view, t=name: [tenant(t)]), 60)
            assert [m.kafka_key() for m in written] == [name.encode()]
            created = directory.tenant(name)
            assert created is not None, f"write {n} is not in the writer's own view"
            await asyncio.wait_for(writer.write(lambda view, t=name: rename(view, t)), 60)
            renamed = directory.tenant(name)
            assert renamed is not None and renamed.name == "renamed", f"rename {n} is not in it"
    finally:
        await follower.stop()
