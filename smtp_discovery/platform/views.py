"""Local views of compacted topics: read from the beginning, then follow live.

Ingest nodes and streams workers both need every tenant's configuration (and ingest needs every
address's state) on every instance. A compacted topic is the source of truth; each process keeps
a dictionary built from it and knows when it has caught up with what existed at startup.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from smtp_discovery.schemas.address import display_form
from smtp_discovery.schemas.codec import MessageDecodeError, decode
from smtp_discovery.schemas.tenant import (
    PROVIDER_DEFAULTS_KEY,
    DiscoverySettings,
    ProviderDefaults,
    TenantConfig,
)
from smtp_discovery.schemas.topics import TENANTS

log = logging.getLogger("smtp_discovery.platform.views")


class CompactedTopicFollower:
    """Feeds every record of a topic, from offset 0 and then live, to ``on_record(key, value)``.

    ``ready`` is set once everything that existed when the follower started has been applied,
    so a process can refuse work until its view is complete. No consumer group: every process
    reads the whole topic. Only committed records are read: a transactional writer that lost a
    race (``smtp_discovery.platform.tenant_writes``) is never seen.
    """

    def __init__(
        self,
        options: dict[str, Any],
        topic: str,
        on_record: Callable[[bytes | None, bytes | None], None],
    ) -> None:
        self.options = options
        self.topic = topic
        self.on_record = on_record
        self.ready = asyncio.Event()
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None
        self._stepped = asyncio.Condition()

    async def start(self) -> None:
        consumer = AIOKafkaConsumer(
            **self.options,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level="read_committed",
        )
        partitions = await _partitions_of(self.options, self.topic)
        if not partitions:
            raise RuntimeError(
                f"topic {self.topic} does not exist; run `smtp-discovery topics ensure`"
            )
        await consumer.start()
        assigned = [TopicPartition(self.topic, p) for p in sorted(partitions)]
        consumer.assign(assigned)
        await consumer.seek_to_beginning(*assigned)
        self._targets: dict[TopicPartition, int] = await consumer.end_offsets(assigned)
        self._seen: dict[TopicPartition, int] = {}
        self._consumer = consumer
        self._check_ready()
        self._task = asyncio.create_task(self._run(), name=f"follow:{self.topic}")

    def _check_ready(self) -> None:
        if all(self._seen.get(tp, 0) >= end for tp, end in self._targets.items()):
            log.info("view of %s is complete", self.topic)
            self.ready.set()

    async def _run(self) -> None:
        while True:
            try:
                await self._step()
            except asyncio.CancelledError:
                raise
            except Exception:  # the view must outlive a transient error: log, retry
                log.exception("following %s failed; retrying", self.topic)
                await asyncio.sleep(1.0)
            async with self._stepped:
                self._stepped.notify_all()

    async def catch_up(self) -> None:
        """Return once every record committed before this call has been applied.

        A read-modify-write must read the latest committed value, not whatever the follower
        happened to have: this waits for the view to reach the partitions' current ends (the
        last stable offsets, as the consumer reads committed records only)."""
        consumer = self._consumer
        assert consumer is not None, "start() the follower first"
        targets = await consumer.end_offsets(list(self._targets))

        async def reached() -> bool:
            for tp, end in targets.items():
                if await consumer.position(tp) < end:
                    return False
            return True

        async with self._stepped:
            while not await reached():
                await self._stepped.wait()

    async def applied(self, offsets: dict[TopicPartition, int]) -> None:
        """Return once the records at ``offsets`` (by partition: a writer's own, just
        committed) have been applied.

        :meth:`catch_up` is not enough for that: a transaction's commit returns before its
        markers are written, and until they are the partition's last stable offset still lies
        before the records it committed, so a view "at the end" can lack them (seen in the
        cluster drill: the admin API answered the tenant it had just created with a 500, its
        view not holding it yet)."""
        consumer = self._consumer
        assert consumer is not None, "start() the follower first"

        async def reached() -> bool:
            for tp, offset in offsets.items():
                if await consumer.position(tp) <= offset:
                    return False
            return True

        async with self._stepped:
            while not await reached():
                await self._stepped.wait()

    async def _step(self) -> None:
        assert self._consumer is not None
        batch = await self._consumer.getmany(timeout_ms=500)
        for tp, records in batch.items():
            for record in records:
                try:
                    self.on_record(record.key, record.value)
                except Exception:  # a bad record must not stop the view
                    log.exception("skipping record %s:%d@%d", tp.topic, tp.partition, record.offset)
            if records:
                self._seen[tp] = records[-1].offset + 1
        if not self.ready.is_set():
            for tp in self._targets:
                # Compaction and transaction markers can leave gaps: trust the position.
                self._seen[tp] = max(self._seen.get(tp, 0), await self._consumer.position(tp))
            self._check_ready()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._consumer is not None:
            await self._consumer.stop()


async def _partitions_of(options: dict[str, Any], topic: str) -> list[int]:
    admin = AIOKafkaAdminClient(**options)
    await admin.start()
    try:
        described = await admin.describe_topics([topic])
    finally:
        await admin.close()
    return sorted(
        p["partition"] for t in described if t["error_code"] == 0 for p in t["partitions"]
    )


class TenantDirectory:
    """Every tenant's configuration and the provider defaults, as of the tenants topic."""

    def __init__(self) -> None:
        self.tenants: dict[str, TenantConfig] = {}
        self.defaults = DiscoverySettings()
        self.defaults_revision = 0
        self._effective: dict[str, DiscoverySettings] = {}
        self._domains: dict[str, str] = {}
        self.generation = 0
        """Bumped on every change, so indexes derived from the directory know to rebuild."""
        self._index: tuple[int, list[tuple[str, TenantConfig]]] = (-1, [])

    def apply(self, key: bytes | None, value: bytes | None) -> None:
        if key is None:
            return
        self.generation += 1
        name = key.decode("utf-8", "replace")
        if value is None:
            if name == PROVIDER_DEFAULTS_KEY:
                self.defaults = DiscoverySettings()
                self.defaults_revision = 0
                self._effective.clear()
            else:
                self._forget_domains(name)
                self.tenants.pop(name, None)
                self._effective.pop(name, None)
            return
        try:
            message = decode(TENANTS, value)
        except MessageDecodeError as exc:
            log.warning("ignoring undecodable tenants record %r: %s", name, exc.reason)
            return
        if isinstance(message, ProviderDefaults):
            self.defaults = message.settings
            self.defaults_revision = message.revision
            self._effective.clear()
        elif isinstance(message, TenantConfig):
            self._forget_domains(message.tenant_id)
            self.tenants[message.tenant_id] = message
            self._effective.pop(message.tenant_id, None)
            for domain in message.domains:
                owner = self._domains.setdefault(domain, message.tenant_id)
                if owner != message.tenant_id:
                    log.warning(
                        "domain %s is registered by %s and %s; %s keeps it",
                        domain,
                        owner,
                        message.tenant_id,
                        owner,
                    )

    def _forget_domains(self, tenant_id: str) -> None:
        previous = self.tenants.get(tenant_id)
        for domain in previous.domains if previous else ():
            if self._domains.get(domain) == tenant_id:
                del self._domains[domain]

    def tenant_for_domain(self, domain: str) -> TenantConfig | None:
        """The tenant that registered ``domain`` (lower-case A-labels), if any."""
        owner = self._domains.get(domain)
        return None if owner is None else self.tenants.get(owner)

    def tenant(self, tenant_id: str) -> TenantConfig | None:
        return self.tenants.get(tenant_id)

    def settings(self, tenant_id: str) -> DiscoverySettings | None:
        """Effective settings: the tenant's overrides on the provider defaults (cached)."""
        cached = self._effective.get(tenant_id)
        if cached is not None:
            return cached
        tenant = self.tenants.get(tenant_id)
        if tenant is None:
            return None
        effective = tenant.effective_settings(self.defaults)
        self._effective[tenant_id] = effective
        return effective

    def find(self, text: str = "", only: str | None = None) -> list[TenantConfig]:
        """Tenants in id order whose id, name or a domain (either form) contains ``text``,
        ignoring case; ``only``: that tenant or nothing. A list of 10,000 tenants is searched
        without sorting or lower-casing anything: the index is rebuilt once per change."""
        if only is not None:
            tenant = self.tenants.get(only)
            found = [] if tenant is None else [(_haystack(tenant), tenant)]
        else:
            if self._index[0] != self.generation:
                ordered = sorted(self.tenants.values(), key=lambda t: t.tenant_id)
                self._index = (self.generation, [(_haystack(t), t) for t in ordered])
            found = self._index[1]
        needle = text.strip().lower()
        return [tenant for hay, tenant in found if needle in hay]

    def follower(self, options: dict[str, Any], topic: str = TENANTS) -> CompactedTopicFollower:
        return CompactedTopicFollower(options, topic, self.apply)


def _haystack(tenant: TenantConfig) -> str:
    """What a tenant search looks in: id, name and domains (A-labels and how they read)."""
    domains = " ".join(tenant.domains)
    return f"{tenant.tenant_id}\n{tenant.name}\n{domains}\n{display_form(domains)}".lower()
