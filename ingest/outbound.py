"""Which tenant's outbound server a client IP belongs to.

Tenants register the IP ranges their own servers send from. Lookups happen on every connection,
so the ranges are indexed by prefix length: one dictionary probe per length in use, instead of a
scan over every tenant's ranges. The index rebuilds when the tenant directory changes.
"""

from __future__ import annotations

import ipaddress
import logging

from smtp_discovery.platform.views import TenantDirectory

log = logging.getLogger("smtp_discovery.ingest")

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class OutboundIndex:
    def __init__(self, tenants: TenantDirectory) -> None:
        self.tenants = tenants
        self._generation = -1
        self._by_length: dict[tuple[int, int], dict[int, str]] = {}

    def tenant_for_ip(self, ip: IPAddress) -> str | None:
        """The tenant whose outbound ranges contain ``ip`` (the most specific range wins)."""
        if self._generation != self.tenants.generation:
            self._rebuild()
        value = int(ip)
        bits = ip.max_prefixlen
        for (version, length), networks in self._by_length.items():
            if version != ip.version:
                continue
            masked = value >> (bits - length) << (bits - length) if length else 0
            owner = networks.get(masked)
            if owner is not None:
                return owner
        return None

    def _rebuild(self) -> None:
        index: dict[tuple[int, int], dict[int, str]] = {}
        for tenant in self.tenants.tenants.values():
            for network in tenant.outbound_ranges:
                bucket = index.setdefault((network.version, network.prefixlen), {})
                owner = bucket.setdefault(int(network.network_address), tenant.tenant_id)
                if owner != tenant.tenant_id:
                    log.warning(
                        "outbound range %s is registered by %s and %s; %s keeps it",
                        network,
                        owner,
                        tenant.tenant_id,
                        owner,
                    )
        # Longest prefixes first: the most specific registration decides.
        self._by_length = dict(sorted(index.items(), key=lambda item: -item[0][1]))
        self._generation = self.tenants.generation
