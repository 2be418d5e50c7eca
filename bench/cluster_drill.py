"""The cluster drill, full form: docker-compose.yml's roles as local processes on three brokers,
each part killed in turn while mail flows; recovery times, and throughput with one worker and
with two.

    .venv/bin/python -m bench.cluster_drill [--steady 8] [--rounds 10] [--events 80000]
                                            [--part all|drill|throughput]

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
  compose's 12 partitions, replication 3, standby tables) over ``--events`` events
  (``bench.streams_worker``'s discovering mix), with one worker and with two, each on a fresh
  project of its own; ``ratio``: two over one. On two cores both workers share the cores: the
  ratio is the cost of splitting the work, not the scaling of a cluster.

How the throughput is timed, and why so:

* The workers start on empty topics, and the backlog is sent only once their group is stable
  (every worker a member, each one's last assignment recovered): started on a waiting backlog,
  the first worker to join takes every partition and the second one's arrival rebalances the
  group in the middle of the run, which times a rebalance and a table hand-over, not the
  workers.
* The rate is read as ``bench.streams_worker`` reads it, from the broker's clock: the timed
  mail stands between a head and a tail marker on every partition (a new address, which the
  worker always answers), with mail to other addresses before and after them; the worker's
  output topics are switched to ``LogAppendTime``; the window runs from the first output of
  any head marker to the last output of any tail marker, in which the records between the
  markers were handled. Offset commits (compose's interval) only confirm that everything was
  consumed: no commit interval enters the figure.
* What would make the figure wrong fails the run instead: a rebalance inside the window (the
  workers' logs are read for new assignments), a worker that exits, a marker without output, an
  output not stamped by the broker, a window under ``MIN_WINDOW_S``.

Every process's log is kept under the run's directory (``<project>/logs/<service>.log``). A
failed run keeps the directory and names it; a failed process is reported with its exit status,
its log's first errors and its tail.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import KafkaError

from bench.kafka_baseline import emit
from bench.streams_worker import (
    LOG_APPEND_TIME,
    T0,
    TIMED,
    Rate,
    mail_events,
    marked_parts,
    note_marker,
    window_rate,
)
from smtp_discovery.localkafka import LocalKafka
from smtp_discovery.platform.config import RuntimeConfig
from smtp_discovery.schemas.codec import encode
from smtp_discovery.schemas.tenant import TenantConfig
from smtp_discovery.schemas.topics import MAIL, TENANTS
from smtp_discovery.schemas.topics import topic as spec_of
from tests.drill.deployment import Deployment
from tests.drill.drill import KILLS, differences, grant_projects, one_run, start_cluster

WORKER_OVERRIDES = {"DISCOVERY_CLOCK": "event-time", "DISCOVERY_EXPIRY_SCAN_S": "1"}
MIN_WINDOW_S = 10.0
"""Shortest window a throughput is computed over: the broker's stamps are exact to the
millisecond, but each worker's first batches (fetch sessions, table caches) should not weigh."""
SETTLE_S = 300.0
"""Longest the workers may take to form a stable group on the empty topics."""
CONSUME_S = 1800.0
"""Longest the workers may take to consume the backlog."""
ASSIGNED = "Setting newly assigned partitions"
"""Logged by a worker's consumer at each assignment (aiokafka's group coordinator)."""
RECOVERED = "Worker ready"
"""Logged by a worker once its tables are recovered after an assignment (streams.recovery)."""


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


# --- throughput: one worker, then two ---------------------------------------------------------


@dataclass(frozen=True)
class Load:
    """One throughput project: its deployment, and the partitions the timing reads."""

    project: Deployment
    config: RuntimeConfig
    mail: list[TopicPartition]
    outputs: list[TopicPartition]


async def throughput(
    kafka: LocalKafka, passwords: dict[str, str], tmp: Path, events: int, workers: int
) -> Rate:
    """Events/s of ``workers`` compose workers through ``events`` mail events, sent once their
    group is stable (see the module's doc)."""
    load = await load_project(kafka, passwords, tmp, f"load{workers}")
    try:
        for n in range(1, workers + 1):
            load.project.start(f"worker-{n}")
        assigned = await until_settled(kafka, load, workers)
        total, timed = await produce_marked(kafka, load, events)
        await until_consumed(kafka, load, total)
        first, last = await marker_window(kafka, load)
        if assignments(load.project) != assigned:
            raise SystemExit(
                f"{load.config.streams_app_id} rebalanced while it was timed "
                f"(assignments per worker {assigned} before, {assignments(load.project)} after): "
                "the window holds a rebalance, not throughput"
            )
    finally:
        load.project.stop_all()
    rate = window_rate(first, last, timed)
    if rate.window_s < MIN_WINDOW_S:
        raise SystemExit(
            f"{events} events took {rate.window_s:.1f}s, under {MIN_WINDOW_S:g}s: raise --events"
        )
    return rate


