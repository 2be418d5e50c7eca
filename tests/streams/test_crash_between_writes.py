"""A worker killed anywhere in a batch's table writes: the worker that takes over ends in the
same records, with the same transitions, as a worker that never died.

Each table's changelog is its own topic, so what a new owner restores is, per table, every
write Kafka acknowledged plus any prefix of those still on their way. The model below keeps
every write made before the processor's last wait for the tables (``tables_written``), and a
prefix of each table's writes after it, then redelivers the messages from a committed batch.
"""

from __future__ import annotations

from collections.abc import Iterator, MutableMapping, Sequence
from datetime import timedelta
from typing import Any

from hypothesis import assume, given, note, settings
from hypothesis import strategies as st

from smtp_discovery.platform.views import TenantDirectory
from smtp_discovery.schemas.address import parse_address
from smtp_discovery.schemas.codec import decode, encode
from smtp_discovery.schemas.commands import CreateUser, EraseAddress, Tick
from smtp_discovery.schemas.state import AddressRecord
from smtp_discovery.schemas.tenant import TenantConfig
from smtp_discovery.schemas.topics import COMMANDS, MAIL, STATE_CHANGES
from smtp_discovery.streams.clock import EventTimeClock
from smtp_discovery.streams.due import DueIndex
from smtp_discovery.streams.processor import Incoming, Output, Processor
from smtp_discovery.streams.rules import Policy
from smtp_discovery.streams.store import GroupStore
from tests.streams.world import T0, World

TABLES = ("records", "groups", "journal")
ADDRESSES = ("alice@a.example", "alice@b.example", "bob@a.example")
"""Two addresses of one route-key group (stored as a list and a record each), and one alone
(stored inline)."""
KINDS = (
    "verified",
    "delivered",
    "delivered",
    "delivered",
    "rejected",
    "outbound",
    "erase",
    "user",
    "tick",
)
"""Mail, admin commands, and the timer's tick (pending addresses idle for 30 days are pruned: a
group of two shrinks to one without a journal)."""

Log = list[tuple[str, ...]]


class Changelog(MutableMapping[str, bytes]):
    """A table whose writes go, in order, to a log the tables share."""

    def __init__(self, name: str, log: list[Any], data: dict[str, bytes] | None = None) -> None:
        self.name, self.log, self.data = name, log, dict(data or {})

    def __getitem__(self, key: str) -> bytes:
        return self.data[key]

    def __setitem__(self, key: str, value: bytes) -> None:
        self.log.append(("write", self.name, key, value))
        self.data[key] = value

    def __delitem__(self, key: str) -> None:
        self.log.append(("write", self.name, key, None))
        del self.data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.data)

    def __len__(self) -> int:
        return len(self.data)


def _messages(world: World, plan: list[tuple[str, str, int]]) -> list[tuple[str, Any]]:
    """The plan's messages, ``minutes`` after the last tick (or the start): the timer's tick
    comes 40 days on, at the partition's newest time, and the mail after it is newer."""
    start, out = T0, []
    for kind, address, minutes in plan:
        at = start + timedelta(minutes=minutes)
        if kind == "tick":
            start = start + timedelta(days=40)
            out.append((COMMANDS, Tick(**world.base(address, start))))
        elif kind == "erase":
            out.append((COMMANDS, world.command(EraseAddress, address, at)))
        elif kind == "user":
            out.append((COMMANDS, world.command(CreateUser, address, at)))
        else:
            made = {
                "verified": world.verified,
                "delivered": world.delivered,
                "rejected": world.rejected,
                "outbound": world.outbound,
            }[kind]
            out.append((MAIL, made(address, at)))
    return out


def _processor(world: World, log: list[Any], data: dict[str, dict[str, bytes]]) -> Processor:
    tenant = TenantConfig(**{**world.config.model_dump(), "settings": {"discovery_enabled": True}})
    directory = TenantDirectory()
    directory.apply(tenant.kafka_key(), encode(tenant))

    async def send(outputs: Sequence[Output]) -> None:
        log.extend(("send", topic, value) for topic, _, value, _ in outputs)

    async def tables_written() -> None:
        log.append(("acknowledged",))

    records, groups, journal = (Changelog(name, log, data.get(name)) for name in TABLES)
    return Processor(
        store=GroupStore(records, groups, journal),
        directory=directory,
        clock=EventTimeClock(),
        send=send,
        due=DueIndex(Policy(), 4),
        policy=Policy(),
        tables_written=tables_written,
    )


async def _run(processor: Processor, batches: list[list[Incoming]], log: list[Any]) -> None:
    for number, batch in enumerate(batches):
        await processor.handle_batch(batch)
        log.append(("batch", str(number)))


