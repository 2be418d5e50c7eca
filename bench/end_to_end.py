"""The whole pipeline on one machine: SMTP in, rows in ClickHouse out.

    .venv/bin/python -m bench.end_to_end [--messages 2000] [--connections 8] [--new 200]

One local Kafka, a streams worker (child process), the sink and an ingest node in this process
(chDB), and a local server playing the tenant's mail server. Figures:
* ``e2e_messages_per_s``: messages per second from the first SMTP transaction until every
  ``recipient_delivered`` row is in ClickHouse (and the address states those messages caused),
  divided by the messages/s a bare aiosmtpd server accepts from the same clients in the same run.
* ``e2e_rcpt_to_queryable_ms``: for new addresses, the time from the RCPT answer (callout done)
  until the address's state is queryable in ClickHouse, p50/p99.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiosmtplib

from bench.harness import run_with_kafka
from bench.ingest import MESSAGE, send_load, serve_accept_all
from bench.kafka_baseline import emit
from smtp_discovery.ingest.node import IngestNode
from smtp_discovery.platform.clickhouse import connect
from smtp_discovery.platform.config import RuntimeConfig
from smtp_discovery.platform.kafka import ensure_topics, idempotent_producer
from smtp_discovery.platform.stopping import die_with_parent
from smtp_discovery.schemas.codec import encode
from smtp_discovery.schemas.tenant import Destination, TenantConfig
from smtp_discovery.schemas.topics import TENANTS
from smtp_discovery.sinks.migrate import migrate
from smtp_discovery.sinks.run import sink_settings
from smtp_discovery.sinks.sink import Sink

ROOT = Path(__file__).resolve().parents[1]


def count(client: Any, sql: str) -> int:
    return int(client.query(sql).result_rows[0][0])


async def wait_for(condition: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("the pipeline did not catch up")
        await asyncio.sleep(0.05)


async def main_async(bootstrap: str, args: argparse.Namespace, tmp: Path) -> None:
    env = {
        "KAFKA_BOOTSTRAP": bootstrap,
        "DISCOVERY_DATA_DIR": str(tmp),
        "DISCOVERY_TOPIC_PARTITIONS": "4",
        "DISCOVERY_TOPIC_REPLICATION": "1",
        "DISCOVERY_INGEST_LISTEN": "127.0.0.1:0",
        "DISCOVERY_INGEST_MAX_COMMANDS": "1000000",
        "DISCOVERY_STREAMS_STORE": "rocksdb",
        # The callouts' rate cap is policy (it protects a tenant's server), not pipeline cost.
        "DISCOVERY_INGEST_CALLOUTS_PER_S": "100000",
    }
    config = RuntimeConfig.from_env(env)
    options = {"bootstrap_servers": bootstrap}
    await ensure_topics(options, partitions=4, replication=1, specs=config.topics.specs())
    client = connect(f"chdb://{tmp / 'chdb'}")
    layout = config.analytics_layout
    migrate(client, layout)
    downstream, downstream_port = await serve_accept_all()
    bare, bare_port = await serve_accept_all()
    tenant = TenantConfig(
        tenant_id="bench",
        event_time=datetime.now(UTC),
        name="Bench",
        domains=("bench.example",),
        destinations=(Destination(host="127.0.0.1", port=downstream_port),),
        settings={"discovery_enabled": True, "catch_all_detection": False},
    )
    producer = idempotent_producer(options)
    await producer.start()
    await producer.send_and_wait(config.topics(TENANTS), encode(tenant), key=tenant.kafka_key())
    await producer.stop()
    worker = subprocess.Popen(  # noqa: ASYNC220 (starts a child; nothing waits on it here)
        [sys.executable, "-m", "smtp_discovery.cli", "worker"],
        cwd=ROOT,
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=die_with_parent(),  # a bench stopped by a signal takes its worker with it
    )
    stop = asyncio.Event()
    sink = Sink(options, client, layout, config.topics, sink_settings(config))
    sink_task = asyncio.create_task(sink.run(stop))
    node = IngestNode(config, options, serve_metrics=False)
    await node.start()
    db = layout.database
    try:
        # Warm: the worker has joined and applies events (one address through to ClickHouse).
        async with aiosmtplib.SMTP(hostname="127.0.0.1", port=node.port) as smtp:
            await smtp.sendmail("a@outside.example", ["warm@bench.example"], MESSAGE)
        await wait_for(lambda: count(client, f"SELECT count() FROM {db}.address_state") >= 1, 180)

        lags = []
        async with aiosmtplib.SMTP(hostname="127.0.0.1", port=node.port) as smtp:
            for i in range(args.new):
                await smtp.mail("a@outside.example")
                await smtp.rcpt(f"new{i}@bench.example")  # the callout happens here
                answered = time.perf_counter()
                await smtp.rset()
                key = f"bench:new{i}@bench.example"
                await wait_for(lambda k=key: count(
                    client, f"SELECT count() FROM {db}.address_state WHERE record_key = '{k}'"
                ) > 0, 60)  # fmt: skip
                lags.append((time.perf_counter() - answered) * 1000)
        q = statistics.quantiles(lags, n=100)
        emit("e2e_rcpt_to_queryable_ms", p50=round(q[49], 1), p99=round(q[98], 1), n=len(lags))

        pool = [f"user{i}@bench.example" for i in range(200)]
        bare_rate = await send_load(bare_port, args.connections, args.messages, pool)
        delivered = f"SELECT count() FROM {db}.mail_events WHERE type = 'recipient_delivered'"
        before = count(client, delivered)
        began = time.perf_counter()
        await send_load(node.port, args.connections, args.messages, pool)
        await wait_for(lambda: count(client, delivered) >= before + args.messages, 600)
        rate = args.messages / (time.perf_counter() - began)
        emit("e2e_messages_per_s", ratio=round(rate / bare_rate, 3), pipeline=round(rate, 1),
             bare_aiosmtpd=round(bare_rate, 1), messages=args.messages)  # fmt: skip
    finally:
        await node.stop()
        stop.set()
        await sink_task
        worker.terminate()
        worker.wait(60)
        downstream.close()
        bare.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--new", type=int, default=200)
    run_with_kafka(main_async, parser.parse_args())


if __name__ == "__main__":
    main()
