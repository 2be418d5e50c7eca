"""One ingest node: the views it decides from, the SMTP listener, the publisher, the metrics.

The listener opens only once both views (tenants, address state) have caught up with their
topics: a node that answered before it knew every tenant would refuse mail it should take.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import weakref
from collections.abc import Awaitable, Callable
from typing import Any

from smtp_discovery.ingest.cache import CatchAllTracker, VerificationCache
from smtp_discovery.ingest.callout import Prober
from smtp_discovery.ingest.callout_guard import DestinationGuard
from smtp_discovery.ingest.destinations import DestinationResolver, MxLookup
from smtp_discovery.ingest.dha import HarvestGuard
from smtp_discovery.ingest.events import EventPublisher
from smtp_discovery.ingest.handler import IngestHandler
from smtp_discovery.ingest.metrics import IngestMetrics
from smtp_discovery.ingest.outbound import OutboundIndex
from smtp_discovery.ingest.policy import verification_still_applies
from smtp_discovery.ingest.recipients import RecipientChecker
from smtp_discovery.ingest.relay import Downstream
from smtp_discovery.ingest.server import IngestSMTP
from smtp_discovery.ingest.smtp_client import Target, opportunistic_tls
from smtp_discovery.ingest.spool import Spool
from smtp_discovery.ingest.state_view import AddressStateView
from smtp_discovery.ingest.verdict import load_verdict_step
from smtp_discovery.platform.clock import Clock, SystemClock
from smtp_discovery.platform.config import RuntimeConfig, split_host_port
from smtp_discovery.platform.ops import OpsServer
from smtp_discovery.platform.views import CompactedTopicFollower, TenantDirectory
from smtp_discovery.schemas.state import AddressStatus
from smtp_discovery.schemas.topics import ADDRESS_STATE, TENANTS

log = logging.getLogger("smtp_discovery.ingest")

PROXY_TIMEOUT_S = 10.0


def server_tls(config: RuntimeConfig) -> ssl.SSLContext | None:
    if config.ingest_tls_cert is None or config.ingest_tls_key is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(config.ingest_tls_cert, config.ingest_tls_key)
    return context


class IngestNode:
    def __init__(
        self,
        config: RuntimeConfig,
        kafka_options: dict[str, Any],
        *,
        clock: Clock | None = None,
        mx_lookup: MxLookup | None = None,
        tarpit: Callable[[float], Awaitable[Any]] = asyncio.sleep,
        serve_metrics: bool = True,
        smtp: bool = True,
    ) -> None:
        """``smtp`` False: everything but the SMTP listener (the views, the decision, the
        publisher), for the Postfix policy service, which takes requests instead of mail."""
        # One clock for the node's times and windows (the system's by default).
        clock = clock if clock is not None else SystemClock()
        self.config = config
        self.kafka_options = kafka_options
        self.clock = clock
        self.metrics = IngestMetrics()
        self.tenants = TenantDirectory()
        self.cache = VerificationCache(clock)
        self.states = AddressStateView(on_change=self._status_changed)
        topics = config.topics
        self._followers = [
            CompactedTopicFollower(kafka_options, topics(TENANTS), self.tenants.apply),
            CompactedTopicFollower(kafka_options, topics(ADDRESS_STATE), self.states.apply),
        ]
        self.spool = Spool(config.effective_spool_dir, max_bytes=config.ingest_spool_max_bytes)
        self.publisher = EventPublisher(kafka_options, self.spool)
        self.callout_guard = DestinationGuard(
            clock, rate_per_s=config.ingest_callouts_per_s / config.ingest_nodes
        )
        self.prober = Prober(
            helo_name=config.ingest_hostname,
            max_per_destination=config.ingest_probes_per_destination,
            guard=self.callout_guard,
        )
        self._tls_client = opportunistic_tls()
        self.checker = RecipientChecker(
            tenants=self.tenants,
            states=self.states,
            cache=self.cache,
            catch_all=CatchAllTracker(clock),
            prober=self.prober,
            destinations=DestinationResolver(mx_lookup, clock=clock),
            clock=clock,
            node_id=config.ingest_node_id,
        )
        smarthost = []
        if config.ingest_smarthost:
            host, port = split_host_port(config.ingest_smarthost)
            smarthost = [Target(0, host, port)]
        self.handler = IngestHandler(
            checker=self.checker,
            tenants=self.tenants,
            outbound=OutboundIndex(self.tenants),
            guard=HarvestGuard(clock),
            publisher=self.publisher,
            topics=topics,
            verdict=load_verdict_step(config.ingest_verdict, config.ingest_spam_header),
            metrics=self.metrics,
            downstream=self._downstream,
            smarthost=smarthost,
            hostname=config.ingest_hostname,
            node_id=config.ingest_node_id,
            clock=clock,
            max_recipients=config.ingest_max_recipients,
            tarpit=tarpit,
            proxy_networks=config.proxy_networks,
        )
        self.metrics.watch(lambda: self.spool.size_bytes, lambda: len(self.states),
                           self.callout_guard)  # fmt: skip
        self._serve_metrics = serve_metrics
        self._smtp = smtp
        self._started = False
        self.ops = OpsServer(self.metrics.registry, ready=lambda: self._started)
        self._server: asyncio.base_events.Server | None = None
        self._sessions: weakref.WeakSet[IngestSMTP] = weakref.WeakSet()
        self._housekeeping: asyncio.Task[None] | None = None

    def _status_changed(
        self, record_key: str, old: AddressStatus | None, new: AddressStatus | None
    ) -> None:
        if not verification_still_applies(old, new):
            self.cache.invalidate(record_key)

    def _downstream(self, targets: list[Target]) -> Downstream:
        return Downstream(
            targets,
            helo_name=self.config.ingest_hostname,
            tls=self._tls_client,
            connect_timeout=self.prober.connect_timeout,
            command_timeout=self.prober.command_timeout,
        )

    def _protocol(self) -> IngestSMTP:
        config = self.config
        session = IngestSMTP(
            self.handler,
            max_line_bytes=config.ingest_max_line_bytes,
            data_size_limit=config.ingest_max_message_bytes,
            enable_SMTPUTF8=True,
            decode_data=False,
            hostname=config.ingest_hostname,
            ident="ESMTP smtp-discovery",
            tls_context=self._tls_server,
            require_starttls=config.ingest_require_tls,
            timeout=config.ingest_idle_timeout_s,
            command_call_limit=config.ingest_max_commands,
            proxy_protocol_timeout=PROXY_TIMEOUT_S if config.ingest_proxy_protocol else None,
            loop=asyncio.get_running_loop(),
        )
        self._sessions.add(session)
        return session

    async def start(self) -> None:
        self._tls_server = server_tls(self.config)
        for follower in self._followers:
            await follower.start()
        await asyncio.gather(*(follower.ready.wait() for follower in self._followers))
        log.info(
            "views complete: %d tenants, %d addresses", len(self.tenants.tenants), len(self.states)
        )
        await self.publisher.start()
        if self._smtp:
            host, port = split_host_port(self.config.ingest_listen)
            self._server = await asyncio.get_running_loop().create_server(
                self._protocol, host, port, reuse_address=True
            )
        self._started = True
        if self._serve_metrics:
            await self.ops.start(self.config.ops_listen)
        self._housekeeping = asyncio.create_task(self._close_idle_probes(), name="probe-idle")
        if self._smtp:
            log.info("SMTP ingest listening on %s:%d", host, self.port)

    async def _drain(self, drain_s: float) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + drain_s
        # Sessions have no "transaction ended" event to wait on: look every 50 ms.
        while any(s.in_transaction for s in self._sessions) and loop.time() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        for session in list(self._sessions):
            session.shut_down()

    @property
    def listening(self) -> str:
        host, _ = split_host_port(self.config.ingest_listen)
        return f"{host}:{self.port}"

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    async def _close_idle_probes(self) -> None:
        while True:
            await asyncio.sleep(self.prober.idle_seconds / 2)
            await self.prober.close_idle()

    async def stop(self, drain_s: float | None = None) -> None:
        """Stop listening, let transactions in flight finish, then let the publisher flush its
        spool and close the views.

        A session inside a transaction (after MAIL FROM) gets up to ``drain_s`` (default: half
        the stop deadline, leaving the other half to the spool) to finish it; idle sessions, and
        any still busy after that, are told 421 and closed, as Postfix does on stop.
        """
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 5)
            await self._drain(self.config.stop_timeout_s / 2 if drain_s is None else drain_s)
        if self._housekeeping is not None:
            self._housekeeping.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._housekeeping
        await self.publisher.stop()
        await self.prober.close()
        for follower in self._followers:
            await follower.stop()
        await self.ops.stop()
