"""A tenant's destinations as hosts to try, with MX answers from a real (loopback) DNS server."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import dns.asyncresolver

from smtp_discovery.ingest.destinations import DestinationResolver, DnsMxLookup
from smtp_discovery.ingest.smtp_client import Target
from smtp_discovery.platform.clock import ManualClock
from smtp_discovery.schemas.tenant import Destination
from tests.ingest.dns_server import DnsServer
from tests.ingest.harness import tenant

T0 = datetime(2026, 1, 1, tzinfo=UTC)

ZONE = {
    "mail.acme.example": [(20, "mx2.acme.example"), (10, "mx1.acme.example")],
    "nomx.acme.example": [],
    "nullmx.acme.example": [(0, ".")],
}


def _lookup(server: DnsServer) -> DnsMxLookup:
    resolver = dns.asyncresolver.Resolver(configure=False)
    resolver.nameservers = ["127.0.0.1"]
    resolver.port = server.port
    resolver.lifetime = 2.0
    return DnsMxLookup(resolver)


def _acme(*destinations: Destination):  # type: ignore[no-untyped-def]
    return tenant("acme", ["a.example"], None).model_copy(update={"destinations": destinations})


async def test_static_hosts_come_before_mx_hosts_by_priority_then_preference() -> None:
    acme = _acme(
        Destination(kind="mx", domain="mail.acme.example", priority=20),
        Destination(host="10.0.0.5", port=2525, priority=10),
        Destination(host="10.0.0.9", priority=30),
    )
    async with DnsServer(ZONE) as dns_server:
        targets = await DestinationResolver(_lookup(dns_server)).targets(acme)
    assert [(t.host, t.port) for t in targets] == [
        ("10.0.0.5", 2525),
        ("mx1.acme.example", 25),
        ("mx2.acme.example", 25),
        ("10.0.0.9", 25),
    ]


async def test_no_mx_means_the_domain_itself_and_null_mx_means_nowhere() -> None:
    async with DnsServer(ZONE) as dns_server:
        resolver = DestinationResolver(_lookup(dns_server))
        implicit = await resolver.targets(_acme(Destination(kind="mx", domain="nomx.acme.example")))
        null = await resolver.targets(_acme(Destination(kind="mx", domain="nullmx.acme.example")))
        missing = await resolver.targets(_acme(Destination(kind="mx", domain="gone.acme.example")))
    assert [t.host for t in implicit] == ["nomx.acme.example"]
    assert (null, missing) == ([], [])


async def test_answers_are_cached_for_their_ttl_and_reused_when_dns_fails() -> None:
    clock = ManualClock(T0)
    acme = _acme(Destination(kind="mx", domain="mail.acme.example"))
    async with DnsServer(ZONE, ttl=60) as dns_server:
        resolver = DestinationResolver(_lookup(dns_server), clock=clock)
        first = await resolver.targets(acme)
        await resolver.targets(acme)
        assert dns_server.queries == ["mail.acme.example"], "the second answer came from cache"
        clock.set(T0 + timedelta(seconds=61))
        await resolver.targets(acme)
        assert len(dns_server.queries) == 2, "expired after the record's TTL"
    # The DNS server is gone now: the last good answer still serves.
    clock.set(T0 + timedelta(seconds=200))
    assert await resolver.targets(acme) == first
    assert first[0] == Target(first[0].priority, "mx1.acme.example", 25)
