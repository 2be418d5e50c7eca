"""RCPT latency of `smtp-discovery up` while its admin API lists tenants and its sink inserts.

    .venv/bin/python -m bench.rcpt_under_load [--tenants 10000] [--rcpts 400] [--events 200000]

``up`` runs as operators run it (a process of its own, on the bench's Kafka), with ``--tenants``
tenants on its tenants topic and one more whose users' mail it relays to a local destination.
One SMTP client sends ``--rcpts`` RCPTs for known users, 5 ms apart, twice: once with nothing
else to do (idle), then while another client pages through the whole tenant list of the admin
API as fast as it answers, ``--events`` mail events arrive for the sink to insert, and eight
clients keep uploading 400 MB action bodies to the admin API, half of them without a token
(``admin.limits`` refuses them before reading: they cost neither memory nor time).

Figure ``rcpt_p99_under_load``: the RCPT p99 under that load divided by the idle p99 of the same
run (lower is better; the goal is under 2, and under 5 ms absolute). The run fails instead of
writing a figure when the load did not happen: no tenant page served, or no event inserted by
the sink (its group's committed offsets did not move), or no oversized upload refused while the
RCPTs were measured.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiosmtplib
import httpx
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiosmtpd.controller import Controller

from bench.harness import run_with_kafka
from bench.kafka_baseline import emit
from smtp_discovery.localkafka.node import free_port
from smtp_discovery.platform.kafka import ensure_topics
from smtp_discovery.schemas.codec import encode
from smtp_discovery.schemas.mail import RecipientDelivered
from smtp_discovery.schemas.state import AddressRecord, AddressStateSnapshot, AddressStatus
from smtp_discovery.schemas.tenant import Destination, TenantConfig
from smtp_discovery.schemas.topics import ADDRESS_STATE, MAIL_SETTLED, TENANTS, TopicNames

T0 = datetime(2026, 11, 2, 9, tzinfo=UTC)
USERS = 100
GAP_S = 0.005


class AcceptAll:
    """The bench tenant's mail server: accepts everything."""

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str,
                          options: list[str]) -> str:  # fmt: skip
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 Ok"


async def publish(bootstrap: str, names: TopicNames, tenants: int, port: int) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, acks="all")
    await producer.start()
    try:
        for i in range(tenants):
            t = TenantConfig(tenant_id=f"t{i}", event_time=T0, name=f"Tenant {i}",
                             domains=(f"t{i}.example",))  # fmt: skip
            await producer.send(names(TENANTS), encode(t), key=t.kafka_key())
        bench = TenantConfig(
            tenant_id="bench", event_time=T0, name="Bench", domains=("bench.example",),
            destinations=(Destination(host="127.0.0.1", port=port),),
            settings={"discovery_enabled": True},
        )  # fmt: skip
        await producer.send(names(TENANTS), encode(bench), key=bench.kafka_key())
        for i in range(USERS):
            address = f"u{i}@bench.example"
            record = AddressRecord(tenant_id="bench", address=address, status=AddressStatus.USER,
                                   status_since=T0, status_reason="import")  # fmt: skip
            snapshot = AddressStateSnapshot(tenant_id="bench", address=address, event_time=T0,
                                            record=record)  # fmt: skip
            await producer.send(names(ADDRESS_STATE), encode(snapshot), key=snapshot.kafka_key())
        await producer.flush()
    finally:
        await producer.stop()


def start_up(bootstrap: str, names: TopicNames, tmp: Path, smtp: int, admin: int) -> Any:
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP": bootstrap,
        "DISCOVERY_TOPIC_PREFIX": names.prefix,
        "DISCOVERY_DATA_DIR": str(tmp / "up"),
        "DISCOVERY_INGEST_LISTEN": f"127.0.0.1:{smtp}",
        "DISCOVERY_INGEST_HOSTNAME": "mx.bench.example",
        "DISCOVERY_ADMIN_LISTEN": f"127.0.0.1:{admin}",
        "DISCOVERY_OPS_LISTEN": "off",
    }
    with (tmp / "up.log").open("wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "smtp_discovery.cli", "up"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )


async def wait_ready(process: Any, tmp: Path, smtp: int, timeout: float = 300) -> None:
    """Until `up` says it is ready and relays mail for the bench tenant's users."""
    deadline = time.monotonic() + timeout
    while "ready;" not in (tmp / "up.log").read_text(errors="replace"):
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError((tmp / "up.log").read_text(errors="replace")[-3000:])
        await asyncio.sleep(0.2)
    while time.monotonic() < deadline:
        async with aiosmtplib.SMTP(hostname="127.0.0.1", port=smtp, timeout=30) as client:
            await client.mail("sender@outside.example")
            reply = await client.execute_command(f"RCPT TO:<u{USERS - 1}@bench.example>".encode())
            if reply.code == 250:
                return
        await asyncio.sleep(0.2)
    raise RuntimeError("the bench tenant's users were not accepted in time")


async def rcpt_latencies(smtp: int, count: int) -> list[float]:
    """Milliseconds per RCPT, one connection, ``GAP_S`` apart, a new transaction every 50."""
    out = []
    async with aiosmtplib.SMTP(hostname="127.0.0.1", port=smtp, timeout=30) as client:
        for i in range(count):
            if i % 50 == 0:
                if i:
                    await client.rset()
                await client.mail("sender@outside.example")
            began = time.perf_counter()
            reply = await client.execute_command(f"RCPT TO:<u{i % USERS}@bench.example>".encode())
            out.append((time.perf_counter() - began) * 1000)
            if reply.code != 250:
                raise RuntimeError(f"RCPT answered {reply.code} {reply.message}")
            await asyncio.sleep(GAP_S)
    return out


def p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100)[98]


