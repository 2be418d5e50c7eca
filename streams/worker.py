"""``smtp-discovery worker``: one streams worker process; start several to share partitions."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Coroutine
from typing import Any, TypeVar

import faust
from aiokafka.admin import AIOKafkaAdminClient

from smtp_discovery.platform.access import topics_of
from smtp_discovery.platform.config import RuntimeConfig
from smtp_discovery.platform.errors import ConfigError, InfrastructureError
from smtp_discovery.platform.interpreter import tune
from smtp_discovery.platform.kafka import client_options, ensure_topics, ensure_visible
from smtp_discovery.platform.stopping import Stopper
from smtp_discovery.schemas.topics import COMMANDS, MAIL, TopicNames
from smtp_discovery.streams.app import StreamsSettings, Topology
from smtp_discovery.streams.clock import make_clock

log = logging.getLogger("smtp_discovery.streams")

T = TypeVar("T")


async def source_layout(options: dict, names: TopicNames) -> tuple[int, int]:
    """(partitions, brokers): the topology uses discovery.mail's partition count, which the
    commands topic must share (co-partitioning is what makes a route key's group local)."""
    admin = AIOKafkaAdminClient(**options)
    await admin.start()
    try:
        described = {
            names.base_of(t["topic"]): len(t["partitions"])
            for t in await admin.describe_topics([names(MAIL), names(COMMANDS)])
        }
        brokers = len((await admin.describe_cluster())["brokers"])
    finally:
        await admin.close()
    if described.get(MAIL) != described.get(COMMANDS):
        raise InfrastructureError(
            f"{MAIL} has {described.get(MAIL)} partitions and {COMMANDS} "
            f"{described.get(COMMANDS)}: they must be equal (co-partitioned)"
        )
    return described[MAIL], brokers


def build_topology(config: RuntimeConfig, bootstrap: str) -> Topology:
    options = client_options(config, bootstrap)

    async def prepare() -> tuple[int, int]:
        # Only its own topics: under least ACLs (platform.access) a worker can neither see
        # nor create the others (the setup role's `topics ensure` does).
        used = topics_of("worker", config)
        await ensure_topics(
            options,
            partitions=config.topic_partitions,
            replication=config.topic_replication,
            specs=[spec for spec in config.topics.specs() if spec.name in used],
        )
        return await source_layout(options, config.topics)

    partitions, brokers = _run(prepare())
    settings = StreamsSettings(
        app_id=config.streams_app_id,
        brokers=bootstrap.split(","),
        partitions=partitions,
        replication=config.topic_replication or min(3, brokers),
        data_dir=config.data_dir / "streams" / config.streams_app_id,
        store=config.streams_store,
        scan_interval_s=config.expiry_scan_s,
        commit_interval_s=config.streams_commit_s,
        session_timeout_s=config.streams_session_timeout_s,
        topics=config.topics,
        ops_listen=config.ops_listen,
        standby_replicas=config.streams_standby_replicas,
    )
    topology = Topology(settings, clock=make_clock(config.clock), kafka_options=options)
    _run(ensure_visible(options, topology.changelog_topics()))
    return topology


def _run(coro: Coroutine[Any, Any, T]) -> T:
    """Run a setup step on a loop of its own (Faust builds its own loop afterwards)."""
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(coro)
    finally:
        loop.close()


def run_worker(config: RuntimeConfig) -> None:
    """Run until SIGTERM/SIGINT. Blocks; Faust owns the event loop and exits the process."""
    if not config.kafka_bootstrap:
        raise ConfigError(
            "the streams worker needs KAFKA_BOOTSTRAP (`smtp-discovery up` runs one in-process "
            "against its embedded broker)"
        )
    topology = build_topology(config, config.kafka_bootstrap)
    tune()
    asyncio.set_event_loop(asyncio.new_event_loop())
    worker = _Worker(topology.app, loglevel=config.log_level, override_logging=False)
    worker.stopper = Stopper(config.stop_timeout_s, name="smtp-discovery worker")
    worker.execute_from_commandline()


class _Worker(faust.Worker):
    """Faust's worker, with the stop every role has: a deadline from the first SIGINT or
    SIGTERM, and a second signal that exits at once. Faust alone would wait forever on a
    commit when Kafka has vanished."""

    stopper: Stopper

    def _schedule_shutdown(self, signal: signal.Signals) -> None:
        self.stopper.signalled(signal)
        super()._schedule_shutdown(signal)
