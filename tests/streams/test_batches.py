"""What the worker sends, a partition's record batch at a time, against the real broker.

A table's changelog (with a real RocksDB store, and the in-memory one): the records Faust would
have sent, in the order written, each partition's persisted offset at its last record, and read
back by Faust's own changelog apply as the same table. A batch's outputs: each in the partition
it names, or its key's, as Kafka's default partitioner would place it."""

from __future__ import annotations

import json
import weakref
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import NewTopic
from faust.types import TP

from smtp_discovery.platform.kafka import ensure_visible
from smtp_discovery.schemas.topics import ADDRESS_STATE, DEAD_LETTER, STATE_CHANGES, TopicNames
from smtp_discovery.streams.app import _CURRENT_EVENT, StreamsSettings, Topology
from smtp_discovery.streams.changelog import AcknowledgedTable, acknowledged
from smtp_discovery.streams.clock import make_clock
from smtp_discovery.streams.partitioning import partition_for
from smtp_discovery.streams.processor import Output

pytestmark = pytest.mark.kafka


def _topology(app_id: str, bootstrap: str, data_dir: Path, store: str) -> Topology:
    settings = StreamsSettings(
        app_id=app_id,
        brokers=[bootstrap],
        partitions=4,
        replication=1,
        data_dir=data_dir,
        store=store,
        topics=TopicNames(f"{app_id}."),  # the session's broker is shared by every test
    )
    return Topology(
        settings, clock=make_clock("event-time"), kafka_options={"bootstrap_servers": bootstrap}
    )


class _Event:
    def __init__(self, partition: int) -> None:
        self.message = SimpleNamespace(partition=partition, topic="mail")


_held: list[_Event] = []


def _in_partition(partition: int) -> None:
    """Make a message of ``partition`` the one being processed (as the agent does)."""
    _held.append(event := _Event(partition))  # the context holds it weakly
    _CURRENT_EVENT.set(weakref.ref(event))  # type: ignore[arg-type]


async def _read(bootstrap: str, topic: str) -> dict[int, list[Any]]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        parts = [TopicPartition(topic, p) for p in range(4)]
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        ends = await consumer.end_offsets(parts)
        out: dict[int, list[Any]] = {p: [] for p in range(4)}
        while [tp for tp in parts if await consumer.position(tp) < ends[tp]]:
            for tp, records in (await consumer.getmany(timeout_ms=1000)).items():
                out[tp.partition].extend(records)
        return out
    finally:
        await consumer.stop()


