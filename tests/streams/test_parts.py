"""The worker's small parts: clock, partitioner, group store, due index, Faust wiring."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest
from aiokafka.partitioner import DefaultPartitioner
from faust.types import TP
from hypothesis import given, settings
from hypothesis import strategies as st

from smtp_discovery.platform.clock import ManualClock
from smtp_discovery.schemas.address import parse_address
from smtp_discovery.schemas.commands import CreateUser, Tick
from smtp_discovery.schemas.state import AddressRecord, AddressStatus
from smtp_discovery.schemas.tenant import DiscoverySettings
from smtp_discovery.streams import rules
from smtp_discovery.streams import store as store_module
from smtp_discovery.streams.app import StreamsSettings, Topology
from smtp_discovery.streams.clock import EPOCH, EventTimeClock, SystemClock, make_clock
from smtp_discovery.streams.due import DueIndex
from smtp_discovery.streams.partitioning import partition_for
from smtp_discovery.streams.recovery import HandOverRecovery
from smtp_discovery.streams.rewind import RewindingConsumerThread
from smtp_discovery.streams.rules import Context, Policy
from smtp_discovery.streams.store import GroupStore, WaitingFields
from tests.streams.world import T0, World

DAY = timedelta(days=1)


def test_event_time_clock_keeps_a_watermark_per_partition() -> None:
    clock = EventTimeClock()
    assert clock.now(0) == EPOCH
    clock.observe(0, T0 + DAY)
    clock.observe(0, T0)  # late events never move the clock back
    clock.observe(1, T0 + 5 * DAY)
    assert clock.now(0) == T0 + DAY
    assert clock.now(1) == T0 + 5 * DAY
    assert clock.now() == T0 + 5 * DAY
    assert isinstance(make_clock("system"), SystemClock)


def test_partitioner_matches_the_producers_default() -> None:
    default = DefaultPartitioner()
    for key in (b"acme:alice", b"acme:first.last", b"t:\xc3\xbc", b"x" * 300):
        assert partition_for(key, 12) == default(key, list(range(12)), list(range(12)))


def _world_with_records() -> World:
    w = World()
    w.send(w.command(CreateUser, "first.last@a.example"))
    w.send(w.verified("first.last@b.example", T0 + DAY))
    w.send(w.verified("other@a.example", T0 + DAY))
    return w


def _encoded(w: World) -> dict[str, bytes]:
    """The world's records as the records table holds them."""
    return {key: record.model_dump_json().encode() for key, record in w.records.items()}


def _topology(app_id: str, data_dir: Path) -> Topology:
    """A worker's topology that never reaches a broker (nothing here starts it)."""
    settings = StreamsSettings(
        app_id=app_id, brokers=["localhost:9"], partitions=4, replication=1, data_dir=data_dir
    )
    return Topology(
        settings, clock=make_clock("event-time"), kafka_options={"bootstrap_servers": "localhost:9"}
    )


def test_group_store_round_trips_groups_and_forgets_removed_records() -> None:
    w = _world_with_records()
    records: dict[str, bytes] = {}
    groups: dict[str, bytes] = {}
    store = GroupStore(records, groups)
    for key, record in w.records.items():
        store.save(parse_address(record.address).route_key("acme"), {key: record})
    group = store.load("acme:first.last")
    assert set(group) == {"acme:first.last@a.example", "acme:first.last@b.example"}
    assert group["acme:first.last@b.example"] == w.records["acme:first.last@b.example"]
    store.save("acme:first.last", {"acme:first.last@b.example": None})
    assert list(store.load("acme:first.last")) == ["acme:first.last@a.example"]
    store.save("acme:other", {"acme:other@a.example": None})
    assert "acme:other" not in groups
    assert "acme:other@a.example" not in records


def test_due_index_ticks_each_due_record_once_per_version() -> None:
    w = World()
    w.verify_and_deliver("alice@a.example", [0, 1, 2])  # discovered
    w.send(w.verified("bob@a.example"))  # pending
    index = DueIndex(Policy(), partitions=4)
    for key, record in w.records.items():
        index.update(key, record)
    settings = DiscoverySettings(discovery_enabled=True)
    early = list(index.due(lambda _p: T0 + 10 * DAY, lambda _t: settings))
    assert early == []
    late = list(index.due(lambda _p: T0 + 40 * DAY, lambda _t: settings))
    assert {key for key, _ in late} == {"acme:alice@a.example", "acme:bob@a.example"}
    assert list(index.due(lambda _p: T0 + 41 * DAY, lambda _t: settings)) == []  # already ticked
    # A managed record leaves the index.
    alice = w.record("alice@a.example").model_copy(update={"status": AddressStatus.USER})
    index.update("acme:alice@a.example", alice)
    assert len(index) == 1
    # Records of partitions this worker does not own are forgotten.
    index.keep_partitions(frozenset())
    assert len(index) == 0


