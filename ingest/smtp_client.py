"""Opening an SMTP client conversation with a tenant's destination: one way for callouts and
for relaying, so both speak to the tenant's server the same way.

EHLO, then STARTTLS whenever the server offers it, then EHLO again. Tenants' servers often
present self-signed certificates, so the channel is encrypted but the certificate is not
verified (opportunistic TLS, as MTAs do between each other).
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass

import aiosmtplib


@dataclass(frozen=True, slots=True, order=True)
class Target:
    """One host to try, lower priority first (static priority, then MX preference)."""

    priority: int
    host: str
    port: int = 25

    @property
    def name(self) -> str:
        return f"{self.host}:{self.port}"


def opportunistic_tls() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


async def open_client(
    target: Target,
    *,
    helo_name: str,
    tls: ssl.SSLContext,
    connect_timeout: float,
    command_timeout: float,
) -> aiosmtplib.SMTP:
    """A connected, greeted client (TLS when offered); raises what aiosmtplib raises."""
    client = aiosmtplib.SMTP(
        hostname=target.host,
        port=target.port,
        local_hostname=helo_name,
        timeout=connect_timeout,
        start_tls=False,
        tls_context=tls,
    )
    await client.connect()
    try:
        await client.ehlo(timeout=command_timeout)
        if client.supports_extension("starttls"):
            await client.starttls(tls_context=tls, timeout=command_timeout)
            await client.ehlo(timeout=command_timeout)
    except BaseException:
        client.close()
        raise
    return client
