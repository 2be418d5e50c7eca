"""A whole ingest node against real peers: Postfix as the tenants' servers, Kafka for events."""

from __future__ import annotations

from pathlib import Path

import pytest

from schemas.mail import (
    RecipientDelivered,
)
from schemas.state import AddressStatus
from tests.ingest.harness import running_ingest, state, tenant
from tests.ingest.postfix import PostfixServer

pytestmark = pytest.mark.kafka

MESSAGE = b"From: sender@outside.example\r\nSubject: hello\r\n\r\nHi.\r\n"


@pytest.fixture
def acme(postfix_servers: dict[str, PostfixServer]):  # type: ignore[no-untyped-def]
    return tenant("acme", ["a.example"], postfix_servers["strict"].port)


async def test_a_known_user_is_relayed_and_counted(
    kafka_bootstrap: str, tmp_path: Path, postfix_servers: dict[str, PostfixServer], acme
) -> None:
    strict = postfix_servers["strict"]
    before = len(strict.delivered("alice@a.example"))
    states = [state("acme", "alice@a.example", AddressStatus.USER)]
    async with running_ingest(kafka_bootstrap, tmp_path, [acme], states) as ingest:
        async with ingest.client() as smtp:
            errors, reply = await smtp.sendmail(
                "sender@outside.example", ["Alice@A.example"], MESSAGE
            )
        assert errors == {} and reply.startswith("2"), reply
        (event,) = await ingest.events(1)
        assert isinstance(event, RecipientDelivered)
        assert (event.tenant_id, event.address, event.verdict) == (
            "acme",
            "Alice@a.example",
            "clean",
        )
        assert (
            ingest.count(
                "smtp_discovery_ingest_rcpt_decisions_total", outcome="accept", reason="user"
            )
            == 1
        )
    delivered = await strict.wait_delivered("alice@a.example", before + 1)
    assert len(delivered) == before + 1
    assert b"by ingest.test (smtp-discovery) with ESMTP id" in delivered[-1]
