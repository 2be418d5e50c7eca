"""The RCPT decision as pure functions: what to answer for one recipient, before and after a
verification callout. No I/O: the SMTP handler asks the views and the prober, then these.

Replies carry RFC 3463 enhanced status codes. Relaying for unregistered domains is refused
always, monitor mode included: monitor mode only softens a tenant's own rejections.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum

from smtp_discovery.schemas.address import Address
from smtp_discovery.schemas.state import AddressStatus
from smtp_discovery.schemas.tenant import DiscoverySettings, TempfailPolicy


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


@dataclass(frozen=True, slots=True)
class ProbeReading:
    """What a destination's reply to the probe's RCPT says about the mailbox."""

    result: CalloutResult
    reason: str | None = None
    """Why a reply proves nothing: reply_4xx, probe_refused or reply_5xx."""


# Refusals of the probe's own form (its syntax, its order of commands), not of the mailbox.
_PROBE_REFUSED_CODES = frozenset({500, 501, 503, 555})
_MAILBOX_REFUSED_CODES = frozenset({550, 551, 553})


def read_rcpt_reply(code: int, text: str) -> ProbeReading:
    """Only a refusal of the mailbox means it does not exist; the table is in docs/ingest.md.

    A destination that cannot parse what we sent (an address form it does not take, a command
    it did not expect) says nothing about the mailbox: treating that as "user unknown" refused
    every user of an internationalised domain once. Such replies, and 5xx refusals for other
    reasons (policy, storage), are failed verifications: the next destination is tried, then
    the tenant's tempfail policy applies, and nothing is cached as missing.
    """
    if 200 <= code < 300:
        return ProbeReading(CalloutResult.EXISTS)
    if code < 500:
        return ProbeReading(CalloutResult.TEMPFAIL, "reply_4xx")
    enhanced = enhanced_status(text)
    if code in _PROBE_REFUSED_CODES or (
        enhanced is not None and (enhanced.startswith("5.5.") or enhanced == "5.1.3")
    ):
        return ProbeReading(CalloutResult.TEMPFAIL, "probe_refused")
    if enhanced is not None:
        if enhanced.startswith("5.1.") or enhanced == "5.2.1":
            return ProbeReading(CalloutResult.MISSING)
        return ProbeReading(CalloutResult.TEMPFAIL, "reply_5xx")
    if code in _MAILBOX_REFUSED_CODES:
        return ProbeReading(CalloutResult.MISSING)
    return ProbeReading(CalloutResult.TEMPFAIL, "reply_5xx")


def enhanced_status(text: str) -> str | None:
    """The RFC 3463 code a reply's text starts with (``5.1.1``), if it has one."""
    first = text.split(" ", 1)[0] if text else ""
    parts = first.split(".")
    if len(parts) == 3 and parts[0] in ("2", "4", "5") and all(p.isdigit() for p in parts):
        return first
    return None


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


ANSWERED_BY_CALLOUT = frozenset({None, AddressStatus.PENDING, AddressStatus.DISCOVERED})
"""Statuses whose RCPT decision is the destination's answer (``decide_rcpt`` says CALLOUT)."""


def verification_still_applies(old: AddressStatus | None, new: AddressStatus | None) -> bool:
    """Whether a cached callout answer survives a change of the address's status.

    The answer is about the mailbox at the destination, and the decision reads it only while
    the status leaves the RCPT to a callout. Moving between such statuses (new, pending,
    discovered, removed again) changes nothing the decision reads, so the answer stays and the
    tenant's server is not asked again; it is one callout per positive-cache lifetime and node.
    A status an admin or a settled state decided (user, alias, invalid ...) ends it: coming
    back from there deserves a fresh look.
    """
    return old in ANSWERED_BY_CALLOUT and new in ANSWERED_BY_CALLOUT


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
