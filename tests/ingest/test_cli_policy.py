"""`smtp-discovery policy` as an operator runs it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from smtp_discovery.cli import ROLES_ALONE, main
from smtp_discovery.localkafka.node import free_port

ROOT = Path(__file__).resolve().parents[2]


def test_policy_without_kafka_exits_2_with_a_sentence(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KAFKA_BOOTSTRAP", raising=False)
    assert main(["policy"]) == 2
    assert "the policy service needs Kafka: set KAFKA_BOOTSTRAP" in capsys.readouterr().err
    assert "policy" in ROLES_ALONE, "a role run on its own logs to stderr"


def _ask(port: int, data: bytes, end: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(data)
        answer = b""
        while not answer.endswith(end):
            chunk = conn.recv(1000)
            if not chunk:
                break
            answer += chunk
        return answer


@pytest.mark.kafka
def test_the_policy_command_serves_both_protocols_and_stops_cleanly_on_sigterm(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    policy, tables = free_port(), free_port()
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP": kafka_bootstrap,
        "DISCOVERY_TOPIC_PREFIX": "cli-policy.",
        "DISCOVERY_DATA_DIR": str(tmp_path),
        "DISCOVERY_POLICY_LISTEN": f"127.0.0.1:{policy}",
        "DISCOVERY_POLICY_SOCKETMAP_LISTEN": f"127.0.0.1:{tables}",
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
        [sys.executable, "-m", "smtp_discovery.cli", "policy"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    request = (
        b"request=smtpd_access_policy\nprotocol_state=RCPT\nclient_address=192.0.2.1\n"
        b"sender=a@partner.example\nrecipient=b@nobody.example\ninstance=1\n\n"
    )
    try:
        answer = b""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and process.poll() is None:
            try:
                answer = _ask(policy, request, b"\n\n")
                break
            except OSError:
                time.sleep(0.1)
        assert answer == b"action=550 5.7.1 Relaying denied\n\n", (
            process.stdout.read() if process.poll() is not None else answer  # type: ignore[union-attr]
        )
        assert _ask(tables, b"20:relay nobody.example,", b",") == b"9:NOTFOUND ,"
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, output
    assert '"message": "policy service listening on 127.0.0.1:' in output
