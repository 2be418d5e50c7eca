"""A batch through the processor: later messages see earlier ones, each changed key is written
once, and only after every output of the batch was acknowledged."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, MutableMapping, Sequence
from datetime import timedelta
from typing import Any

from smtp_discovery.platform.views import TenantDirectory
from smtp_discovery.schemas.codec import decode, encode
from smtp_discovery.schemas.commands import EraseAddress, Tick
from smtp_discovery.schemas.tenant import TenantConfig
from smtp_discovery.schemas.topics import ADDRESS_STATE, COMMANDS, MAIL, STATE_CHANGES
from smtp_discovery.streams.clock import EventTimeClock
from smtp_discovery.streams.due import DueIndex
from smtp_discovery.streams.processor import Incoming, Output, Processor
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
    acked: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    all_sent = asyncio.Event()

    async def send(outputs: Sequence[Output]) -> None:
        journal.extend((f"send {topic}", (key or b"").decode()) for topic, key, _, _ in outputs)
        all_sent.set()
        await acked

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
    acked.set_result(None)
    await handled
    assert journal == [
        (f"send {ADDRESS_STATE}", "acme:alice@a.example"),
        (f"send {STATE_CHANGES}", "acme:alice"),
        (f"send {ADDRESS_STATE}", "acme:alice@a.example"),
        (f"send {STATE_CHANGES}", "acme:alice"),
        ("write groups", "acme:alice"),  # a group of one: its record, inline, one write
    ]
    assert store.load("acme:alice")["acme:alice@a.example"].status == "discovered"
    assert processor.counts["applied"] == 4


def _processor(
    world: World, tables: dict[str, Recording], sent: list[tuple[str, Any]]
) -> Processor:
    tenant = TenantConfig(**{**world.config.model_dump(), "settings": {"discovery_enabled": True}})
    directory = TenantDirectory()
    directory.apply(tenant.kafka_key(), encode(tenant))

    async def send(outputs: Sequence[Output]) -> None:
        sent.extend((topic, value) for topic, _, value, _ in outputs)

    store = GroupStore(tables["records"], tables["groups"], tables["journal"])
    return Processor(
        store=store,
        directory=directory,
        clock=EventTimeClock(),
        send=send,
        due=DueIndex(Policy(), 4),
        policy=Policy(),
    )


async def test_a_late_message_is_put_in_its_event_time_place_across_batches() -> None:
    """Each message its own batch (as after a restart, nothing cached but the tables): a
    refusal of day 0.2 arriving after clean mail of days 0.1 and 0.3 gives the event-time
    outcome (removed, then made pending again by day 0.3's delivery); each batch writes the
    journal's new messages alone, its base only when it starts; its expiry tick drops it."""
    world = World()
    writes: list[tuple[str, str]] = []
    tables = {name: Recording(name, writes) for name in ("records", "groups", "journal")}
    sent: list[tuple[str, Any]] = []
    processor = _processor(world, tables, sent)
    day = timedelta(days=1)
    address = "alice@a.example"
    messages = [
        world.verified(address, T0),
        world.delivered(address, T0 + 0.1 * day),
        world.delivered(address, T0 + 0.3 * day),
        world.rejected(address, T0 + 0.2 * day),
    ]
    for offset, message in enumerate(messages):
        processor.store.forget()
        await processor.handle_batch(
            [Incoming(MAIL, 0, offset, message.kafka_key(), encode(message))]
        )
    record = processor.store.load("acme:alice")["acme:alice@a.example"]
    assert record.status == "pending"
    assert record.clean_by_day == {(T0 + 0.3 * day).date(): 1}
    # Appending writes the message alone; the late one renumbers the messages after its place.
    assert [key for op, key in writes if op == "write journal"] == [
        "acme:alice\x000",
        "acme:alice",  # the head, once: the journal starts at 0
        "acme:alice\x001",
        "acme:alice\x002",
        "acme:alice\x003",  # day 0.3's delivery moves up a number (a new one: written first) ...
        "acme:alice\x002",  # ... and day 0.2's refusal takes its place
    ]
    assert ("write journal", "acme:alice\x00base") not in writes  # an empty base is no write
    reasons = [
        (c.from_status, c.to_status, c.reason)
        for topic, value in sent
        if topic == STATE_CHANGES
        for c in [decode(STATE_CHANGES, value)]
    ]
    assert reasons == [
        (None, "pending", "verified"),
        ("pending", None, "destination_rejected"),
        (None, "pending", "verified"),
    ]
    assert len(processor.store.load_journal("acme:alice")) == 4

    # The timer: nothing expires before the grace period after the newest message ...
    partition_now = T0 + 0.3 * day + Policy().late_grace
    assert (
        list(processor.due.expired_journals(lambda _p: partition_now - timedelta(seconds=1))) == []
    )
    expired = list(processor.due.expired_journals(lambda _p: partition_now))
    assert [route_key for route_key, _ in expired] == ["acme:alice"]
    # ... and its tick drops the journal (the group as it is is the new starting point).
    tick = Tick(**world.base(address, partition_now))
    await processor.handle_batch([Incoming(COMMANDS, 0, 9, tick.kafka_key(), encode(tick))])
    assert dict(tables["journal"]) == {}
    assert processor.store.load("acme:alice")["acme:alice@a.example"].status == "pending"


async def test_an_erasure_takes_the_journal_of_the_address_with_it() -> None:
    world = World()
    writes: list[tuple[str, str]] = []
    tables = {name: Recording(name, writes) for name in ("records", "groups", "journal")}
    processor = _processor(world, tables, [])
    messages = [
        world.verified("alice@a.example", T0),
        world.command(EraseAddress, "alice@a.example", T0 + timedelta(minutes=5)),
    ]
    await processor.handle_batch(
        [
            Incoming(MAIL if i == 0 else COMMANDS, 0, i, m.kafka_key(), encode(m))
            for i, m in enumerate(messages)
        ]
    )
    assert dict(tables["records"]) == {}
    # What stays for the grace period is a mark that does not hold the address.
    assert sorted(tables["journal"]) == ["acme:alice", "acme:alice\x000"]  # head, mark
    assert not any(b"alice" in value for value in tables["journal"].values())
    # A message about it from before the erasure, arriving late, does not bring it back ...
    late = world.delivered("alice@a.example", T0 + timedelta(minutes=1))
    await processor.handle_batch([Incoming(MAIL, 0, 2, late.kafka_key(), encode(late))])
    assert dict(tables["records"]) == {}
    assert processor.counts["erased"] == 1
    # ... mail after it does (a new life of the address).
    after = world.verified("alice@a.example", T0 + timedelta(minutes=6))
    await processor.handle_batch([Incoming(MAIL, 0, 3, after.kafka_key(), encode(after))])
    assert processor.store.load("acme:alice")["acme:alice@a.example"].status == "pending"
