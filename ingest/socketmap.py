"""Postfix's socketmap lookup protocol and the two tables served from the tenants view.

A request is a netstring (``<length>:<bytes>,``) holding ``<map name> <key>``; the answer is a
netstring holding ``OK <value>``, ``NOTFOUND ``, ``TEMP <reason>``, ``TIMEOUT <reason>`` or
``PERM <reason>`` (socketmap_table(5)). Postfix keeps the connection for further lookups.

Two maps, read from the same tenants view the ingest node decides from, so a tenant registered
through the admin API is routable as soon as the view has its record (no ``postmap``, no
``postfix reload``):

- ``relay``, for ``relay_domains``: a tenant's domain answers ``OK <tenant id>``;
- ``transport``, for ``transport_maps``: a tenant's domain answers its first destination, as
  ``smtp:[host]:port`` (a static host: no MX lookup) or ``smtp:domain:port`` (the MX hosts of
  the tenant's delivery domain, as the ingest node resolves them).

Pure: bytes in, bytes out; ``ingest.policy_service`` does the I/O.
"""

from __future__ import annotations

from smtp_discovery.platform.views import TenantDirectory
from smtp_discovery.schemas.address import AddressError, normalize_domain
from smtp_discovery.schemas.tenant import TenantConfig

MAX_NETSTRING_BYTES = 100_000
"""Postfix's own limit for a socketmap reply; requests are a map name and one key."""

RELAY = "relay"
TRANSPORT = "transport"
MAPS = (RELAY, TRANSPORT)


class NetstringError(ValueError):
    """The bytes are not a netstring: the connection is out of step and is closed."""


class NetstringReader:
    """Cuts netstrings out of a byte stream as it arrives (a lookup may come in pieces)."""

    def __init__(self, limit: int = MAX_NETSTRING_BYTES) -> None:
        self.limit = limit
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        """The netstrings completed by ``data``; NetstringError for a broken one."""
        self._buffer += data
        out = []
        while True:
            colon = self._buffer.find(b":")
            if colon < 0:
                if len(self._buffer) > len(str(self.limit)):
                    raise NetstringError("netstring length has no ':' after it")
                if self._buffer and not self._buffer.isdigit():
                    raise NetstringError("netstring length is not a decimal number")
                return out
            digits = bytes(self._buffer[:colon])
            if not digits.isdigit() or (len(digits) > 1 and digits.startswith(b"0")):
                raise NetstringError("netstring length is not a decimal number")
            length = int(digits)
            if length > self.limit:
                raise NetstringError(f"netstring longer than {self.limit} bytes")
            end = colon + 1 + length
            if len(self._buffer) < end + 1:
                return out
            if self._buffer[end] != ord(","):
                raise NetstringError("netstring does not end with ','")
            out.append(bytes(self._buffer[colon + 1 : end]))
            del self._buffer[: end + 1]

    @property
    def pending(self) -> int:
        """Bytes held for a netstring not yet complete."""
        return len(self._buffer)


def netstring(payload: bytes) -> bytes:
    return b"%d:%s," % (len(payload), payload)


def found(value: str) -> bytes:
    return netstring(f"OK {value}".encode())


NOT_FOUND = netstring(b"NOTFOUND ")


def perm(reason: str) -> bytes:
    """A lookup that can never succeed as asked (Postfix logs it and treats it as an error)."""
    return netstring(f"PERM {reason}".encode())


def temp(reason: str) -> bytes:
    return netstring(f"TEMP {reason}".encode())


NO_DESTINATION = "retry:4.4.3 No delivery destination is configured for this domain"
"""A tenant without destinations: its mail waits in the queue. Not found would send it to the
domain's public MX, which is this gateway: a loop."""


def transport_of(tenant: TenantConfig) -> str | None:
    """The tenant's first destination (lowest priority number) as a Postfix nexthop."""
    if not tenant.destinations:
        return None
    first = min(tenant.destinations, key=lambda d: d.priority)
    if first.kind == "static":
        assert first.host is not None
        host = first.host
        bracketed = f"[{host}]" if ":" not in host else f"[ipv6:{host}]"
        return f"smtp:{bracketed}:{first.port}"
    assert first.domain is not None
    return f"smtp:{first.domain}:{first.port}"


def answer(request: bytes, tenants: TenantDirectory, *, ready: bool = True) -> bytes:
    """The reply to one lookup (the netstring's payload, ``<map> <key>``).

    Postfix asks a socketmap as it asks a regexp table: ``transport_maps`` with the whole
    recipient address only (``bob@example.com``, never the bare domain), ``relay_domains`` with
    the domain. So an address is answered for its domain; parent domains (``.example``) and the
    wildcard (``*``) are registered by no tenant and are not found. Before the tenants view is
    complete every lookup is TEMP: Postfix then defers rather than bounce mail for a tenant
    the view has not read yet.
    """
    try:
        text = request.decode("utf-8")
    except UnicodeDecodeError:
        return perm("request is not UTF-8")
    name, sep, key = text.partition(" ")
    if not sep or not key:
        return perm("request is not '<map name> <key>'")
    if name not in MAPS:
        return perm(f"no map named {name[:40]!r} (maps: {', '.join(MAPS)})")
    if not ready:
        return temp("the tenants view is still loading")
    domain = key.rpartition("@")[2]
    if not domain or domain.startswith((".", "[")) or domain == "*":
        return NOT_FOUND
    try:
        domain = normalize_domain(domain)
    except AddressError:
        return NOT_FOUND
    tenant = tenants.tenant_for_domain(domain)
    if tenant is None:
        return NOT_FOUND
    if name == RELAY:
        return found(tenant.tenant_id)
    return found(transport_of(tenant) or NO_DESTINATION)