def _restored(log: Log, crash: int, prefixes: dict[str, int]) -> dict[str, dict[str, bytes]]:
    """The tables a new owner restores when the worker died after ``log[:crash]``: every write
    before its last wait for the tables, and a prefix of each table's writes after it."""
    done = log[:crash]
    waited = max((i for i, entry in enumerate(done) if entry[0] == "acknowledged"), default=-1)
    tables: dict[str, dict[str, bytes]] = {name: {} for name in TABLES}
    in_flight = {name: prefixes[name] for name in TABLES}
    for i, entry in enumerate(done):
        if entry[0] != "write":
            continue
        _, name, key, value = entry
        if i > waited:
            if in_flight[name] == 0:
                continue
            in_flight[name] -= 1
        if value is None:
            tables[name].pop(key, None)
        else:
            tables[name][key] = value
    return tables


def _state(
    processor: Processor, route_keys: set[str], *, versions: bool = True
) -> dict[str, dict[str, AddressRecord]]:
    """The stored groups. Without ``versions``: an erasure takes the erased address's messages
    out of the journal, and a neighbour whose record they had changed (an alias linked, then
    unlinked) is rebuilt from the journal with the version it had before them. Consumers keep
    the higher version the dead worker published, with the same state."""
    processor.store.forget()
    return {
        rk: {
            key: record if versions else record.model_copy(update={"version": 0})
            for key, record in group.items()
        }
        for rk in sorted(route_keys)
        if (group := processor.store.load(rk))
    }


def _transitions(log: Log) -> dict[str, Any]:
    changes = [decode(STATE_CHANGES, e[2]) for e in log if e[:2] == ("send", STATE_CHANGES)]
    return {
        c.event_id: (c.address.lower(), c.from_status, c.to_status, c.reason, c.event_time)
        for c in changes
    }


@given(
    plan=st.lists(
        st.tuples(st.sampled_from(KINDS), st.sampled_from(ADDRESSES), st.integers(0, 600)),
        min_size=1,
        max_size=18,
    ),
    sizes=st.lists(st.integers(1, 5), min_size=18, max_size=18),
    data=st.data(),
)
@settings(max_examples=300, deadline=None)
async def test_a_worker_killed_between_its_table_writes_loses_and_doubles_nothing(
    plan: list[tuple[str, str, int]], sizes: list[int], data: st.DataObject
) -> None:
    # Known limit: mail to a user passes by without a trace (no write), so an erasure of that
    # user cannot cover it, and if the worker dies before committing both, the mail delivered
    # again after the erasure is a new life of the address (docs/streams.md, Delivery).
    for address in ADDRESSES:
        kinds = {kind for kind, to, _ in plan if to == address}
        assume(not {"user", "erase"} <= kinds)
    world = World()
    messages = _messages(world, plan)
    incoming = [
        Incoming(topic, 0, offset, message.kafka_key(), encode(message))
        for offset, (topic, message) in enumerate(messages)
    ]
    batches: list[list[Incoming]] = []
    for size in sizes:
        if incoming:
            batches.append(incoming[:size])
            incoming = incoming[size:]
    route_keys = {parse_address(m.address).route_key("acme") for _, m in messages}

    log: Log = []
    survivor = _processor(world, log, {})
    await _run(survivor, batches, log)
    versions = not any(kind == "erase" for kind, _, _ in plan)
    expected = _state(survivor, route_keys, versions=versions)

    # Dying just before a wait for the tables leaves the most writes in flight; the prefixes
    # drawn below stand for dying earlier.
    waits = [i for i, entry in enumerate(log) if entry[0] == "acknowledged"]
    crash = data.draw(st.sampled_from([*waits, len(log)]), label="crash")
    prefixes = {name: data.draw(st.integers(0, 8), label=f"{name} in flight") for name in TABLES}
    finished = [int(e[1]) for e in log[:crash] if e[0] == "batch"]
    committed = data.draw(st.sampled_from([-1, *finished]), label="committed batch")
    # Offsets commit every few seconds: what is delivered again spans less than the grace
    # period, within which the journal knows a message it holds (a longer span, say 40 days of
    # event time replayed at once, may also meet a group whose journal has gone since).
    again = [
        decode(i.topic, i.value).event_time
        for b in batches[committed + 1 : len(finished) + 1]
        for i in b
    ]
    assume(not again or max(again) - min(again) < Policy().late_grace)
    restored = _restored(log, crash, prefixes)
    note(f"plan {plan}, batches {[len(b) for b in batches]}")
    note("log:\n" + "\n".join(f"{i:3} {e[:3]}" for i, e in enumerate(log)))

    after: Log = []
    successor = _processor(world, after, restored)
    await _run(successor, batches[committed + 1 :], after)
    assert _state(successor, route_keys, versions=versions) == expected
    assert _transitions(log[:crash] + after) == _transitions(log), "a transition lost or doubled"
