"""Streams worker throughput and recovery, against a bare aiokafka loop in the same run.

    .venv/bin/python -m bench.streams_worker [--events 20000] [--recovery-addresses 1000000]

Figures (one JSON object each):
* ``worker_events_per_s`` (``mix=discovering``): mail to addresses being discovered, the
  heaviest path (decode, rules, table update, snapshot; new addresses' transitions acknowledged
  before the table write), divided by the events/s of a bare aiokafka consume→produce loop over
  the same input topic, measured in the same run.
* ``worker_events_per_s`` (``mix=users``): mail to addresses that are already users, the bulk of
  a provider's steady-state traffic (decode and look-up, no write), over the same baseline.
* ``worker_recovery_s``: seconds a fresh worker (empty data directory) needs to restore a
  table of N addresses from its changelog and index the waiting ones.
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
from datetime import UTC, datetime, timedelta
from pathlib import Path

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from bench.harness import run_with_kafka
from bench.kafka_baseline import emit, pass_through
from schemas.codec import encode
from schemas.commands import ImportUser
from schemas.mail import CalloutVerified, RecipientDelivered
from schemas.state import AddressRecord, AddressStatus
from schemas.tenant import TenantConfig
from schemas.topics import COMMANDS, MAIL, STATE_CHANGES, TENANTS, TopicNames
from smtp_discovery.config import RuntimeConfig
from smtp_discovery.kafka import client_options, ensure_topics
from streams.partitioning import partition_for

ROOT = Path(__file__).resolve().parents[1]
PARTITIONS = 4
T0 = datetime(2026, 3, 2, 9, tzinfo=UTC)


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
    await ensure_topics(
        client_options(RuntimeConfig(), bootstrap),
        partitions=PARTITIONS,
        replication=1,
        specs=names.specs(),
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


def mail_events(count: int, addresses: int) -> list[tuple[bytes, bytes]]:
    """A verification for each address, then clean deliveries spread over the addresses."""
    out = []
    for i in range(count):
        address = f"user{i % addresses}@bench.example"
        at = T0 + timedelta(seconds=i)
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


async def committed_total(bootstrap: str, group: str, topics: list[str]) -> int:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group)
    except KafkaError:
        return 0
    finally:
        await admin.close()
    return sum(o.offset for tp, o in offsets.items() if tp.topic in topics and o.offset > 0)


async def worker_throughput(
    bootstrap: str, events: int, addresses: int, tmp: Path, *, users: bool = False
) -> float:
    names = TopicNames(f"bench{int(time.time())}{'u' if users else 'd'}.")
    await setup(bootstrap, names)
    if users:
        imports = [
            ImportUser(
                tenant_id="bench", event_time=T0, address=f"user{i}@bench.example", actor="bench"
            )
            for i in range(addresses)
        ]
        await produce(bootstrap, names(COMMANDS), [(c.kafka_key(), encode(c)) for c in imports])
    await produce(bootstrap, names(MAIL), mail_events(events, addresses))
    app_id = f"{names.prefix}streams"
    process = start_worker(
        worker_env(bootstrap, names, app_id, tmp / names.prefix), tmp / "throughput.log"
    )
    try:
        return await rate_until_committed(
            bootstrap, app_id, names(MAIL), events, process, tmp / "throughput.log"
        )
    finally:
        stop(process)


async def faust_floor(bootstrap: str, events: int, addresses: int, tmp: Path) -> float:
    """Events/s of a Faust agent that does nothing with each event."""
    names = TopicNames(f"noop{int(time.time())}.")
    await setup(bootstrap, names)
    await produce(bootstrap, names(MAIL), mail_events(events, addresses))
    app_id = f"{names.prefix}noop"
    env = {
        **os.environ,
        "NOOP_APP_ID": app_id,
        "NOOP_BOOTSTRAP": bootstrap,
        "NOOP_TOPIC": names(MAIL),
    }
    process = start_module("bench.faust_noop", env, tmp / "noop.log")
    try:
        return await rate_until_committed(
            bootstrap, app_id, names(MAIL), events, process, tmp / "noop.log"
        )
    finally:
        stop(process)


async def rate_until_committed(
    bootstrap: str, group: str, topic: str, events: int, process: subprocess.Popen[bytes], log: Path
) -> float:
    """Events/s between the group's first commit on ``topic`` and its commit of the last event."""
    first = None
    started = 0
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        done = await committed_total(bootstrap, group, [topic])
        if first is None and done > 0:
            first, started = time.monotonic(), done
        if done >= events:
            assert first is not None
            if started > events // 2:
                raise RuntimeError(
                    f"{group}: its first commit already covered {started} of {events} events, "
                    "too few left to measure a rate: raise --events"
                )
            return (events - started) / (time.monotonic() - first)
        if process.poll() is not None:
            raise RuntimeError(read_log(log)[-3000:])
        await asyncio.sleep(0.05)
    raise RuntimeError(f"{group} did not finish in time")


