"""Where a tenant's mail goes: its registered destinations as an ordered list of hosts to try.

Callouts and relaying go only to these: a static host, or the MX hosts of a delivery domain the
tenant registered (never the MX of the recipient's domain as the Internet sees it, which would
loop back to us). Order: the destination's own priority first, then the MX preference.
MX answers are cached for their DNS TTL; when DNS fails, the last good answer is used.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import dns.asyncresolver
import dns.exception
import dns.resolver

from smtp_discovery.ingest.smtp_client import Target
from smtp_discovery.platform.clock import Clock, SystemClock
from smtp_discovery.schemas.tenant import TenantConfig

log = logging.getLogger("smtp_discovery.ingest")

MxAnswer = tuple[list[tuple[int, str]], float]
"""(preference, host) pairs and the seconds they may be cached."""
MxLookup = Callable[[str], Awaitable[MxAnswer]]

PRIORITY_SPAN = 1 << 16
"""MX preferences are 16-bit: a destination's priority weighs more than any preference."""
NEGATIVE_TTL_S = 60.0


class DnsMxLookup:
    """MX lookups with dnspython's asyncio resolver (the system's, or given nameservers)."""

    def __init__(self, resolver: dns.asyncresolver.Resolver | None = None) -> None:
        self.resolver = resolver or dns.asyncresolver.Resolver()

    async def __call__(self, domain: str) -> MxAnswer:
        try:
            answer = await self.resolver.resolve(domain, "MX")
        except dns.resolver.NoAnswer:
            # RFC 5321 5.1: no MX records, so the domain itself is the mail host.
            return [(0, domain)], NEGATIVE_TTL_S
        except dns.resolver.NXDOMAIN:
            return [], NEGATIVE_TTL_S
        hosts = [
            (record.preference, record.exchange.to_text(omit_final_dot=True)) for record in answer
        ]
        # RFC 7505 null MX ("0 ."): the domain accepts no mail.
        hosts = [(pref, host) for pref, host in hosts if host not in ("", ".")]
        ttl = float(answer.rrset.ttl) if answer.rrset is not None else NEGATIVE_TTL_S
        return hosts, ttl


class DestinationResolver:
    def __init__(self, lookup: MxLookup | None = None, clock: Clock | None = None) -> None:
        self.lookup = lookup or DnsMxLookup()
        self.clock: Clock = clock if clock is not None else SystemClock()
        self._mx: dict[str, tuple[float, list[tuple[int, str]]]] = {}

    async def targets(self, tenant: TenantConfig) -> list[Target]:
        """The tenant's hosts in the order to try them; empty when none can be found."""
        targets: set[Target] = set()
        for destination in tenant.destinations:
            base = destination.priority * PRIORITY_SPAN
            if destination.kind == "static":
                assert destination.host is not None
                targets.add(Target(base, destination.host, destination.port))
                continue
            assert destination.domain is not None
            for preference, host in await self._mx_hosts(destination.domain):
                targets.add(Target(base + preference, host, destination.port))
        return sorted(targets)

    async def _mx_hosts(self, domain: str) -> list[tuple[int, str]]:
        cached = self._mx.get(domain)
        if cached is not None and cached[0] > self.clock.monotonic():
            return cached[1]
        try:
            hosts, ttl = await self.lookup(domain)
        except (dns.exception.DNSException, OSError) as exc:
            log.warning("MX lookup for %s failed (%s)", domain, type(exc).__name__)
            return cached[1] if cached is not None else []
        self._mx[domain] = (self.clock.monotonic() + max(ttl, 1.0), hosts)
        return hosts
