"""Roles whose Kafka has vanished: they say so once per interval, and SIGTERM still ends them
within their stop deadline (Kubernetes and compose wait only a grace period)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from smtp_discovery.localkafka import LocalKafka
from smtp_discovery.localkafka.node import free_port
from smtp_discovery.platform.config import RuntimeConfig
from tests.smtp_discovery.ops_helpers import ready

pytestmark = pytest.mark.kafka

ROOT = Path(__file__).resolve().parents[2]
STOP_TIMEOUT_S = 5
OUTAGE_S = 12
"""How long the roles are watched without Kafka: many reconnect attempts, less than one log
interval (30 s), so each kind of Kafka error may be said once."""


@pytest.fixture
def private_kafka(tmp_path: Path) -> Iterator[LocalKafka]:
    """A broker of this test's own: it is killed mid-test."""
    config = RuntimeConfig.from_env()
    kafka = LocalKafka(
        tmp_path / "kafka",
        kafka_version=config.kafka_version,
        cache_dir=config.kafka_cache_dir,
        heap=config.kafka_heap,
    )
    kafka.start()
    try:
        yield kafka
    finally:
        kafka.stop()


def _kafka_errors(log: Path) -> list[str]:
    lines = log.read_text(errors="replace").splitlines()
    return [
        line for line in lines if (" ERROR " in line or " WARNING " in line) and " aiokafka" in line
    ]


def test_roles_without_kafka_log_once_per_interval_and_stop_on_sigterm(
    private_kafka: LocalKafka, tmp_path: Path
) -> None:
    bootstrap = private_kafka.bootstrap
    base = {
        **os.environ,
        "KAFKA_BOOTSTRAP": bootstrap,
        "DISCOVERY_TOPIC_PARTITIONS": "2",
        "DISCOVERY_DATA_DIR": str(tmp_path / "data"),
        "CLICKHOUSE_URL": f"chdb://{tmp_path / 'clickhouse'}",
        "DISCOVERY_STOP_TIMEOUT_S": str(STOP_TIMEOUT_S),
        "DISCOVERY_STREAMS_STORE": "memory",
    }
    ensured = subprocess.run(
        [sys.executable, "-m", "smtp_discovery.cli", "topics", "ensure"],
        cwd=ROOT, env=base, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert ensured.returncode == 0, ensured.stdout + ensured.stderr
    roles: dict[str, tuple[subprocess.Popen[bytes], int, Path]] = {}
    try:
        for role in ("worker", "sink", "ingest"):
            ops = free_port()
            log = tmp_path / f"{role}.log"
            env = {
                **base,
                "DISCOVERY_OPS_LISTEN": f"127.0.0.1:{ops}",
                "DISCOVERY_INGEST_LISTEN": f"127.0.0.1:{free_port()}",
            }
            with log.open("wb") as out:
                process = subprocess.Popen(
                    [sys.executable, "-m", "smtp_discovery.cli", role],
                    cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                    start_new_session=True,
                )  # fmt: skip
            roles[role] = (process, ops, log)
        deadline = time.monotonic() + 180
        for role, (process, ops, log) in roles.items():
            while not ready(ops):
                assert process.poll() is None, f"{role} exited:\n{log.read_text()[-3000:]}"
                assert time.monotonic() < deadline, f"{role} not ready:\n{log.read_text()[-3000:]}"
                time.sleep(0.2)
        before = {role: len(_kafka_errors(log)) for role, (_, _, log) in roles.items()}

        private_kafka.kill_node(1)
        time.sleep(OUTAGE_S)  # an observation window: how much is said while Kafka is gone

        for role, (_, _, log) in roles.items():
            said = _kafka_errors(log)[before[role] :]
            # One line per kind of Kafka error and interval: a few kinds, not one per attempt.
            assert len(said) <= 12, f"{role} said {len(said)} lines in {OUTAGE_S} s:\n" + "\n".join(
                said[:40]
            )
        began = time.monotonic()
        for process, _, _ in roles.values():
            process.send_signal(signal.SIGTERM)
        for role, (process, _, log) in roles.items():
            try:
                process.wait(STOP_TIMEOUT_S + 10)
            except subprocess.TimeoutExpired:
                raise AssertionError(
                    f"{role} ignored SIGTERM without Kafka:\n{log.read_text()[-3000:]}"
                ) from None
        assert time.monotonic() - began < STOP_TIMEOUT_S + 10
    finally:
        for process, _, _ in roles.values():
            if process.poll() is None:
                process.kill()
                process.wait()