async def baseline(bootstrap: str, events: int, addresses: int) -> float:
    names = TopicNames(f"base{int(time.time())}.")
    await setup(bootstrap, names)
    await produce(bootstrap, names(MAIL), mail_events(events, addresses))
    return await pass_through(bootstrap, names(MAIL), names(STATE_CHANGES), events)


def changelog_records(
    count: int,
) -> tuple[list[tuple[int, bytes, bytes]], list[tuple[int, bytes, bytes]]]:
    records, groups = [], []
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
        records.append(
            (partition, json.dumps(record_key).encode(), record.model_dump_json().encode())
        )
        groups.append(
            (partition, json.dumps(route_key).encode(), json.dumps([record_key]).encode())
        )
    return records, groups


async def produce_partitioned(
    bootstrap: str, topic: str, rows: list[tuple[int, bytes, bytes]]
) -> None:
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
    records, groups = changelog_records(addresses)
    await produce_partitioned(bootstrap, f"{app_id}-records-changelog", records)
    await produce_partitioned(bootstrap, f"{app_id}-groups-changelog", groups)
    began = time.monotonic()
    fresh = start_worker(worker_env(bootstrap, names, app_id, tmp / "fresh"), tmp / "fresh.log")
    try:
        ready = await wait_for_log(tmp / "fresh.log", "Worker ready", 1800) - began
        indexed = await wait_for_log(tmp / "fresh.log", "due index rebuilt", 1800) - began
    finally:
        stop(fresh)
    match = re.search(
        r"due index rebuilt: (\d+)", await asyncio.to_thread(read_log, tmp / "fresh.log")
    )
    return {
        "tables_restored_s": round(ready, 1),
        "due_index_built_s": round(indexed, 1),
        "waiting_indexed": int(match.group(1)) if match else -1,
    }


def read_log(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""


async def wait_for_log(path: Path, text: str, timeout: float) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in await asyncio.to_thread(read_log, path):
            return time.monotonic()
        await asyncio.sleep(0.2)
    raise RuntimeError(f"{text!r} not logged within {timeout}s:\n" + read_log(path)[-3000:])


async def main_async(bootstrap: str, args: argparse.Namespace, tmp: Path) -> None:
    if args.events:
        base = await baseline(bootstrap, args.events, args.addresses)
        floor = await faust_floor(bootstrap, args.events, args.addresses, tmp)
        emit(
            "faust_noop_events_per_s",
            events_per_s=round(floor),
            baseline_events_per_s=round(base),
            ratio=round(floor / base, 4),
        )
        for users in (False, True):
            rate = await worker_throughput(bootstrap, args.events, args.addresses, tmp, users=users)
            emit(
                "worker_events_per_s",
                mix="users" if users else "discovering",
                events_per_s=round(rate),
                baseline_events_per_s=round(base),
                ratio=round(rate / base, 4),
                events=args.events,
            )
    if args.recovery_addresses:
        result = await recovery(bootstrap, args.recovery_addresses, tmp)
        emit("worker_recovery_s", addresses=args.recovery_addresses, **result)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--addresses", type=int, default=2_000)
    parser.add_argument("--recovery-addresses", type=int, default=1_000_000)
    run_with_kafka(main_async, parser.parse_args(), heap="2g")


if __name__ == "__main__":
    main()
