"""Kafka goes away while mail flows: senders still get 250, and every event arrives once."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from smtp_discovery.localkafka import LocalKafka
from smtp_discovery.platform.config import RuntimeConfig
from smtp_discovery.schemas.mail import RecipientDelivered
from smtp_discovery.schemas.state import AddressStatus
from smtp_discovery.schemas.topics import MAIL_SETTLED
from tests.ingest.harness import running_ingest, state, tenant
from tests.ingest.postfix import PostfixServer
from tests.smtp_discovery.kafka_helpers import drain_for

pytestmark = pytest.mark.kafka

MESSAGE = b"Subject: during the outage\r\n\r\nStill delivered.\r\n"


async def test_events_wait_in_the_spool_while_kafka_is_down(
    tmp_path: Path, postfix_servers: dict[str, PostfixServer]
) -> None:
    """Its own broker: the session's must stay up for the other tests."""
    config = RuntimeConfig.from_env()
    kafka = LocalKafka(tmp_path / "kafka", cache_dir=config.kafka_cache_dir, heap=config.kafka_heap)
    bootstrap = await asyncio.to_thread(kafka.start)
    strict = postfix_servers["strict"]
    acme = tenant("acme", ["a.example"], strict.port)
    states = [state("acme", "alice@a.example", AddressStatus.USER)]
    before = len(strict.delivered("alice@a.example"))
    try:
        async with running_ingest(bootstrap, tmp_path / "node", [acme], states) as ingest:
            await asyncio.to_thread(kafka.stop)
            async with ingest.client() as smtp:
                for _ in range(3):
                    errors, reply = await smtp.sendmail(
                        "sender@outside.example", ["alice@a.example"], MESSAGE
                    )
                    assert errors == {} and reply.startswith("2"), reply
            assert ingest.node.spool.size_bytes > 0, "the events are on disk"
            await asyncio.to_thread(kafka.start)
            events = await ingest.events(3, timeout=60)
            assert [type(e) for e in events] == [RecipientDelivered] * 3
            assert len({e.event_id for e in events}) == 3
            topic = ingest.config.topics(MAIL_SETTLED)  # alice is a user
            assert len(await drain_for(bootstrap, topic, 2.0)) == 3, "each event exactly once"
            assert ingest.node.spool.size_bytes == 0
    finally:
        await asyncio.to_thread(kafka.stop)
    assert len(await strict.wait_delivered("alice@a.example", before + 3)) == before + 3
