"""`smtp-discovery ingest` and `smtp-discovery cache clear` as an operator runs them."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from smtp_discovery.admin.cli import run as run_operator_command
from smtp_discovery.cli import main
from smtp_discovery.localkafka.node import free_port
from smtp_discovery.platform.config import RuntimeConfig
from tests.ingest.harness import running_ingest, tenant
from tests.ingest.postfix import PostfixServer

ROOT = Path(__file__).resolve().parents[2]


def test_ingest_without_kafka_exits_2_with_a_sentence(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KAFKA_BOOTSTRAP", raising=False)
    assert main(["ingest"]) == 2
    assert "the ingest node needs Kafka: set KAFKA_BOOTSTRAP" in capsys.readouterr().err


@pytest.mark.kafka
def test_the_ingest_command_serves_smtp_and_stops_cleanly_on_sigterm(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    port = free_port()
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP": kafka_bootstrap,
        "DISCOVERY_TOPIC_PREFIX": "cli-ingest.",
        "DISCOVERY_DATA_DIR": str(tmp_path),
        "DISCOVERY_INGEST_LISTEN": f"127.0.0.1:{port}",
        "DISCOVERY_OPS_LISTEN": "off",
        "DISCOVERY_LOG_FORMAT": "json",
    }
    subprocess.run(
        [sys.executable, "-m", "smtp_discovery.cli", "topics", "ensure", "--partitions", "2"],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "smtp_discovery.cli", "ingest"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        greeting = b""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and process.poll() is None:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
                    greeting = conn.recv(200)
                    conn.sendall(b"QUIT\r\n")
                break
            except OSError:
                time.sleep(0.1)
        assert greeting.startswith(b"220 "), process.stdout.read() if process.poll() else ""
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, output
    assert '"message": "SMTP ingest listening on 127.0.0.1:' in output


@pytest.mark.kafka
async def test_clearing_a_tenants_cache_makes_every_node_verify_again(
    kafka_bootstrap: str, tmp_path: Path, postfix_servers: dict[str, PostfixServer]
) -> None:
    acme = tenant("acme", ["a.example"], postfix_servers["strict"].port)
    async with running_ingest(kafka_bootstrap, tmp_path, [acme]) as ingest:
        metric = "smtp_discovery_ingest_verification_cache_lookups_total"

        async def rcpt() -> None:
            async with ingest.client() as smtp:
                await smtp.mail("sender@outside.example")
                assert (await smtp.execute_command(b"RCPT TO:<bob@a.example>")).code == 250

        await rcpt()
        await rcpt()
        assert (ingest.count(metric, result="miss"), ingest.count(metric, result="hit")) == (1, 1)
        config = RuntimeConfig.model_validate(
            {"kafka_bootstrap": kafka_bootstrap, "topic_prefix": ingest.config.topic_prefix}
        )
        clear = argparse.Namespace(command="cache", cache_command="clear", tenant="acme")
        assert await run_operator_command(config, clear) == 0  # through the admin API's route
        deadline = time.monotonic() + 30
        while ingest.node.tenants.tenant("acme").verification_cache_epoch != 1:  # type: ignore[union-attr]
            assert time.monotonic() < deadline, "the node never saw the new epoch"
            await asyncio.sleep(0.05)
        await rcpt()
        assert ingest.count(metric, result="miss") == 2, "verified again after the clear"
