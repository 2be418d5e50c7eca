"""The RCPT decision as pure functions: what to answer for one recipient, before and after a
verification callout. No I/O: the SMTP handler asks the views and the prober, then these.

Replies carry RFC 3463 enhanced status codes. Relaying for unregistered domains is refused
always, monitor mode included: monitor mode only softens a tenant's own rejections.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum

from schemas.address import Address
from schemas.state import AddressStatus
from schemas.tenant import DiscoverySettings, TempfailPolicy


class Verdict(StrEnum):
    ACCEPT = "accept"
    REJECT = "reject"
    DEFER = "defer"
    CALLOUT = "callout"


@dataclass(frozen=True, slots=True)
class Decision:
    verdict: Verdict
    code: int
    enhanced: str
    text: str
    reason: str
    """Short label for metrics and logs: why this answer."""
    monitored: bool = False
    """Monitor mode turned a rejection into this acceptance."""

    @property
    def reply(self) -> str:
        return f"{self.code} {self.enhanced} {self.text}"


class CalloutResult(StrEnum):
    EXISTS = "exists"
    MISSING = "missing"
    TEMPFAIL = "tempfail"


SETTLED = {
    AddressStatus.USER: "user",
    AddressStatus.FUNCTIONAL: "functional",
    AddressStatus.ALIAS: "alias",
}


def accept(reason: str) -> Decision:
    return Decision(Verdict.ACCEPT, 250, "2.1.5", "Recipient OK", reason)


def relay_denied(text: str = "Relaying denied") -> Decision:
    return Decision(Verdict.REJECT, 550, "5.7.1", text, "relay_denied")


def relay_hack() -> Decision:
    return Decision(
        Verdict.REJECT, 550, "5.7.1", "Relaying via %-hack or bang path denied", "relay_hack"
    )


def _tenant_reject(decision: Decision, settings: DiscoverySettings) -> Decision:
    if settings.monitor_mode:
        return replace(accept(decision.reason), monitored=True)
    return decision


def decide_rcpt(
    address: Address, settings: DiscoverySettings | None, status: AddressStatus | None
) -> Decision:
    """Before any callout. ``settings`` is None when no tenant registered the domain."""
    if settings is None:
        return relay_denied()
    if address.has_relay_hack:
        return relay_hack()
    if status in SETTLED:
        return accept(SETTLED[status])
    if status is AddressStatus.INVALID:
        return _tenant_reject(
            Decision(Verdict.REJECT, 550, "5.1.1", settings.invalid_ndr_text, "invalid"), settings
        )
    if not settings.discovery_enabled or settings.directory_sync_enabled:
        reason = "directory_sync" if settings.directory_sync_enabled else "discovery_off"
        return _tenant_reject(
            Decision(Verdict.REJECT, 550, "5.1.1", settings.unknown_recipient_text, reason),
            settings,
        )
    return Decision(Verdict.CALLOUT, 0, "", "", "callout")


def after_callout(
    result: CalloutResult, settings: DiscoverySettings, status: AddressStatus | None
) -> Decision:
    """The answer once the tenant's own server has spoken (or failed to)."""
    if result is CalloutResult.EXISTS:
        return accept("verified")
    if result is CalloutResult.MISSING:
        return _tenant_reject(
            Decision(Verdict.REJECT, 550, "5.1.1", settings.unknown_recipient_text, "unknown"),
            settings,
        )
    known = status in (AddressStatus.PENDING, AddressStatus.DISCOVERED)
    if settings.tempfail_policy is TempfailPolicy.ACCEPT_IF_KNOWN and known:
        return accept("tempfail_known")
    return Decision(
        Verdict.DEFER,
        451,
        "4.4.3",
        "Recipient verification temporarily unavailable, try again later",
        "tempfail",
    )
