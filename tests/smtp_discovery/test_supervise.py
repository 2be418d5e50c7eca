"""`up` keeps its children running: a killed streams worker is started again while the ingest
node keeps answering, and a child that keeps failing fast ends `up` with the reason."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import smtplib
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import aiosmtplib
import httpx
import pytest
from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.consumer import AIOKafkaConsumer
from aiosmtpd.controller import Controller

from smtp_discovery.localkafka.node import free_port
from smtp_discovery.platform.errors import OperatorError
from smtp_discovery.platform.running import embedded_login
from smtp_discovery.platform.stopping import Children
from smtp_discovery.schemas.topics import MAIL, TopicNames
from smtp_discovery.supervise import RestartPolicy, Supervised
from tests.smtp_discovery.terminal import Terminal

ROOT = Path(__file__).resolve().parents[2]
READY = "ready; press Ctrl-C to stop"


def test_the_pause_doubles_with_quick_failures_and_a_stable_run_starts_the_count_over() -> None:
    policy = RestartPolicy(stable_s=60, give_up_after=4, first_pause_s=1, max_pause_s=3)
    assert policy.after_exit(0, ran_s=5) == (1, 1)
    assert policy.after_exit(1, ran_s=5) == (2, 2)
    assert policy.after_exit(2, ran_s=5) == (3, 3)  # at most max_pause_s
    assert policy.after_exit(3, ran_s=5) == (4, None)  # give up
    assert policy.after_exit(3, ran_s=60) == (1, 1)  # it ran well before it died


async def test_a_child_that_keeps_failing_fast_is_given_up_with_the_reason() -> None:
    lines: list[str] = []
    child = Supervised(
        "the flaky child",
        lambda: subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"]),
        Children(),
        where="see flaky.log",
        policy=RestartPolicy(give_up_after=3, first_pause_s=0.01),
        say=lines.append,
    )
    with pytest.raises(OperatorError) as refused:
        await asyncio.wait_for(child.watch(), 60)
    assert str(refused.value) == (
        "the flaky child exited with status 3 3 times in a row, each within 60 s of its start; "
        "see flaky.log"
    )
    assert child.restarts == 2
    assert lines[0] == "the flaky child exited with status 3; starting it again in 0.01 s"
    assert re.fullmatch(r"the flaky child started again \(pid \d+\)", lines[1])


class MailLoad(threading.Thread):
    """Mail to new addresses of a tenant, one message after another, until stopped: each is
    verified by callout and relayed, and its delivery goes to the streams worker."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.sent = 0
        self.failures: list[str] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                with smtplib.SMTP("127.0.0.1", self.port, timeout=30) as client:
                    client.sendmail("sender@outside.example", [f"user{self.sent}@acme.example"],
                                    b"Subject: load\r\n\r\nhello\r\n")  # fmt: skip
                self.sent += 1
            except (OSError, smtplib.SMTPException) as exc:
                self.failures.append(f"{type(exc).__name__}: {exc}")
            self.stop.wait(0.02)


class Accept:
    async def handle_RCPT(self, server: object, session: object, envelope: Any, address: str,
                          options: list[str]) -> str:  # fmt: skip
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 Ok"

    async def handle_DATA(self, server: object, session: object, envelope: object) -> str:
        return "250 2.0.0 Ok: queued"


async def _worker_caught_up(options: dict[str, Any], names: TopicNames, group: str) -> bool:
    topic = names(MAIL)
    consumer = AIOKafkaConsumer(**options)
    admin = AIOKafkaAdminClient(**options)
    await consumer.start()
    await admin.start()
    try:
        parts = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        if not parts:
            await consumer.topics()  # metadata
            parts = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        ends = await consumer.end_offsets(parts)
        committed = await admin.list_consumer_group_offsets(group)
        return all(committed.get(tp) and committed[tp].offset >= end for tp, end in ends.items())
    finally:
        await admin.close()
        await consumer.stop()


async def test_a_killed_worker_is_started_again_while_mail_is_answered(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    smtp, admin = free_port(), free_port()
    env = {
        **os.environ,
        "DISCOVERY_DATA_DIR": str(data_dir),
        "DISCOVERY_TOPIC_PARTITIONS": "2",
        "DISCOVERY_INGEST_LISTEN": f"127.0.0.1:{smtp}",
        "DISCOVERY_OPS_LISTEN": "off",
        "DISCOVERY_ADMIN_LISTEN": f"127.0.0.1:{admin}",
        "KAFKA_BOOTSTRAP": "",
    }
    destination = Controller(Accept(), hostname="127.0.0.1", port=free_port())
    destination.start()
    terminal = Terminal([sys.executable, "-m", "smtp_discovery.cli", "up"], env=env, cwd=ROOT)
    load = MailLoad(smtp)
    try:
        out = await asyncio.to_thread(terminal.wait_for, READY, 180)
        found = re.search(r"worker      pid (\d+)", out)
        assert found, out
        endpoints = json.loads((data_dir / "endpoints.json").read_text())
        names = TopicNames(endpoints["topic_prefix"])
        kafka = {"bootstrap_servers": endpoints["kafka"],
                 **embedded_login(data_dir).client_options()}  # fmt: skip
        token = (data_dir / "operator-token").read_text().strip()
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{admin}") as api:
            created = await api.post("/v1/tenants", headers={"Authorization": f"Bearer {token}"},
                                     json={"tenant_id": "acme", "name": "Acme",
                                           "domains": ["acme.example"],
                                           "destinations": [{"host": "127.0.0.1",
                                                             "port": destination.port}],
                                           "settings": {"discovery_enabled": True}})  # fmt: skip
            assert created.status_code == 201, created.text
        await _until_accepted(smtp)
        load.start()
        await _until(lambda: load.sent >= 10, "mail flowing")
        os.kill(int(found.group(1)), signal.SIGKILL)
        await asyncio.to_thread(terminal.wait_for, "the streams worker exited with status -9", 10)
        before = load.sent
        await asyncio.to_thread(terminal.wait_for, "the streams worker started again", 30)
        await _until(lambda: load.sent >= before + 10, "mail flowing after the restart")
        load.stop.set()
        await asyncio.to_thread(load.join, 60)
        assert load.failures == [], load.failures[:5]
        # Every delivery, those sent while no worker ran included, is processed by the new one.
        deadline = time.monotonic() + 30
        while not await _worker_caught_up(kafka, names, "smtp-discovery-streams"):
            assert time.monotonic() < deadline, "the new worker did not catch up"
            await asyncio.sleep(0.5)
        terminal.ctrl_c()
        assert await asyncio.to_thread(terminal.wait, 60) == 0, terminal.output[-3000:]
    finally:
        load.stop.set()
        terminal.close()
        destination.stop()


async def _until(condition: Any, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"never: {what}"
        await asyncio.sleep(0.05)


async def _until_accepted(port: int, timeout: float = 60) -> None:
    """Until the ingest node knows the new tenant (its view follows the tenants topic)."""
    deadline = time.monotonic() + timeout
    while True:
        async with aiosmtplib.SMTP(hostname="127.0.0.1", port=port, timeout=30) as client:
            await client.mail("sender@outside.example")
            reply = await client.execute_command(b"RCPT TO:<first@acme.example>")
        if reply.code == 250:
            return
        assert time.monotonic() < deadline, f"the tenant was never accepted: {reply}"
        await asyncio.sleep(0.2)
