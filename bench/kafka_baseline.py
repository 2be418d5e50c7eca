"""Kafka baselines on this machine: broker startup, producer cost of idempotence, pass-through.

The pass-through rate (consume from one topic, produce each record to another, the bare loop a
stream processor runs) is the denominator of the streams benchmark: pipeline events/s divided by
this, measured in the same run.

    .venv/bin/python -m bench.kafka_baseline [--events 50000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
import uuid
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from smtp_discovery.localkafka import LocalKafka
from smtp_discovery.platform.config import RuntimeConfig

PAYLOAD = b"x" * 300  # about the size of one encoded mail event


def emit(name: str, **values: object) -> None:
    print(json.dumps({"figure": name, **values}), flush=True)


async def create(bootstrap: str, *names: str, partitions: int = 6) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(n, partitions, 1) for n in names])
    finally:
        await admin.close()


async def produce(bootstrap: str, topic: str, events: int, **options: object) -> float:
    """Events/s of a producer sending ``events`` keyed records and waiting for every ack."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, **options)
    await producer.start()
    try:
        began = time.perf_counter()
        for i in range(events):
            await producer.send(topic, key=b"tenant:user%d" % (i % 5000), value=PAYLOAD)
        await producer.flush()
        return events / (time.perf_counter() - began)
    finally:
        await producer.stop()


async def pass_through(bootstrap: str, source: str, target: str, events: int) -> float:
    """Events/s of the bare consume→produce loop over ``events`` records already in ``source``."""
    consumer = AIOKafkaConsumer(
        source,
        bootstrap_servers=bootstrap,
        group_id=f"bench-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=5
    )
    await consumer.start()
    await producer.start()
    try:
        seen = 0
        began = None
        while seen < events:
            batch = await consumer.getmany(timeout_ms=500, max_records=2000)
            if began is None and batch:
                began = time.perf_counter()
            for records in batch.values():
                for record in records:
                    await producer.send(target, key=record.key, value=record.value)
                seen += len(records)
            if batch:
                await producer.flush()
                await consumer.commit()
        assert began is not None
        return events / (time.perf_counter() - began)
    finally:
        await producer.stop()
        await consumer.stop()


async def throughput(bootstrap: str, events: int) -> None:
    run = uuid.uuid4().hex[:8]
    names = [f"bench-{run}-{n}" for n in ("warmup", "plain", "idem", "src", "dst")]
    warmup, plain, idem, src, dst = names
    await create(bootstrap, *names)
    await produce(bootstrap, warmup, events, acks="all", enable_idempotence=True)  # JIT, page cache
    plain_rate = await produce(bootstrap, plain, events, acks=1)
    idem_rate = await produce(bootstrap, idem, events, acks="all", enable_idempotence=True)
    emit(
        "idempotent_producer",
        events_per_s=round(idem_rate),
        baseline_events_per_s=round(plain_rate),
        ratio=round(idem_rate / plain_rate, 3),
    )
    await produce(bootstrap, src, events, acks=1)
    pt_rate = await pass_through(bootstrap, src, dst, events)
    emit(
        "aiokafka_pass_through",
        events_per_s=round(pt_rate),
        baseline_events_per_s=round(plain_rate),
        ratio=round(pt_rate / plain_rate, 3),
    )


def startup(config: RuntimeConfig, runs: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        kafka = LocalKafka(Path(tmp), cache_dir=config.kafka_cache_dir, heap=config.kafka_heap)
        cold = []
        warm = []
        kafka.start()
        cold.append(kafka.startup_seconds)
        kafka.stop()
        for _ in range(runs):
            kafka.start()
            warm.append(kafka.startup_seconds)
            kafka.stop()
    emit(
        "broker_startup_seconds",
        first_start=round(cold[0] or 0, 2),
        restart_median=round(statistics.median(w or 0 for w in warm), 2),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--restarts", type=int, default=3)
    args = parser.parse_args()
    config = RuntimeConfig.from_env()
    startup(config, args.restarts)
    if config.kafka_bootstrap:
        asyncio.run(throughput(config.kafka_bootstrap, args.events))
        return
    with (
        tempfile.TemporaryDirectory() as tmp,
        LocalKafka(Path(tmp), cache_dir=config.kafka_cache_dir, heap="1g") as kafka,
    ):
        asyncio.run(throughput(kafka.bootstrap, args.events))


if __name__ == "__main__":
    main()