@pytest.mark.parametrize("store", ["rocksdb", "memory"])
async def test_writes_go_out_a_batch_per_partition_as_faust_reads_them(
    kafka_bootstrap: str, unique: str, tmp_path: Path, store: str
) -> None:
    """RocksDB is written directly (its bytes are the changelog's); the in-memory store, which
    keeps decoded values, through Faust's own path."""
    topology = _topology(f"cb{unique}", kafka_bootstrap, tmp_path / "a", store)
    await ensure_visible({"bootstrap_servers": kafka_bootstrap}, topology.changelog_topics())
    groups: AcknowledgedTable = topology.tables[1]
    topic = groups.changelog_topic.get_topic_name()
    big = b"x" * 400_000  # three of them fill more than one of the producer's 1 MiB batches
    writes: list[tuple[int, str, bytes | None]] = [
        (0, "acme:a", b"=acme:a@a.example\t{}"),
        (2, 'acme:"quoted"\\ünï', b"\x00\xff"),
        (0, "acme:b", b"one"),
        (0, "acme:a", b'=acme:a@a.example\t{"v":2}'),
        (0, "acme:b", None),
        (3, "acme:big1", big),
        (3, "acme:big2", big),
        (3, "acme:big3", big),
        (3, "acme:big4", big),
    ]
    producer = topology.app.producer
    await producer.start()
    try:
        for partition, key, value in writes[:5]:
            _in_partition(partition)
            if value is None:
                groups.pop(key, None)
            else:
                groups[key] = value
        await acknowledged(topology.tables)
        for partition, key, value in writes[5:]:
            _in_partition(partition)
            groups[key] = value
        assert not (await _read(kafka_bootstrap, topic))[3]  # nothing sent before it is waited for
        await acknowledged(topology.tables)
    finally:
        await producer.stop()

    sent = await _read(kafka_bootstrap, topic)
    for partition in range(4):
        expected = [(k, v) for p, k, v in writes if p == partition]
        assert [(json.loads(r.key), r.value) for r in sent[partition]] == expected
        if store == "rocksdb":  # the in-memory store keeps no offsets
            last = sent[partition][-1].offset if sent[partition] else None
            assert groups.data.persisted_offset(TP(topic, partition)) == last

    if store == "rocksdb":
        # Each key is in the database of its message's partition alone (where Faust's own
        # write puts it), and a deleted one in none.
        last = {key: (partition, value) for partition, key, value in writes}
        for key, (partition, value) in last.items():
            encoded = json.dumps(key).encode()
            held = {p for p, db in groups.data._dbs.items() if db.get(encoded) is not None}
            assert held == (set() if value is None else {partition}), key

    # A fresh store fed the changelog by Faust's own apply holds what the first one does.
    fresh = _topology(f"cb{unique}", kafka_bootstrap, tmp_path / "b", store).tables[1]
    fresh.apply_changelog_batch(
        [
            SimpleNamespace(key=json.loads(m.key), value=m.value, message=SimpleNamespace(
                tp=TP(topic, p), partition=p, offset=m.offset, key=m.key, value=m.value))
            for p in range(4)
            for m in sent[p]
        ]
    )  # fmt: skip
    everything = frozenset(TP(topic, p) for p in range(4))
    for table in (groups, fresh):
        table.app.assignor.assigned_actives = lambda: everything  # type: ignore[method-assign]
    assert sorted(fresh.stored_items()) == sorted(groups.stored_items())
    assert dict(groups.stored_items()) == {
        "acme:a": b'=acme:a@a.example\t{"v":2}',
        'acme:"quoted"\\ünï': b"\x00\xff",
        **{f"acme:big{i}": big for i in range(1, 5)},
    }


async def test_outputs_go_to_the_partition_they_name_or_their_keys(
    kafka_bootstrap: str, unique: str, tmp_path: Path
) -> None:
    topology = _topology(f"ob{unique}", kafka_bootstrap, tmp_path, "rocksdb")
    names = topology.names
    # Visible before any client asks: one that fetched metadata too early could wait minutes.
    await ensure_visible(
        {"bootstrap_servers": kafka_bootstrap},
        [NewTopic(names(t), 4, 1) for t in (ADDRESS_STATE, STATE_CHANGES, DEAD_LETTER)],
    )
    keys = [f"acme:user{i}".encode() for i in range(12)]
    outputs: list[Output] = [
        (STATE_CHANGES, key, b"change %d" % i, None) for i, key in enumerate(keys)
    ]
    outputs += [(ADDRESS_STATE, keys[0], b"snapshot", 3), (DEAD_LETTER, None, b"letter", None)]
    producer = topology.app.producer
    await producer.start()
    try:
        await topology._send(outputs)
    finally:
        await producer.stop()
    changes = await _read(kafka_bootstrap, names(STATE_CHANGES))
    assert {(p, r.key, r.value) for p, records in changes.items() for r in records} == {
        (partition_for(key, 4), key, b"change %d" % i) for i, key in enumerate(keys)
    }
    for records in changes.values():  # each partition's in the order sent
        assert [r.value for r in records] == sorted(
            (r.value for r in records), key=lambda v: int(v.split()[1])
        )
    assert len({p for p, records in changes.items() if records}) > 1
    snapshots = await _read(kafka_bootstrap, names(ADDRESS_STATE))
    assert [(r.key, r.value) for r in snapshots[3]] == [(keys[0], b"snapshot")]
    letters = await _read(kafka_bootstrap, names(DEAD_LETTER))
    assert [(r.key, r.value) for r in letters[0]] == [(None, b"letter")]
