"""SMTP ingest throughput and RCPT latency, against a bare aiosmtpd server in the same run.

    .venv/bin/python -m bench.ingest [--messages 3000] [--rounds 3] [--connections 8]
        [--view-addresses 1000000]

Figures (one JSON object each):
* ``ingest_messages_per_s``: messages through one ingest node (RCPT decided from cached
  verifications, relayed before-queue to a local downstream that accepts everything, one
  ``recipient_delivered`` event per message acknowledged by Kafka with acks=all before the
  250), divided by the messages/s of a minimal before-queue relay (aiosmtpd server, aiosmtplib
  client, the same downstream; no policy, no Kafka) with the same clients in the same run: the
  ratio is our own cost. The ratio to a bare aiosmtpd that accepts everything is kept for
  context (``vs_bare_aiosmtpd``).
* ``ingest_rcpt_latency_ms``: RCPT round-trip p50/p99 for cache hits and for callouts (the
  downstream answers the probe; the callout event is acknowledged by Kafka before the reply).
* ``ingest_events_to_worker_share``: of the events the load above published, the share routed
  to the streams worker's input (``discovery.mail``) rather than past it
  (``discovery.mail-settled``), for a provider's steady state: 95% of the recipients are users
  (known to the node from ``discovery.address-state``), 5% are being discovered.
* ``ingest_view_bytes_per_address``: memory of the address-state view per address, and its
  lookup p99 beside a plain dict's over the same keys (half known, half strangers).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import time
import tracemalloc
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiosmtplib
from aiokafka import AIOKafkaProducer
from aiosmtpd.smtp import SMTP

from bench.harness import run_with_kafka
from bench.kafka_baseline import emit
from smtp_discovery.ingest.node import IngestNode
from smtp_discovery.ingest.state_view import AddressStateView
from smtp_discovery.platform.config import RuntimeConfig
from smtp_discovery.platform.kafka import ensure_topics
from smtp_discovery.schemas.codec import encode
from smtp_discovery.schemas.state import AddressState, AddressStateSnapshot, AddressStatus
from smtp_discovery.schemas.tenant import Destination, TenantConfig
from smtp_discovery.schemas.topics import ADDRESS_STATE, MAIL, MAIL_SETTLED, TENANTS

MESSAGE = b"From: someone@outside.example\r\nSubject: bench\r\n\r\n" + (b"x" * 78 + b"\r\n") * 25


class AcceptAll:
    """A server that takes everything: the bare baseline, and the ingest node's downstream."""

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        return "250 2.0.0 Ok: queued"


async def serve_accept_all() -> tuple[asyncio.base_events.Server, int]:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(AcceptAll(), hostname="sink.bench", loop=loop), "127.0.0.1", 0
    )
    return server, server.sockets[0].getsockname()[1]


class MinimalRelay:
    """The baseline that isolates our own cost: a before-queue relay with nothing else. Each
    client session keeps one aiosmtplib conversation with the downstream and hands it every
    message at DATA; no policy, no views, no Kafka."""

    def __init__(self, downstream_port: int) -> None:
        self.downstream_port = downstream_port
        self._clients: dict[int, aiosmtplib.SMTP] = {}

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 Ok"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        client = self._clients.get(id(session))
        if client is None:
            client = aiosmtplib.SMTP(hostname="127.0.0.1", port=self.downstream_port, timeout=60)
            await client.connect()
            self._clients[id(session)] = client
        _errors, reply = await client.sendmail(
            envelope.mail_from, envelope.rcpt_tos, envelope.original_content
        )
        return f"250 {reply}"


async def serve_minimal_relay(downstream_port: int) -> tuple[asyncio.base_events.Server, int]:
    loop = asyncio.get_running_loop()
    handler = MinimalRelay(downstream_port)
    server = await loop.create_server(
        lambda: SMTP(handler, hostname="relay.bench", decode_data=False, loop=loop),
        "127.0.0.1",
        0,
    )
    return server, server.sockets[0].getsockname()[1]


