"""ClickHouse sink throughput, and the weekly report queries over a large history.

    .venv/bin/python -m bench.sink [--rows 200000] [--history 10000000] [--tenants 10000]

Figures (one JSON object each):
* ``sink_rows_per_s``: state changes per second from Kafka into ClickHouse through the sink once it
  has joined its group (fetch, contract validation of every message, the lookup of repeated events,
  columns, recorded range, deduplicated insert, offset commit), divided by the rows/s of bare
  clickhouse-connect inserts of the same rows, built beforehand as the sink's columns, in
  10,000-row blocks inserted as the sink inserts them (as Arrow tables: the fastest way to insert
  them), same run, same embedded ClickHouse. ``vs_pipe`` divides it by a minimal pipe instead:
  aiokafka reading the same records and inserting those prebuilt blocks as they arrive, with
  nothing of ours in between, which isolates the sink's own cost from Kafka's. The topic holds a
  full batch a partition more than is measured, so every measured row is written by a full batch,
  never after the batch time (a setting) that a part batch at the end of the input waits out. All
  three run in one process set as the sink's is (``platform.interpreter``).
* ``report_query_ms``: latency of each weekly report's queries for one tenant (median and max
  over 20 tenants) over ``--history`` state changes spread over ``--tenants`` tenants and a year,
  with one discovered address in twenty in the address-state table.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from bench.harness import run_with_kafka
from bench.kafka_baseline import emit
from smtp_discovery.jobs.reports import Kind, Tenant, build
from smtp_discovery.platform.clickhouse import connect
from smtp_discovery.platform.interpreter import tune
from smtp_discovery.platform.kafka import ensure_topics
from smtp_discovery.schemas.calendar import Schedule, Week
from smtp_discovery.schemas.codec import encode
from smtp_discovery.schemas.state import AddressStatus, StateChange
from smtp_discovery.schemas.tenant import DiscoverySettings
from smtp_discovery.schemas.topics import STATE_CHANGES, TopicNames
from smtp_discovery.sinks.columns import SOURCES, Columns
from smtp_discovery.sinks.migrate import migrate
from smtp_discovery.sinks.schema import Layout
from smtp_discovery.sinks.sink import Sink, SinkSettings

T0 = datetime(2026, 1, 5, tzinfo=UTC)
BLOCK = 10_000
PARTITIONS = 4


def changes(count: int) -> list[StateChange]:
    return [
        StateChange(
            tenant_id=f"t{i % 500}",
            address=f"user{i}@t{i % 500}.example",
            event_time=T0 + timedelta(seconds=i),
            from_status=AddressStatus.PENDING,
            to_status=AddressStatus.DISCOVERED,
            reason="threshold",
            version=2,
        )
        for i in range(count)
    ]


def blocks(messages: list[StateChange]) -> list[Columns]:
    """The rows as the bare insert and the pipe send them: 10,000-row blocks of the sink's
    columns."""
    source = SOURCES[STATE_CHANGES]
    now = datetime.now(UTC)
    out = []
    for start in range(0, len(messages), BLOCK):
        taken = source.taken(0)
        for offset, message in enumerate(messages[start : start + BLOCK], start):
            taken.add(message.kafka_key(), message, offset)
        out.append(taken.to_columns(now))
    return out


def insert(client: Any, layout: Layout, block: Columns) -> None:
    """A block inserted as the sink inserts a batch: made an Arrow table, handed over as that
    (``sinks.arrow``; about 1.5x the rows/s of clickhouse-connect's column-oriented insert)."""
    source = SOURCES[STATE_CHANGES]
    client.insert_arrow(layout.name(source.table), source.arrow(block))


def bare_insert_rate(client: Any, layout: Layout, prebuilt: list[Columns], rows: int) -> float:
    began = time.perf_counter()
    for block in prebuilt:
        insert(client, layout, block)
    return rows / (time.perf_counter() - began)


async def produced(bootstrap: str, values: list[tuple[bytes, bytes]]) -> TopicNames:
    names = TopicNames(f"bench{uuid.uuid4().hex[:6]}.")
    options = {"bootstrap_servers": bootstrap}
    await ensure_topics(options, partitions=PARTITIONS, replication=1, specs=names.specs())
    producer = AIOKafkaProducer(**options, linger_ms=20, max_batch_size=1 << 20)
    await producer.start()
    for key, value in values:
        await producer.send(names(STATE_CHANGES), value, key=key)
    await producer.stop()
    return names


async def pipe_rate(
    bootstrap: str, names: TopicNames, client: Any, layout: Layout, prebuilt: list[Columns],
    rows: int,
) -> float:  # fmt: skip
    """Kafka to ClickHouse with nothing of ours in between: read, and insert the prebuilt block
    each time a block's worth of records has arrived."""
    consumer = AIOKafkaConsumer(names(STATE_CHANGES), bootstrap_servers=bootstrap,
                                auto_offset_reset="earliest", enable_auto_commit=False,
                                max_poll_records=BLOCK)  # fmt: skip
    await consumer.start()
    try:
        while not consumer.assignment():  # noqa: ASYNC110 (joining is not throughput)
            await asyncio.sleep(0.01)
        began = time.perf_counter()
        received = inserted = 0
        while inserted < len(prebuilt):
            batches = await consumer.getmany(timeout_ms=200, max_records=BLOCK)
            received += sum(len(records) for records in batches.values())
            while inserted < len(prebuilt) and (
                received >= (inserted + 1) * BLOCK or received >= rows
            ):
                await asyncio.to_thread(insert, client, layout, prebuilt[inserted])
                inserted += 1
        return rows / (time.perf_counter() - began)
    finally:
        await consumer.stop()


async def sink_rate(
    bootstrap: str, names: TopicNames, client: Any, layout: Layout, rows: int
) -> float:
    options = {"bootstrap_servers": bootstrap}
    sink = Sink(options, client, layout, names, SinkSettings(group=f"bench-{uuid.uuid4().hex}"),
                topics=(STATE_CHANGES,))  # fmt: skip
    stop = asyncio.Event()
    task = asyncio.create_task(sink.run(stop))
    await sink.ready.wait()  # joining the consumer group is not throughput
    began = time.perf_counter()
    # Polling costs the sink nothing measurable at this interval; it exposes no completion event.
    while sink.rows_written < rows:  # noqa: ASYNC110
        await asyncio.sleep(0.01)
    elapsed = time.perf_counter() - began
    written = sink.rows_written
    stop.set()
    await task
    return written / elapsed


def build_history(client: Any, layout: Layout, rows: int, tenants: int) -> None:
    db = layout.database
    statuses = "['pending','discovered','user','alias','invalid']"
    client.command(
        f"INSERT INTO {db}.state_changes (event_id, tenant_id, address, from_status, to_status, "
        "reason, actor, role, primary, record_version, cause_event_ids, event_time, "
        "kafka_partition, kafka_offset, ingested_at) "
        f"SELECT toString(number), concat('t', toString(number % {tenants})), "
        f"concat('a', toString(intDiv(number, {tenants})), '@t', toString(number % {tenants}), "
        f"'.example'), 'discovered', {statuses}[1 + number % 5], "
        "if(number % 5 = 3, 'alias_detected', 'threshold'), 'system', '', "
        f"if(number % 5 = 3, concat('p@t', toString(number % {tenants}), '.example'), ''), 2, "
        "[], toDateTime64('2026-01-01 00:00:00', 3, 'UTC') + toIntervalSecond(number * 3), "
        f"0, number, now64(3) FROM numbers({rows})"
    )
    client.command(
        f"INSERT INTO {db}.address_state (tenant_id, record_key, address, status, role, primary, "
        "first_name, surname, status_since, status_reason, discovered_at, discovered_reason, "
        "aliases, record_version, is_deleted, kafka_partition, "
        "kafka_offset, ingested_at) "
        f"SELECT concat('t', toString(number % {tenants})), toString(number), "
        f"concat('d', toString(number), '@t', toString(number % {tenants}), '.example'), "
        "if(number % 20 = 0, 'discovered', 'user'), '', '', '', '', now64(3), 'threshold', "
        "now64(3) - toIntervalDay(number % 20), 'threshold', [], 1, 0, 0, number, "
        f"now64(3) FROM numbers({rows // 10})"
    )


def time_reports(client: Any, layout: Layout, tenants: int) -> dict[str, dict[str, float]]:
    schedule = Schedule.parse("09:00", "UTC")
    week = Week.parse("2026-W20")
    rng = random.Random(7)
    out = {}
    for kind in Kind:
        timings = []
        for _ in range(20):
            tenant = Tenant(f"t{rng.randrange(tenants)}", "T", "", "", DiscoverySettings())
            began = time.perf_counter()
            build(client, layout, tenant, kind, week, schedule)
            timings.append((time.perf_counter() - began) * 1000)
        out[kind.value] = {
            "median": round(statistics.median(timings), 1),
            "max": round(max(timings), 1),
        }
    return out


async def main_async(bootstrap: str, args: argparse.Namespace, tmp: Path) -> None:
    client = connect(f"chdb://{tmp / 'chdb'}")
    bare_layout, pipe_layout, sink_layout, history_layout = (
        Layout(f"bench_{name}") for name in ("bare", "pipe", "sink", "history")
    )
    for layout in (bare_layout, pipe_layout, sink_layout, history_layout):
        migrate(client, layout)
    messages = changes(args.rows)
    # A full batch a partition more than is measured, so that every measured row is written by
    # a full batch: at the end of its input the sink waits out its batch time with part
    # batches, and that wait (a setting, 1 s) would be measured as the sink's slowness.
    extra = changes(PARTITIONS * SinkSettings(group="").batch_rows)
    values = [(m.kafka_key(), encode(m)) for m in messages + extra]
    prebuilt = blocks(messages)
    # Nothing the sink decodes is alive before it runs, as in a sink process of its own (a
    # heap full of messages would make every garbage collection during its run slower).
    del messages, extra
    names = await produced(bootstrap, values)
    del values
    bare = bare_insert_rate(client, bare_layout, prebuilt, args.rows)
    pipe = await pipe_rate(bootstrap, names, client, pipe_layout, prebuilt, args.rows)
    del prebuilt
    through_sink = await sink_rate(bootstrap, names, client, sink_layout, args.rows)
    emit("sink_rows_per_s", ratio=round(through_sink / bare, 3), sink=round(through_sink),
         bare_insert=round(bare), vs_pipe=round(through_sink / pipe, 3), pipe=round(pipe),
         rows=args.rows)  # fmt: skip
    began = time.perf_counter()
    build_history(client, history_layout, args.history, args.tenants)
    loaded = time.perf_counter() - began
    emit("report_query_ms", state_changes=args.history, tenants=args.tenants,
         load_s=round(loaded, 1), **time_reports(client, history_layout, args.tenants))  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--history", type=int, default=10_000_000)
    parser.add_argument("--tenants", type=int, default=10_000)
    tune()
    run_with_kafka(main_async, parser.parse_args())


if __name__ == "__main__":
    main()
