"""A tiny authoritative DNS server on loopback UDP, so MX lookups run through dnspython's real
resolver and wire format instead of a stub."""

from __future__ import annotations

import asyncio
from typing import Any

import dns.flags
import dns.message
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

Zone = dict[str, list[tuple[int, str]] | None]
"""Domain -> MX records ([] = the name exists without MX; None = NXDOMAIN)."""


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, zone: Zone, ttl: int) -> None:
        self.zone = zone
        self.ttl = ttl
        self.queries: list[str] = []
        self.transport: Any = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        query = dns.message.from_wire(data)
        question = query.question[0]
        name = question.name.to_text(omit_final_dot=True).lower()
        self.queries.append(name)
        response = dns.message.make_response(query)
        response.flags |= dns.flags.AA
        records = self.zone.get(name, None)
        if name not in self.zone or records is None:
            response.set_rcode(dns.rcode.NXDOMAIN)
        elif records and question.rdtype == dns.rdatatype.MX:
            rrset = dns.rrset.from_text_list(
                question.name,
                self.ttl,
                dns.rdataclass.IN,
                dns.rdatatype.MX,
                [f"{pref} {host}." if host != "." else f"{pref} ." for pref, host in records],
            )
            response.answer.append(rrset)
        self.transport.sendto(response.to_wire(), addr)


class DnsServer:
    def __init__(self, zone: Zone, ttl: int = 300) -> None:
        self.protocol = _Protocol(zone, ttl)
        self.port = 0
        self._transport: Any = None

    @property
    def queries(self) -> list[str]:
        return self.protocol.queries

    async def __aenter__(self) -> DnsServer:
        loop = asyncio.get_running_loop()
        self._transport, _ = await loop.create_datagram_endpoint(
            lambda: self.protocol, local_addr=("127.0.0.1", 0)
        )
        self.port = self._transport.get_extra_info("sockname")[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._transport.close()
