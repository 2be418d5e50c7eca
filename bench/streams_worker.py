"""Streams worker throughput and recovery, against a bare aiokafka loop in the same run.

    .venv/bin/python -m bench.streams_worker [--events 100000] [--recovery-addresses 1000000]
        [--rounds 3]

Figures (one JSON object each):
* ``faust_noop_events_per_s``: a Faust agent that does nothing with each event (bench.faust_noop),
  over the baseline below: the floor of Faust's own per-event cost.
* ``worker_events_per_s`` (``mix=discovering``): mail to addresses being discovered, the
  heaviest path (decode, rules, table update, snapshot; new addresses' transitions acknowledged
  before the table write), divided by the events/s of a bare aiokafka consume→produce loop over
  the same input topic, measured in the same run; ``vs_noop`` divides it by the Faust no-op's.
* ``worker_events_per_s`` (``mix=users``): mail to addresses that are already users, the bulk of
  a provider's steady-state traffic (decode and look-up, no write), over the same baselines.
  Both also say ``sink_rows_per_message``: the rows the sink writes per input message (its mail
  event, plus the state changes and address snapshots the worker published meanwhile).
* ``worker_recovery_s``: seconds a fresh worker (empty data directory) needs to restore a
  table of N addresses from its changelog and index the waiting ones: from its start to
  ready (``tables_restored_s``), and the restore proper, from the first to the last changelog
  read by the worker's log (``restore_s``, and ``restore_s_per_million``
  addresses: the figure the issue's one-million goal is read against in the quick run).

The throughput figures are medians over ``--rounds`` passes (3 by default). A pass measures the
bare loop, the no-op and both mixes one right after another, and each ratio is taken within its
pass; ``vs_noop_rounds`` lists every pass's own. The machines this runs on drift by up to
twice their speed over minutes, and one pass alone once put the discovering mix at 0.13 of a
no-op measured just before the machine slowed down, and at 0.48 in the next pass.

How a Faust process's rate is timed from outside it (the worker's code is not touched): the
timed events stand between two *markers* on every partition, each a verification of an address
never seen before, which every version of the worker answers with outputs (a new address's
snapshot and transition; the no-op forwards markers and nothing else). Its output topics stamp
each record with the broker's clock on arrival (``LogAppendTime``). The rate is the number of
timed events and tail markers divided by the time from the first output of any head marker to
the last output of any tail marker.

Before the head markers and after the tail markers goes mail of the same kind to addresses of
its own (a tenth as much as the timed events), because the worker applies its input a batch at
a time, and a marker's outputs leave once its whole batch is applied. A head marker that opened
the input was timed from the end of the first batch while every record of that batch was
counted: the larger the batches, the faster the worker looked. With mail on either side, each
marker stands somewhere in its batch, and what the head's batch adds to the count the tail's
takes away; the mail before also keeps the worker's start out of the window. Commit intervals
and the bench's polling do not enter the figure: the group's committed offsets only confirm
that every input record was consumed. Anything that would make the window wrong (a marker
without an output, a timestamp that is not the broker's, a window too short for millisecond
stamps) fails the run instead of writing a figure.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from statistics import median

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from bench.harness import run_with_kafka
from bench.kafka_baseline import emit, pass_through
from smtp_discovery.platform.config import RuntimeConfig
from smtp_discovery.platform.kafka import client_options, ensure_topics
from smtp_discovery.platform.stopping import die_with_parent
from smtp_discovery.schemas.codec import encode
from smtp_discovery.schemas.commands import ImportUser
from smtp_discovery.schemas.mail import CalloutVerified, RecipientDelivered
from smtp_discovery.schemas.state import AddressRecord, AddressStatus
from smtp_discovery.schemas.tenant import TenantConfig
from smtp_discovery.schemas.topics import (
    ADDRESS_STATE,
    COMMANDS,
    MAIL,
    STATE_CHANGES,
    TENANTS,
    TopicNames,
)
from smtp_discovery.streams.partitioning import partition_for
from smtp_discovery.streams.store import inline_entry, record_json

ROOT = Path(__file__).resolve().parents[1]
PARTITIONS = 4
T0 = datetime(2026, 3, 2, 9, tzinfo=UTC)
MARK = ":mark"
"""In the route key (``bench:markhead3``) and record key of every marker, and of nothing else."""
TIMED = (ADDRESS_STATE, STATE_CHANGES)
"""Output topics whose records carry the broker's append time: the timed runs read them back."""
LOG_APPEND_TIME = 1
MIN_WINDOW_S = 2.0
"""Shortest window a rate is computed over: each end is exact to a few milliseconds (whole-
millisecond stamps; outputs sent together reach their partitions in one request), which over
2 s is well under 1%."""


