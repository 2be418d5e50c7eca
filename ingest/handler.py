"""The SMTP conversation: an aiosmtpd handler whose hooks answer MAIL, RCPT and DATA.

Inbound (a recipient in a registered domain): harvest protection, then the recipient decision
(views, cache, callout), then the recipient is opened on the destination and the destination's
reply is the client's. Outbound (a client in a tenant's outbound ranges, sending from one of its
domains): every recipient goes to the smarthost. DATA is relayed before it is answered, then the
events are published (Kafka or the durable spool) before the client hears 250.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from email.utils import format_datetime
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session
from prometheus_client import Counter

from smtp_discovery.ingest.dha import HarvestGuard
from smtp_discovery.ingest.events import EventPublisher
from smtp_discovery.ingest.gate import NO_DESTINATION, SPOOL_FULL, RecipientGate
from smtp_discovery.ingest.metrics import IngestMetrics
from smtp_discovery.ingest.outbound import IPAddress, OutboundIndex
from smtp_discovery.ingest.policy import relay_hack
from smtp_discovery.ingest.recipients import RecipientChecker
from smtp_discovery.ingest.relay import Downstream, Reply
from smtp_discovery.ingest.smtp_client import Target
from smtp_discovery.ingest.verdict import VerdictStep
from smtp_discovery.platform.clock import Clock
from smtp_discovery.platform.views import TenantDirectory
from smtp_discovery.schemas.address import Address, AddressError, parse_address
from smtp_discovery.schemas.base import AddressMessage
from smtp_discovery.schemas.tenant import TenantConfig
from smtp_discovery.schemas.topics import TopicNames

log = logging.getLogger("smtp_discovery.ingest")

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

INTERNAL_ERROR = "451 4.3.0 Temporary internal error, try again later"
TOO_MANY_RECIPIENTS = "452 4.5.3 Too many recipients"
OTHER_DESTINATION = "452 4.5.3 Recipient served by another destination, send it separately"
NO_SMARTHOST = "550 5.7.1 Outbound relaying is not available here"

DownstreamFactory = Callable[[list[Target]], Downstream]


@dataclass(slots=True)
class Connection:
    """What outlives a transaction: who the client is, and the relay conversation."""

    client_ip: IPAddress
    downstream: Downstream | None = None
    client: str = ""
    """``client_ip`` as text, made once (it is logged, keyed and written on every message)."""

    def __post_init__(self) -> None:
        self.client = str(self.client_ip)


@dataclass(slots=True)
class Transaction:
    id: str
    sender: str
    """As the client gave it; "" for the null sender."""
    smtputf8: bool
    mail_options: list[str]
    outbound_tenant: TenantConfig | None = None
    sender_address: Address | None = None
    recipients: list[tuple[str, Address, bool]] = field(default_factory=list)
    """(tenant id, address, catch-all destination) per accepted recipient."""

    def wire_form(self, raw: str, address: Address | None) -> str:
        """An address as the relay sends it on: as the client wrote it when the client asked
        for SMTPUTF8 (which the relay keeps, or refuses the mail), otherwise with its domain in
        A-labels: a server without SMTPUTF8 refuses a U-label domain as bad syntax."""
        if self.smtputf8 or address is None:
            return raw
        return address.mailbox


class IngestHandler:
    def __init__(
        self,
        *,
        checker: RecipientChecker,
        tenants: TenantDirectory,
        outbound: OutboundIndex,
        guard: HarvestGuard,
        publisher: EventPublisher,
        topics: TopicNames,
        verdict: VerdictStep,
        metrics: IngestMetrics,
        downstream: DownstreamFactory,
        smarthost: list[Target],
        hostname: str,
        node_id: str,
        clock: Clock,
        max_recipients: int,
        tarpit: Callable[[float], Awaitable[Any]] = asyncio.sleep,
        proxy_networks: Sequence[IPNetwork] = (),
    ) -> None:
        self.checker = checker
        self.tenants = tenants
        self.outbound = outbound
        self.guard = guard
        self.publisher = publisher
        self.verdict = verdict
        self.metrics = metrics
        self.downstream = downstream
        self.smarthost = smarthost
        self.hostname = hostname
        self.node_id = node_id
        self.clock = clock
        self.max_recipients = max_recipients
        self.tarpit = tarpit
        self.proxy_networks = tuple(proxy_networks)
        """Load balancers allowed to say who the client is (PROXY protocol)."""
        self.gate = RecipientGate(
            checker=checker,
            tenants=tenants,
            outbound=outbound,
            guard=guard,
            publisher=publisher,
            topics=topics,
            metrics=metrics,
            node_id=node_id,
            clock=clock,
            tarpit=tarpit,
        )
        """The decision and its events, shared with the Postfix policy service."""
        self._dated: tuple[int, str] = (-1, "")
        self._connections: dict[int, Connection] = {}

    # ---- connection ---------------------------------------------------------------------------

    async def handle_PROXY(
        self, server: SMTP, session: Session, envelope: Envelope, proxy: Any
    ) -> bool:
        """Behind a load balancer the PROXY header names the real client (aiosmtpd checked it)."""
        peer = ipaddress.ip_address(session.peer[0]) if session.peer else None
        if peer is None or not any(peer in network for network in self.proxy_networks):
            log.warning("PROXY header from an untrusted peer refused", extra={"peer": str(peer)})
            return False
        return bool(proxy and proxy.valid)

    def _connection(self, session: Session) -> Connection:
        connection = self._connections.get(id(session))
        if connection is None:
            proxied = session.proxy_data.src_addr if session.proxy_data is not None else None
            peer = proxied or (session.peer[0] if session.peer else "0.0.0.0")
            connection = Connection(ipaddress.ip_address(peer))
            self._connections[id(session)] = connection
            self.metrics.connections.inc()
        return connection

    async def session_closed(self, session: Session) -> None:
        connection = self._connections.pop(id(session), None)
        if connection is not None and connection.downstream is not None:
            await connection.downstream.close()

    # ---- MAIL ---------------------------------------------------------------------------------

    async def handle_MAIL(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        mail_options: list[str],
    ) -> str:
        connection = self._connection(session)
        if not self.publisher.admits_new_work:
            return SPOOL_FULL
        smtputf8 = "SMTPUTF8" in (option.upper() for option in mail_options)
        sender = "" if address == "<>" else address
        transaction = Transaction(os.urandom(8).hex(), sender, smtputf8, list(mail_options))
        if sender:
            try:
                transaction.sender_address = parse_address(sender, smtputf8=smtputf8)
            except AddressError as exc:
                return f"553 5.1.7 Sender address rejected: {exc.message}"
        tenant, refusal = self.gate.outbound_tenant(
            connection.client_ip, connection.client, transaction.sender_address
        )
        if refusal:
            return refusal
        transaction.outbound_tenant = tenant
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        envelope.transaction = transaction  # type: ignore[attr-defined]
        return "250 2.1.0 Sender OK"

    # ---- RCPT ---------------------------------------------------------------------------------

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        connection = self._connection(session)
        transaction: Transaction = envelope.transaction  # type: ignore[attr-defined]
        if len(envelope.rcpt_tos) >= self.max_recipients:
            return self._count("defer", "too_many_recipients", TOO_MANY_RECIPIENTS)
        try:
            recipient = parse_address(address, smtputf8=transaction.smtputf8)
        except AddressError as exc:
            return self._count("reject", "bad_address", f"553 {exc.enhanced_status} {exc.message}")
        if transaction.outbound_tenant is not None:
            return await self._outbound_rcpt(connection, transaction, envelope, address, recipient)
        return await self._inbound_rcpt(connection, transaction, envelope, address, recipient)

    async def _inbound_rcpt(
        self,
        connection: Connection,
        transaction: Transaction,
        envelope: Envelope,
        raw: str,
        recipient: Address,
    ) -> str:
        client_ip = connection.client
        answer = await self.gate.inbound(client_ip, recipient)
        if not answer.accepted:
            return answer.reply
        check = answer.check
        assert check is not None and check.tenant is not None
        decision = check.decision
        if not check.targets:
            return self._count("defer", "no_destination", NO_DESTINATION)
        reply = await self._open_recipient(
            connection, transaction, envelope, check.targets, raw, recipient
        )
        if reply.ok:
            envelope.rcpt_tos.append(raw)
            transaction.recipients.append((check.tenant.tenant_id, recipient, check.catch_all))
        elif reply.code >= 500:
            self.gate.destination_refused(client_ip, check)
        outcome = "accept" if reply.ok else "defer" if reply.code < 500 else "reject"
        reason = decision.reason if reply.ok else "destination_refused"
        return self._count(outcome, reason, reply.line)

    async def _outbound_rcpt(
        self,
        connection: Connection,
        transaction: Transaction,
        envelope: Envelope,
        raw: str,
        recipient: Address,
    ) -> str:
        if recipient.has_relay_hack:
            refusal = relay_hack()
            return self._count(refusal.verdict.value, refusal.reason, refusal.reply)
        tenant = transaction.outbound_tenant
        assert tenant is not None
        if recipient.domain in tenant.domains:
            # Internal mail (the tenant's server writing to its own domains) goes back to the
            # tenant's own destination; everything else leaves through the smarthost.
            targets = await self.checker.destinations.targets(tenant)
            reason = "outbound_internal"
        else:
            targets, reason = self.smarthost, "outbound"
        if not targets:
            return self._count("reject", "no_smarthost", NO_SMARTHOST)
        reply = await self._open_recipient(
            connection, transaction, envelope, targets, raw, recipient
        )
        if reply.ok:
            envelope.rcpt_tos.append(raw)
        return self._count("accept" if reply.ok else "reject", reason, reply.line)

    async def _open_recipient(
        self,
        connection: Connection,
        transaction: Transaction,
        envelope: Envelope,
        targets: list[Target],
        raw: str,
        recipient: Address,
    ) -> Reply:
        """RCPT on the relay conversation, opening the conversation (MAIL) when it is new.

        One destination per transaction, so that the destination's answer to DATA is the
        answer for every recipient: a recipient elsewhere gets 452 and is sent again later."""
        downstream = connection.downstream
        if downstream is not None and downstream.targets != tuple(sorted(targets)):
            if envelope.rcpt_tos:
                return Reply(452, OTHER_DESTINATION.removeprefix("452 "))
            await downstream.close()
            downstream = None
        if downstream is None:
            downstream = connection.downstream = self.downstream(targets)
        if downstream.owner != transaction.id:
            began = await downstream.begin(
                transaction.wire_form(transaction.sender, transaction.sender_address),
                transaction.mail_options,
                owner=transaction.id,
            )
            if not began.ok:
                return began
        return await downstream.rcpt(transaction.wire_form(raw, recipient))

    # ---- DATA ---------------------------------------------------------------------------------

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        connection = self._connection(session)
        transaction: Transaction = envelope.transaction  # type: ignore[attr-defined]
        downstream = connection.downstream
        assert downstream is not None and downstream.owner == transaction.id
        content = envelope.original_content or b""
        direction = "outbound" if transaction.outbound_tenant is not None else "inbound"
        verdict = self.verdict(content) if direction == "inbound" else "clean"
        received = self._received_header(session, transaction, envelope)
        reply = await downstream.data(received + content)
        if not reply.ok:
            self.metrics.messages.labels(direction, "refused").inc()
            return reply.line
        events = self._delivery_events(
            connection, transaction, verdict, len(content), len(envelope.rcpt_tos)
        )
        try:
            # Delivered already: these events must be kept, even past the spool's soft limit.
            await self._publish(events, admitted=True)
        except Exception:
            log.exception("events of a delivered message could not be stored")
            raise
        self._inc(self.metrics.messages, direction, "relayed")
        log.info(
            "message relayed",
            extra={
                "transaction": transaction.id,
                "client_ip": connection.client,
                "direction": direction,
                "recipients": len(envelope.rcpt_tos),
                "size": len(content),
                "verdict": verdict,
                "destination": downstream.target.name if downstream.target else "",
            },
        )
        return reply.line

    def _delivery_events(
        self,
        connection: Connection,
        transaction: Transaction,
        verdict: str,
        size: int,
        recipients: int,
    ) -> list[tuple[AddressMessage, str]]:
        """The message's events, each with its topic (``schemas.topics.mail_route``)."""
        return self.gate.delivery_events(
            client_ip=connection.client_ip,
            message_id=transaction.id,
            outbound_tenant=transaction.outbound_tenant,
            sender=transaction.sender_address,
            recipients=transaction.recipients,
            verdict=verdict,
            size=size,
            recipient_count=recipients,
        )

    def _received_header(
        self, session: Session, transaction: Transaction, envelope: Envelope
    ) -> bytes:
        connection = self._connection(session)
        helo = (session.host_name or "unknown").replace("\r", "").replace("\n", "")[:255]
        protocol = "ESMTPS" if session.ssl else "ESMTP" if session.extended_smtp else "SMTP"
        recipient = f"\r\n\tfor <{envelope.rcpt_tos[0]}>" if len(envelope.rcpt_tos) == 1 else ""
        line = (
            f"Received: from {helo} ([{connection.client}])\r\n\tby {self.hostname} "
            f"(smtp-discovery) with {protocol} id {transaction.id}{recipient};\r\n\t"
            f"{self._date()}\r\n"
        )
        return line.encode("utf-8", "replace")

    # ---- RSET, errors -------------------------------------------------------------------------

    async def handle_RSET(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        connection = self._connection(session)
        if connection.downstream is not None and connection.downstream.owner is not None:
            await connection.downstream.reset()
        return "250 2.0.0 OK"

    async def handle_exception(self, error: Exception) -> str:
        log.error("SMTP session failed: %s", type(error).__name__, exc_info=error)
        return INTERNAL_ERROR

    # ---- helpers ------------------------------------------------------------------------------

    async def _publish(
        self, events: list[tuple[AddressMessage, str]], *, admitted: bool = False
    ) -> None:
        await self.gate.publish(events, admitted=admitted)

    def _count(self, outcome: str, reason: str, reply: str) -> str:
        return self.gate.count(outcome, reason, reply)

    def _inc(self, counter: Counter, *labels: str, by: float = 1) -> None:
        self.gate.inc(counter, *labels, by=by)

    def _date(self) -> str:
        """The Received header's date, formatted once a second."""
        now = self.clock.now()
        second = int(now.timestamp())
        if second != self._dated[0]:
            self._dated = (second, format_datetime(now))
        return self._dated[1]
