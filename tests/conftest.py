"""Session-wide real infrastructure: one Kafka broker and one chDB path per test session.

Starting a JVM costs seconds, and chDB allows one data path per process, so both are shared by
the whole session; tests isolate themselves with unique topic and table names instead.

With pytest-xdist (``-n 2``, the README's test command) the session's one broker is started by
the controller process, before the workers, and handed to each worker: the JVM dies with the
process that started it (``die_with_parent``), so only the controller, which outlives every
worker, may own it. Each worker has its own chDB path (its own ``tmp_path_factory`` base).
"""

from __future__ import annotations

import os
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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


def _session_broker(directory: Path) -> LocalKafka:
    config = _config()
    kafka = LocalKafka(
        directory,
        kafka_version=config.kafka_version,
        cache_dir=config.kafka_cache_dir,
        heap=config.kafka_heap,
    )
    kafka.start()
    print(f"\nlocal Kafka broker at {kafka.bootstrap}, started in {kafka.startup_seconds:.1f}s")
    return kafka


_SHARED_BROKER = "kafka_bootstrap"
"""The key of the controller's broker in each xdist worker's ``workerinput``."""
_shared: list[LocalKafka] = []
"""The xdist controller's broker, while it runs."""


def pytest_sessionstart(session: pytest.Session) -> None:
    """Under xdist, the controller starts the session's broker before it starts the workers
    (xdist's own ``pytest_sessionstart``, which starts them, runs last)."""
    if not session.config.pluginmanager.hasplugin("dsession") or _config().kafka_bootstrap:
        return
    _shared.append(_session_broker(session.config._tmp_path_factory.mktemp("kafka")))


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """xdist's hook, in the controller, once per worker before it starts: the shared broker."""
    if _shared:
        node.workerinput[_SHARED_BROKER] = _shared[0].bootstrap


def pytest_unconfigure(config: pytest.Config) -> None:
    """The controller stops the shared broker once every worker has finished."""
    while _shared:
        _shared.pop().stop()


def _weight(item: pytest.Item) -> int:
    """Which tests are slow: those on a three-broker cluster, then those on a real broker (real
    processes, waits on Kafka), then the rest (pure logic, milliseconds)."""
    if item.get_closest_marker("cluster"):
        return 0
    return 1 if item.get_closest_marker("kafka") else 2


def _unique_ids(items: list[pytest.Item]) -> None:
    """Give items that share a node id one of their own, from their name.

    schemathesis names each API operation's item ``test[GET /path]``, but under pytest 9 they
    all get the test's bare id; xdist's module scheduling keys work by id, so it would run one
    of them and silently drop the others. (``_id`` is pytest's own, pinned in pyproject.)"""
    from _pytest.nodeid import NodeId

    counts = Counter(item.nodeid for item in items)
    for item in items:
        if counts[item.nodeid] > 1 and item.name.endswith("]") and "[" in item.name:
            params = item.name[item.name.index("[") + 1 : -1]
            item._id = NodeId(path=item._id.path, names=item._id.names, params=params)  # type: ignore[attr-defined]
    shared = [nodeid for nodeid, n in Counter(item.nodeid for item in items).items() if n > 1]
    if shared:
        raise pytest.UsageError(f"xdist would run one test of each of these ids: {shared}")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under xdist, the slow modules first: each worker takes the next module as it finishes
    one (``--dist loadscope --no-loadscope-reorder``), so the longest start early and the fast
    ones fill the end, where a slow module would leave the other worker idle. A module keeps
    its own tests' order (some follow on from the one before); a serial run keeps file order."""
    if not hasattr(config, "workerinput"):
        return
    _unique_ids(items)
    modules: dict[str, int] = {}
    for item in items:
        module = item.nodeid.split("::", 1)[0]
        modules[module] = min(modules.get(module, 2), _weight(item))
    items.sort(key=lambda item: modules[item.nodeid.split("::", 1)[0]])  # stable


@pytest.fixture(scope="session")
def kafka_bootstrap(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A real Apache Kafka broker for the session, or the cluster named by KAFKA_BOOTSTRAP;
    under xdist, the one the controller started for every worker."""
    config = _config()
    if config.kafka_bootstrap:
        yield config.kafka_bootstrap
        return
    shared = getattr(request.config, "workerinput", {}).get(_SHARED_BROKER)
    if shared:
        yield shared
        return
    kafka = _session_broker(tmp_path_factory.mktemp("kafka"))
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