def worker_env(bootstrap: str, names: TopicNames, app_id: str, data_dir: Path) -> dict[str, str]:
    return {
        **os.environ,
        "KAFKA_BOOTSTRAP": bootstrap,
        "DISCOVERY_TOPIC_PREFIX": names.prefix,
        "DISCOVERY_TOPIC_PARTITIONS": str(PARTITIONS),
        "DISCOVERY_TOPIC_REPLICATION": "1",
        "DISCOVERY_STREAMS_APP_ID": app_id,
        "DISCOVERY_DATA_DIR": str(data_dir),
        "DISCOVERY_CLOCK": "event-time",
        "DISCOVERY_EXPIRY_SCAN_S": "1",
        "DISCOVERY_LOG_LEVEL": "INFO",
        # No ops endpoint: its fixed default port may be taken by a worker running beside.
        "DISCOVERY_OPS_LISTEN": "off",
    }


def start_module(module: str, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    args = ["worker"] if module == "smtp_discovery.cli" else ["worker", "-l", "warn"]
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", module, *args],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            # A bench stopped by a signal takes its worker with it: an orphan went on scanning
            # and sending ticks at 40% of a core, under every later measurement.
            preexec_fn=die_with_parent(),
        )


def start_worker(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return start_module("smtp_discovery.cli", env, log)


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(60)
    except subprocess.TimeoutExpired:
        process.kill()


async def setup(bootstrap: str, names: TopicNames) -> None:
    """The run's topics (before any process does: the timed outputs are stamped by the
    broker), and its one tenant."""
    timed = {names(base) for base in TIMED}
    specs = [
        replace(s, extra_configs={**s.extra_configs, "message.timestamp.type": "LogAppendTime"})
        if s.name in timed
        else s
        for s in names.specs()
    ]
    await ensure_topics(
        client_options(RuntimeConfig(), bootstrap),
        partitions=PARTITIONS,
        replication=1,
        specs=specs,
    )
    tenant = TenantConfig(
        tenant_id="bench",
        event_time=T0,
        name="Bench",
        domains=("bench.example",),
        settings={"discovery_enabled": True, "inbound_detection_threshold": 1000},
    )
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    await producer.send_and_wait(names(TENANTS), key=tenant.kafka_key(), value=encode(tenant))
    await producer.stop()


def mail_events(
    count: int, addresses: int, *, name: str = "user", start: datetime = T0
) -> list[tuple[bytes, bytes]]:
    """A verification for each address, then clean deliveries spread over the addresses
    (``<name><n>@bench.example``), one second apart from ``start``."""
    out = []
    for i in range(count):
        address = f"{name}{i % addresses}@bench.example"
        at = start + timedelta(seconds=i)
        if i < addresses:
            event = CalloutVerified(
                tenant_id="bench",
                event_time=at,
                address=address,
                destination="mx:25",
                reply_code=250,
            )
        else:
            event = RecipientDelivered(
                tenant_id="bench",
                event_time=at,
                address=address,
                verdict="clean",
                message_id=f"m{i}",
                client_ip="192.0.2.1",
            )
        out.append((event.kafka_key(), encode(event)))
    return out


async def produce(bootstrap: str, topic: str, records: list[tuple[bytes, bytes]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks=1, linger_ms=5)
    await producer.start()
    try:
        for key, value in records:
            await producer.send(topic, key=key, value=value)
        await producer.flush()
    finally:
        await producer.stop()


def markers(
    kind: str, at: datetime, partitions: int = PARTITIONS
) -> list[tuple[int, bytes, bytes]]:
    """(partition, key, value): one verification of a new address for every partition of the
    mail topic. A new address always changes state, so the worker answers it with outputs."""
    found: dict[int, tuple[bytes, bytes]] = {}
    n = 0
    while len(found) < partitions:
        event = CalloutVerified(
            tenant_id="bench",
            event_time=at,
            address=f"{MARK[1:]}{kind}{n}@bench.example",
            destination="mx:25",
            reply_code=250,
        )
        key = event.kafka_key()
        found.setdefault(partition_for(key, partitions), (key, encode(event)))
        n += 1
    return [(partition, key, value) for partition, (key, value) in sorted(found.items())]


LEAD = 0.1
"""Traffic sent before the head markers, and again after the tail markers, as a share of the
timed events: the timed span lies inside the run (see the module's doc)."""


def lead_and_trail(
    timed: int, timed_addresses: int
) -> tuple[list[tuple[bytes, bytes]], list[tuple[bytes, bytes]]]:
    """Mail like the timed events (``mail_events`` to a tenth as many addresses of its own),
    before and after them in event time: it keeps the process's start and its last batch out of
    the window, and the timed events what they were."""
    count, addresses = max(1, int(timed * LEAD)), framing_addresses(timed_addresses)
    lead = mail_events(count, addresses, name="lead", start=T0 - timedelta(seconds=count))
    trail = mail_events(count, addresses, name="trail", start=T0 + timedelta(seconds=timed))
    return lead, trail


def framing_addresses(timed_addresses: int) -> int:
    """How many addresses the mail before (``lead<n>``) and after (``trail<n>``) goes to."""
    return max(1, int(timed_addresses * LEAD))


Row = tuple[int | None, bytes, bytes]
"""(partition, key, value) to send; no partition, the key's."""


def marked_parts(
    events: list[tuple[bytes, bytes]], addresses: int, partitions: int = PARTITIONS
) -> tuple[list[list[Row]], int]:
    """The input of a timed run, in the parts to send one after another: the mail before
    (``lead_and_trail``), a head marker on every partition, ``events``, a tail marker on every
    partition, the mail after. Returns them with the number of records timed: ``events`` and
    the tail markers."""
    lead, trail = lead_and_trail(len(events), addresses)
    heads = markers("head", T0, partitions)
    tails = markers("tail", T0 + timedelta(seconds=len(events)), partitions)
    keyed = [[(None, key, value) for key, value in part] for part in (lead, events, trail)]
    parts: list[list[Row]] = [keyed[0], list(heads), keyed[1], list(tails), keyed[2]]
    return parts, len(events) + len(tails)


async def produce_marked(
    bootstrap: str, topic: str, events: list[tuple[bytes, bytes]], addresses: int
) -> tuple[int, int]:
    """``marked_parts``, each part acknowledged before the next is sent, so the markers stand
    where they were put. Returns (the records sent, the records timed)."""
    parts, timed = marked_parts(events, addresses)
    for part in parts:
        await produce_partitioned(bootstrap, topic, part)
    return sum(map(len, parts)), timed


@dataclass(frozen=True)
class Rate:
    events_per_s: float
    window_s: float
    sink_rows_per_message: float | None = None
    """Rows the sink writes per input message: its mail event, and the state changes and
    address snapshots it caused (those follow transitions, not messages)."""


async def records_on(bootstrap: str, topics: list[str]) -> int:
    """Records on ``topics`` (at-least-once outputs: no transaction markers among them)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        parts = [TopicPartition(t, p) for t in topics for p in range(PARTITIONS)]
        return sum((await consumer.end_offsets(parts)).values())
    finally:
        await consumer.stop()


async def worker_throughput(
    bootstrap: str, events: int, addresses: int, tmp: Path, *, users: bool = False
) -> Rate:
    names = TopicNames(f"bench{int(time.time())}{'u' if users else 'd'}.")
    await setup(bootstrap, names)
    app_id = f"{names.prefix}streams"
    env = worker_env(bootstrap, names, app_id, tmp / names.prefix)
    if users:
        # The users exist before the mail arrives (the mail around the timed mail goes to
        # users too): a first worker imports them and stops. They are imported before the
        # first mail in event time too: mail older than an import is placed before it (a
        # replay that makes the address pending, then a user again).
        framing = framing_addresses(addresses)
        imported_at = T0 - timedelta(days=1)
        imports = [
            ImportUser(
                tenant_id="bench",
                event_time=imported_at,
                address=f"{name}{i}@bench.example",
                actor="bench",
            )
            for name, count in (("user", addresses), ("lead", framing), ("trail", framing))
            for i in range(count)
        ]
        await produce(bootstrap, names(COMMANDS), [(c.kafka_key(), encode(c)) for c in imports])
        importer = start_worker(env, tmp / "import.log")
        try:
            await until_committed(
                bootstrap, app_id, names(COMMANDS), len(imports), importer, tmp / "import.log"
            )
        finally:
            stop(importer)
    outputs = [names(t) for t in TIMED]
    before = await records_on(bootstrap, outputs)
    total, timed = await produce_marked(
        bootstrap, names(MAIL), mail_events(events, addresses), addresses
    )
    process = start_worker(env, tmp / "throughput.log")
    try:
        await until_committed(
            bootstrap, app_id, names(MAIL), total, process, tmp / "throughput.log"
        )
        rate = await marked_rate(bootstrap, outputs, timed)
        caused = await records_on(bootstrap, outputs) - before
        return replace(rate, sink_rows_per_message=round((total + caused) / total, 4))
    finally:
        stop(process)


async def faust_floor(bootstrap: str, events: int, addresses: int, tmp: Path) -> Rate:
    """Events/s of a Faust agent that does nothing with each event."""
    names = TopicNames(f"noop{int(time.time())}.")
    await setup(bootstrap, names)
    total, timed = await produce_marked(
        bootstrap, names(MAIL), mail_events(events, addresses), addresses
    )
    app_id = f"{names.prefix}noop"
    env = {
        **os.environ,
        "NOOP_APP_ID": app_id,
        "NOOP_BOOTSTRAP": bootstrap,
        "NOOP_TOPIC": names(MAIL),
        "NOOP_OUTPUT": names(ADDRESS_STATE),
        "NOOP_MARK": MARK,
        "NOOP_DATA_DIR": str(tmp / f"{app_id}-data"),
    }
    process = start_module("bench.faust_noop", env, tmp / "noop.log")
    try:
        await until_committed(bootstrap, app_id, names(MAIL), total, process, tmp / "noop.log")
        return await marked_rate(bootstrap, [names(ADDRESS_STATE)], timed)
    finally:
        stop(process)


async def until_committed(
    bootstrap: str,
    group: str,
    topic: str,
    records: int,
    process: subprocess.Popen[bytes],
    log: Path,
    timeout: float = 1800,
) -> None:
    """Return once ``group`` has committed ``records`` records of ``topic``: every one consumed.
    Not a clock: the rate comes from the outputs' stamps (marked_rate)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                offsets = await admin.list_consumer_group_offsets(group)
            except KafkaError:
                offsets = {}
            if sum(max(o.offset, 0) for tp, o in offsets.items() if tp.topic == topic) >= records:
                return
            if process.poll() is not None:
                raise RuntimeError(read_log(log)[-3000:])
            await asyncio.sleep(0.5)
    finally:
        await admin.close()
    raise RuntimeError(f"{group} did not consume {records} records of {topic} in {timeout:.0f}s")


async def marked_rate(bootstrap: str, topics: list[str], records: int, timeout: float = 60) -> Rate:
    """The rate of a process through the ``records`` input records timed by the markers
    (``produce_marked``), from the broker's stamps on its outputs in ``topics`` (see the
    module's docstring)."""
    first, last = await marker_window(bootstrap, topics, timeout)
    return window_rate(first, last, records)


def window_rate(first_ms: int, last_ms: int, records: int) -> Rate:
    """From the first head marker's output to the last tail marker's, the process handled the
    ``records`` timed: those after the head markers, up to and with the tail markers."""
    seconds = (last_ms - first_ms) / 1000
    if seconds < MIN_WINDOW_S:
        raise RuntimeError(
            f"{records} records took {seconds:.3f}s, under the {MIN_WINDOW_S}s a rate needs: "
            "raise --events"
        )
    return Rate(records / seconds, seconds)


def note_marker(seen: dict[str, dict[bytes, int]], key: bytes | None, stamp: int) -> None:
    """Keep the earliest stamp of each head marker's outputs and the latest of each tail's;
    ``key`` is a marker's route key (the no-op) or record key (the worker), or anything else."""
    match = re.search(rb":mark(head|tail)(\d+)(?:@|$)", key or b"")
    if match:
        kind, name = match.group(1).decode(), match.group(2)
        pick = min if kind == "head" else max
        seen[kind][name] = pick(seen[kind].get(name, stamp), stamp)


async def marker_window(bootstrap: str, topics: list[str], timeout: float) -> tuple[int, int]:
    """(first, last) in broker milliseconds: the earliest output of any head marker and the
    latest output of any tail marker, once every marker's outputs are in and every partition
    has been read to its end."""
    parts = [TopicPartition(t, p) for t in topics for p in range(PARTITIONS)]
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    seen: dict[str, dict[bytes, int]] = {"head": {}, "tail": {}}
    try:
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500, max_records=10_000)
            for record in (r for rs in batch.values() for r in rs):
                if record.timestamp_type != LOG_APPEND_TIME:
                    raise RuntimeError(
                        f"{record.topic} is not stamped by the broker (LogAppendTime): "
                        "cannot time the run from its outputs"
                    )
                note_marker(seen, record.key, record.timestamp)
            if all(len(s) == PARTITIONS for s in seen.values()):
                ends = await consumer.end_offsets(parts)
                read = [await consumer.position(tp) for tp in parts]
                if all(at >= ends[tp] for at, tp in zip(read, parts, strict=True)):
                    return min(seen["head"].values()), max(seen["tail"].values())
    finally:
        await consumer.stop()
    raise RuntimeError(
        f"outputs of {len(seen['head'])} head and {len(seen['tail'])} tail markers of "
        f"{PARTITIONS} each found in {topics} within {timeout:.0f}s: cannot time the run"
    )


async def baseline(bootstrap: str, events: int, addresses: int) -> float:
    names = TopicNames(f"base{int(time.time())}.")
    await setup(bootstrap, names)
    await produce(bootstrap, names(MAIL), mail_events(events, addresses))
    return await pass_through(bootstrap, names(MAIL), names(STATE_CHANGES), events)


def group_changelog(count: int) -> list[tuple[int, bytes, bytes]]:
    """The groups table's changelog of ``count`` addresses, one to a group, half of them
    pending and half discovered (all waiting: the index rebuild reads every one)."""
    groups = []
    for i in range(count):
        address = f"user{i}@bench.example"
        route_key = f"bench:user{i}"
        record_key = f"bench:{address}"
        partition = partition_for(route_key.encode(), PARTITIONS)
        record = AddressRecord(
            tenant_id="bench",
            address=address,
            status=AddressStatus.PENDING if i % 2 else AddressStatus.DISCOVERED,
            status_since=T0,
            status_reason="verified" if i % 2 else "threshold",
            discovered_at=None if i % 2 else T0,
            first_seen=T0,
            last_seen=T0,
            clean_by_day={T0.date(): 1},
            applied_event_ids=(f"{i:032x}",),
        )
        # A group of one, as the worker stores it: the record inline in the group's entry
        # (streams.store); the records table holds only larger groups' records.
        inline = inline_entry(record_key, record_json(record))
        groups.append((partition, json.dumps(route_key).encode(), inline))
    return groups


async def produce_partitioned(
    bootstrap: str, topic: str, rows: Sequence[tuple[int | None, bytes, bytes]]
) -> None:
    if not rows:
        return
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks=1, linger_ms=20, max_batch_size=1 << 20
    )
    await producer.start()
    try:
        for partition, key, value in rows:
            await producer.send(topic, key=key, value=value, partition=partition)
        await producer.flush()
    finally:
        await producer.stop()


