"""The verification cache protects the tenant's server: callouts follow the positive-cache
lifetime, not the mail, however often the address's state is republished."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiosmtplib
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from smtp_discovery.ingest.node import IngestNode
from smtp_discovery.localkafka.node import free_port
from smtp_discovery.schemas.state import AddressStatus
from smtp_discovery.schemas.topics import ADDRESS_STATE
from tests.ingest.harness import Ingest, running_ingest, state, tenant

pytestmark = pytest.mark.kafka

ADDRESS = "alice@a.example"
MESSAGES = 2000
MESSAGE = b"Subject: again\r\n\r\nAnd again.\r\n"


class TenantServer:
    """The tenant's mail server, counting the verification probes it is asked for ``ADDRESS``
    (a probe's RCPT comes in a transaction that is reset, never one that sends DATA)."""

    def __init__(self) -> None:
        self.rcpts: dict[str, int] = {}
        self.delivered = 0

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        key = f"{envelope.mail_from}>{address.lower()}"
        self.rcpts[key] = self.rcpts.get(key, 0) + 1
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 Ok"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.delivered += 1
        return "250 2.0.0 Ok: queued"

    @property
    def probes(self) -> int:
        """RCPTs for ADDRESS that came from the probe sender (the null sender by default)."""
        return sum(self.rcpts.get(f"{null}>{ADDRESS}", 0) for null in ("", "<>"))


async def _mail(port: int, count: int, clients: int = 4) -> None:
    async def one_client(n: int) -> None:
        async with aiosmtplib.SMTP(hostname="127.0.0.1", port=port, timeout=30) as smtp:
            for _ in range(n):
                errors, reply = await smtp.sendmail("sender@outside.example", [ADDRESS], MESSAGE)
                assert errors == {} and reply.startswith("2"), reply

    await asyncio.gather(*(one_client(count // clients) for _ in range(clients)))


async def _republish(ingest: Ingest, count: int, status: AddressStatus) -> None:
    """What a worker that rewrites the address for every counted message puts on the topic."""
    await ingest.publish(ADDRESS_STATE, [state("acme", ADDRESS, status)] * count)


async def _until_seen(node: IngestNode, status: AddressStatus) -> None:
    deadline = asyncio.get_running_loop().time() + 30
    while node.states.status(f"acme:{ADDRESS}") is not status:
        assert asyncio.get_running_loop().time() < deadline, "the view did not catch up"
        await asyncio.sleep(0.05)


async def test_callouts_follow_the_cache_lifetime_not_the_mail(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    tenant_server = TenantServer()
    controller = Controller(tenant_server, hostname="127.0.0.1", port=free_port())
    controller.start()
    acme = tenant("acme", ["a.example"], controller.port)
    second: IngestNode | None = None
    try:
        async with running_ingest(kafka_bootstrap, tmp_path / "one", [acme]) as ingest:
            # Node one: the address is new, becomes pending, then discovered, and every message
            # is followed by a republished record of it.
            rounds = 10
            for i in range(rounds):
                await _mail(ingest.port, MESSAGES // rounds)
                status = AddressStatus.PENDING if i < 2 else AddressStatus.DISCOVERED
                await _republish(ingest, MESSAGES // rounds, status)
            await _until_seen(ingest.node, AddressStatus.DISCOVERED)
            await _mail(ingest.port, 4)
            assert 1 <= tenant_server.probes <= 2, tenant_server.rcpts
            one_node = tenant_server.probes

            # Node two, on the same topics: its own cache, so at most its own callouts.
            config: Any = ingest.config.model_copy(update={
                "ingest_node_id": "node-2", "data_dir": tmp_path / "two"})  # fmt: skip
            second = IngestNode(config, {"bootstrap_servers": kafka_bootstrap},
                                serve_metrics=False)  # fmt: skip
            await second.start()
            for _ in range(rounds):
                await _mail(second.port, MESSAGES // rounds)
                await _republish(ingest, MESSAGES // rounds, AddressStatus.DISCOVERED)
            assert tenant_server.probes - one_node <= 2, tenant_server.rcpts
    finally:
        if second is not None:
            await second.stop()
        controller.stop()
    assert tenant_server.delivered == 2 * MESSAGES + 4