async def list_tenants(admin: int, token: str, stop: asyncio.Event, running: Path) -> int:
    """Page through every tenant, 500 a page, again and again; pages served. ``running`` is
    written once the first page came back: the load is on."""
    served = 0
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{admin}", timeout=60) as http:
        page = 1
        while not stop.is_set():
            body = (await http.get("/v1/tenants", params={"page": page, "per_page": 500},
                                   headers=headers)).raise_for_status().json()  # fmt: skip
            served += 1
            if served == 1:
                await asyncio.to_thread(running.write_text, "running")
            page = 1 if page * 500 >= body["total"] else page + 1
    return served


OVERSIZED = 400 * 1024 * 1024
UPLOAD_EVERY_S = 0.25
CHUNK = b"x" * (1024 * 1024)


async def oversized_upload(admin: int, token: str | None) -> int:
    """One chunked upload of up to 400 MB to the actions route, as fast as the socket takes
    it, until the API answers: its status (0 if the connection ended without one)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", admin)
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    writer.write(f"POST /v1/tenants/bench/actions HTTP/1.1\r\nHost: bench\r\n{auth}"
                 "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
                 .encode())  # fmt: skip
    answer = asyncio.create_task(reader.readline())
    sent = 0
    try:
        while not answer.done() and sent < OVERSIZED:
            writer.write(b"%x\r\n%s\r\n" % (len(CHUNK), CHUNK))
            await writer.drain()
            sent += len(CHUNK)
        line = await asyncio.wait_for(answer, 60)
    except (OSError, TimeoutError):
        line = answer.result() if answer.done() and not answer.exception() else b""
    finally:
        answer.cancel()
        writer.close()
    parts = line.split()
    return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0


async def upload_oversized(admin: int, token: str, stop: asyncio.Event) -> int:
    """Eight clients (half without a token) each starting an oversized upload every
    ``UPLOAD_EVERY_S`` until stopped, as the probe's eight at once did (each took 2.3 s before
    the API refused bodies unread; now each is answered at once, and a tighter loop would
    measure a request flood instead); how many the API refused (401, 413, or 429 once the
    failures add up)."""

    async def client(with_token: bool) -> int:
        refused = 0
        while not stop.is_set():
            status = await oversized_upload(admin, token if with_token else None)
            refused += status in (401, 413, 429)
            await asyncio.sleep(UPLOAD_EVERY_S)
        return refused

    return sum(await asyncio.gather(*(client(i % 2 == 1) for i in range(8))))


async def feed_sink(bootstrap: str, names: TopicNames, values: list[tuple[bytes, bytes]],
                    stop: asyncio.Event) -> None:  # fmt: skip
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=20)
    await producer.start()
    try:
        for key, value in values:
            if stop.is_set():
                break
            await producer.send(names(MAIL_SETTLED), value, key=key)
            await asyncio.sleep(0)  # a send that fits the buffer does not yield: the others run
    finally:
        await producer.stop()


def mail_events(count: int) -> list[tuple[bytes, bytes]]:
    out = []
    for i in range(count):
        event = RecipientDelivered(tenant_id="bench", address=f"u{i % USERS}@bench.example",
                                   event_time=T0 + timedelta(seconds=i), verdict="clean",
                                   message_id=f"m{i}", client_ip="192.0.2.1")  # fmt: skip
        out.append((event.kafka_key(), encode(event)))
    return out


async def sink_committed(bootstrap: str, names: TopicNames) -> int:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets("smtp-discovery-sink")
    finally:
        await admin.close()
    topic = names(MAIL_SETTLED)
    return sum(max(o.offset, 0) for tp, o in offsets.items() if tp.topic == topic)


async def load(bootstrap: str, prefix: str, admin: int, token: str, events: int,
               report: Path) -> None:  # fmt: skip
    """The load, in a process of its own (in the measuring process, the load generators' own
    work would delay the RCPT client): until SIGTERM, page through the tenants, feed the sink
    and upload oversized bodies; then write how many pages were served and uploads refused."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)  # first: making the events takes seconds
    names = TopicNames(prefix)
    values = mail_events(events)
    lister = asyncio.create_task(list_tenants(admin, token, stop, running_marker(report)))
    uploads = asyncio.create_task(upload_oversized(admin, token, stop))
    await feed_sink(bootstrap, names, values, stop)
    await stop.wait()
    pages, refused = await lister, await uploads
    await asyncio.to_thread(report.write_text, f"{pages} {refused}")