async def recovery(bootstrap: str, addresses: int, tmp: Path) -> dict[str, float]:
    names = TopicNames(f"rec{int(time.time())}.")
    app_id = f"{names.prefix}streams"
    await setup(bootstrap, names)
    # A first worker creates the changelog topics; the table is then written straight to them,
    # as a long-running worker would have done.
    env = worker_env(bootstrap, names, app_id, tmp / "first")
    first = start_worker(env, tmp / "first.log")
    await wait_for_log(tmp / "first.log", "Worker ready", 120)
    stop(first)
    groups = group_changelog(addresses)
    await produce_partitioned(bootstrap, f"{app_id}-groups-changelog", groups)
    began = time.monotonic()
    fresh = start_worker(worker_env(bootstrap, names, app_id, tmp / "fresh"), tmp / "fresh.log")
    try:
        ready = await wait_for_log(tmp / "fresh.log", "Worker ready", 1800) - began
        indexed = await wait_for_log(tmp / "fresh.log", "due index rebuilt", 1800) - began
    finally:
        stop(fresh)
    log_text = await asyncio.to_thread(read_log, tmp / "fresh.log")
    match = re.search(r"due index rebuilt: (\d+)", log_text)
    restore_s = restore_window(log_text)
    return {
        "tables_restored_s": round(ready, 1),
        "restore_s": round(restore_s, 1),
        "restore_s_per_million": round(restore_s * 1_000_000 / addresses, 1),
        "due_index_built_s": round(indexed, 1),
        "waiting_indexed": int(match.group(1)) if match else -1,
    }


