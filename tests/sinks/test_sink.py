"""The sink on the real broker and embedded ClickHouse: every row once, whatever happens."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer, TopicPartition

import smtp_discovery.sinks.once
import smtp_discovery.sinks.sink
from smtp_discovery.platform.kafka import ensure_topics
from smtp_discovery.schemas.base import Message
from smtp_discovery.schemas.codec import decode, encode
from smtp_discovery.schemas.mail import RecipientDelivered
from smtp_discovery.schemas.state import (
    AddressRecord,
    AddressStateSnapshot,
    AddressStatus,
    StateChange,
)
from smtp_discovery.schemas.topics import (
    ADDRESS_STATE,
    DEAD_LETTER,
    MAIL,
    MAIL_SETTLED,
    STATE_CHANGES,
    TopicNames,
)
from smtp_discovery.sinks.migrate import migrate
from smtp_discovery.sinks.schema import Layout
from smtp_discovery.sinks.sink import Sink, SinkSettings
from tests.smtp_discovery.kafka_helpers import consume_until

pytestmark = pytest.mark.kafka

T0 = datetime(2026, 10, 5, 8, tzinfo=UTC)


class Crash(BaseException):
    """What SIGKILL does to the sink, at a chosen point (not an Exception: nothing retries it)."""


class Flaky:
    """The real client, with failures injected into chosen calls."""

    def __init__(self, client: Any, *, fail: int = 0, crash_after_insert: int | None = None,
                 crash_before_insert: int | None = None) -> None:  # fmt: skip
        self.client = client
        self.fail = fail
        self.crash_after_insert = crash_after_insert
        self.crash_before_insert = crash_before_insert
        self.data_inserts = 0
        self.failures = 0
        self._counting = threading.Lock()

    def insert(self, table: str, *args: Any, **kwargs: Any) -> Any:
        if table.endswith("sink_progress"):
            return self.client.insert(table, *args, **kwargs)
        return self._data(self.client.insert, table, *args, **kwargs)

    def insert_arrow(self, table: str, *args: Any, **kwargs: Any) -> Any:
        return self._data(self.client.insert_arrow, table, *args, **kwargs)

    def _data(self, insert: Any, table: str, *args: Any, **kwargs: Any) -> Any:
        """An insert of rows (not of a recorded range), failing or crashing as chosen."""
        with self._counting:  # the sink writes partitions' batches in parallel
            failing = self.failures < self.fail
            if failing:
                self.failures += 1
            else:
                self.data_inserts += 1
                number = self.data_inserts
        if failing:
            raise ConnectionError("ClickHouse is unavailable")
        if number == self.crash_before_insert:
            raise Crash
        result = insert(table, *args, **kwargs)
        if number == self.crash_after_insert:
            raise Crash
        return result

    def query(self, *args: Any, **kwargs: Any) -> Any:
        return self.client.query(*args, **kwargs)


def changes(count: int) -> list[StateChange]:
    return [
        StateChange(
            tenant_id=f"t{i % 3}",
            address=f"user{i}@t{i % 3}.example",
            event_time=T0 + timedelta(minutes=i),
            from_status=None,
            to_status=AddressStatus.PENDING,
            reason="verified",
            version=1,
        )
        for i in range(count)
    ]


def delivered(count: int) -> list[RecipientDelivered]:
    return [
        RecipientDelivered(
            tenant_id="t0",
            address=f"user{i % 7}@t0.example",
            event_time=T0 + timedelta(minutes=i),
            verdict="clean" if i % 4 else "not_clean",
            message_id=f"m{i}",
            client_ip="192.0.2.1",
        )
        for i in range(count)
    ]


Record = Message | tuple[bytes, bytes | None]


async def produce(bootstrap: str, topic: str, messages: Sequence[Record]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await producer.start()
    try:
        for message in messages:
            if isinstance(message, tuple):
                await producer.send(topic, message[1], key=message[0])
            else:
                await producer.send(topic, encode(message), key=message.kafka_key())
        await producer.flush()
    finally:
        await producer.stop()


@contextlib.asynccontextmanager
async def sink_running(sink: Sink) -> AsyncIterator[asyncio.Task[None]]:
    stop = asyncio.Event()
    task = asyncio.create_task(sink.run(stop))
    try:
        yield task
    finally:
        stop.set()
        with contextlib.suppress(Crash):
            await asyncio.wait_for(task, 60)


def count(client: Any, sql: str) -> int:
    return int(client.query(sql).result_rows[0][0])


def activity(client: Any, layout: Layout) -> dict[str, tuple[datetime, datetime, int, int]]:
    """Address -> first seen, last seen, messages, clean messages, from the rollup."""
    rows = client.query(
        "SELECT address_key, min(first_seen), max(last_seen), sum(messages), "
        f"sum(clean_messages) FROM {layout.database}.address_activity "
        "WHERE tenant_id = 't0' GROUP BY address_key"
    ).result_rows
    return {a: (f.replace(tzinfo=UTC), la.replace(tzinfo=UTC), int(n), int(c))
            for a, f, la, n, c in rows}  # fmt: skip


def expected_activity(
    messages: Sequence[RecipientDelivered],
) -> dict[str, tuple[datetime, datetime, int, int]]:
    out: dict[str, tuple[datetime, datetime, int, int]] = {}
    for m in messages:
        key = m.address.lower()
        first, last, n, clean = out.get(key, (m.event_time, m.event_time, 0, 0))
        out[key] = (min(first, m.event_time), max(last, m.event_time), n + 1,
                    clean + (m.verdict == "clean"))  # fmt: skip
    return out


async def until(condition: Any, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached before the deadline"
        await asyncio.sleep(0.05)


@pytest.fixture
async def world(kafka_bootstrap: str, clickhouse: Any, unique: str):  # type: ignore[no-untyped-def]
    names = TopicNames(f"s{unique}.")
    options = {"bootstrap_servers": kafka_bootstrap}
    await ensure_topics(options, partitions=3, replication=1, specs=names.specs())
    layout = Layout(f"sink_{unique}")
    migrate(clickhouse, layout)
    settings = SinkSettings(group=f"sink-{unique}", batch_rows=40, batch_seconds=0.2,
                            retry_initial_s=0.01, retry_max_s=0.05)  # fmt: skip

    def make(client: Any = clickhouse) -> Sink:
        return Sink(options, client, layout, names, settings)

    return names, layout, make


async def test_rows_and_rollups_arrive_once(kafka_bootstrap: str, clickhouse: Any, world) -> None:  # type: ignore[no-untyped-def]
    names, layout, make = world
    await produce(kafka_bootstrap, names(STATE_CHANGES), changes(150))
    # The worker's input and the settled addresses' mail are one table of mail events.
    await produce(kafka_bootstrap, names(MAIL), delivered(60)[:40])
    await produce(kafka_bootstrap, names(MAIL_SETTLED), delivered(60)[40:])
    sink = make()
    async with sink_running(sink):
        await until(lambda: sink.rows_written >= 210)
        metrics = sink.metrics()
        await until(lambda: metrics.get_sample_value("smtp_discovery_sink_lag_records") == 0)
    assert metrics.get_sample_value("smtp_discovery_sink_work_total", {"kind": "rows"}) == 210
    db = layout.database
    assert count(clickhouse, f"SELECT count() FROM {db}.state_changes") == 150
    assert count(clickhouse, f"SELECT count() FROM {db}.mail_events") == 60
    daily = clickhouse.query(
        f"SELECT sum(new_pending), sum(messages), sum(clean_messages) FROM {db}.tenant_daily"
    ).result_rows[0]
    assert daily == (150, 60, 45)
    assert activity(clickhouse, layout) == expected_activity(delivered(60))


@pytest.mark.parametrize("hashes", ["CRC32", "all colliding"])
async def test_a_repeated_event_is_one_row_and_one_count(
    kafka_bootstrap: str,
    clickhouse: Any,
    world,  # type: ignore[no-untyped-def]
    hashes: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Repeats of an event (a spool replayed after an outage, a producer's retry, a worker's
    re-emitted transition) in the same batch, and in a batch an hour later, count once; and
    ids whose hashes collide are told apart (only exact matches are repeats)."""
    if hashes == "all colliding":
        # Every stored id in the window comes back as if its hash matched one of the batch's.
        def colliding(
            table: str, events: smtp_discovery.sinks.once.Events
        ) -> list[tuple[str, Any]]:
            queries = smtp_discovery.sinks.once.stored_queries(table, events)
            return [(sql.replace("AND CRC32", "OR CRC32"), p) for sql, p in queries]

        monkeypatch.setattr(smtp_discovery.sinks.sink, "stored_queries", colliding)
    names, layout, make = world
    first, second = delivered(2)
    later = [m.model_copy(update={"event_time": m.event_time + timedelta(hours=1),
                                  "event_id": f"later-{i}"})
             for i, m in enumerate(delivered(2))]  # fmt: skip
    change = changes(1)[0]
    await produce(kafka_bootstrap, names(MAIL), [first, first, second])
    await produce(kafka_bootstrap, names(STATE_CHANGES), [change, change])
    sink = make()
    async with sink_running(sink):
        await until(lambda: sink.rows_written + sink.repeats >= 5)
        await produce(kafka_bootstrap, names(MAIL), [later[0], first, second, later[1]])
        await produce(kafka_bootstrap, names(STATE_CHANGES), [change])
        await until(lambda: sink.rows_written + sink.repeats >= 10)
    db = layout.database
    ids = clickhouse.query(f"SELECT event_id FROM {db}.mail_events ORDER BY event_time")
    assert [r[0] for r in ids.result_rows] == [first.event_id, second.event_id, "later-0",
                                              "later-1"]  # fmt: skip
    assert count(clickhouse, f"SELECT count() FROM {db}.state_changes") == 1
    daily = clickhouse.query(
        f"SELECT sum(messages), sum(new_pending) FROM {db}.tenant_daily"
    ).result_rows[0]
    assert daily == (4, 1)
    assert activity(clickhouse, layout) == expected_activity([first, second, *later])
    assert (sink.rows_written, sink.repeats) == (5, 5)


