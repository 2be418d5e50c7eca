"""`up` keeps its children running: a killed streams worker is started again while the ingest
node keeps answering, and a child that keeps failing fast ends `up` with the reason."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.consumer import AIOKafkaConsumer

from schemas.codec import encode
from schemas.mail import RecipientDelivered
from schemas.topics import MAIL, TopicNames
from smtp_discovery.errors import OperatorError
from smtp_discovery.localkafka.node import free_port
from smtp_discovery.stopping import Children
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


class Greetings(threading.Thread):
    """Connects to the ingest node every 50 ms until stopped; counts greetings and failures."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.greeted = 0
        self.failures: list[str] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=10) as conn:
                    greeting = conn.recv(100)
                    conn.sendall(b"QUIT\r\n")
                if greeting.startswith(b"220 "):
                    self.greeted += 1
                else:
                    self.failures.append(repr(greeting))
            except OSError as exc:
                self.failures.append(str(exc))
            self.stop.wait(0.05)


async def _worker_caught_up(bootstrap: str, names: TopicNames, group: str) -> bool:
    topic = names(MAIL)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
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


async def _send_mail_event(bootstrap: str, names: TopicNames) -> None:
    event = RecipientDelivered(tenant_id="nobody", address="new@nobody.example",
                               event_time=datetime.now(UTC), verdict="clean", message_id="m1",
                               client_ip="192.0.2.1")  # fmt: skip
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(names(MAIL), encode(event), key=event.kafka_key())
    finally:
        await producer.stop()


async def test_a_killed_worker_is_started_again_while_mail_is_answered(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    smtp = free_port()
    env = {
        **os.environ,
        "DISCOVERY_DATA_DIR": str(data_dir),
        "DISCOVERY_TOPIC_PARTITIONS": "2",
        "DISCOVERY_INGEST_LISTEN": f"127.0.0.1:{smtp}",
        "DISCOVERY_OPS_LISTEN": "off",
        "DISCOVERY_ADMIN_LISTEN": f"127.0.0.1:{free_port()}",
        "KAFKA_BOOTSTRAP": "",
    }
    terminal = Terminal([sys.executable, "-m", "smtp_discovery.cli", "up"], env=env, cwd=ROOT)
    greetings = Greetings(smtp)
    try:
        out = await asyncio.to_thread(terminal.wait_for, READY, 180)
        found = re.search(r"worker      pid (\d+)", out)
        assert found, out
        endpoints = json.loads((data_dir / "endpoints.json").read_text())
        bootstrap, names = endpoints["kafka"], TopicNames(endpoints["topic_prefix"])
        greetings.start()
        os.kill(int(found.group(1)), signal.SIGKILL)
        await asyncio.to_thread(terminal.wait_for, "the streams worker exited with status -9", 10)
        # An event published while no worker runs is processed by the new one (nothing lost).
        await _send_mail_event(bootstrap, names)
        await asyncio.to_thread(terminal.wait_for, "the streams worker started again", 30)
        deadline = time.monotonic() + 30
        while not await _worker_caught_up(bootstrap, names, "smtp-discovery-streams"):
            assert time.monotonic() < deadline, "the new worker did not process the event"
            await asyncio.sleep(0.5)
        greetings.stop.set()
        await asyncio.to_thread(greetings.join, 15)
        assert greetings.failures == [] and greetings.greeted > 20, greetings.failures
        terminal.ctrl_c()
        assert await asyncio.to_thread(terminal.wait, 60) == 0, terminal.output[-3000:]
    finally:
        greetings.stop.set()
        terminal.close()
