"""The recipient decision with its side effects, shared by the two front ends that take mail:
the SMTP ingest node (``ingest.handler``) and the Postfix policy service
(``ingest.policy_service``).

Both must answer a recipient the same way and leave the same trace: harvest protection keyed on
the client's address, the views and the verification cache (``ingest.recipients``), the callout
events published (Kafka, or the spool while Kafka is away), the harvest guard fed with what a
guesser collects, the metrics counted. What differs is only what happens after an acceptance:
the ingest node opens the recipient on the destination, Postfix queues the mail and relays it
itself. So this module stops at the decision, and builds the delivery events both publish.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from prometheus_client import Counter

from smtp_discovery.ingest.dha import Action, HarvestGuard
from smtp_discovery.ingest.events import EventPublisher
from smtp_discovery.ingest.metrics import IngestMetrics
from smtp_discovery.ingest.outbound import IPAddress, OutboundIndex
from smtp_discovery.ingest.policy import Verdict
from smtp_discovery.ingest.recipients import RecipientCheck, RecipientChecker
from smtp_discovery.ingest.spool import SpoolFull, SpoolRecord
from smtp_discovery.platform.clock import Clock
from smtp_discovery.platform.views import TenantDirectory
from smtp_discovery.schemas.address import Address
from smtp_discovery.schemas.base import AddressMessage
from smtp_discovery.schemas.codec import encode
from smtp_discovery.schemas.mail import OutboundSent, RecipientDelivered
from smtp_discovery.schemas.tenant import TenantConfig
from smtp_discovery.schemas.topics import MAIL, MAIL_SETTLED, TopicNames, mail_route

log = logging.getLogger("smtp_discovery.ingest")

SPOOL_FULL = "451 4.3.1 Insufficient system storage, try again later"
NO_DESTINATION = "451 4.4.3 No delivery destination is configured for this recipient"
SENDER_REFUSED = "550 5.7.1 Sender address not allowed from this IP address"

Accepted = tuple[str, Address, bool]
"""(tenant id, address, catch-all destination) of one accepted recipient."""


@dataclass(frozen=True, slots=True)
class GateAnswer:
    """The inbound decision for one recipient. ``reply`` is the SMTP reply of a refusal or a
    deferral (already counted); empty when the recipient is accepted (``check`` then says for
    which tenant, to which destinations, and whether the destination is a catch-all)."""

    reply: str
    check: RecipientCheck | None = None

    @property
    def accepted(self) -> bool:
        return not self.reply and self.check is not None


class RecipientGate:
    def __init__(
        self,
        *,
        checker: RecipientChecker,
        tenants: TenantDirectory,
        outbound: OutboundIndex,
        guard: HarvestGuard,
        publisher: EventPublisher,
        topics: TopicNames,
        metrics: IngestMetrics,
        node_id: str,
        clock: Clock,
        tarpit: Callable[[float], Awaitable[Any]],
    ) -> None:
        self.checker = checker
        self.tenants = tenants
        self.outbound = outbound
        self.guard = guard
        self.publisher = publisher
        self.topics = {base: topics(base) for base in (MAIL, MAIL_SETTLED)}
        self.metrics = metrics
        self.node_id = node_id
        self.clock = clock
        self.tarpit = tarpit
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}

    # ---- outbound -----------------------------------------------------------------------------

    def outbound_tenant(
        self, client_ip: IPAddress, client: str, sender: Address | None
    ) -> tuple[TenantConfig | None, str]:
        """The tenant whose outbound server ``client_ip`` is, and a refusal when the sender is
        not one of its domains (an outbound range is no licence to send as anyone): (None, "")
        for a client that is no tenant's server."""
        owner = self.outbound.tenant_for_ip(client_ip)
        if owner is None:
            return None, ""
        tenant = self.tenants.tenant(owner)
        if tenant is None or sender is None or sender.domain not in tenant.domains:
            self.metrics.messages.labels("outbound", "refused").inc()
            log.info("outbound sender refused", extra={"client_ip": client, "tenant": owner})
            return None, SENDER_REFUSED
        return tenant, ""

    # ---- inbound ------------------------------------------------------------------------------

    async def inbound(self, client_ip: str, recipient: Address) -> GateAnswer:
        """Harvest protection, then the recipient decision (views, cache, callout); the
        callout's events published before the answer."""
        tenant = self.tenants.tenant_for_domain(recipient.domain)
        settings = self.tenants.settings(tenant.tenant_id) if tenant else None
        if tenant is not None and settings is not None:
            verdict = self.guard.check(client_ip, tenant.tenant_id, settings)
            if verdict.action is not Action.ALLOW:
                # A deferred guess is still a guess: it counts, so persistence ends in 421.
                self.guard.rejected(client_ip, tenant.tenant_id, settings)
                log.warning(
                    "directory harvest suspected",
                    extra={"client_ip": client_ip, "tenant": tenant.tenant_id},
                )
                await self.tarpit(verdict.delay_s)
                return GateAnswer(self.count("defer", f"dha_{verdict.action.value}", verdict.reply))
        check = await self.checker.check(recipient)
        if check.cache_hit or check.probe is not None:
            self.inc(self.metrics.cache, "hit" if check.cache_hit else "miss")
        if check.probe is not None:
            self.metrics.callout_latency.labels(check.probe.result.value).observe(
                check.probe.latency_ms / 1000
            )
        if check.events:
            try:
                await self.publish([(event, MAIL) for event in check.events])
            except SpoolFull:
                return GateAnswer(self.count("defer", "spool_full", SPOOL_FULL), check)
        decision = check.decision
        if decision.verdict is not Verdict.ACCEPT:
            # A refusal, or a tempfail for an address nobody knows, is what a guesser collects
            # (a tempfail counted nothing before: a dead tenant server made guessing free).
            guessed = decision.code >= 500 or (
                decision.verdict is Verdict.DEFER and decision.reason == "tempfail"
                and not check.known
            )  # fmt: skip
            if guessed and check.tenant is not None and check.settings is not None:
                self.guard.rejected(client_ip, check.tenant.tenant_id, check.settings)
            return GateAnswer(
                self.count(decision.verdict.value, decision.reason, decision.reply), check
            )
        if decision.monitored:
            log.info(
                "monitor mode: would reject",
                extra={"tenant": tenant.tenant_id if tenant else "", "reason": decision.reason},
            )
        assert check.tenant is not None
        return GateAnswer("", check)

    def destination_refused(self, client_ip: str, check: RecipientCheck) -> None:
        """The destination refused a recipient the decision accepted: a guess all the same."""
        if check.tenant is not None and check.settings is not None:
            self.guard.rejected(client_ip, check.tenant.tenant_id, check.settings)

    # ---- events -------------------------------------------------------------------------------

    def delivery_events(
        self,
        *,
        client_ip: IPAddress,
        message_id: str,
        outbound_tenant: TenantConfig | None,
        sender: Address | None,
        recipients: list[Accepted],
        verdict: str,
        size: int,
        recipient_count: int,
    ) -> list[tuple[AddressMessage, str]]:
        """A message's events, each with its topic (``schemas.topics.mail_route``): one
        OutboundSent for a tenant's own outbound mail, else one RecipientDelivered per
        accepted recipient."""
        now = self.clock.now()
        status = self.checker.states.status
        if outbound_tenant is not None:
            assert sender is not None
            tenant_id = outbound_tenant.tenant_id
            event = OutboundSent(
                tenant_id=tenant_id,
                address=sender.display,
                event_time=now,
                node_id=self.node_id,
                message_id=message_id,
                client_ip=client_ip,
                recipient_count=max(1, recipient_count),
            )
            return [(event, mail_route(event, status(sender.record_key(tenant_id))))]
        out: list[tuple[AddressMessage, str]] = []
        for tenant_id, address, catch_all in recipients:
            event = RecipientDelivered(
                tenant_id=tenant_id,
                address=address.display,
                event_time=now,
                node_id=self.node_id,
                verdict=verdict,  # type: ignore[arg-type]
                message_id=message_id,
                client_ip=client_ip,
                size=size,
                catch_all=catch_all,
            )
            out.append((event, mail_route(event, status(address.record_key(tenant_id)))))
        return out

    async def publish(
        self, events: list[tuple[AddressMessage, str]], *, admitted: bool = False
    ) -> None:
        """Publish (event, base topic) pairs: to Kafka, or to the spool while Kafka is away."""
        records = [SpoolRecord(self.topics[t], e.kafka_key(), encode(e)) for e, t in events]
        for _event, route in events:
            self.inc(self.metrics.routed, route)
        spooled_before = self.publisher.spooled
        await self.publisher.publish(records, admitted=admitted)
        spooled = self.publisher.spooled - spooled_before
        if spooled:
            self.inc(self.metrics.events, "spool", by=spooled)
        if len(records) > spooled:
            self.inc(self.metrics.events, "kafka", by=len(records) - spooled)

    # ---- metrics ------------------------------------------------------------------------------

    def count(self, outcome: str, reason: str, reply: str) -> str:
        self.inc(self.metrics.rcpt, outcome, reason)
        return reply

    def inc(self, counter: Counter, *labels: str, by: float = 1) -> None:
        """``counter.labels(*labels).inc(by)``, with the labelled child looked up once: a few
        of these per message, and prometheus_client's lookup takes a lock and validates."""
        key = (id(counter), labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = counter.labels(*labels)
        child.inc(by)
