"""A batch through the processor: later messages see earlier ones, each changed key is written
once, and only after every output of the batch was acknowledged."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, MutableMapping
from datetime import timedelta
from typing import Any

from smtp_discovery.platform.views import TenantDirectory
from smtp_discovery.schemas.codec import encode
from smtp_discovery.schemas.tenant import TenantConfig
from smtp_discovery.schemas.topics import ADDRESS_STATE, MAIL, STATE_CHANGES
from smtp_discovery.streams.clock import EventTimeClock
from smtp_discovery.streams.due import DueIndex
from smtp_discovery.streams.processor import Incoming, Processor
from smtp_discovery.streams.rules import Policy
from smtp_discovery.streams.store import GroupStore
from tests.streams.world import T0, World


class Recording(MutableMapping[str, bytes]):
    """A table that logs its writes into a shared journal."""

    def __init__(self, name: str, journal: list[tuple[str, str]]) -> None:
        self.name, self.journal, self.data = name, journal, {}

    def __getitem__(self, key: str) -> bytes:
        return self.data[key]

    def __setitem__(self, key: str, value: bytes) -> None:
        self.journal.append((f"write {self.name}", key))
        self.data[key] = value

    def __delitem__(self, key: str) -> None:
        self.journal.append((f"delete {self.name}", key))
        del self.data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.data)

    def __len__(self) -> int:
        return len(self.data)


async def test_a_batch_writes_each_changed_key_once_after_its_outputs_are_acknowledged() -> None:
    world = World()
    tenant = TenantConfig(**{**world.config.model_dump(), "settings": {"discovery_enabled": True}})
    directory = TenantDirectory()
    directory.apply(tenant.kafka_key(), encode(tenant))
    journal: list[tuple[str, str]] = []
    acks: list[asyncio.Future[None]] = []
    all_sent = asyncio.Event()

    async def send(topic: str, key: bytes | None, value: bytes | None, partition: Any) -> Any:
        journal.append((f"send {topic}", (key or b"").decode()))
        acks.append(asyncio.get_running_loop().create_future())
        if len(acks) == 4:  # pending and its transition, discovered and its transition
            all_sent.set()
        return acks[-1]

    store = GroupStore(Recording("records", journal), Recording("groups", journal))
    processor = Processor(
        store=store,
        directory=directory,
        clock=EventTimeClock(),
        send=send,
        due=DueIndex(Policy(), 4),
        policy=Policy(),
    )
    minute = timedelta(minutes=1)
    messages = [world.verified("alice@a.example")]
    messages += [world.delivered("alice@a.example", T0 + i * minute) for i in range(1, 4)]
    batch = [
        Incoming(MAIL, 0, offset, m.kafka_key(), encode(m)) for offset, m in enumerate(messages)
    ]
    handled = asyncio.ensure_future(processor.handle_batch(batch))
    await asyncio.wait_for(all_sent.wait(), 5)
    await asyncio.sleep(0)  # let the batch run on if it were not waiting for the acks
    assert not any(entry[0].startswith("write") for entry in journal), "written before acked"
    for ack in acks:
        ack.set_result(None)
    await handled
    assert journal == [
        (f"send {ADDRESS_STATE}", "acme:alice@a.example"),
        (f"send {STATE_CHANGES}", "acme:alice"),
        (f"send {ADDRESS_STATE}", "acme:alice@a.example"),
        (f"send {STATE_CHANGES}", "acme:alice"),
        ("write records", "acme:alice@a.example"),
        ("write groups", "acme:alice"),
    ]
    assert store.load("acme:alice")["acme:alice@a.example"].status == "discovered"
    assert processor.counts["applied"] == 4
