"""``smtp-discovery policy``: discovery for a provider's own Postfix gateways.

Postfix keeps receiving and queueing the mail; this service answers its questions from the
same views, the same RCPT decision, the same callout cache and the same events as an ingest
node (an ``IngestNode`` without its SMTP listener supplies them all):

- the policy delegation server (``check_policy_service``): at RCPT, the ingest node's decision
  for the recipient (``ingest.gate``), harvest protection keyed on ``client_address``; at
  END-OF-MESSAGE, one delivered event per recipient this transaction (``instance``) accepted,
  or one outbound event when the client is a tenant's outbound server;
- the socketmap server (``relay_domains``, ``transport_maps``): a tenant's domains and where
  its mail goes, from the tenants view, so a new tenant is routable without ``postmap``.

The protocol details are pure (``ingest.policy_protocol``, ``ingest.socketmap``); this module
reads and writes the connections. Many Postfix processes connect at once, each keeping its
connection for many requests; every connection is its own task and answers in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import os
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from smtp_discovery.ingest import socketmap
from smtp_discovery.ingest.destinations import MxLookup
from smtp_discovery.ingest.gate import NO_DESTINATION, SPOOL_FULL, Accepted
from smtp_discovery.ingest.node import IngestNode
from smtp_discovery.ingest.outbound import IPAddress
from smtp_discovery.ingest.policy import relay_hack
from smtp_discovery.ingest.policy_protocol import (
    ACCESS_POLICY,
    MAX_REQUEST_BYTES,
    VERDICT_REPORT,
    PolicyRequest,
    ProtocolError,
    TempfailAction,
    accept,
    dunno,
    format_action,
    malformed,
    parse_block,
    refusal,
)
from smtp_discovery.ingest.spool import SpoolFull
from smtp_discovery.platform.clock import Clock
from smtp_discovery.platform.config import RuntimeConfig, split_host_port
from smtp_discovery.schemas.address import Address, AddressError, parse_address
from smtp_discovery.schemas.tenant import TenantConfig

log = logging.getLogger("smtp_discovery.policy")

MAX_TRANSACTIONS = 100_000
"""Transactions remembered between RCPT and END-OF-MESSAGE (oldest forgotten first)."""
TRANSACTION_TTL_S = 3600.0
"""Postfix's own time limits end a transaction well within this."""


@dataclass(slots=True)
class Pending:
    """What one Postfix transaction (``instance``) accepted so far."""

    client_ip: IPAddress
    sender: Address | None
    outbound_tenant: TenantConfig | None
    since: float
    """The node clock's monotonic seconds when the transaction began."""
    recipients: list[Accepted] = field(default_factory=list)
    outbound_recipients: int = 0


@dataclass(slots=True)
class Queued:
    """A message Postfix queued whose verdict the after-queue filter has yet to report."""

    pending: Pending
    size: int
    since: float


