"""The cluster drill, full form: docker-compose.yml's roles as local processes on three brokers,
each part killed in turn while mail flows; recovery times, and throughput with one worker and
with two.

    .venv/bin/python -m bench.cluster_drill [--steady 8] [--rounds 10] [--events 30000]

The short form is tests/test_cluster_drill.py (in the suite: 4 partitions, a 6 s worker session
timeout, little mail). This one keeps compose's 12 partitions and every compose default but the
streams workers' clock (event time, so that weeks pass in seconds) and their expiry scan interval
(1 s instead of 300 s, for the same reason). Figures (one JSON object each):

* ``drill_recovery_s``: for each kill (a broker, a streams worker, the chDB process holding the
  sink and the admin API, an ingest node), the seconds from its SIGKILL until the workers and
  the sink had processed all mail sent up to the next kill point (what was sent while the part
  was down included) and the part (or its replacement) served again. The run fails, writing no
  figure, unless the drilled run left exactly what an undisturbed run of the same traffic left
  (tests/drill/drill.py, ``differences``).
* ``drill_worker_events_per_s``: mail events per second through the compose workers (rocksdb,
  compose's 12 partitions, replication 3) from a backlog of ``--events`` events, with one worker
  and with two; ``ratio``: two over one. Timed from the first offset commit of the group to the
  commit of the last event; commits come every ``DISCOVERY_STREAMS_COMMIT_S`` (1 s here), so
  the run refuses a window under 10 commit intervals.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import tempfile
import time
from pathlib import Path

from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from bench.kafka_baseline import emit
from bench.streams_worker import T0, mail_events
from smtp_discovery.localkafka import LocalKafka
from smtp_discovery.schemas.codec import encode
from smtp_discovery.schemas.tenant import TenantConfig
from smtp_discovery.schemas.topics import MAIL, TENANTS
from smtp_discovery.schemas.topics import topic as spec_of
from tests.drill.deployment import Deployment
from tests.drill.drill import KILLS, differences, grant_projects, one_run, start_cluster

WORKER_OVERRIDES = {"DISCOVERY_CLOCK": "event-time", "DISCOVERY_EXPIRY_SCAN_S": "1"}
COMMIT_S = 1.0
MIN_COMMITS = 10


async def drill(
    kafka: LocalKafka, passwords: dict[str, str], tmp: Path, args: argparse.Namespace
) -> None:
    runs = {}
    for name, drilled in (("calm", False), ("drill", True)):
        runs[name] = await one_run(
            kafka,
            passwords,
            tmp,
            name,
            steady=args.steady,
            rounds=args.rounds,
            overrides={},
            worker_overrides=WORKER_OVERRIDES,
            drill=drilled,
        )
    found = differences(runs["calm"], runs["drill"])
    if found:
        raise SystemExit("the drilled run differs from the undisturbed one:\n" + "\n".join(found))
    recoveries = {r.kill: r for r in runs["drill"].recoveries}
    if sorted(recoveries) != sorted(KILLS):
        raise SystemExit(f"recovered from {sorted(recoveries)}, not from every kill")
    seconds = {kill: round(r.seconds, 1) for kill, r in recoveries.items()}
    if not all(math.isfinite(s) and s > 0 for s in seconds.values()):
        raise SystemExit(f"recovery times are not measurements: {seconds}")
    details = {
        f"{kill}_{k}": round(v, 1) for kill, r in recoveries.items() for k, v in r.detail.items()
    }
    emit(
        "drill_recovery_s", **seconds, **details, messages=len(runs["drill"].replies), partitions=12
    )


async def throughput(
    kafka: LocalKafka, passwords: dict[str, str], tmp: Path, events: int, workers: int
) -> float:
    """Events/s of ``workers`` compose workers through a backlog of ``events`` mail events."""
    name = f"load{workers}"
    overrides = {"DISCOVERY_STREAMS_COMMIT_S": f"{COMMIT_S:g}"}
    grant_projects(kafka, passwords, tmp, [name], overrides)
    project = Deployment(
        kafka, passwords, tmp / name, name, tmp / name / "clock", overrides, WORKER_OVERRIDES
    )
    config = project.config()
    await asyncio.to_thread(project.cli, "topics")
    tenant = TenantConfig(
        tenant_id="bench",
        event_time=T0,
        name="Bench",
        domains=("bench.example",),
        settings={"discovery_enabled": True},
    )
    producer = AIOKafkaProducer(**kafka.client_options(), acks="all", linger_ms=5)
    await producer.start()
    try:
        await producer.send_and_wait(
            config.topics(TENANTS), key=tenant.kafka_key(), value=encode(tenant)
        )
        for key, value in mail_events(events, max(1, events // 10)):
            await producer.send(config.topics(MAIL), key=key, value=value)
        await producer.flush()
    finally:
        await producer.stop()
    partitions = [
        TopicPartition(config.topics(MAIL), p)
        for p in range(spec_of(MAIL).partition_count(config.topic_partitions))
    ]
    for n in range(1, workers + 1):
        project.start(f"worker-{n}")
    try:
        first, last = await _commit_window(
            kafka, config.streams_app_id, partitions, events, project
        )
    finally:
        project.stop_all()
    window = last - first
    if window < MIN_COMMITS * COMMIT_S:
        raise SystemExit(f"{events} events in {window:.1f}s: too short a window, raise --events")
    return events / window


async def _commit_window(
    kafka: LocalKafka,
    group: str,
    partitions: list[TopicPartition],
    events: int,
    project: Deployment,
) -> tuple[float, float]:
    """(first commit seen, all committed) on the monotonic clock, polled every 50 ms."""
    admin = AIOKafkaAdminClient(**kafka.client_options())
    await admin.start()
    first: float | None = None
    deadline = time.monotonic() + 1800
    try:
        while time.monotonic() < deadline:
            project.assert_running()
            try:
                offsets = await admin.list_consumer_group_offsets(group)
            except KafkaError:
                offsets = {}
            done = sum(max(offsets[tp].offset, 0) for tp in partitions if tp in offsets)
            if done > 0 and first is None:
                first = time.monotonic()
            if done >= events and first is not None:
                return first, time.monotonic()
            await asyncio.sleep(0.05)
    finally:
        await admin.close()
    raise SystemExit(f"{group} did not consume {events} events in 30 minutes")


async def main_async(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        tmp = Path(scratch)
        kafka, passwords = start_cluster(tmp / "kafka")
        try:
            grant_projects(kafka, passwords, tmp, ["calm", "drill"], {})
            await drill(kafka, passwords, tmp, args)
            one = await throughput(kafka, passwords, tmp, args.events, 1)
            two = await throughput(kafka, passwords, tmp, args.events, 2)
        finally:
            kafka.stop()
    emit(
        "drill_worker_events_per_s",
        ratio=round(two / one, 3),
        one_worker_per_s=round(one, 1),
        two_workers_per_s=round(two, 1),
        events=args.events,
        partitions=12,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steady", type=int, default=8, help="steady addresses per tenant")
    parser.add_argument("--rounds", type=int, default=10, help="messages to each, weeks 1-2")
    parser.add_argument("--events", type=int, default=30000, help="throughput backlog")
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
