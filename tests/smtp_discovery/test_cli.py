"""The console script as an operator runs it: exit codes, sentences, and `up` for real."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from schemas.topics import REGISTRY
from smtp_discovery.cli import main
from smtp_discovery.localkafka.node import free_port

ROOT = Path(__file__).resolve().parents[2]


def _cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "smtp_discovery.cli", *args],
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_bad_configuration_exits_2_with_a_sentence(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DISCOVERY_TOPIC_PARTITIONS", "0")
    assert main(["config"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("smtp-discovery: invalid configuration: DISCOVERY_TOPIC_PARTITIONS")


def test_topics_ensure_without_a_cluster_exits_2(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KAFKA_BOOTSTRAP", raising=False)
    assert main(["topics", "ensure"]) == 2
    assert "set KAFKA_BOOTSTRAP or pass --bootstrap" in capsys.readouterr().err


def test_topics_list_prints_the_registry(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["topics", "list"]) == 0
    out = capsys.readouterr().out
    for spec in REGISTRY:
        assert spec.name in out


def test_config_masks_secrets(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLICKHOUSE_URL", "https://u:topsecret@ch.example:8443/db")
    assert main(["config"]) == 0
    out = capsys.readouterr().out
    assert "topsecret" not in out
    assert "CLICKHOUSE_URL=https://u:***@ch.example:8443/db" in out


@pytest.mark.kafka
def test_topics_ensure_on_a_cluster_twice(kafka_bootstrap: str) -> None:
    first = _cli("topics", "ensure", "--partitions", "4", env={"KAFKA_BOOTSTRAP": kafka_bootstrap})
    assert first.returncode == 0, first.stderr
    for spec in REGISTRY:
        assert f"{spec.name}: created" in first.stdout or f"{spec.name}: exists" in first.stdout
    second = _cli("topics", "ensure", "--partitions", "4", env={"KAFKA_BOOTSTRAP": kafka_bootstrap})
    assert second.returncode == 0, second.stderr
    assert second.stdout.count(": exists") == len(REGISTRY)
    mismatch = _cli(
        "topics", "ensure", "--partitions", "5", env={"KAFKA_BOOTSTRAP": kafka_bootstrap}
    )
    assert mismatch.returncode == 1
    assert "discovery.mail: mismatch - has 4 partitions, the registry wants 5" in mismatch.stdout


def _wait_for_line(process: subprocess.Popen, path: Path, text: str, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        content = path.read_text()
        if text in content:
            return content
        if process.poll() is not None:
            break
        time.sleep(0.1)
    raise AssertionError(f"{text!r} did not appear; output:\n{path.read_text()[-3000:]}")


def _jvms_using(data_dir: Path) -> list[int]:
    pids = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().split(b"\0")
        except OSError:
            continue
        if args and args[0].endswith(b"java") and any(str(data_dir).encode() in a for a in args):
            pids.append(int(cmdline.parent.name))
    return pids


_PORTS: dict[Path, tuple[int, int]] = {}


def _up_env(data_dir: Path) -> dict[str, str]:
    """One data directory, one set of ports: `up`, `demo` and `report` must agree on them."""
    smtp, admin = _PORTS.setdefault(data_dir, (free_port(), free_port()))
    return {
        "DISCOVERY_DATA_DIR": str(data_dir),
        "DISCOVERY_TOPIC_PARTITIONS": "2",
        "DISCOVERY_INGEST_LISTEN": f"127.0.0.1:{smtp}",
        "DISCOVERY_OPS_LISTEN": "off",
        "DISCOVERY_ADMIN_LISTEN": f"127.0.0.1:{admin}",
    }


def _start_up(data_dir: Path, log: Path) -> subprocess.Popen:
    env = {**os.environ, **_up_env(data_dir)}
    env.pop("KAFKA_BOOTSTRAP", None)
    return subprocess.Popen(
        [sys.executable, "-m", "smtp_discovery.cli", "up"],
        cwd=ROOT,
        env=env,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
    )


def test_up_runs_stops_on_ctrl_c_and_keeps_state(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    first_log = tmp_path / "first.log"
    process = _start_up(data_dir, first_log)
    try:
        out = _wait_for_line(process, first_log, "ready; press Ctrl-C", 120)
        assert "discovery.mail: created" in out
        assert "clickhouse  chdb://" in out
        assert "worker      pid " in out
        assert "schema      discovery: migrations 1 applied" in out
        assert "sink        smtp-discovery-sink -> discovery" in out
        admin = re.search(r"admin       http://(127\.0\.0\.1:\d+)/docs", out)
        assert admin, out
        token = (data_dir / "operator-token").read_text().strip()
        assert f"token       {token} (operator; shown once" in out
        request = urllib.request.Request(
            f"http://{admin.group(1)}/v1/tenants", headers={"Authorization": f"Bearer {token}"}
        )
        assert json.loads(urllib.request.urlopen(request, timeout=10).read()) == []
        # The newcomer's demo, through every role of the running system.
        demo = _cli("demo", "--weeks", "5", env=_up_env(data_dir), timeout=180)
        assert demo.returncode == 0, demo.stdout + demo.stderr
        assert "discovered          bob@demo.example, carol@demo.example, dave@demo.example" in (
            demo.stdout
        )
        assert "alias               alice@demo-mail.example -> alice@demo.example" in demo.stdout
        assert "expired             erin@demo.example" in demo.stdout
        week = re.search(r"--week (\d{4}-W\d{2})", demo.stdout)
        assert week, demo.stdout
        report = _cli("report", "new-users", "--tenant", "demo", "--week", week.group(1),
                      env=_up_env(data_dir))  # fmt: skip
        assert "alice@demo.example  end_user  sent mail from your mail server" in report.stdout
        smtp = re.search(r"smtp        127\.0\.0\.1:(\d+) ", out)
        assert smtp, out
        with socket.create_connection(("127.0.0.1", int(smtp.group(1))), timeout=10) as conn:
            assert conn.recv(100).startswith(b"220 "), "the ingest node answers SMTP"
        second = _cli("up", env={"DISCOVERY_DATA_DIR": str(data_dir)})
        assert second.returncode == 1
        assert "already running" in second.stderr
    finally:
        process.send_signal(signal.SIGINT)
        assert process.wait(60) == 0
    assert "stopped" in first_log.read_text()
    assert not _jvms_using(data_dir), "Ctrl-C left a Kafka JVM running"

    again_log = tmp_path / "again.log"
    process = _start_up(data_dir, again_log)
    try:
        out = _wait_for_line(process, again_log, "ready; press Ctrl-C", 120)
        assert "discovery.mail: exists" in out, "topics did not survive the restart"
        assert "schema      discovery: up to date" in out
        assert "token       sd_" not in out, "the token is shown on the first start only"
    finally:
        process.send_signal(signal.SIGINT)
        assert process.wait(60) == 0