async def load_project(kafka: LocalKafka, passwords: dict[str, str], tmp: Path, name: str) -> Load:
    """A fresh compose project: its ACLs, its topics (compose's ``topics`` one-shot), its
    timed output topics stamped by the broker, and the one tenant the mail is for."""
    grant_projects(kafka, passwords, tmp, [name], {})
    project = Deployment(
        kafka, passwords, tmp / name, name, tmp / name / "clock", {}, WORKER_OVERRIDES
    )
    config = project.config()
    await asyncio.to_thread(project.cli, "topics")
    await stamped_by_broker(kafka, config)
    load = Load(
        project,
        config,
        partitions_of(config, MAIL),
        [tp for base in TIMED for tp in partitions_of(config, base)],
    )
    tenant = TenantConfig(
        tenant_id="bench",
        event_time=T0,
        name="Bench",
        domains=("bench.example",),
        settings={"discovery_enabled": True},
    )
    await send(kafka, [(None, tenant.kafka_key(), encode(tenant))], config.topics(TENANTS))
    return load


def partitions_of(config: RuntimeConfig, base: str) -> list[TopicPartition]:
    count = spec_of(base).partition_count(config.topic_partitions)
    return [TopicPartition(config.topics(base), p) for p in range(count)]


async def stamped_by_broker(kafka: LocalKafka, config: RuntimeConfig) -> None:
    """``message.timestamp.type=LogAppendTime`` on the workers' timed output topics: every
    record the workers write there carries the broker's clock at its append, one clock for both
    ends of the window (a worker's producer would stamp its own send time, before the
    acknowledgement). Kafka's AlterConfigs replaces a topic's whole configuration, so each topic
    is given the registry's (as ``topics ensure`` created it, compaction included) plus that."""
    replication = config.topic_replication or min(3, len(kafka.ports))
    timed = {config.topics(base) for base in TIMED}
    admin = AIOKafkaAdminClient(**kafka.client_options())
    await admin.start()
    try:
        responses = await admin.alter_configs(
            [
                ConfigResource(
                    ConfigResourceType.TOPIC,
                    spec.name,
                    configs={
                        **spec.configs(replication),
                        "message.timestamp.type": "LogAppendTime",
                    },
                )
                for spec in config.topics.specs()
                if spec.name in timed
            ]
        )
    finally:
        await admin.close()
    refused = [r for response in responses for r in response.resources if r[0] != 0]
    if refused:
        raise SystemExit(f"the timed topics could not be stamped by the broker: {refused}")


async def send(
    kafka: LocalKafka, records: Sequence[tuple[int | None, bytes, bytes]], topic: str
) -> None:
    """``records`` (partition or None, key, value), every one acknowledged by all replicas."""
    producer = AIOKafkaProducer(**kafka.client_options(), acks="all", linger_ms=5)
    await producer.start()
    try:
        for partition, key, value in records:
            await producer.send(topic, key=key, value=value, partition=partition)
        await producer.flush()
    finally:
        await producer.stop()


