"""A client cannot turn the ingest nodes into a weapon against a tenant's server that is down:
its guesses cost the server a handful of connection attempts, and the client is throttled."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiosmtplib
import pytest

from smtp_discovery.ingest.callout_guard import FAILURES_TO_OPEN
from smtp_discovery.platform.clock import ManualClock
from tests.ingest.harness import running_ingest, tenant

pytestmark = pytest.mark.kafka

GUESSES = 1000


class DeadServer:
    """A tenant's mail server that is down: it takes each connection and drops it at once."""

    def __init__(self) -> None:
        self.attempts = 0
        self.server: asyncio.Server | None = None

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._drop, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def _drop(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.attempts += 1
        writer.close()

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()


async def guess(port: int, count: int) -> dict[int, int]:
    """RCPTs for ``count`` addresses nobody has, from one client, reconnecting whenever the
    node closes the connection; how many got each reply code."""
    codes: dict[int, int] = {}
    sent = 0
    while sent < count:
        smtp = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, start_tls=False, timeout=30)
        await smtp.connect()
        await smtp.mail("guesser@outside.example")
        try:
            while sent < count:
                reply = await smtp.execute_command(f"RCPT TO:<guess{sent}@d.example>".encode())
                sent += 1
                codes[reply.code] = codes.get(reply.code, 0) + 1
                if reply.code == 421:
                    break
        finally:
            smtp.close()
    return codes


async def test_guesses_at_a_dead_server_cost_it_a_handful_of_connections(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    dead = DeadServer()
    port = await dead.start()
    frozen = ManualClock()  # no breaker backoff and no harvest window runs out during the test
    try:
        async with running_ingest(
            kafka_bootstrap, tmp_path, [tenant("dead", ["d.example"], port)],
            clock=frozen,
        ) as ingest:  # fmt: skip
            codes = await guess(ingest.port, GUESSES)
            held_back = ingest.count(
                "smtp_discovery_ingest_callouts_held_back_total", reason="destination_paused"
            )
            paused = ingest.count("smtp_discovery_ingest_destinations_paused")
    finally:
        await dead.stop()
    assert dead.attempts == FAILURES_TO_OPEN, codes
    limit = 20  # the tenant's dha_max_rejections (the vendor's default)
    # The first guesses get the tempfail policy's 451, and count as guesses: past the limit
    # the client is deferred (450), then disconnected (421) at every further attempt.
    assert codes.get(451) == limit, codes
    assert codes.get(450) == limit and codes.get(421) == GUESSES - 2 * limit, codes
    assert held_back == limit - FAILURES_TO_OPEN and paused == 1