def test_due_index_follows_a_settings_change() -> None:
    w = World()
    w.verify_and_deliver("alice@a.example", [0, 1, 2])
    index = DueIndex(Policy(), partitions=4)
    index.update("acme:alice@a.example", w.record("alice@a.example"))
    one_week = DiscoverySettings(discovery_enabled=True, notices_before_expiry=1)
    due = list(index.due(lambda _p: T0 + 10 * DAY, lambda _t: one_week))
    assert [k for k, _ in due] == ["acme:alice@a.example"]


def test_a_tick_made_useless_by_a_settings_change_does_not_lose_the_address() -> None:
    """Scanned as due with one notice; the tenant raises it to four before the tick is
    applied, so the tick changes nothing; at the new deadline the address is ticked again."""
    w = World()
    w.verify_and_deliver("alice@a.example", [0, 1, 2])
    key = "acme:alice@a.example"
    clock = ManualClock()
    index = DueIndex(Policy(), partitions=4, clock=clock, retick_after_s=600)
    index.update(key, w.record("alice@a.example"))
    one, four = (DiscoverySettings(discovery_enabled=True, notices_before_expiry=n) for n in (1, 4))
    assert [k for k, _ in index.due(lambda _p: T0 + 10 * DAY, lambda _t: one)] == [key]
    tick = Tick(tenant_id="acme", event_time=T0 + 10 * DAY, address="alice@a.example")
    ctx = Context(w.ctx.tenant, four, Policy())
    assert rules.apply({key: w.record("alice@a.example")}, tick, ctx).records == {}
    # The record did not change, so nothing updated the index; the new deadline passes.
    clock.advance(300)
    assert list(index.due(lambda _p: T0 + 40 * DAY, lambda _t: four)) == []  # just ticked
    clock.advance(600)
    assert [k for k, _ in index.due(lambda _p: T0 + 40 * DAY, lambda _t: four)] == [key]


def test_topology_lists_faust_changelogs_and_recovers_with_the_hand_over_and_rewind_fixes(
    tmp_path: Path,
) -> None:
    topology = _topology("p-streams", tmp_path)
    declared = {
        (t.name, t.num_partitions, t.replication_factor, t.topic_configs["cleanup.policy"])
        for t in topology.changelog_topics()
    }
    assert declared == {
        ("p-streams-records-changelog", 4, 1, "compact"),
        ("p-streams-groups-changelog", 4, 1, "compact"),
        ("p-streams-journal-changelog", 4, 1, "compact"),
    }
    assert isinstance(topology.app.tables.recovery, HandOverRecovery)
    assert isinstance(topology.app.consumer._thread, RewindingConsumerThread)


def test_group_store_reads_json_group_indexes_and_caches_what_it_wrote() -> None:
    w = _world_with_records()
    records = _encoded(w)
    # A group index as older workers wrote it (JSON), then one in today's encoding.
    groups = {
        "acme:first.last": b'["acme:first.last@a.example", "acme:first.last@b.example"]',
        "acme:other": b"acme:other@a.example",
    }
    store = GroupStore(records, groups)
    assert set(store.load("acme:first.last")) == {
        "acme:first.last@a.example",
        "acme:first.last@b.example",
    }
    assert list(store.load("acme:other")) == ["acme:other@a.example"]
    assert store.misses == 2
    # Writes go through to the tables, and reads come from the cache. A group left with one
    # address holds its record inline; the records table no longer does.
    store.save("acme:first.last", {"acme:first.last@b.example": None})
    assert groups["acme:first.last"].startswith(b"=acme:first.last@a.example\t{")
    assert "acme:first.last@a.example" not in records
    assert "acme:first.last@b.example" not in records
    records["acme:first.last@a.example"] = b"not read again"
    assert list(store.load("acme:first.last")) == ["acme:first.last@a.example"]
    assert store.misses == 2
    # After a rebalance the tables are the truth again.
    store.forget()
    records["acme:other@a.example"] = w.records["acme:other@a.example"].model_dump_json().encode()
    store.load("acme:other")
    assert store.misses == 3