async def send_load(port: int, connections: int, messages: int, recipients: list[str]) -> float:
    """Messages per second from ``connections`` persistent clients."""
    per_connection = messages // connections

    async def client(index: int) -> None:
        async with aiosmtplib.SMTP(hostname="127.0.0.1", port=port, timeout=60) as smtp:
            for i in range(per_connection):
                rcpt = recipients[(index * per_connection + i) % len(recipients)]
                await smtp.sendmail("someone@outside.example", [rcpt], MESSAGE)

    began = time.perf_counter()
    await asyncio.gather(*(client(i) for i in range(connections)))
    return per_connection * connections / (time.perf_counter() - began)


async def rcpt_latencies(port: int, addresses: list[str]) -> list[float]:
    out = []
    async with aiosmtplib.SMTP(hostname="127.0.0.1", port=port, timeout=60) as smtp:
        for index, address in enumerate(addresses):
            if index % 50 == 0:
                await smtp.rset()
                await smtp.mail("someone@outside.example")
            began = time.perf_counter()
            reply = await smtp.execute_command(f"RCPT TO:<{address}>".encode())
            out.append((time.perf_counter() - began) * 1000)
            assert reply.code == 250, reply
    return out


def user_state(address: str, at: datetime) -> AddressStateSnapshot:
    state = AddressState(
        tenant_id="bench",
        address=address,
        status=AddressStatus.USER,
        status_since=at,
        status_reason="import",
    )
    return AddressStateSnapshot(tenant_id="bench", address=address, event_time=at, record=state)


def routed(node: IngestNode) -> dict[str, float]:
    """Events the node published so far, by topic."""
    sample = node.metrics.registry.get_sample_value
    name = "smtp_discovery_ingest_events_routed_total"
    return {topic: sample(name, {"topic": topic}) or 0.0 for topic in (MAIL, MAIL_SETTLED)}


def percentiles(values: list[float]) -> dict[str, float]:
    quantiles = statistics.quantiles(values, n=100)
    return {"p50": round(quantiles[49], 3), "p99": round(quantiles[98], 3), "n": len(values)}


def view_figures(count: int) -> dict[str, float]:
    """Bytes per address of the address-state view, and its lookup p99 against a plain dict
    of the same keys (the structure it replaced) in the same run."""
    keys = [f"tenant-{i % 5000:04d}:first.last{i}@domain{i % 7}.example" for i in range(count)]
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    view = AddressStateView()
    for key in keys:
        view.set(key, AddressStatus.DISCOVERED)
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    assert len(view) == count
    plain = dict.fromkeys(keys, 3)
    probes = [keys[(i * 7919) % count] for i in range(50_000)]
    probes += [f"stranger{i}@nowhere.example" for i in range(50_000)]

    def p99(lookup: Any) -> float:
        samples = []
        for key in probes:
            began = time.perf_counter_ns()
            lookup(key)
            samples.append(time.perf_counter_ns() - began)
        return statistics.quantiles(samples, n=100)[98] / 1000

    compact, baseline = p99(view.status), p99(plain.get)
    return {
        "bytes": round((after - before) / count, 1),
        "lookup_p99_us": round(compact, 2),
        "dict_lookup_p99_us": round(baseline, 2),
    }


