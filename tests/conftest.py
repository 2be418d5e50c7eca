"""Session-wide real infrastructure: one Kafka broker and one chDB path per test session.

Starting a JVM costs seconds, and chDB allows one data path per process, so both are shared by
the whole session; tests isolate themselves with unique topic and table names instead.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings

from smtp_discovery.localkafka import LocalKafka
from smtp_discovery.localkafka.node import free_port
from smtp_discovery.platform.config import RuntimeConfig
from tests.ingest.postfix import PostfixServer

# Deterministic by default (the same examples on every run, so CI cannot flake); run with
# HYPOTHESIS_PROFILE=explore to search new random examples.
settings.register_profile("default", derandomize=True, deadline=None)
settings.register_profile("explore", derandomize=False, deadline=None, max_examples=2000)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


def _config() -> RuntimeConfig:
    return RuntimeConfig.from_env()


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Apache Kafka broker for the session, or the cluster named by KAFKA_BOOTSTRAP."""
    config = _config()
    if config.kafka_bootstrap:
        yield config.kafka_bootstrap
        return
    kafka = LocalKafka(
        tmp_path_factory.mktemp("kafka"),
        kafka_version=config.kafka_version,
        cache_dir=config.kafka_cache_dir,
        heap=config.kafka_heap,
    )
    kafka.start()
    print(f"\nlocal Kafka broker at {kafka.bootstrap}, started in {kafka.startup_seconds:.1f}s")
    try:
        yield kafka.bootstrap
    finally:
        kafka.stop()


@pytest.fixture(scope="session")
def kafka_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalKafka]:
    """Three local brokers (replication 3, min ISR 2) for fault tests; started only if asked for."""
    config = _config()
    cluster = LocalKafka(
        tmp_path_factory.mktemp("kafka-cluster"),
        nodes=3,
        kafka_version=config.kafka_version,
        cache_dir=config.kafka_cache_dir,
        heap="384m",
    )
    cluster.start(timeout=180)
    print(
        f"\nlocal Kafka cluster at {cluster.bootstrap}, started in {cluster.startup_seconds:.1f}s"
    )
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def chdb_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("chdb")


@pytest.fixture(scope="session")
def clickhouse(chdb_path: Path):  # type: ignore[no-untyped-def]
    """The session's embedded ClickHouse (chDB): one per process, shared by every test."""
    from smtp_discovery.platform.clickhouse import connect

    return connect(f"chdb://{chdb_path}")


@pytest.fixture
def unique() -> str:
    """A short unique suffix for topic, group and table names."""
    return uuid.uuid4().hex[:10]


@pytest.fixture(scope="session")
def postfix_servers() -> Iterator[dict[str, PostfixServer]]:
    """Real Postfix servers playing tenants' mail servers, one of each kind (started once)."""
    servers = {}
    try:
        for mode in ("strict", "greylist", "catchall"):
            server = PostfixServer(
                port=free_port(),
                domains=("a.example", "g.example", "c.example", "b.example"),
                mailboxes=(
                    "alice@a.example",
                    "bob@a.example",
                    "dave@a.example",
                    "alice@b.example",
                    "carol@b.example",
                ),
                mode=mode,
            )
            server.start()
            servers[mode] = server
        yield servers
    finally:
        for server in servers.values():
            server.stop()
