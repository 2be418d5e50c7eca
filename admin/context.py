"""What the admin API works with: views of the tenants, tokens and command results, a producer
for the topics it writes, and the ClickHouse client for what the sink wrote."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter, OrderedDict
from collections.abc import Callable
from functools import partial
from typing import Any

from prometheus_client import CollectorRegistry

from smtp_discovery.admin.tokens import Principal, TokenDirectory
from smtp_discovery.jobs.render import Presentation
from smtp_discovery.platform.clock import Clock, SystemClock
from smtp_discovery.platform.kafka import idempotent_producer
from smtp_discovery.platform.ops import CounterView
from smtp_discovery.platform.tenant_writes import TenantWriter
from smtp_discovery.platform.views import CompactedTopicFollower, TenantDirectory
from smtp_discovery.schemas.admin import AdminTokenUsed, used_key
from smtp_discovery.schemas.base import Message
from smtp_discovery.schemas.calendar import Schedule
from smtp_discovery.schemas.codec import MessageDecodeError, decode, encode
from smtp_discovery.schemas.commands import CommandResult
from smtp_discovery.schemas.topics import ADMIN_TOKENS, COMMAND_RESULTS, TENANTS, TopicNames
from smtp_discovery.sinks.schema import Layout

log = logging.getLogger("smtp_discovery.admin")

MAX_RESULTS = 1_000_000


class CommandResults:
    """Results of recent commands by command id (the topic keeps a week; so does this, bounded)."""

    def __init__(self) -> None:
        self._results: OrderedDict[str, CommandResult] = OrderedDict()

    def apply(self, key: bytes | None, value: bytes | None) -> None:
        try:
            result = decode(COMMAND_RESULTS, value)
        except MessageDecodeError:
            return
        self._results[result.command_id] = result
        while len(self._results) > MAX_RESULTS:
            self._results.popitem(last=False)

    def get(self, command_id: str) -> CommandResult | None:
        return self._results.get(command_id)


class AdminContext:
    def __init__(
        self,
        kafka_options: dict[str, Any],
        names: TopicNames,
        clickhouse: Any,
        layout: Layout,
        *,
        clock: Clock | None = None,
        schedule: Schedule | None = None,
        presentation: Presentation | None = None,
        token_key: bytes | None = None,
        sink_group: str = "smtp-discovery-sink",
        streams_group: str = "smtp-discovery-streams",
        erasure_wait_s: float = 300.0,
    ) -> None:
        self.kafka_options = kafka_options
        self.names = names
        self.clickhouse = clickhouse
        self.layout = layout
        self.clock: Clock = clock if clock is not None else SystemClock()
        self.schedule = schedule or Schedule.parse("09:00", "UTC")
        """The provider's report schedule: report weeks and notices left as the jobs count them."""
        self.presentation = presentation or Presentation()
        """The provider's name and console address the reports show, as the jobs send them."""
        self.tenants = TenantDirectory()
        self.token_key = token_key
        """Signs the tokens this API publishes and confirms those it reads (None: it trusts no
        published token, only those admitted in-process)."""
        self.sink_group = sink_group
        """The sinks' consumer group: an erasure waits until it has stored what was written."""
        self.streams_group = streams_group
        """The streams workers' (their app id): offboarding waits until they processed it all."""
        self.erasure_wait_s = erasure_wait_s
        """How long an erasure or a removal waits for the worker and the sinks before it answers
        504 (run it again to finish)."""
        self.tokens = TokenDirectory(token_key)
        self.results = CommandResults()
        self._followers = [
            CompactedTopicFollower(kafka_options, names(TENANTS), self.tenants.apply),
            CompactedTopicFollower(kafka_options, names(ADMIN_TOKENS), self.tokens.apply),
            CompactedTopicFollower(kafka_options, names(COMMAND_RESULTS), self.results.apply),
        ]
        self.tenant_writer = TenantWriter(
            kafka_options, names(TENANTS), self.tenants, self._followers[0]
        )
        """Every write of tenants and provider defaults: one writer at a time, on a current view."""
        self._producer = idempotent_producer(kafka_options)
        self._background: set[asyncio.Task[None]] = set()
        self._clickhouse_lock = asyncio.Lock()

        self.responses: Counter[str] = Counter()
        """HTTP responses by status class, for the ops endpoint."""

    def metrics(self) -> CollectorRegistry:
        registry = CollectorRegistry()
        registry.register(
            CounterView(
                "smtp_discovery_admin_responses",
                "Admin API responses by status class (2xx, 4xx, 5xx).",
                "status",
                lambda: dict(self.responses),
            )
        )
        registry.register(
            CounterView(
                "smtp_discovery_admin_token_records_refused",
                "Token records refused because the token key did not sign them: something "
                "that does not hold the key wrote the tokens topic.",
                "reason",
                lambda: {"unsigned_or_forged": self.tokens.forged},
            )
        )
        return registry

    async def start(self) -> None:
        await self._producer.start()
        try:
            for follower in self._followers:
                await follower.start()
            await asyncio.gather(*(f.ready.wait() for f in self._followers[:2]))
        except BaseException:
            await self.stop()  # nothing half-started stays behind
            raise

    async def stop(self) -> None:
        await asyncio.gather(*self._background, return_exceptions=True)
        for follower in self._followers:
            await follower.stop()
        await self._producer.stop()

    async def publish(self, base_topic: str, messages: list[Message]) -> None:
        """Acknowledged by Kafka (acks=all) before the API answers. Tenants and defaults are
        written by ``tenant_writer`` instead, which reads before it writes."""
        if base_topic == TENANTS:
            raise ValueError("write tenants with tenant_writer: it reads before it writes")
        futures = [
            await self._producer.send(self.names(base_topic), encode(m), key=m.kafka_key())
            for m in messages
        ]
        await asyncio.gather(*futures)
        if base_topic == ADMIN_TOKENS:
            for m in messages:
                self.tokens.apply(m.kafka_key(), encode(m))

    def record_use(self, principal: Principal) -> None:
        """Publish that ``principal``'s token was used, when its last recorded use is older
        than the resolution; in the background: a request never waits for it, nor fails
        because Kafka could not take it (the next use tries again)."""
        used = self.tokens.use_to_record(principal, self.clock.now())
        if used is None:
            return
        task = asyncio.create_task(self._publish_use(used))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _publish_use(self, used: AdminTokenUsed) -> None:
        try:
            await self.publish(ADMIN_TOKENS, [used])
        except Exception as exc:  # a last-use record is best effort
            log.warning("could not record a use of token %s: %s", used.token_id, exc)
            self.tokens.forget_use(used.token_id, used.event_time)

    async def revoke(self, token_id: str) -> None:
        """Tombstones for the token and its last use, acknowledged by Kafka; every replica's
        directory drops the token when it reads them (within its follower's lag: seconds)."""
        topic = self.names(ADMIN_TOKENS)
        keys = (token_id.encode("ascii"), used_key(token_id))
        futures = [await self._producer.send(topic, None, key=key) for key in keys]
        await asyncio.gather(*futures)
        for key in keys:
            self.tokens.apply(key, None)

    async def run(self, call: Callable[..., Any], *args: Any) -> Any:
        async with self._clickhouse_lock:
            return await asyncio.to_thread(call, *args)

    async def ask(self, query: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """The answer of one of ``sinks.queries``, asked with this context's client and layout,
        off the event loop and one ClickHouse call at a time (``run``)."""
        return await self.run(partial(query, self.clickhouse, self.layout, *args, **kwargs))