async def main_async(bootstrap: str, args: argparse.Namespace, tmp: Path) -> None:
    sink, sink_port = await serve_accept_all()
    bare, bare_port = await serve_accept_all()
    relay, relay_port = await serve_minimal_relay(sink_port)
    prefix = f"bench{uuid.uuid4().hex[:6]}."
    config = RuntimeConfig.from_env(
        {
            "KAFKA_BOOTSTRAP": bootstrap,
            "DISCOVERY_TOPIC_PREFIX": prefix,
            "DISCOVERY_TOPIC_PARTITIONS": "4",
            "DISCOVERY_DATA_DIR": str(tmp),
            "DISCOVERY_INGEST_LISTEN": "127.0.0.1:0",
            "DISCOVERY_INGEST_HOSTNAME": "ingest.bench",
            "DISCOVERY_INGEST_PROBES_PER_DESTINATION": "8",
            "DISCOVERY_INGEST_MAX_COMMANDS": "1000000",
            # The callouts' rate cap protects a tenant's server: its waits are policy, not the
            # node's cost, which is what this measures.
            "DISCOVERY_INGEST_CALLOUTS_PER_S": "100000",
        }
    )
    options = {"bootstrap_servers": bootstrap}
    await ensure_topics(options, partitions=4, replication=1, specs=config.topics.specs())
    tenant = TenantConfig(
        tenant_id="bench",
        event_time=datetime.now(UTC),
        name="Bench",
        domains=("bench.example",),
        destinations=(Destination(host="127.0.0.1", port=sink_port),),
        settings={"discovery_enabled": True, "catch_all_detection": False},
    )
    # RCPT latency is measured on addresses verified by callout (then cached); the load goes
    # to users (95%) and to some of those verified addresses, still being discovered (5%).
    verified = [f"new{i}@bench.example" for i in range(200)]
    users = [f"user{i}@bench.example" for i in range(190)]
    pool = users + verified[: 200 - len(users)]
    producer = AIOKafkaProducer(**options)
    await producer.start()
    await producer.send_and_wait(config.topics(TENANTS), encode(tenant), key=tenant.kafka_key())
    for address in users:
        snapshot = user_state(address, tenant.event_time)
        await producer.send(
            config.topics(ADDRESS_STATE), encode(snapshot), key=snapshot.kafka_key()
        )
    await producer.flush()
    await producer.stop()
    node = IngestNode(config, options, serve_metrics=False)
    await node.start()
    try:
        await rcpt_latencies(node.port, verified)  # warm: one callout each, then cached
        callouts = await rcpt_latencies(
            node.port, [f"callout{i}@bench.example" for i in range(args.callouts)]
        )
        hits = await rcpt_latencies(node.port, verified * 10)
        emit("ingest_rcpt_latency_ms", cache_hit=percentiles(hits), callout=percentiles(callouts))

        await send_load(bare_port, args.connections, args.messages // 5, pool)  # warm-up
        await send_load(relay_port, args.connections, args.messages // 5, pool)
        # Rounds alternate the servers, so that a drift of the machine's speed during the run
        # falls on all of them alike; each figure is the median of its rounds.
        rates: dict[str, list[float]] = {"bare": [], "relay": [], "ingest": []}
        routed_before = routed(node)
        for _ in range(args.rounds):
            for name, port in (("bare", bare_port), ("relay", relay_port), ("ingest", node.port)):
                rates[name].append(await send_load(port, args.connections, args.messages, pool))
        bare_rate, relay_rate, ingest_rate = (
            statistics.median(rates[name]) for name in ("bare", "relay", "ingest")
        )
        emit(
            "ingest_messages_per_s",
            ratio=round(ingest_rate / relay_rate, 3),
            ingest=round(ingest_rate, 1),
            minimal_relay=round(relay_rate, 1),
            vs_bare_aiosmtpd=round(ingest_rate / bare_rate, 3),
            bare_aiosmtpd=round(bare_rate, 1),
            connections=args.connections,
            messages=args.messages,
            rounds=args.rounds,
            message_bytes=len(MESSAGE),
        )
        after = routed(node)
        to_worker, settled = (after[t] - routed_before[t] for t in (MAIL, MAIL_SETTLED))
        if to_worker + settled < args.messages * args.rounds:
            raise RuntimeError(f"the load published {to_worker + settled} events, expected more")
        emit(
            "ingest_events_to_worker_share",
            share=round(to_worker / (to_worker + settled), 4),
            to_worker=int(to_worker),
            past_worker=int(settled),
            recipients_users=len(users),
            recipients=len(pool),
        )
    finally:
        await node.stop()
        sink.close()
        bare.close()
        relay.close()
    for count in args.view_addresses:
        figures = view_figures(count)
        emit(
            "ingest_view_bytes_per_address",
            **figures,
            addresses=count,
            gib_per_100m=round(figures["bytes"] * 100e6 / 2**30, 1),
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=3000)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds per server")
    parser.add_argument("--callouts", type=int, default=500)
    parser.add_argument("--view-addresses", type=int, nargs="+", default=[1_000_000])
    run_with_kafka(main_async, parser.parse_args())


if __name__ == "__main__":
    main()