async def test_address_snapshots_keep_the_latest_version_and_honour_tombstones(
    kafka_bootstrap: str,
    clickhouse: Any,
    world,  # type: ignore[no-untyped-def]
) -> None:
    names, layout, make = world

    def snapshot(status: AddressStatus, version: int) -> AddressStateSnapshot:
        record = AddressRecord(
            tenant_id="t0",
            address="Ann@t0.example",
            status=status,
            status_since=T0,
            status_reason="import",
            version=version,
        )
        return AddressStateSnapshot(
            tenant_id="t0", address="Ann@t0.example", event_time=T0, record=record
        )

    gone = snapshot(AddressStatus.PENDING, 1)
    await produce(kafka_bootstrap, names(ADDRESS_STATE), [
        snapshot(AddressStatus.PENDING, 1), snapshot(AddressStatus.DISCOVERED, 2),
        snapshot(AddressStatus.USER, 3),
        gone.model_copy(update={"address": "bob@t0.example", "record": gone.record.model_copy(
            update={"address": "bob@t0.example"})}),
        (b"t0:bob@t0.example", None),
    ])  # fmt: skip
    sink = make()
    async with sink_running(sink):
        await until(lambda: sink.rows_written >= 5)
    rows = clickhouse.query(
        f"SELECT record_key, status, record_version FROM {layout.database}.address_state FINAL"
    ).result_rows
    assert rows == [("t0:ann@t0.example", "user", 3)]