_STAMP = r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) .*"
RESTORE_BEGINS = re.compile(
    _STAMP + "(?:" + re.escape("reading changelogs ahead:") + "|"
    + re.escape("Restoring state from changelog topics") + ")"
)  # fmt: skip
RESTORE_ENDS = re.compile(
    _STAMP + "(?:" + r"read \d+ changelog records ahead" + "|"
    + re.escape("Done reading from changelog topics") + ")"
)  # fmt: skip


def restore_window(log_text: str) -> float:
    """Seconds the worker spent reading its changelogs, by its own log's stamps: from the first
    read's beginning (the worker's read-ahead, streams.readahead, or Faust's own "Restoring
    state") to the last read's end (the read-ahead's, or Faust's "Done reading" when it had
    records left to read). The process's start and the group's join, a fixed cost, are left
    out, so that a rate per million from a small table is not inflated by them. A worker that
    logged neither, or a window of zero, fails the run."""
    begins = [m.group(1) for m in RESTORE_BEGINS.finditer(log_text)]
    ends = [m.group(1) for m in RESTORE_ENDS.finditer(log_text)]
    if not begins or not ends:
        raise RuntimeError("the fresh worker did not log its restore's beginning and end")
    began, ended = (datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f")
                    for stamp in (min(begins), max(ends)))  # fmt: skip
    window = (ended - began).total_seconds()
    if not window > 0:
        raise RuntimeError(f"restore window of {window} s: no figure")
    return window


