"""Run real `smtp-discovery worker` processes against the session's Kafka, under a topic prefix
of their own, and read back what they published."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from smtp_discovery.platform.config import RuntimeConfig
from smtp_discovery.platform.kafka import client_options, ensure_topics
from smtp_discovery.schemas.codec import decode, encode
from smtp_discovery.schemas.state import AddressStateSnapshot, StateChange
from smtp_discovery.schemas.topics import (
    ADDRESS_STATE,
    COMMANDS,
    MAIL,
    STATE_CHANGES,
    TENANTS,
    TopicNames,
)
from smtp_discovery.schemas.topics import topic as spec_of

ROOT = Path(__file__).resolve().parents[2]
PARTITIONS = 4


class WorkerRun:
    def __init__(self, bootstrap: str, name: str, directory: Path) -> None:
        self.bootstrap = bootstrap
        self.names = TopicNames(f"{name}.")
        self.app_id = f"{name}-streams"
        self.directory = directory
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    async def setup(self, tenant_messages: list[Any]) -> None:
        await ensure_topics(
            client_options(RuntimeConfig(), self.bootstrap),
            partitions=PARTITIONS,
            replication=1,
            specs=self.names.specs(),
        )
        await self.publish(tenant_messages, topic=TENANTS)

    def env(self, worker: str) -> dict[str, str]:
        return {
            **os.environ,
            "KAFKA_BOOTSTRAP": self.bootstrap,
            "DISCOVERY_TOPIC_PREFIX": self.names.prefix,
            "DISCOVERY_TOPIC_PARTITIONS": str(PARTITIONS),
            "DISCOVERY_TOPIC_REPLICATION": "1",
            "DISCOVERY_STREAMS_APP_ID": self.app_id,
            "DISCOVERY_DATA_DIR": str(self.directory / worker),
            "DISCOVERY_CLOCK": "event-time",
            "DISCOVERY_EXPIRY_SCAN_S": "0.3",
            "DISCOVERY_STREAMS_COMMIT_S": "0.2",
            "DISCOVERY_STREAMS_SESSION_TIMEOUT_S": "6",
            "DISCOVERY_LOG_LEVEL": "INFO",
            # Workers share this machine: no fixed port for their ops endpoints.
            "DISCOVERY_OPS_LISTEN": "off",
        }

    def start(self, worker: str, fault: str = "") -> None:
        """Start a worker; ``fault`` injects one (tests/streams/faults/sitecustomize.py)."""
        env = self.env(worker)
        if fault:
            faults = str(Path(__file__).parent / "faults")
            env["PYTHONPATH"] = os.pathsep.join(p for p in (faults, env.get("PYTHONPATH")) if p)
            env["DISCOVERY_TEST_FAULT"] = fault
        log = (self.directory / f"{worker}.log").open("ab")
        self.processes[worker] = subprocess.Popen(
            [sys.executable, "-m", "smtp_discovery.cli", "worker"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()

    def exited(self, worker: str) -> int | None:
        """The worker's exit status once it has exited (and it is forgotten), else None."""
        status = self.processes[worker].poll()
        if status is not None:
            del self.processes[worker]
        return status

    def kill(self, worker: str) -> None:
        """SIGKILL: no shutdown, no commit, no flush, as a crash."""
        process = self.processes.pop(worker)
        process.send_signal(signal.SIGKILL)
        process.wait(10)

    def stop_all(self) -> None:
        for process in self.processes.values():
            process.terminate()
        for process in self.processes.values():
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
        self.processes.clear()

    def logs(self) -> str:
        return "\n".join(
            f"--- {p.name}\n" + p.read_text(errors="replace")[-4000:]
            for p in sorted(self.directory.glob("*.log"))
        )

    async def publish(self, messages: list[Any], topic: str | None = None) -> None:
        producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap, acks="all", enable_idempotence=True
        )
        await producer.start()
        try:
            for message in messages:
                name = topic or (
                    COMMANDS if hasattr(message, "actor") or message.type == "tick" else MAIL
                )
                await producer.send(
                    self.names(name), key=message.kafka_key(), value=encode(message)
                )
            await producer.flush()
        finally:
            await producer.stop()

    async def publish_raw(self, topic: str, records: list[tuple[bytes, bytes]]) -> None:
        producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, acks="all")
        await producer.start()
        try:
            for key, value in records:
                await producer.send(self.names(topic), key=key, value=value)
            await producer.flush()
        finally:
            await producer.stop()

    async def caught_up(self, timeout: float = 120.0) -> None:
        """Wait until the workers committed everything on the source topics, twice in a row
        (system messages the workers produce themselves land on the commands topic)."""
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap)
        consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap)
        await admin.start()
        await consumer.start()
        partitions = [
            TopicPartition(self.names(t), p) for t in (MAIL, COMMANDS) for p in range(PARTITIONS)
        ]
        deadline = time.monotonic() + timeout
        stable = 0
        lag: dict[str, tuple[int | None, int]] = {}
        try:
            while time.monotonic() < deadline:
                for name, process in self.processes.items():
                    if process.poll() is not None:
                        raise AssertionError(f"worker {name} exited; logs:\n{self.logs()}")
                ends = await consumer.end_offsets(partitions)
                try:
                    committed = await admin.list_consumer_group_offsets(self.app_id)
                except KafkaError:  # the group's coordinator is still being elected
                    committed = {}
                done = all(
                    (committed.get(tp).offset if committed.get(tp) else 0) >= end
                    for tp, end in ends.items()
                )
                stable = stable + 1 if done else 0
                lag = {
                    f"{tp.topic}:{tp.partition}": (
                        committed.get(tp).offset if committed.get(tp) else None,  # type: ignore[union-attr]
                        end,
                    )
                    for tp, end in ends.items()
                }
                if stable >= 3:
                    return
                await asyncio.sleep(0.1)
        finally:
            await consumer.stop()
            await admin.close()
        raise AssertionError(
            f"workers did not catch up within {timeout}s; (committed, end) per partition: "
            f"{lag}; logs:\n{self.logs()}"
        )

    async def read(self, topic: str) -> list[tuple[bytes | None, bytes | None]]:
        """Everything on the topic now, in partition order."""
        consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False)
        await consumer.start()
        try:
            count = spec_of(topic).partition_count(PARTITIONS)
            tps = [TopicPartition(self.names(topic), p) for p in range(count)]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            ends = await consumer.end_offsets(tps)
            out: list[tuple[bytes | None, bytes | None]] = []
            for tp in tps:
                while await consumer.position(tp) < ends[tp]:
                    batch = await consumer.getmany(tp, timeout_ms=500)
                    out.extend((r.key, r.value) for r in batch.get(tp, []))
            return out
        finally:
            await consumer.stop()

    async def states(self) -> dict[str, AddressStateSnapshot]:
        latest: dict[str, AddressStateSnapshot | None] = {}
        for key, value in await self.read(ADDRESS_STATE):
            latest[key.decode()] = decode(ADDRESS_STATE, value)
        return {k: v for k, v in latest.items() if v is not None}

    async def changes(self) -> list[StateChange]:
        return [decode(STATE_CHANGES, value) for _key, value in await self.read(STATE_CHANGES)]