async def produce_marked(kafka: LocalKafka, load: Load, events: int) -> tuple[int, int]:
    """``events`` mail events as ``bench.streams_worker.marked_parts`` frames them, each part
    acknowledged before the next is sent; (the records sent, the records timed)."""
    addresses = max(1, events // 10)
    parts, timed = marked_parts(mail_events(events, addresses), addresses, len(load.mail))
    for part in parts:
        await send(kafka, part, load.mail[0].topic)
    return sum(map(len, parts)), timed


async def group_state(kafka: LocalKafka, group: str) -> tuple[str, int]:
    """(state, members) of the consumer group ``group``; ("", 0) when it cannot be told."""
    admin = AIOKafkaAdminClient(**kafka.client_options(), request_timeout_ms=5000)
    try:
        await admin.start()
        for response in await admin.describe_consumer_groups([group]):
            for described in response.groups:
                error, group_id, state, members = (
                    described[0],
                    described[1],
                    described[2],
                    described[5],
                )
                if group_id == group and not error:
                    return state, len(members)
    except (KafkaError, OSError, TimeoutError):
        pass
    finally:
        await admin.close()
    return "", 0


def assignments(project: Deployment) -> dict[str, int]:
    """Per running worker, how many assignments its log records."""
    return {
        name: project.tail(name, chars=sys.maxsize).count(ASSIGNED) for name in project.processes
    }


def recovered(project: Deployment, service: str) -> bool:
    """Whether ``service`` has been assigned partitions and has recovered from its latest
    assignment (its tables restored, its agent consuming)."""
    log = project.tail(service, chars=sys.maxsize)
    return ASSIGNED in log and log.rfind(RECOVERED) > log.rfind(ASSIGNED)


async def until_settled(kafka: LocalKafka, load: Load, workers: int) -> dict[str, int]:
    """Until the workers' group is stable with every worker a member and each worker has
    recovered from its latest assignment; the assignments per worker then."""
    group = load.config.streams_app_id
    deadline = time.monotonic() + SETTLE_S
    while True:
        load.project.assert_running()
        state, members = await group_state(kafka, group)
        names = list(load.project.processes)
        if (state, members) == ("Stable", workers) and all(
            recovered(load.project, n) for n in names
        ):
            return assignments(load.project)
        if time.monotonic() > deadline:
            raise SystemExit(
                f"{group}: {state or 'unknown'} with {members} of {workers} workers after "
                f"{SETTLE_S:g}s; recovered: {[n for n in names if recovered(load.project, n)]}"
            )
        await asyncio.sleep(0.2)


async def until_consumed(kafka: LocalKafka, load: Load, records: int) -> None:
    """Until the workers' group has committed ``records`` records of the mail topic: every one
    consumed (a completion check, not a clock)."""
    group = load.config.streams_app_id
    admin = AIOKafkaAdminClient(**kafka.client_options())
    await admin.start()
    deadline = time.monotonic() + CONSUME_S
    done = 0
    try:
        while time.monotonic() < deadline:
            load.project.assert_running()
            try:
                offsets = await admin.list_consumer_group_offsets(group)
            except KafkaError:
                offsets = {}
            done = sum(max(offsets[tp].offset, 0) for tp in load.mail if tp in offsets)
            if done >= records:
                return
            await asyncio.sleep(0.5)
    finally:
        await admin.close()
    raise SystemExit(f"{group} consumed {done} of {records} records in {CONSUME_S:g}s")


async def marker_window(kafka: LocalKafka, load: Load, timeout: float = 120) -> tuple[int, int]:
    """(first, last) in broker milliseconds: the earliest output of any head marker and the
    latest output of any tail marker, once every marker's outputs are in and every output
    partition has been read to its end."""
    consumer = AIOKafkaConsumer(**kafka.client_options(), enable_auto_commit=False)
    await consumer.start()
    seen: dict[str, dict[bytes, int]] = {"head": {}, "tail": {}}
    expected = len(load.mail)
    try:
        consumer.assign(load.outputs)
        await consumer.seek_to_beginning(*load.outputs)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500, max_records=10_000)
            for record in (r for rs in batch.values() for r in rs):
                if record.timestamp_type != LOG_APPEND_TIME:
                    raise SystemExit(
                        f"{record.topic} is not stamped by the broker (LogAppendTime): "
                        "cannot time the run from its outputs"
                    )
                note_marker(seen, record.key, record.timestamp)
            if all(len(s) == expected for s in seen.values()) and await _read_to_end(
                consumer, load.outputs
            ):
                return min(seen["head"].values()), max(seen["tail"].values())
    finally:
        await consumer.stop()
    raise SystemExit(
        f"outputs of {len(seen['head'])} head and {len(seen['tail'])} tail markers of "
        f"{expected} each found within {timeout:g}s: cannot time the run"
    )


async def _read_to_end(consumer: AIOKafkaConsumer, partitions: list[TopicPartition]) -> bool:
    ends = await consumer.end_offsets(partitions)
    return all([await consumer.position(tp) >= ends[tp] for tp in partitions])


def worker_figure(one: Rate, two: Rate, events: int) -> None:
    """The throughput figure; two rates that are not measurements fail the run instead."""
    rates = (one.events_per_s, two.events_per_s)
    if not all(math.isfinite(r) and r > 0 for r in rates):
        raise SystemExit(f"worker rates are not measurements: {rates}")
    emit(
        "drill_worker_events_per_s",
        ratio=round(two.events_per_s / one.events_per_s, 3),
        one_worker_per_s=round(one.events_per_s, 1),
        two_workers_per_s=round(two.events_per_s, 1),
        one_worker_window_s=round(one.window_s, 1),
        two_workers_window_s=round(two.window_s, 1),
        events=events,
        partitions=12,
    )


async def main_async(args: argparse.Namespace, tmp: Path) -> None:
    kafka, passwords = start_cluster(tmp / "kafka")
    try:
        if args.part in ("all", "drill"):
            grant_projects(kafka, passwords, tmp, ["calm", "drill"], {})
            await drill(kafka, passwords, tmp, args)
        if args.part in ("all", "throughput"):
            one = await throughput(kafka, passwords, tmp, args.events, 1)
            two = await throughput(kafka, passwords, tmp, args.events, 2)
            worker_figure(one, two, args.events)
    finally:
        kafka.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steady", type=int, default=8, help="steady addresses per tenant")
    parser.add_argument("--rounds", type=int, default=10, help="messages to each, weeks 1-2")
    parser.add_argument("--events", type=int, default=80000, help="throughput backlog")
    parser.add_argument(
        "--part",
        choices=("all", "drill", "throughput"),
        default="all",
        help="run one part only (the figures of the other are not written)",
    )
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="cluster-drill-"))
    try:
        asyncio.run(main_async(args, tmp))
    except BaseException:
        print(f"failed; every process's log is kept under {tmp}", file=sys.stderr)
        raise
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
