"""The Faust wiring: topics, tables, the agent, the expiry timer, the tenants view.

Everything that decides lives in streams.rules; this module only moves bytes between Kafka and
the Processor, and keeps Faust's constraints: tables change only inside the agent, the timer
talks to the agent through the commands topic, and no hopping windows or exactly-once mode.
"""

from __future__ import annotations

import asyncio
import logging
import os
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, NoReturn

import faust
from aiokafka.admin import NewTopic
from mode.utils.times import want_seconds
from prometheus_client import CollectorRegistry

from smtp_discovery.platform.ops import CounterView, OpsServer
from smtp_discovery.platform.views import TenantDirectory
from smtp_discovery.schemas.codec import encode
from smtp_discovery.schemas.commands import Tick
from smtp_discovery.schemas.topics import (
    COMMANDS,
    MAIL,
    TENANTS,
    TopicNames,
)
from smtp_discovery.streams.batches import Record, send_batches
from smtp_discovery.streams.changelog import AcknowledgedTable, acknowledged
from smtp_discovery.streams.clock import PartitionClock
from smtp_discovery.streams.due import DueIndex
from smtp_discovery.streams.monitor import LivelockMonitor
from smtp_discovery.streams.partitioning import partition_for
from smtp_discovery.streams.processor import Incoming, Output, Processor
from smtp_discovery.streams.recovery import StreamsTableManager
from smtp_discovery.streams.rewind import RewindingApp
from smtp_discovery.streams.rules import Policy
from smtp_discovery.streams.store import CACHED_GROUPS, GroupStore

log = logging.getLogger("smtp_discovery.streams")

_CURRENT_EVENT = faust.streams._current_event
"""The context variable Faust's tables read the event being processed from (a table key is
read and written in that event's partition). A batch sets it per message in the agent's own
task; the stream's ``_set_current_event`` would also change what ``take_events`` buffers."""


@dataclass(frozen=True)
class StreamsSettings:
    app_id: str
    brokers: list[str]
    partitions: int
    replication: int
    data_dir: Path
    store: str = "rocksdb"
    scan_interval_s: float = 300.0
    standby_replicas: int = 1
    commit_interval_s: float = 2.8
    session_timeout_s: float = 60.0
    topics: TopicNames = field(default_factory=TopicNames)
    ops_listen: str = ""
    """Where the worker serves /metrics, /healthz and /readyz (empty: nowhere)."""
    batch_max: int = 10_000
    """Most messages applied as one batch (one wait for Kafka, one write per changed key): a
    batch of the longest window on a fast machine, bounded so that one batch takes about a
    second at most."""
    batch_within_s: float = 0.25
    """Longest a batch waits to fill: the latency a quiet stream adds to a message. Under load
    a batch holds what Faust delivers in that time, and each address it holds is written once
    however many of its messages it holds: with 20 ms, batches of some 290 messages held an
    address being discovered about once each, and its record was written for every message;
    with 0.25 s (some 3,400 messages) the worker went 0.52 -> 0.56 of the Faust no-op on
    ``bench.streams_worker``'s discovering mix, for 0.15 s more on the end-to-end p99 lag
    (bench/README.md)."""
    cached_groups: int = CACHED_GROUPS
    """Route-key groups the worker keeps decoded (streams.store)."""


