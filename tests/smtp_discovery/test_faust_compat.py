"""faust-streaming + the pinned aiokafka against the real broker: the pin's justification.

Runs tests/smtp_discovery/faust_probe.py as a worker process (Faust owns its event loop) and
checks that a keyed stream, a RocksDB-backed table and a producer all work end to end.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from tests.smtp_discovery.kafka_helpers import consume_until

pytestmark = pytest.mark.kafka
ROOT = Path(__file__).resolve().parents[2]


async def _create_topics_and_produce(bootstrap: str, app_id: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics(
            [NewTopic(f"{app_id}-{suffix}", 2, 1) for suffix in ("in", "out")]
        )
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for i in range(30):
            await producer.send(f"{app_id}-in", key=f"k{i % 3}".encode(), value=f"v{i}".encode())
        await producer.flush()
    finally:
        await producer.stop()


def test_faust_agent_table_and_producer_work_on_this_broker(
    kafka_bootstrap: str, unique: str, tmp_path: Path
) -> None:
    app_id = f"probe-{unique}"
    env = {
        **os.environ,
        "PROBE_APP_ID": app_id,
        "PROBE_BOOTSTRAP": kafka_bootstrap,
        "PROBE_DATADIR": str(tmp_path),
    }
    with (tmp_path / "worker.log").open("wb") as log:
        worker = subprocess.Popen(
            [sys.executable, "-m", "tests.smtp_discovery.faust_probe", "worker", "-l", "info"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            asyncio.run(_create_topics_and_produce(kafka_bootstrap, app_id))
            records = asyncio.run(consume_until(kafka_bootstrap, f"{app_id}-out", 30, timeout=90))
        finally:
            worker.terminate()
            try:
                worker.wait(30)
            except subprocess.TimeoutExpired:
                worker.kill()
    output = (tmp_path / "worker.log").read_text(errors="replace")
    assert len(records) == 30, f"worker produced {len(records)} of 30; its log:\n{output[-3000:]}"
    final_count: dict[bytes, int] = {}
    for record in records:
        count = int(record.value.split(b":")[1])
        final_count[record.key] = max(final_count.get(record.key, 0), count)
    assert final_count == {b"k0": 10, b"k1": 10, b"k2": 10}
    assert list(tmp_path.glob("**/counts-*.db")), "the table was not stored in RocksDB"
    assert "Traceback" not in output
