"""Counted once: N messages through an ingest node are N events, N `mail_events` rows and N in
the rollups, through a frozen broker and through an ingest node killed with a full spool."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiosmtplib
import pytest

from smtp_discovery.localkafka import LocalKafka
from smtp_discovery.localkafka.node import free_port
from smtp_discovery.platform.config import RuntimeConfig
from smtp_discovery.platform.kafka import ensure_topics
from smtp_discovery.schemas.codec import decode
from smtp_discovery.schemas.mail import RecipientDelivered
from smtp_discovery.schemas.state import AddressStatus
from smtp_discovery.schemas.topics import ADDRESS_STATE, MAIL, MAIL_SETTLED, TENANTS, TopicNames
from smtp_discovery.sinks.migrate import migrate
from smtp_discovery.sinks.schema import Layout
from smtp_discovery.sinks.sink import Sink, SinkSettings
from tests.ingest.harness import _publish, running_ingest, state, tenant
from tests.ingest.postfix import PostfixServer
from tests.smtp_discovery.kafka_helpers import drain_for
from tests.smtp_discovery.ops_helpers import ready

pytestmark = pytest.mark.kafka

ROOT = Path(__file__).resolve().parents[1]
MESSAGE = b"Subject: counted once\r\n\r\nOne message, one count.\r\n"
N = 5


@pytest.fixture
def own_kafka(tmp_path: Path) -> Iterator[LocalKafka]:
    """A broker of the test's own: it is frozen or stopped mid-test."""
    config = RuntimeConfig.from_env()
    kafka = LocalKafka(tmp_path / "kafka", cache_dir=config.kafka_cache_dir, heap=config.kafka_heap)
    kafka.start()
    try:
        yield kafka
    finally:
        for process in kafka.processes().values():
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signal.SIGCONT)
        kafka.stop()


def _freeze(kafka: LocalKafka, sig: signal.Signals) -> None:
    for process in kafka.processes().values():
        os.kill(process.pid, sig)


@contextlib.asynccontextmanager
async def _sink(
    bootstrap: str, clickhouse: Any, names: TopicNames, unique: str
) -> AsyncIterator[tuple[Sink, Layout]]:
    layout = Layout(f"once_{unique}")
    await asyncio.to_thread(migrate, clickhouse, layout)
    settings = SinkSettings(group=f"once-{unique}", batch_seconds=0.2)
    sink = Sink({"bootstrap_servers": bootstrap}, clickhouse, layout, names, settings,
                topics=(MAIL, MAIL_SETTLED))  # fmt: skip
    stop = asyncio.Event()
    task = asyncio.create_task(sink.run(stop))
    try:
        yield layout
    finally:
        stop.set()
        await asyncio.wait_for(task, 60)


async def _counted(clickhouse: Any, layout: Layout, expected: int) -> tuple[int, int]:
    """(mail_events rows, messages in the daily rollup), once the sink has written ``expected``
    rows or the deadline passed (the assertion says which)."""
    db = layout.database
    deadline = time.monotonic() + 60
    while True:
        rows = clickhouse.query(f"SELECT count() FROM {db}.mail_events").result_rows[0][0]
        if rows >= expected or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.1)
    daily = clickhouse.query(f"SELECT sum(messages) FROM {db}.tenant_daily").result_rows[0][0]
    return int(rows), int(daily)


async def test_a_frozen_broker_doubles_nothing(
    own_kafka: LocalKafka,
    tmp_path: Path,
    postfix_servers: dict[str, PostfixServer],
    clickhouse: Any,
    unique: str,
) -> None:
    """SIGSTOP the broker while mail flows: the first event times out in the producer's hands
    and is spooled, the others queue in the spool; after SIGCONT each arrives exactly once."""
    bootstrap = own_kafka.bootstrap
    strict = postfix_servers["strict"]
    acme = tenant("acme", ["a.example"], strict.port)
    states = [state("acme", "alice@a.example", AddressStatus.USER)]
    async with running_ingest(bootstrap, tmp_path / "node", [acme], states) as ingest:
        _freeze(own_kafka, signal.SIGSTOP)
        try:
            async with ingest.client() as smtp:
                for _ in range(N):
                    errors, reply = await smtp.sendmail(
                        "sender@outside.example", ["alice@a.example"], MESSAGE
                    )
                    assert errors == {} and reply.startswith("2"), reply
            assert ingest.node.spool.size_bytes > 0
        finally:
            _freeze(own_kafka, signal.SIGCONT)
        deadline = time.monotonic() + 60
        while ingest.node.spool.size_bytes:
            assert time.monotonic() < deadline, "the spool did not drain"
            await asyncio.sleep(0.1)
        # alice is a user: her mail goes past the worker, to discovery.mail-settled.
        records = await drain_for(bootstrap, ingest.config.topics(MAIL_SETTLED), 3.0)
        assert len(records) == N, "an event the producer held was also sent from the spool"
        async with _sink(bootstrap, clickhouse, ingest.config.topics, unique) as layout:
            assert await _counted(clickhouse, layout, N) == (N, N)


