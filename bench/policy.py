"""Postfix policy service decisions per second, against a policy server that answers DUNNO to
everything, in the same run.

    .venv/bin/python -m bench.policy [--requests 4000] [--callouts 1000] [--connections 8]
        [--rounds 3]

Each of ``--connections`` clients plays one Postfix smtpd process: one connection, one RCPT
request (the ~25 attributes Postfix sends) at a time, the next only once the answer came.

Figures (one JSON object each):
* ``policy_cache_decisions_per_s``: RCPT decisions for addresses whose verification is cached
  (each verified by one callout beforehand), divided by the requests/s of the DUNNO server
  (each request read whole and answered, no decision) with the same clients: the ratio is the
  decision's own cost.
* ``policy_callout_decisions_per_s``: RCPT decisions for addresses never seen, each verified by a
  callout to a local SMTP server that accepts every recipient (its event acknowledged by Kafka
  before the answer), divided by the same DUNNO rate.

Every answer is checked (``OK``, or ``DUNNO`` from the baseline): a wrong answer, or a rate of
zero, fails the run instead of writing a figure.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

from aiokafka import AIOKafkaProducer

from bench.harness import run_with_kafka
from bench.ingest import serve_accept_all
from bench.kafka_baseline import emit
from smtp_discovery.ingest.policy_service import PolicyService
from smtp_discovery.platform.config import RuntimeConfig
from smtp_discovery.platform.kafka import ensure_topics
from smtp_discovery.schemas.codec import encode
from smtp_discovery.schemas.tenant import Destination, TenantConfig
from smtp_discovery.schemas.topics import TENANTS


def request(recipient: str, instance: str) -> bytes:
    """An RCPT request as Postfix 3.7 sends it."""
    attributes = {
        "request": "smtpd_access_policy",
        "protocol_state": "RCPT",
        "protocol_name": "ESMTP",
        "helo_name": "mail.partner.example",
        "queue_id": "",
        "sender": "news@partner.example",
        "recipient": recipient,
        "recipient_count": "0",
        "client_address": "198.51.100.20",
        "client_name": "mail.partner.example",
        "reverse_client_name": "mail.partner.example",
        "instance": instance,
        "sasl_method": "",
        "sasl_username": "",
        "sasl_sender": "",
        "size": "0",
        "ccert_subject": "",
        "ccert_issuer": "",
        "ccert_fingerprint": "",
        "encryption_protocol": "TLSv1.3",
        "encryption_cipher": "TLS_AES_256_GCM_SHA384",
        "encryption_keysize": "256",
        "etrn_domain": "",
        "stress": "",
        "server_address": "192.0.2.25",
        "server_port": "25",
        "policy_context": "",
        "compatibility_level": "3.6",
        "mail_version": "3.7.11",
    }
    return ("".join(f"{k}={v}\n" for k, v in attributes.items()) + "\n").encode()


async def serve_dunno() -> tuple[asyncio.Server, int]:
    """The baseline: each request read whole (up to its empty line), answered DUNNO."""

    async def connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                await reader.readuntil(b"\n\n")
                writer.write(b"action=DUNNO\n\n")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(connection, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def load(port: int, blocks: list[list[bytes]], expected: str) -> float:
    """Requests per second: one client per list of requests, each waiting for its answers."""
    wanted = f"action={expected}\n\n".encode()

    async def client(requests: list[bytes]) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            for block in requests:
                writer.write(block)
                await writer.drain()
                answer = await reader.readuntil(b"\n\n")
                if answer != wanted:
                    raise RuntimeError(f"answer {answer!r}, expected {wanted!r}")
        finally:
            writer.close()

    began = time.perf_counter()
    await asyncio.gather(*(client(requests) for requests in blocks))
    seconds = time.perf_counter() - began
    total = sum(len(requests) for requests in blocks)
    if total == 0 or seconds <= 0:
        raise RuntimeError("nothing was measured")
    return total / seconds


def split(addresses: list[str], connections: int) -> list[list[bytes]]:
    return [
        [request(a, uuid.uuid4().hex) for a in addresses[i::connections]]
        for i in range(connections)
    ]


async def main_async(bootstrap: str, args: argparse.Namespace, tmp: Path) -> None:
    destination, destination_port = await serve_accept_all()
    dunno, dunno_port = await serve_dunno()
    config = RuntimeConfig.from_env(
        {
            "KAFKA_BOOTSTRAP": bootstrap,
            "DISCOVERY_TOPIC_PREFIX": f"bench{uuid.uuid4().hex[:6]}.",
            "DISCOVERY_TOPIC_PARTITIONS": "4",
            "DISCOVERY_DATA_DIR": str(tmp),
            "DISCOVERY_POLICY_LISTEN": "127.0.0.1:0",
            "DISCOVERY_POLICY_SOCKETMAP_LISTEN": "127.0.0.1:0",
            "DISCOVERY_INGEST_HOSTNAME": "policy.bench",
            "DISCOVERY_INGEST_PROBES_PER_DESTINATION": "8",
            # The callouts' rate cap protects a tenant's server: its waits are policy, not the
            # service's cost, which is what this measures.
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
        destinations=(Destination(host="127.0.0.1", port=destination_port),),
        settings={"discovery_enabled": True, "catch_all_detection": False},
    )
    producer = AIOKafkaProducer(**options)
    await producer.start()
    await producer.send_and_wait(config.topics(TENANTS), encode(tenant), key=tenant.kafka_key())
    await producer.stop()
    service = PolicyService(config, options, serve_metrics=False)
    await service.start()
    port = int(service.policy_address.rsplit(":", 1)[1])
    connections = args.connections
    try:
        verified = [f"known{i}@bench.example" for i in range(args.addresses)]
        await load(port, split(verified, connections), "OK")  # one callout each, then cached
        cached = [verified[i % len(verified)] for i in range(args.requests)]
        await load(dunno_port, split(cached, connections), "DUNNO")  # warm-up
        # Rounds alternate the servers, so that a drift of the machine's speed during the run
        # falls on both alike; each figure is the median of its rounds.
        rates: dict[str, list[float]] = {"dunno": [], "cache": [], "callout": []}
        for round_ in range(args.rounds):
            rates["dunno"].append(await load(dunno_port, split(cached, connections), "DUNNO"))
            rates["cache"].append(await load(port, split(cached, connections), "OK"))
            fresh = [f"new{round_}-{i}@bench.example" for i in range(args.callouts)]
            rates["callout"].append(await load(port, split(fresh, connections), "OK"))
        dunno_rate, cache_rate, callout_rate = (
            statistics.median(rates[name]) for name in ("dunno", "cache", "callout")
        )
        common = {"dunno_baseline": round(dunno_rate, 1), "connections": connections,
                  "rounds": args.rounds}  # fmt: skip
        emit(
            "policy_cache_decisions_per_s",
            ratio=round(cache_rate / dunno_rate, 3),
            decisions_per_s=round(cache_rate, 1),
            requests=args.requests,
            **common,
        )
        emit(
            "policy_callout_decisions_per_s",
            ratio=round(callout_rate / dunno_rate, 3),
            decisions_per_s=round(callout_rate, 1),
            callouts=args.callouts,
            **common,
        )
    finally:
        await service.stop()
        dunno.close()
        destination.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=4000, help="cached decisions per round")
    parser.add_argument("--callouts", type=int, default=1000, help="callout decisions per round")
    parser.add_argument("--addresses", type=int, default=200, help="verified addresses")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds per server")
    run_with_kafka(main_async, parser.parse_args())


if __name__ == "__main__":
    main()
