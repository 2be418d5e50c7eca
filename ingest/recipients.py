"""Deciding one inbound recipient: the views, the verification cache, the callout, catch-all.

The pure policy (ingest.policy) says what to answer; this module gathers what it needs (the
tenant, the address's state, a cached or fresh callout) and the events the decision produced.
The SMTP handler adds what depends on the connection (harvest protection, relaying).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field

from smtp_discovery.ingest.cache import CatchAllTracker, VerificationCache
from smtp_discovery.ingest.callout import ProbeOutcome, Prober
from smtp_discovery.ingest.destinations import DestinationResolver
from smtp_discovery.ingest.policy import (
    CalloutResult,
    Decision,
    Verdict,
    after_callout,
    decide_rcpt,
    enhanced_status,
    relay_denied,
)
from smtp_discovery.ingest.smtp_client import Target
from smtp_discovery.ingest.state_view import AddressStateView
from smtp_discovery.platform.clock import Clock
from smtp_discovery.platform.views import TenantDirectory
from smtp_discovery.schemas.address import Address
from smtp_discovery.schemas.base import Message
from smtp_discovery.schemas.mail import (
    CalloutRejected,
    CalloutTempfailed,
    CalloutVerified,
    CatchAllChecked,
)
from smtp_discovery.schemas.tenant import DiscoverySettings, TenantConfig


@dataclass(slots=True)
class RecipientCheck:
    decision: Decision
    tenant: TenantConfig | None = None
    settings: DiscoverySettings | None = None
    targets: list[Target] = field(default_factory=list)
    events: list[Message] = field(default_factory=list)
    cache_hit: bool = False
    catch_all: bool = False
    probe: ProbeOutcome | None = None
    known: bool = False
    """The address has a state (the harvest guard counts tempfails only for unknown ones)."""


class RecipientChecker:
    def __init__(
        self,
        *,
        tenants: TenantDirectory,
        states: AddressStateView,
        cache: VerificationCache,
        catch_all: CatchAllTracker,
        prober: Prober,
        destinations: DestinationResolver,
        clock: Clock,
        node_id: str,
    ) -> None:
        self.tenants = tenants
        self.states = states
        self.cache = cache
        self.catch_all = catch_all
        self.prober = prober
        self.destinations = destinations
        self.clock = clock
        self.node_id = node_id

    async def check(self, address: Address) -> RecipientCheck:
        tenant = self.tenants.tenant_for_domain(address.domain)
        if tenant is None:
            return RecipientCheck(relay_denied())
        settings = self.tenants.settings(tenant.tenant_id)
        assert settings is not None
        if address.is_domain_literal:
            return RecipientCheck(relay_denied(settings.relay_denied_text))
        key = address.record_key(tenant.tenant_id)
        status = self.states.status(key)
        decision = decide_rcpt(address, settings, status)
        check = RecipientCheck(decision, tenant, settings, known=status is not None)
        if decision.verdict is not Verdict.CALLOUT and decision.verdict is not Verdict.ACCEPT:
            return check
        check.targets = await self.destinations.targets(tenant)
        if decision.verdict is Verdict.ACCEPT:
            return check
        epoch = tenant.verification_cache_epoch
        cached = self.cache.get(key, epoch)
        if cached is not None:
            check.cache_hit = True
            check.catch_all = self._is_catch_all(tenant, cached, check.targets)
            check.decision = after_callout(cached, settings, status)
            return check
        outcome = await self.prober.probe(
            check.targets,
            address.mailbox,
            settings.probe_sender,
            smtputf8=address.needs_smtputf8,
            timeouts=(settings.callout_connect_timeout_s, settings.callout_command_timeout_s),
        )
        check.probe = outcome
        if (
            outcome.result is CalloutResult.EXISTS
            and outcome.destination is not None
            and settings.catch_all_detection
            and self.catch_all.needs_check(_catch_all_key(tenant, outcome.destination))
        ):
            check.events.append(await self._check_catch_all(tenant, settings, address, check))
        check.catch_all = outcome.result is CalloutResult.EXISTS and self.catch_all.is_catch_all(
            _catch_all_key(tenant, outcome.destination)
        )
        if outcome.contacted:  # held back by the destination's guard: nothing was asked
            check.events.append(self._callout_event(tenant, address, outcome, check.catch_all))
            self.cache.put(key, outcome.result, settings, epoch)
        check.decision = after_callout(outcome.result, settings, status)
        return check

    def _is_catch_all(
        self, tenant: TenantConfig, result: CalloutResult, targets: list[Target]
    ) -> bool:
        return result is CalloutResult.EXISTS and any(
            self.catch_all.is_catch_all(_catch_all_key(tenant, target.name)) for target in targets
        )

    async def _check_catch_all(
        self,
        tenant: TenantConfig,
        settings: DiscoverySettings,
        address: Address,
        check: RecipientCheck,
    ) -> CatchAllChecked:
        """Ask the destination about a local part nobody has: accepting it proves nothing."""
        assert check.probe is not None and check.probe.destination is not None
        random_address = f"sd-probe-{secrets.token_hex(8)}@{address.domain}"
        answer = await self.prober.probe(
            [t for t in check.targets if t.name == check.probe.destination],
            random_address,
            settings.probe_sender,
            timeouts=(settings.callout_connect_timeout_s, settings.callout_command_timeout_s),
        )
        accepts = answer.result is CalloutResult.EXISTS
        if answer.result is not CalloutResult.TEMPFAIL:
            self.catch_all.record(_catch_all_key(tenant, check.probe.destination), accepts)
        return CatchAllChecked(
            tenant_id=tenant.tenant_id,
            address=random_address,
            event_time=self.clock.now(),
            node_id=self.node_id,
            destination=check.probe.destination,
            catch_all=accepts,
        )

    def _callout_event(
        self, tenant: TenantConfig, address: Address, outcome: ProbeOutcome, catch_all: bool
    ) -> Message:
        common = {
            "tenant_id": tenant.tenant_id,
            "address": address.display,
            "event_time": self.clock.now(),
            "node_id": self.node_id,
            "latency_ms": round(outcome.latency_ms, 3),
        }
        if outcome.result is CalloutResult.EXISTS:
            assert outcome.destination is not None and outcome.code is not None
            return CalloutVerified(
                **common,
                destination=outcome.destination,
                reply_code=outcome.code,
                catch_all=catch_all,
            )
        if outcome.result is CalloutResult.MISSING:
            assert outcome.destination is not None and outcome.code is not None
            return CalloutRejected(
                **common,
                destination=outcome.destination,
                reply_code=outcome.code,
                enhanced_status=enhanced_status(outcome.text),
                reply_text=outcome.text[:512],
            )
        return CalloutTempfailed(
            **common,
            destination=outcome.destination,
            reason=outcome.reason or "connect_failed",
            reply_code=outcome.code if outcome.code and 400 <= outcome.code < 500 else None,
        )


def _catch_all_key(tenant: TenantConfig, destination: str | None) -> str | None:
    return None if destination is None else f"{tenant.tenant_id} {destination}"