def _start_ingest(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "smtp_discovery.cli", "ingest"],
            cwd=ROOT, env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    deadline = time.monotonic() + 90
    while not ready(int(env["DISCOVERY_OPS_LISTEN"].rsplit(":", 1)[1])):
        assert process.poll() is None, log.read_text()[-3000:]
        assert time.monotonic() < deadline, log.read_text()[-3000:]
        time.sleep(0.1)
    return process


async def test_an_ingest_node_killed_with_a_full_spool_counts_each_message_once(
    own_kafka: LocalKafka,
    tmp_path: Path,
    postfix_servers: dict[str, PostfixServer],
    clickhouse: Any,
    unique: str,
) -> None:
    """The broker frozen, N messages spooled, the node SIGKILLed, the broker thawed, the node
    restarted: its spool re-sends what Kafka never acknowledged (a repeat is allowed on the
    topic, since the killed node never learnt the outcome); ClickHouse counts N."""
    bootstrap = own_kafka.bootstrap
    strict = postfix_servers["strict"]
    names = TopicNames(f"k{unique}.")
    await ensure_topics({"bootstrap_servers": bootstrap}, partitions=3, replication=1,
                        specs=names.specs())  # fmt: skip
    await _publish(bootstrap, names(TENANTS), [tenant("acme", ["a.example"], strict.port)])
    await _publish(bootstrap, names(ADDRESS_STATE),
                   [state("acme", "alice@a.example", AddressStatus.USER)])  # fmt: skip
    smtp_port = free_port()
    env = {
        "KAFKA_BOOTSTRAP": bootstrap,
        "DISCOVERY_TOPIC_PREFIX": names.prefix,
        "DISCOVERY_DATA_DIR": str(tmp_path / "node"),
        "DISCOVERY_INGEST_LISTEN": f"127.0.0.1:{smtp_port}",
        "DISCOVERY_INGEST_HOSTNAME": "ingest.test",
        "DISCOVERY_OPS_LISTEN": f"127.0.0.1:{free_port()}",
    }
    log = tmp_path / "ingest.log"
    node = _start_ingest(env, log)
    try:
        _freeze(own_kafka, signal.SIGSTOP)
        try:
            async with aiosmtplib.SMTP(hostname="127.0.0.1", port=smtp_port, timeout=30) as smtp:
                for _ in range(N):
                    errors, reply = await smtp.sendmail(
                        "sender@outside.example", ["alice@a.example"], MESSAGE
                    )
                    assert errors == {} and reply.startswith("2"), reply
            spool = tmp_path / "node" / "spool"
            assert sum(p.stat().st_size for p in spool.glob("segment-*.log")) > 0
            node.kill()
            node.wait()
        finally:
            _freeze(own_kafka, signal.SIGCONT)
        node = _start_ingest(env, log)
        deadline = time.monotonic() + 60
        while True:
            records = await drain_for(bootstrap, names(MAIL_SETTLED), 1.0)
            ids = {decode(MAIL_SETTLED, record.value).event_id for record in records}
            if len(ids) >= N or time.monotonic() > deadline:
                break
        events = [decode(MAIL_SETTLED, record.value) for record in records]
        assert all(isinstance(event, RecipientDelivered) for event in events)
        assert len(ids) == N, f"{len(records)} records, {len(ids)} distinct events"
        async with _sink(bootstrap, clickhouse, names, unique) as layout:
            assert await _counted(clickhouse, layout, N) == (N, N)
    finally:
        node.send_signal(signal.SIGTERM)
        node.wait(60)