def running_marker(report: Path) -> Path:
    return report.with_suffix(".running")


async def until_running(loader: Any, report: Path, timeout: float = 180) -> None:
    """Until the load process says its load is on (it first makes its events: seconds)."""
    deadline = time.monotonic() + timeout
    while not running_marker(report).exists():
        if loader.poll() is not None:
            raise RuntimeError(f"the load process ended with status {loader.returncode}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"the load did not start within {timeout:g} s")
        await asyncio.sleep(0.1)


def start_load(bootstrap: str, names: TopicNames, admin: int, token: str, events: int,
               report: Path) -> Any:  # fmt: skip
    arguments = [bootstrap, names.prefix, str(admin), token, str(events), str(report)]
    return subprocess.Popen([sys.executable, "-m", "bench.rcpt_under_load", "--load", *arguments])


async def main_async(bootstrap: str, args: argparse.Namespace, tmp: Path) -> None:
    names = TopicNames(f"rcpt{int(time.time())}.")
    await ensure_topics({"bootstrap_servers": bootstrap}, partitions=4, replication=1,
                        specs=names.specs())  # fmt: skip
    destination = Controller(AcceptAll(), hostname="127.0.0.1", port=free_port())
    destination.start()
    smtp, admin = free_port(), free_port()
    await publish(bootstrap, names, args.tenants, destination.port)
    process = start_up(bootstrap, names, tmp, smtp, admin)
    try:
        await wait_ready(process, tmp, smtp)
        token = (tmp / "up" / "operator-token").read_text().strip()
        idle = await rcpt_latencies(smtp, args.rcpts)
        before = await sink_committed(bootstrap, names)
        report = tmp / "load.txt"
        loader = start_load(bootstrap, names, admin, token, args.events, report)
        await until_running(loader, report)  # the load is on before the first measured RCPT
        loaded = await rcpt_latencies(smtp, args.rcpts)
        inserted = await sink_committed(bootstrap, names) - before
        loader.terminate()
        if loader.wait(120) != 0:
            raise RuntimeError(f"the load process failed with status {loader.returncode}")
        pages, refused = map(int, report.read_text().split())
    finally:
        process.terminate()
        try:
            process.wait(120)
        except subprocess.TimeoutExpired:
            process.kill()
        destination.stop()
    if pages == 0 or inserted <= 0 or refused == 0:
        raise RuntimeError(f"no load: {pages} tenant pages served, {inserted} events inserted, "
                           f"{refused} oversized uploads refused")  # fmt: skip
    idle_p99, loaded_p99 = p99(idle), p99(loaded)
    emit("rcpt_p99_under_load", ratio=round(loaded_p99 / idle_p99, 3),
         idle_p50_ms=round(statistics.median(idle), 2), idle_p99_ms=round(idle_p99, 2),
         loaded_p50_ms=round(statistics.median(loaded), 2), loaded_p99_ms=round(loaded_p99, 2),
         loaded_max_ms=round(max(loaded), 2), rcpts=args.rcpts, tenants=args.tenants,
         tenant_pages=pages, events_inserted=inserted,
         oversized_uploads_refused=refused)  # fmt: skip


def main() -> None:
    if sys.argv[1:2] == ["--load"]:
        bootstrap, prefix, admin, token, events, report = sys.argv[2:8]
        asyncio.run(load(bootstrap, prefix, int(admin), token, int(events), Path(report)))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tenants", type=int, default=10_000)
    parser.add_argument("--rcpts", type=int, default=400)
    parser.add_argument("--events", type=int, default=200_000)
    run_with_kafka(main_async, parser.parse_args())


if __name__ == "__main__":
    main()