class PolicyService:
    def __init__(
        self,
        config: RuntimeConfig,
        kafka_options: dict[str, Any],
        *,
        clock: Clock | None = None,
        mx_lookup: MxLookup | None = None,
        tarpit: Callable[[float], Awaitable[Any]] = asyncio.sleep,
        serve_metrics: bool = True,
    ) -> None:
        self.config = config
        self.node = IngestNode(
            config,
            kafka_options,
            clock=clock,
            mx_lookup=mx_lookup,
            tarpit=tarpit,
            serve_metrics=serve_metrics,
            smtp=False,
        )
        self.gate = self.node.handler.gate
        self.tenants = self.node.tenants
        self.tempfail = TempfailAction(config.policy_tempfail_action)
        self.after_queue = config.policy_verdict == "after_queue"
        self._transactions: OrderedDict[str, Pending] = OrderedDict()
        self._queued: OrderedDict[str, Queued] = OrderedDict()
        self._servers: list[asyncio.Server] = []
        self._connections: set[asyncio.Task[Any]] = set()
        self._ready = False
        self._stopped = False

    # ---- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        """The views first (a service that answered before it knew every tenant would refuse
        mail it should take), then both listeners."""
        await self.node.start()
        self._ready = True
        for listen, handler in (
            (self.config.policy_listen, self._policy_connection),
            (self.config.policy_socketmap_listen, self._socketmap_connection),
        ):
            host, port = split_host_port(listen)
            self._servers.append(
                await asyncio.start_server(
                    self._tracked(handler),
                    host,
                    port,
                    reuse_address=True,
                    limit=MAX_REQUEST_BYTES,
                )
            )
        log.info(
            "policy service listening on %s (policy) and %s (socketmap)",
            self.policy_address,
            self.socketmap_address,
        )

    @property
    def policy_address(self) -> str:
        return _address(self._servers[0])

    @property
    def socketmap_address(self) -> str:
        return _address(self._servers[1])

    async def stop(self) -> None:
        """Stop listening, close every connection (Postfix then applies its default action
        until the service is back), then let the node flush its spool and close the views."""
        if self._stopped:
            return
        self._stopped = True
        for server in self._servers:
            server.close()
        for task in list(self._connections):
            task.cancel()
        for task in list(self._connections):
            with contextlib.suppress(BaseException):
                await task
        for server in self._servers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 5)
        self._servers.clear()
        self._ready = False
        await self.node.stop()

    def _tracked(
        self, handler: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
    ) -> Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]:
        async def run(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            task = asyncio.current_task()
            assert task is not None
            self._connections.add(task)
            try:
                await handler(reader, writer)
            except (ConnectionError, asyncio.IncompleteReadError):
                pass
            except asyncio.CancelledError:
                # Only stop() cancels a connection; ending quietly keeps asyncio's stream
                # callback from logging the cancellation as an error.
                pass
            except Exception:
                log.exception("policy connection failed")
            finally:
                self._connections.discard(task)
                writer.close()
                with contextlib.suppress(Exception):
                    await writer.wait_closed()

        return run

    # ---- the policy delegation protocol -------------------------------------------------------

    async def _policy_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        idle = self.config.policy_idle_timeout_s
        while True:
            try:
                # One deadline per request, not per line: asyncio.timeout costs no task.
                async with asyncio.timeout(idle):
                    request = await _read_request(reader)
            except TimeoutError:
                return
            except ProtocolError as exc:
                log.warning("malformed policy request: %s", exc)
                writer.write(format_action(malformed(str(exc))))
                await writer.drain()
                return
            except asyncio.IncompleteReadError:
                return  # Postfix closed the connection between requests
            action = await self.decide(request)
            writer.write(format_action(action))
            await writer.drain()

    async def decide(self, request: PolicyRequest) -> str:
        """The action for one request (the text after ``action=``)."""
        if request.request == VERDICT_REPORT:
            return await self._verdict_report(request)
        if request.request != ACCESS_POLICY:
            return malformed(f"unknown request type {request.request[:40]!r}")
        if request.state == "RCPT":
            return await self._rcpt(request)
        if request.state == "END-OF-MESSAGE":
            return await self._end_of_message(request)
        return dunno()  # CONNECT, HELO, MAIL, DATA...: nothing to say there

    async def _rcpt(self, request: PolicyRequest) -> str:
        gate = self.gate
        client_ip = _client_ip(request)
        if client_ip is None:
            return malformed("client_address is not an IP address")
        if not self.gate.publisher.admits_new_work:
            return refusal(gate.count("defer", "spool_full", SPOOL_FULL), self.tempfail)
        sender: Address | None = None
        if request.get("sender"):
            try:
                sender = parse_address(request.get("sender"))
            except AddressError as exc:
                return gate.count(
                    "reject", "bad_sender", f"553 5.1.7 Sender address rejected: {exc.message}"
                )
        try:
            recipient = parse_address(request.get("recipient"))
        except AddressError as exc:
            return gate.count("reject", "bad_address", f"553 {exc.enhanced_status} {exc.message}")
        client = str(client_ip)
        outbound, refused = gate.outbound_tenant(client_ip, client, sender)
        if refused:
            return refused
        pending = self._transaction(request.get("instance"), client_ip, sender, outbound)
        if outbound is not None:
            if recipient.has_relay_hack:
                denied = relay_hack()
                return gate.count(denied.verdict.value, denied.reason, denied.reply)
            pending.outbound_recipients += 1
            inside = recipient.domain in outbound.domains
            gate.count("accept", "outbound_internal" if inside else "outbound", "")
            return accept()
        answer = await gate.inbound(client, recipient)
        if not answer.accepted:
            return refusal(answer.reply, self.tempfail)
        check = answer.check
        assert check is not None and check.tenant is not None
        if not check.targets:
            return refusal(gate.count("defer", "no_destination", NO_DESTINATION), self.tempfail)
        accepted = (check.tenant.tenant_id, recipient, check.catch_all)
        if all(r[1].display != recipient.display for r in pending.recipients):
            # Postfix asks again after a timed-out answer: one event per recipient still.
            pending.recipients.append(accepted)
        gate.count("accept", check.decision.reason, "")
        return accept()

    def _transaction(
        self,
        instance: str,
        client_ip: IPAddress,
        sender: Address | None,
        outbound: TenantConfig | None,
    ) -> Pending:
        pending = self._transactions.get(instance) if instance else None
        if pending is None:
            pending = Pending(client_ip, sender, outbound, self.node.clock.monotonic())
            if instance:
                self._transactions[instance] = pending
                self._forget_old(self._transactions, TRANSACTION_TTL_S)
        return pending

    async def _end_of_message(self, request: PolicyRequest) -> str:
        pending = self._transactions.pop(request.get("instance"), None)
        if pending is None or (not pending.recipients and pending.outbound_tenant is None):
            return dunno()  # nothing this service accepted (or it restarted meanwhile)
        size = _number(request.get("size"))
        count = _number(request.get("recipient_count")) or pending.outbound_recipients
        queue_id = request.get("queue_id")
        if pending.outbound_tenant is None and self.after_queue and queue_id:
            self._queued[queue_id] = Queued(pending, size, self.node.clock.monotonic())
            self._forget_old(self._queued, self.config.policy_verdict_wait_s)
            return dunno()
        events = self.gate.delivery_events(
            client_ip=pending.client_ip,
            message_id=queue_id or request.get("instance") or os.urandom(8).hex(),
            outbound_tenant=pending.outbound_tenant,
            sender=pending.sender,
            recipients=pending.recipients,
            verdict="clean",
            size=size,
            recipient_count=count,
        )
        try:
            await self.gate.publish(events)
        except SpoolFull:
            return refusal(SPOOL_FULL, self.tempfail)
        direction = "outbound" if pending.outbound_tenant is not None else "inbound"
        self.gate.inc(self.gate.metrics.messages, direction, "relayed")
        return dunno()

    async def _verdict_report(self, request: PolicyRequest) -> str:
        """The after-queue filter's verdict for a message Postfix queued (its ``queue_id``):
        the deliveries are published now, with that verdict."""
        verdict = request.get("verdict").lower()
        if verdict not in ("clean", "not_clean"):
            return "REJECT verdict must be clean or not_clean"
        queued = self._queued.pop(request.get("queue_id"), None)
        if queued is None:
            return "REJECT unknown queue_id (never queued here, or reported already)"
        pending = queued.pending
        events = self.gate.delivery_events(
            client_ip=pending.client_ip,
            message_id=request.get("queue_id"),
            outbound_tenant=None,
            sender=pending.sender,
            recipients=pending.recipients,
            verdict=verdict,
            size=queued.size,
            recipient_count=len(pending.recipients),
        )
        # The message is queued already: its events are kept even past the spool's soft limit.
        await self.gate.publish(events, admitted=True)
        self.gate.inc(self.gate.metrics.messages, "inbound", "relayed")
        return accept()

    def _forget_old(self, entries: OrderedDict[str, Any], ttl: float) -> None:
        horizon = self.node.clock.monotonic() - ttl
        while entries and (
            len(entries) > MAX_TRANSACTIONS or next(iter(entries.values())).since < horizon
        ):
            entries.popitem(last=False)

    # ---- socketmap ----------------------------------------------------------------------------

    async def _socketmap_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        netstrings = socketmap.NetstringReader()
        idle = self.config.policy_idle_timeout_s
        while True:
            try:
                data = await asyncio.wait_for(reader.read(65536), idle)
            except TimeoutError:
                return
            if not data:
                return
            try:
                requests = netstrings.feed(data)
            except socketmap.NetstringError as exc:
                log.warning("malformed socketmap request: %s", exc)
                writer.write(socketmap.perm(f"malformed request: {exc}"))
                await writer.drain()
                return
            for payload in requests:
                writer.write(socketmap.answer(payload, self.tenants, ready=self._ready))
            await writer.drain()


async def _read_request(reader: asyncio.StreamReader) -> PolicyRequest:
    """One request, read whole (one read, not one per line), then parsed."""
    try:
        block = await reader.readuntil(b"\n\n")
    except asyncio.LimitOverrunError:
        raise ProtocolError(f"request longer than {MAX_REQUEST_BYTES} bytes") from None
    return parse_block(block)


def _client_ip(request: PolicyRequest) -> IPAddress | None:
    try:
        return ipaddress.ip_address(request.get("client_address"))
    except ValueError:
        return None


def _number(text: str) -> int:
    return int(text) if text.isdigit() else 0


def _address(server: asyncio.Server) -> str:
    host, port = server.sockets[0].getsockname()[:2]
    return f"{host}:{port}"