class Topology:
    """A built worker: the Faust app plus the parts tests and the CLI need to reach."""

    def __init__(
        self,
        settings: StreamsSettings,
        *,
        clock: PartitionClock,
        kafka_options: dict[str, Any],
        policy: Policy | None = None,
    ) -> None:
        self.settings = settings
        self.clock = clock
        self.policy = policy or Policy()
        self.directory = TenantDirectory()
        names = settings.topics
        self.names = names
        self.follower = self.directory.follower(kafka_options, names(TENANTS))
        self.due = DueIndex(self.policy, settings.partitions)
        self._indexed_partitions: frozenset[int] | None = None
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        app = RewindingApp(
            settings.app_id,
            broker=[f"kafka://{b}" for b in settings.brokers],
            broker_credentials=kafka_credentials(kafka_options),
            store="rocksdb://" if settings.store == "rocksdb" else "memory://",
            datadir=str(settings.data_dir),
            topic_partitions=settings.partitions,
            topic_replication_factor=settings.replication,
            topic_allow_declare=True,
            table_standby_replicas=settings.standby_replicas,
            processing_guarantee="at_least_once",
            producer_acks=-1,
            consumer_auto_offset_reset="earliest",
            broker_commit_interval=settings.commit_interval_s,
            broker_session_timeout=settings.session_timeout_s,
            broker_heartbeat_interval=min(3.0, settings.session_timeout_s / 3),
            stream_wait_empty=True,
            web_enabled=False,
            consumer_max_fetch_size=8 * 1024 * 1024,
            # A batch writes hundreds of table keys at once: with Faust's 16 KiB producer batches
            # the changelog went out a dozen records per round trip, and the agent waited.
            producer_max_batch_size=1024 * 1024,
            producer_max_request_size=4 * 1024 * 1024,
            # Faust's own hand-over after a table restore can drop fetched records for good.
            TableManager=StreamsTableManager,
            Monitor=LivelockMonitor,
        )
        self.app = app
        raw = {
            "key_type": bytes,
            "value_type": bytes,
            "key_serializer": "raw",
            "value_serializer": "raw",
        }
        self.source = app.topic(names(MAIL), names(COMMANDS), **raw)
        self.commands = app.topic(names(COMMANDS), **raw)
        """Where the timer sends its ticks (the processor's outputs go out in batches)."""
        # Recovery reads changelogs in large batches: a fresh worker restores millions of
        # addresses (Faust's default of 1000 per batch makes that slower).
        table_options: dict[str, Any] = {
            "key_type": str,
            "value_type": bytes,
            "partitions": settings.partitions,
            "recovery_buffer_size": 10_000,
        }
        records, groups, journal = self.tables = tuple(
            app.tables.add(
                AcknowledgedTable(app, name=name, beacon=app.tables.beacon, **table_options)
            )
            for name in ("records", "groups", "journal")
        )
        self.store = GroupStore(records, groups, journal, cached_groups=settings.cached_groups)
        if settings.store == "rocksdb" and isinstance(app.tables, StreamsTableManager):
            # A store that persists its offsets can be read into ahead of Faust's recovery
            # (streams.readahead); the in-memory store starts empty each time.
            app.tables.changelog_options = kafka_options
        # Another worker may have written a partition's tables while this one did not own it.
        app.on_partitions_revoked.connect(self._forget_groups)
        app.on_partitions_assigned.connect(self._forget_groups)
        self.processor = Processor(
            store=self.store,
            directory=self.directory,
            clock=clock,
            send=self._send,
            tables_written=partial(acknowledged, self.tables),
            due=self.due,
            policy=self.policy,
        )
        app.agent(self.source, name="discovery")(self._agent)
        app.timer(settings.scan_interval_s, on_leader=False)(self._scan)
        follower = self.follower

        class TenantsView(faust.Service):
            """Runs the tenants view for the worker's lifetime."""

            async def on_start(self) -> None:
                await follower.start()

            async def on_stop(self) -> None:
                await follower.stop()

        app.service(TenantsView)
        ops = OpsServer(self.metrics(), ready=follower.ready.is_set)
        ops_listen = settings.ops_listen

        class OpsEndpoint(faust.Service):
            """The ops endpoint, in Faust's own loop (so /healthz proves that loop runs)."""

            async def on_start(self) -> None:
                await ops.start(ops_listen)

            async def on_stop(self) -> None:
                await ops.stop()

        app.service(OpsEndpoint)

    def metrics(self) -> CollectorRegistry:
        """Messages by outcome and transitions by reason, from the processor's own counts."""
        counts = self.processor.counts
        registry = CollectorRegistry()
        registry.register(
            CounterView(
                "smtp_discovery_worker_messages",
                "Messages applied, or skipped and why (duplicate, settled, late ...).",
                "outcome",
                lambda: {k: v for k, v in counts.items() if not k.startswith("transition:")},
            )
        )
        registry.register(
            CounterView(
                "smtp_discovery_worker_transitions",
                "Address state transitions by reason.",
                "reason",
                lambda: {
                    k.removeprefix("transition:"): v
                    for k, v in counts.items()
                    if k.startswith("transition:")
                },
            )
        )
        return registry

    async def _forget_groups(self, app: Any, *_: Any, **__: Any) -> None:
        """A rebalance: what this worker derived from its tables may be stale, even for a
        partition it owns again (another worker may have changed it meanwhile)."""
        self.store.forget()
        self._indexed_partitions = None
        for table in self.tables:
            # Writes of a batch that never finished (a stop cancelled it): it was not
            # acknowledged, so whoever owns its partitions now applies it again. Sent later,
            # they could land in a changelog another worker writes.
            table.unsent.clear()

    async def _send(self, outputs: Sequence[Output]) -> None:
        """Send a batch's outputs a partition's record batch at a time (``streams.batches``),
        and return once Kafka acknowledged them all. An output with no partition goes to its
        key's, where Kafka's default partitioner puts it (one with no key either, a dead letter
        of a message without one, to the first)."""
        producer = self.app.producer._ensure_producer()
        by_partition: dict[tuple[str, int], list[Record]] = {}
        counts: dict[str, int] = {}
        for topic, key, value, partition in outputs:
            name = self.names(topic)
            if partition is None:
                if name not in counts:  # once a topic, not once an output
                    counts[name] = len(await producer.partitions_for(name))
                partition = 0 if key is None else partition_for(key, counts[name])
            by_partition.setdefault((name, partition), []).append((key, value))
        sent = []
        for (name, partition), records in by_partition.items():
            sent += await send_batches(producer, name, partition, records)
        await asyncio.gather(*sent)

    async def _agent(self, stream: faust.StreamT) -> None:
        while not self.follower.ready.is_set():
            try:
                await asyncio.wait_for(self.follower.ready.wait(), 10)
            except TimeoutError:
                log.warning("waiting for the tenants view before processing messages")
        base_of = self.names.base_of
        # Faust acknowledges a batch's events after the loop body: their offsets commit only
        # once the batch's outputs and table writes are in Kafka (Processor.handle_batch).
        batches = stream.take_events(self.settings.batch_max, self.settings.batch_within_s)
        async for events in batches:
            try:
                await self.processor.handle_batch(
                    [
                        Incoming(
                            base_of(event.message.topic),
                            event.message.partition,
                            event.message.offset,
                            event.message.key,
                            event.message.value,
                            partial(_CURRENT_EVENT.set, weakref.ref(event)),
                        )
                        for event in events
                    ]
                )
            except BaseException as exc:
                never_acknowledge(events)
                if isinstance(exc, Exception):
                    infrastructure_failure(exc)
                raise

    def changelog_topics(self) -> list[NewTopic]:
        """The tables' changelog topics as Faust declares them (faust.topics.Topic.declare).

        The worker creates them before Faust starts (streams.worker.build_topology): Faust
        creates them itself and subscribes at once, and a changelog missing from the consumer's
        first metadata counts as a topic of 0 partitions until the next refresh, minutes later.
        Meanwhile every table write raises PartitionsMismatch, and the crash acknowledges the
        message the agent was processing: it is lost.
        """
        conf = self.app.conf
        topics = []
        for table in self.app.tables.values():
            topic = table.changelog_topic
            policy = ",".join(
                flag
                for flag, on in (("compact", topic.compacting), ("delete", topic.deleting))
                if on
            )
            configs = {"cleanup.policy": policy} if policy else {}
            if topic.retention:
                configs["retention.ms"] = str(int(want_seconds(topic.retention) * 1000))
            configs.update(topic.config or {})
            topics.append(
                NewTopic(
                    name=topic.get_topic_name(),
                    num_partitions=topic.partitions or conf.topic_partitions,
                    replication_factor=topic.replicas or conf.topic_replication_factor,
                    topic_configs=configs,
                )
            )
        return topics

    def active_partitions(self) -> frozenset[int]:
        return frozenset(
            tp.partition
            for tp in self.app.assignor.assigned_actives()
            if tp.topic == self.names(MAIL)
        )

    def rebuild_due_index(self, active: frozenset[int]) -> None:
        """After a rebalance: index the waiting records of the partitions this worker owns."""
        self.due.clear()
        for route_key, key, record in self.store.waiting():
            self.due.update(key, record, route_key)
        for route_key, newest in self.store.journal_ends():
            self.due.update_journal(
                route_key,
                partition_for(route_key.encode(), self.settings.partitions),
                newest + self.policy.late_grace,
            )
        self.due.keep_partitions(active)
        self._indexed_partitions = active
        log.info(
            "due index rebuilt: %d waiting addresses on partitions %s",
            len(self.due),
            sorted(active),
        )

    def _journal_tick_address(self, route_key: str) -> tuple[str, str]:
        """(tenant id, an address of the route key) for the tick that drops a group's journal.
        Made from the route key, not from a message the journal held: that address may have
        been erased, and the tick goes through Kafka."""
        tenant_id, _, base_local = route_key.partition(":")
        tenant = self.directory.tenant(tenant_id)
        domain = tenant.domains[0] if tenant is not None and tenant.domains else "erased.invalid"
        return tenant_id, f"{base_local}@{domain}"

    async def _scan(self) -> None:
        """Turn due addresses into ticks on their own partition (tables change only there).

        Not while tables are being restored: an index built from a half-restored table would
        miss the records restored after it."""
        if not self.follower.ready.is_set() or self.app.in_recovery:
            return
        active = self.active_partitions()
        if active != self._indexed_partitions:
            self.rebuild_due_index(active)
        sent = 0
        due = [
            (waiting.tenant_id, waiting.address, waiting.partition)
            for _key, waiting in self.due.due(self.clock.now, self.directory.settings)
        ]
        due.extend(
            (*self._journal_tick_address(route_key), partition)
            for route_key, partition in self.due.expired_journals(self.clock.now)
        )
        for tenant_id, address, partition in due:
            tick = Tick(tenant_id=tenant_id, event_time=self.clock.now(partition), address=address)
            await self.commands.send(key=tick.kafka_key(), value=encode(tick))
            sent += 1
        if sent:
            log.info("expiry scan: %d addresses due", sent)


