"""Client IP -> tenant through the outbound ranges index."""

from __future__ import annotations

import ipaddress

from smtp_discovery.ingest.outbound import OutboundIndex
from smtp_discovery.platform.views import TenantDirectory
from smtp_discovery.schemas.codec import encode
from tests.ingest.harness import tenant


def _directory(*tenants) -> TenantDirectory:  # type: ignore[no-untyped-def]
    directory = TenantDirectory()
    for config in tenants:
        directory.apply(config.kafka_key(), encode(config))
    return directory


def test_the_most_specific_range_wins_and_versions_do_not_mix() -> None:
    net = ipaddress.ip_network
    directory = _directory(
        tenant("big", ["big.example"], None, outbound_ranges=(net("198.51.100.0/24"),)),
        tenant("small", ["small.example"], None, outbound_ranges=(net("198.51.100.64/28"),)),
        tenant("six", ["six.example"], None, outbound_ranges=(net("2001:db8::/48"),)),
    )
    index = OutboundIndex(directory)
    ip = ipaddress.ip_address
    assert index.tenant_for_ip(ip("198.51.100.70")) == "small"
    assert index.tenant_for_ip(ip("198.51.100.1")) == "big"
    assert index.tenant_for_ip(ip("2001:db8::25")) == "six"
    assert index.tenant_for_ip(ip("192.0.2.1")) is None
    assert index.tenant_for_ip(ip("::ffff:198.51.100.70")) is None


def test_the_index_follows_changes_of_the_directory() -> None:
    directory = _directory(tenant("acme", ["a.example"], None))
    index = OutboundIndex(directory)
    assert index.tenant_for_ip(ipaddress.ip_address("203.0.113.9")) is None
    moved = tenant(
        "acme", ["a.example"], None, outbound_ranges=(ipaddress.ip_network("203.0.113.0/24"),)
    )
    directory.apply(moved.kafka_key(), encode(moved))
    assert index.tenant_for_ip(ipaddress.ip_address("203.0.113.9")) == "acme"