@pytest.mark.parametrize("where", ["before_insert", "after_insert"])
async def test_a_sink_killed_mid_batch_is_replaced_without_loss_or_doubles(
    kafka_bootstrap: str,
    clickhouse: Any,
    world,
    where: str,  # type: ignore[no-untyped-def]
) -> None:
    names, layout, make = world
    await produce(kafka_bootstrap, names(STATE_CHANGES), changes(200))
    await produce(kafka_bootstrap, names(MAIL), delivered(100))
    crashing = Flaky(clickhouse, **{f"crash_{where}": 2})
    first = make(crashing)
    async with sink_running(first) as task:
        with pytest.raises(Crash):
            await asyncio.wait_for(asyncio.shield(task), 60)
    second = make()
    async with sink_running(second):
        table = f"{layout.database}.state_changes"
        mail = f"{layout.database}.mail_events"
        await until(lambda: count(clickhouse, f"SELECT count() FROM {table}") >= 200)
        await until(lambda: count(clickhouse, f"SELECT count() FROM {mail}") >= 100)
        await until(lambda: second.ready.is_set())
        await until(lambda: not second._batches)  # everything flushed and committed
    db = layout.database
    assert count(clickhouse, f"SELECT count() FROM {db}.state_changes") == 200
    assert count(clickhouse, f"SELECT uniqExact(event_id) FROM {db}.state_changes") == 200
    assert count(clickhouse, f"SELECT sum(new_pending) FROM {db}.tenant_daily") == 200
    assert count(clickhouse, f"SELECT count() FROM {db}.mail_events") == 100
    assert count(clickhouse, f"SELECT sum(messages) FROM {db}.tenant_daily") == 100
    assert activity(clickhouse, layout) == expected_activity(delivered(100))