def read_log(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""


async def wait_for_log(path: Path, text: str, timeout: float) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in await asyncio.to_thread(read_log, path):
            return time.monotonic()
        await asyncio.sleep(0.2)
    raise RuntimeError(f"{text!r} not logged within {timeout}s:\n" + read_log(path)[-3000:])


@dataclass(frozen=True)
class Round:
    """One pass over every process, one right after another: its ratios are the figures'
    material. The machine's speed drifts by up to twice over minutes (the same no-op ran at
    4,150 and 9,470 events/s within half an hour on this VM), and a ratio of two rates taken
    minutes apart measured that drift as often as the worker."""

    base: float
    floor: Rate
    mixes: dict[str, Rate]


def round_figures(rounds: list[Round], events: int) -> list[dict[str, object]]:
    """The rows of ``rounds``: each ratio is the median of the rounds' own ratios (every
    round's is printed beside it), each rate the median rate."""
    rows: list[dict[str, object]] = [
        {
            "figure": "faust_noop_events_per_s",
            "events_per_s": round(median([r.floor.events_per_s for r in rounds])),
            "baseline_events_per_s": round(median([r.base for r in rounds])),
            "ratio": round(median([r.floor.events_per_s / r.base for r in rounds]), 4),
            "events": events,
            "window_s": round(median([r.floor.window_s for r in rounds]), 3),
        }
    ]
    for mix in rounds[0].mixes:
        vs_noop = [r.mixes[mix].events_per_s / r.floor.events_per_s for r in rounds]
        rows.append(
            {
                "figure": "worker_events_per_s",
                "mix": mix,
                "events_per_s": round(median([r.mixes[mix].events_per_s for r in rounds])),
                "baseline_events_per_s": round(median([r.base for r in rounds])),
                "ratio": round(median([r.mixes[mix].events_per_s / r.base for r in rounds]), 4),
                "vs_noop": round(median(vs_noop), 4),
                "vs_noop_rounds": [round(v, 3) for v in vs_noop],
                "sink_rows_per_message": rounds[0].mixes[mix].sink_rows_per_message,
                "events": events,
                "window_s": round(median([r.mixes[mix].window_s for r in rounds]), 3),
            }
        )
    return rows


async def main_async(bootstrap: str, args: argparse.Namespace, tmp: Path) -> None:
    if args.events:
        rounds = []
        for _ in range(args.rounds):
            base = await baseline(bootstrap, args.events, args.addresses)
            floor = await faust_floor(bootstrap, args.events, args.addresses, tmp)
            mixes = {
                mix: await worker_throughput(
                    bootstrap, args.events, args.addresses, tmp, users=mix == "users"
                )
                for mix in ("discovering", "users")
            }
            rounds.append(Round(base, floor, mixes))
        for row in round_figures(rounds, args.events):
            name = row.pop("figure")
            emit(str(name), **row)
    if args.recovery_addresses:
        result = await recovery(bootstrap, args.recovery_addresses, tmp)
        emit("worker_recovery_s", addresses=args.recovery_addresses, **result)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--addresses", type=int, default=2_000)
    parser.add_argument(
        "--rounds", type=int, default=3, help="passes over every process; figures are medians"
    )
    parser.add_argument("--recovery-addresses", type=int, default=1_000_000)
    run_with_kafka(main_async, parser.parse_args(), heap="2g")


if __name__ == "__main__":
    main()