def test_the_cache_keeps_the_most_recently_used_groups() -> None:
    w = _world_with_records()
    records = _encoded(w)
    groups = {
        "acme:first.last": b"acme:first.last@a.example\nacme:first.last@b.example",
        "acme:other": b"acme:other@a.example",
    }
    store = GroupStore(records, groups, cached_groups=1)
    store.load("acme:first.last")
    store.load("acme:other")  # evicts first.last
    store.load("acme:other")
    assert store.misses == 2
    store.load("acme:first.last")
    assert store.misses == 3


def test_only_waiting_records_are_decoded_to_rebuild_the_due_index(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    w = _world_with_records()  # a user, its alias, a pending address
    w.send(w.command(CreateUser, "named@a.example", first_name="discovered"))
    w.verify_and_deliver("carol@a.example", [0, 1, 2])  # discovered
    records = _encoded(w)
    decoded: list[str] = []
    parse = store_module._read_waiting

    def counting(raw: bytes) -> WaitingFields:
        record = parse(raw)
        decoded.append(record.address)
        return record

    monkeypatch.setattr(store_module, "_read_waiting", counting)
    groups: dict[str, list[str]] = {}
    for key, record in w.records.items():  # every record in a member list (a larger group)
        groups.setdefault(parse_address(record.address).route_key(record.tenant_id), []).append(key)
    listed = {route_key: "\n".join(keys).encode() for route_key, keys in groups.items()}
    waiting = {
        key: (route_key, record.status.value)
        for route_key, key, record in GroupStore(records, listed).waiting()
    }
    assert waiting == {
        "acme:other@a.example": ("acme:other", "pending"),
        "acme:carol@a.example": ("acme:carol", "discovered"),
    }
    # The user named "discovered" looked like a candidate: decoded, then dropped. The other
    # user and the alias were never decoded.
    assert sorted(decoded) == ["carol@a.example", "named@a.example", "other@a.example"]


async def test_the_due_index_waits_for_recovery_and_is_rebuilt_after_every_rebalance(
    tmp_path: Path,
) -> None:
    topology = _topology("d-streams", tmp_path)
    rebuilt: list[frozenset[int]] = []
    topology.rebuild_due_index = lambda active: (  # type: ignore[method-assign]
        rebuilt.append(active),
        setattr(topology, "_indexed_partitions", active),
    )
    topology.follower.ready.set()
    topology.app.in_recovery = True
    await topology._scan()
    assert rebuilt == []  # tables half restored: no index from them
    topology.app.in_recovery = False
    await topology._scan()
    await topology._scan()
    assert len(rebuilt) == 1
    # The same partitions after a rebalance: another worker may have changed them meanwhile.
    topology.tables[0].unsent[2] = [(b'"acme:x"', b"written by a batch that never finished")]
    await topology._forget_groups(topology.app, set())
    await topology._scan()
    assert len(rebuilt) == 2
    assert not topology.tables[0].unsent  # never sent into a changelog it may no longer own


TIMES = st.one_of(
    st.none(),
    st.datetimes(
        min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
    ),
)


@settings(max_examples=300, deadline=None)
@given(
    status=st.sampled_from(AddressStatus),
    since=TIMES.filter(lambda t: t is not None),
    discovered=TIMES,
    seen=TIMES,
    version=st.integers(1, 2**40),
    local=st.sampled_from(["alice", "jörg", "a.b+tag", "x" * 64]),
    names=st.text(max_size=20),
)
def test_the_due_index_reads_what_the_contract_reads_of_a_stored_record(
    status: AddressStatus,
    since: datetime,
    discovered: datetime | None,
    seen: datetime | None,
    version: int,
    local: str,
    names: str,
) -> None:
    """The lean decoding the index is rebuilt from gives the fields the contract gives."""
    record = AddressRecord(
        tenant_id="acme",
        address=f"{local}@a.example",
        status=status,
        status_since=since,
        status_reason="verified",
        version=version,
        first_name=names,
        discovered_at=discovered,
        last_seen=seen,
        clean_by_day={since.date(): 3},
        applied_event_ids=("e1", "e2"),
    )
    raw = record.model_dump_json().encode()
    lean = store_module._read_waiting(raw)
    full = AddressRecord.model_validate_json(raw)
    for name in WaitingFields.__struct_fields__:
        assert getattr(lean, name) == getattr(full, name), name
    assert [lean.status_since, lean.discovered_at, lean.last_seen] == [since, discovered, seen]


@settings(max_examples=4, deadline=None)
@given(keys=st.lists(st.text(max_size=40), min_size=1, max_size=200))
def test_a_table_encodes_a_key_as_faust_does(
    tmp_path_factory: pytest.TempPathFactory, keys: list[str]
) -> None:
    """A write finds its key encoder once (``AcknowledgedTable._key_encoder``), not through
    Faust's serializer registry each time: the bytes are the registry's, for any text (quotes,
    backslashes, control and non-ASCII characters, a NUL as in a journal entry's key)."""
    topology = _topology("k-streams", tmp_path_factory.mktemp("keys"))
    for table in topology.tables:
        encode = table._key_encoder(table.data)
        assert encode is not None
        for key in [*keys, *(f"{key}\x00{n}" for n, key in enumerate(keys))]:
            assert encode(key) == table.data._encode_key(key)


_KILLED_WRITER = """
import os, signal, sys, weakref
from pathlib import Path
from types import SimpleNamespace

from faust.types import TP

from smtp_discovery.streams.app import _CURRENT_EVENT
from tests.streams.test_parts import _topology


class Event:
    message = SimpleNamespace(partition=0, topic="mail")


event = Event()
_CURRENT_EVENT.set(weakref.ref(event))
groups = _topology("wal-streams", Path(sys.argv[1])).tables[1]
tp = TP(groups.changelog_topic.get_topic_name(), 0)
groups["acme:flushed"] = b"1"
groups.data.set_persisted_offset(tp, 5)
groups.data._db_for_partition(0).flush()
groups["acme:unflushed"] = b"2"
groups.data.set_persisted_offset(tp, 6)
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_killed_workers_table_store_opens_as_it_was_flushed_offset_included(
    tmp_path: Path,
) -> None:
    """The stores are written without RocksDB's write-ahead log (``ChangelogCacheStore``): a
    killed worker's store loses what was not flushed, its persisted offset with its data, so
    Faust reads that part of the changelog again. The offset never stands past data the store
    lost, which would leave those writes out for good."""
    killed = subprocess.run(
        [sys.executable, "-c", _KILLED_WRITER, str(tmp_path)],
        cwd=Path(__file__).parents[2],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    groups = _topology("wal-streams", tmp_path).tables[1]
    assert groups.data.persisted_offset(TP(groups.changelog_topic.get_topic_name(), 0)) == 5
    db = groups.data._db_for_partition(0)
    assert db.get(json.dumps("acme:flushed").encode()) == b"1"
    assert db.get(json.dumps("acme:unflushed").encode()) is None


def test_a_table_read_whole_from_its_store_is_what_faust_reads(tmp_path: Path) -> None:
    """``stored_items`` reads a RocksDB table's bytes itself: the same keys and values as
    Faust's ``items()``, of the active partitions only, tombstones gone, and the store's offset
    marker left out."""
    topology = _topology("s-streams", tmp_path)
    groups = topology.tables[1]
    topic = groups.changelog_topic.get_topic_name()
    written = [
        (partition, offset, key, value)
        for partition in range(4)
        for offset, (key, value) in enumerate(
            [
                (f"acme:u{partition}", f"=acme:u{partition}@a.example\t{{}}".encode()),
                ('acme:"quoted"\\', b"acme:x@a.example\nacme:y@a.example"),
                ("acme:ünï", b"\x00\xff"),
                (f"acme:gone{partition}", b"x"),
                (f"acme:gone{partition}", None),
            ]
        )
    ]
    groups.apply_changelog_batch(
        [
            SimpleNamespace(message=SimpleNamespace(
                tp=TP(topic, p), partition=p, offset=o, key=json.dumps(k).encode(), value=v))
            for p, o, k, v in written
        ]
    )  # fmt: skip
    actives = {TP(topic, 0), TP(topic, 2)}
    topology.app.assignor.assigned_actives = lambda: actives  # type: ignore[method-assign]
    stored = list(groups.stored_items())
    assert sorted(stored) == sorted(groups.items())
    assert sorted(stored) == sorted(
        (k, v) for p, _, k, v in written if p in (0, 2) and not k.startswith("acme:gone")
    )