async def test_clickhouse_outage_stalls_the_sink_and_loses_nothing(
    kafka_bootstrap: str,
    clickhouse: Any,
    world,  # type: ignore[no-untyped-def]
) -> None:
    names, layout, make = world
    await produce(kafka_bootstrap, names(MAIL), delivered(100))
    flaky = Flaky(clickhouse, fail=25)
    sink = make(flaky)
    async with sink_running(sink):
        await until(lambda: sink.rows_written >= 100)
    assert flaky.failures == 25
    assert count(clickhouse, f"SELECT count() FROM {layout.database}.mail_events") == 100
    assert count(clickhouse, f"SELECT sum(messages) FROM {layout.database}.tenant_daily") == 100
    assert activity(clickhouse, layout) == expected_activity(delivered(100))


async def test_an_undecodable_record_goes_to_the_dead_letter_topic(
    kafka_bootstrap: str,
    clickhouse: Any,
    world,  # type: ignore[no-untyped-def]
) -> None:
    names, layout, make = world
    good = delivered(3)
    await produce(
        kafka_bootstrap, names(MAIL), [good[0], (b"t0:x", b"{not json"), good[1], good[2]]
    )
    sink = make()
    async with sink_running(sink):
        await until(lambda: sink.rows_written == 3 and sink.dead_letters == 1)
    (letter,) = await consume_until(kafka_bootstrap, names(DEAD_LETTER), 1)
    decoded = decode(DEAD_LETTER, letter.value)
    assert (decoded.component, decoded.original_value()) == ("sink", b"{not json")
    assert count(clickhouse, f"SELECT count() FROM {layout.database}.mail_events") == 3


def test_the_sink_hashes_an_id_as_clickhouse_does(clickhouse: Any) -> None:
    """The lookup of stored events compares ClickHouse's ``CRC32`` of each stored id with
    the sink's own hash of each id it holds: they must agree on every string."""
    ids = ["0f64769295dc40f692d77abd209a05f9", "x", "é'\\\"`", "a" * 128, "m-1\n2"]
    for event_id in ids:
        (stored,) = clickhouse.query(
            "SELECT CRC32({id:String})", parameters={"id": event_id}
        ).result_rows[0]
        assert stored == smtp_discovery.sinks.once.id_hash(event_id), event_id


async def test_a_write_that_failed_during_a_rebalance_stops_the_sink() -> None:
    """A rebalance waits for the writes of the partitions it takes away. One that failed with
    an error nothing retries must not vanish into aiokafka's listener (which only logs): the
    sink's main loop raises it at its next turn, as it does for a write it finds failed."""
    sink = Sink({"bootstrap_servers": "127.0.0.1:9"}, None, Layout("unused"), TopicNames(""),
                SinkSettings(group="g"))  # fmt: skip
    tp = TopicPartition("discovery.mail", 0)

    async def refused() -> None:
        raise RuntimeError("the commit was refused")

    sink._writing[tp] = (asyncio.create_task(refused()), 1)
    try:
        await sink.forget({tp})  # does not raise into the listener
        with pytest.raises(RuntimeError, match="refused"):
            await sink._reap()
    finally:
        await sink._producer.stop()