EXIT_INFRASTRUCTURE = 70
"""The worker's exit status when Kafka or a table failed under a batch (EX_SOFTWARE)."""


def never_acknowledge(events: Sequence[faust.EventT]) -> None:
    """Keep a batch that was not applied from ever being acknowledged.

    ``take_events`` acknowledges a batch's events when the loop body is left, whatever way it
    is left: a batch cancelled by a stop, or broken by a failing send or table write, would be
    acknowledged, committed and lost. Marked as acknowledged already, the messages are not
    handed to the consumer's acknowledgement; their offsets are never committed, and the next
    worker that owns their partitions applies them again (ids make the repeats harmless).
    """
    for event in events:
        event.message.acked = True


def infrastructure_failure(exc: Exception) -> NoReturn:
    """A batch failed for a reason other than its messages (those are dead-lettered one by
    one): Kafka refused an output, or a table write failed. Retrying in place would apply the
    batch's messages after later ones; a stop would commit the offsets of batches before it and
    wait for a healthy producer. Exit at once, as a crash: whoever supervises the worker starts
    it again, and the batch is applied again from the last committed offsets."""
    log.critical(
        "a batch could not be applied (%s: %s); exiting so that its messages are delivered again",
        type(exc).__name__,
        exc,
        exc_info=exc,
    )
    for handler in logging.getLogger().handlers:
        handler.flush()
    os._exit(EXIT_INFRASTRUCTURE)


def kafka_credentials(options: dict[str, Any]) -> Any:
    """Faust's credentials object for the same options the aiokafka clients use."""
    protocol = options.get("security_protocol", "PLAINTEXT")
    if protocol == "PLAINTEXT":
        return None
    if protocol == "SSL":
        return faust.SSLCredentials(options["ssl_context"])
    return faust.SASLCredentials(
        username=options.get("sasl_plain_username"),
        password=options.get("sasl_plain_password"),
        ssl_context=options.get("ssl_context"),
        mechanism=options.get("sasl_mechanism"),
    )
