"""`up` stopped as people and orchestrators stop it: Ctrl-C in a terminal, SIGTERM to the process
group, SIGKILL to `up` alone, Ctrl-C during startup, a second Ctrl-C, and a stop that overruns
its deadline. Each run must end in time, leave no process behind, and keep every tenant, address
and report-log entry for the next start on the same data directory.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaError
from aiosmtpd.controller import Controller
from aiosmtpd.handlers import Sink

from smtp_discovery.localkafka.node import free_port
from smtp_discovery.platform.running import embedded_login
from smtp_discovery.sinks.schema import MIGRATIONS
from tests.smtp_discovery.terminal import Terminal, processes_using, wait_until_gone

pytestmark = pytest.mark.kafka

ROOT = Path(__file__).resolve().parents[2]
STOP_TIMEOUT_S = 30
READY = "ready; press Ctrl-C to stop"

SNAPSHOT = """
import json, sys
from smtp_discovery.platform.clickhouse import connect
client = connect(sys.argv[1])
def rows(sql):
    return sorted([[str(v) for v in row] for row in client.query(sql).result_rows])
print(json.dumps({
    "tenants": rows("SELECT tenant_id, name FROM discovery.tenants FINAL WHERE NOT is_deleted"),
    "addresses": rows("SELECT tenant_id, address, status FROM discovery.address_state FINAL "
                      "WHERE NOT is_deleted"),
    "report_log": rows("SELECT tenant_id, report, week, state FROM discovery.report_log FINAL"),
}))
"""


LOG_LINE = re.compile(
    r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (DEBUG|INFO|WARNING|ERROR|CRITICAL) (\S+) ", re.M
)
"""A log line in the text format: its level and its logger."""


def _outside() -> Mapping[str, str]:
    """This process's environment without a log level: the terminal as a newcomer sees it."""
    return {k: v for k, v in os.environ.items() if k not in ("DISCOVERY_LOG_LEVEL",
                                                             "DISCOVERY_LOG_FORMAT")}  # fmt: skip


@dataclass
class System:
    data_dir: Path
    env: dict[str, str]
    expected: dict[str, list[list[str]]]
    first_start: str = ""
    """What the terminal of the first `up` (on a new data directory) showed up to its summary."""
    commands: dict[str, subprocess.CompletedProcess[str]] = field(default_factory=dict)
    """The short commands run while the first `up` ran, by their arguments."""

    def start(self) -> Terminal:
        return Terminal(
            [sys.executable, "-m", "smtp_discovery.cli", "up"],
            env={**_outside(), **self.env},
            cwd=ROOT,
        )

    def cli(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "smtp_discovery.cli", *args],
            cwd=ROOT,
            env={**_outside(), **self.env, **env},
            capture_output=True,
            text=True,
            timeout=240,
            check=False,
        )

    def snapshot(self) -> dict[str, list[list[str]]]:
        """What ClickHouse holds, read by a process of its own while `up` is stopped."""
        result = subprocess.run(
            [sys.executable, "-c", SNAPSHOT, f"chdb://{self.data_dir / 'clickhouse'}"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout.strip().splitlines()[-1])


def _env(data_dir: Path) -> dict[str, str]:
    env = {
        "DISCOVERY_DATA_DIR": str(data_dir),
        "DISCOVERY_TOPIC_PARTITIONS": "2",
        "DISCOVERY_INGEST_LISTEN": f"127.0.0.1:{free_port()}",
        "DISCOVERY_OPS_LISTEN": "off",
        "DISCOVERY_ADMIN_LISTEN": f"127.0.0.1:{free_port()}",
        "DISCOVERY_STOP_TIMEOUT_S": str(STOP_TIMEOUT_S),
        "KAFKA_BOOTSTRAP": "",
    }
    return env


async def _topics(options: dict[str, Any]) -> set[str] | None:
    """The topics a client with ``options`` sees, or None if the broker lets it do nothing (a
    producer cannot start either: the connection ends before any request)."""
    consumer = AIOKafkaConsumer(**options, request_timeout_ms=5000)
    producer = AIOKafkaProducer(**options, request_timeout_ms=5000)
    try:
        await asyncio.wait_for(consumer.start(), 15)
        topics = await asyncio.wait_for(consumer.topics(), 15)
        await asyncio.wait_for(producer.start(), 15)
        return topics
    except (KafkaError, TimeoutError):
        return None
    finally:
        await consumer.stop()
        await producer.stop()


def _stopped_in_time(terminal: Terminal, began: float, data_dir: Path) -> int:
    status = terminal.wait(STOP_TIMEOUT_S + 10)
    took = time.monotonic() - began
    assert took < STOP_TIMEOUT_S, f"the stop took {took:.1f} s:\n{terminal.output[-3000:]}"
    left = processes_using(data_dir)
    assert not left, f"left running after `up` exited: {left}"
    return status


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    """A data directory with a tenant, discovered addresses, users, an alias and a report-log
    entry, made by a first `up` that a Ctrl-C in its terminal stopped."""
    data_dir = tmp_path_factory.mktemp("stop") / "data"
    smarthost = Controller(Sink(), hostname="127.0.0.1", port=free_port())
    smarthost.start()
    env = _env(data_dir)
    terminal = System(data_dir, env, {}).start()
    commands: dict[str, subprocess.CompletedProcess[str]] = {}
    try:
        out = terminal.wait_for(READY, 180)
        first_start = out[: out.index(READY) + len(READY)]
        assert f"it takes up to {STOP_TIMEOUT_S} s" in out
        assert "discovery.mail: created" in out
        assert "clickhouse  chdb://" in out
        every = ", ".join(str(m.version) for m in MIGRATIONS)
        assert f"schema      discovery: migrations {every} applied" in out
        assert "sink        smtp-discovery-sink -> discovery" in out
        token = (data_dir / "operator-token").read_text().strip()
        assert token not in out, "the secret is never printed"
        assert f"show it with: cat {data_dir / 'operator-token'}" in out
        assert _api(System(data_dir, env, {}), "/v1/tenants")["items"] == []
        # The newcomer's demo, through every role of the running system.
        demo = commands["demo"] = System(data_dir, env, {}).cli("demo", "--weeks", "5")
        assert demo.returncode == 0, demo.stdout + demo.stderr
        assert "discovered          bob@demo.example, carol@demo.example, dave@demo.example" in (
            demo.stdout
        )
        assert "alias               alice@demo-mail.example -> alice@demo.example" in demo.stdout
        assert "expired             erin@demo.example" in demo.stdout
        week = re.search(r"--week (\d{4}-W\d{2})", demo.stdout)
        assert week, demo.stdout
        report = commands["report"] = System(data_dir, env, {}).cli(
            "report", "new-users", "--tenant", "demo", "--week", week.group(1)
        )
        assert "alice@demo.example  end_user  sent mail from your mail server" in report.stdout
        # The operator commands find the running `up` with no variables, as `report` does.
        listed = commands["tenant list"] = System(data_dir, env, {}).cli("tenant", "list")
        for louder in ("-v", "-vv"):
            commands[f"{louder} tenant list"] = System(data_dir, env, {}).cli(
                louder, "tenant", "list"
            )
        assert listed.returncode == 0, listed.stderr
        assert listed.stdout.split()[:1] == ["demo"], listed.stdout
        cleared = commands["cache clear"] = System(data_dir, env, {}).cli("cache", "clear", "demo")
        assert cleared.returncode == 0, cleared.stderr
        # A data subject's erasure, through the running `up` (its chDB is its own).
        erased = commands["erase"] = System(data_dir, env, {}).cli(
            "erase", "dave@demo.example", "--tenant", "demo"
        )
        assert erased.returncode == 0, erased.stdout + erased.stderr
        assert "erased (logged as " in erased.stdout and "mail_events" in erased.stdout
        plan = System(data_dir, env, {}).cli("tenant", "remove", "demo", "--dry-run")
        assert plan.returncode == 0, plan.stdout + plan.stderr
        assert "demo: would remove the tenant record" in plan.stdout, plan.stdout
        made = commands["token create"] = System(data_dir, env, {}).cli(
            "token", "create", "--tenant", "demo"
        )
        assert made.returncode == 0, made.stderr
        assert _api(System(data_dir, env, {}), "/v1/tenants", made.stdout.strip())["total"] == 1
        # Its Kafka requires the login `up` keeps (0600) beside it: without it, no topic.
        kafka = json.loads((data_dir / "endpoints.json").read_text())["kafka"]
        assert (data_dir / "kafka" / "login.json").stat().st_mode & 0o777 == 0o600
        assert asyncio.run(_topics({"bootstrap_servers": kafka})) is None
        login = embedded_login(data_dir).client_options()
        assert "discovery.mail" in asyncio.run(_topics({"bootstrap_servers": kafka, **login}))
        smtp = env["DISCOVERY_INGEST_LISTEN"].rsplit(":", 1)[1]
        with socket.create_connection(("127.0.0.1", int(smtp)), timeout=10) as conn:
            assert conn.recv(100).startswith(b"220 "), "the ingest node answers SMTP"
        second = System(data_dir, env, {}).cli("up")
        assert second.returncode == 1
        assert "already running" in second.stderr
        began = time.monotonic()
        terminal.ctrl_c()
        status = _stopped_in_time(terminal, began, data_dir)
        assert status == 0, terminal.output[-3000:]
        assert terminal.output.rstrip().endswith("stopped"), terminal.output[-2000:]
    finally:
        terminal.close()
    sent = System(data_dir, env, {}).cli(
        "report", "new-users", "--tenant", "demo", "--week", week.group(1), "--send",
        DISCOVERY_REPORT_SMARTHOST=f"127.0.0.1:{smarthost.port}",
    )  # fmt: skip
    smarthost.stop()
    assert sent.returncode == 0, sent.stderr
    commands["report --send"] = sent
    seeded = System(data_dir, env, {}, first_start=first_start, commands=commands)
    seeded.expected = seeded.snapshot()
    addresses = {row[1] for row in seeded.expected["addresses"]}
    assert {"bob@demo.example", "alice@demo.example", "erin@demo.example"} <= addresses
    assert "dave@demo.example" not in addresses, "erased"
    assert ["demo", "new-users", week.group(1), "sent"] in seeded.expected["report_log"]
    yield seeded


def _api(system: System, path: str, token: str | None = None) -> Any:
    from smtp_discovery.platform.running import RunningSystem

    api = RunningSystem(system.data_dir)
    api.token = token or api.token
    status, body = api.call("GET", path)
    assert status == 200, body
    return body


def test_a_first_start_shows_its_summary_and_logs_to_files(system: System) -> None:
    """The terminal of `up` on a new data directory: no library line, no ERROR (the group
    coordinator's not being ready yet is no error); the libraries' lines are in the files."""
    shown = system.first_start
    assert shown.startswith("starting Apache Kafka"), shown
    assert f"logs        {system.data_dir / 'logs'} (up.log, ingest.log, worker.log;" in shown
    assert not [n for _, n in LOG_LINE.findall(shown) if not n.startswith("smtp_discovery")], shown
    assert not [line for line in shown.splitlines() if "ERROR" in line], shown
    logs = {role: (system.data_dir / "logs" / f"{role}.log").read_text()
            for role in ("up", "ingest", "worker")}  # fmt: skip
    assert " INFO aiokafka.conn Authenticated as " in logs["up"]
    assert " INFO aiokafka.consumer.group_coordinator " in logs["up"], "the sink joined its group"
    assert " INFO smtp_discovery.ingest SMTP ingest listening on 127.0.0.1:" in logs["ingest"]
    assert " INFO aiokafka.conn " in logs["ingest"]
    assert " INFO faust.worker " in logs["worker"] and " INFO aiokafka." in logs["worker"]
    coordinator = "Group Coordinator Request failed: [Error 15] GroupCoordinatorNotAvailableError"
    for role, text in logs.items():
        assert f"ERROR aiokafka.consumer.group_coordinator {coordinator}" not in text, role


def test_short_commands_are_quiet_unless_asked(system: System) -> None:
    """No INFO line on stderr from an operator's command; -v shows ours, -vv the libraries'."""
    quiet = {name: result for name, result in system.commands.items() if "-v" not in name}
    assert {"demo", "tenant list", "token create", "cache clear", "report --send"} <= set(quiet)
    for name, result in quiet.items():
        assert result.returncode == 0, (name, result.stderr)
        assert not LOG_LINE.findall(result.stderr), f"`{name}` printed:\n{result.stderr}"
    louder = system.commands["-v tenant list"]
    assert louder.returncode == 0, louder.stderr
    shown = LOG_LINE.findall(louder.stderr)
    assert ("INFO", "smtp_discovery.platform.views") in shown, louder.stderr
    assert not [n for level, n in shown if level == "INFO" and not n.startswith("smtp_discovery")]
    loudest = system.commands["-vv tenant list"]
    assert loudest.returncode == 0, loudest.stderr
    assert ("DEBUG", "aiokafka.conn") in LOG_LINE.findall(loudest.stderr), loudest.stderr[-2000:]
    assert ("INFO", "httpx") in LOG_LINE.findall(loudest.stderr), loudest.stderr[-2000:]


def test_ctrl_c_in_a_terminal_then_a_restart_has_everything(system: System) -> None:
    terminal = system.start()
    try:
        out = terminal.wait_for(READY, 120)
        assert "discovery.mail: exists" in out, "topics did not survive the restart"
        assert "schema      discovery: up to date" in out
        assert "token       " not in out, "the token is made on the first start only"
        tenants = _api(system, "/v1/tenants")
        assert [t["tenant_id"] for t in tenants["items"]] == ["demo"]  # type: ignore[index]
        users = _api(system, "/v1/tenants/demo/users?per_page=100")
        assert "alice@demo.example" in json.dumps(users)
        began = time.monotonic()
        terminal.ctrl_c()
        assert _stopped_in_time(terminal, began, system.data_dir) == 0
    finally:
        terminal.close()
    assert "stopping …" in terminal.output
    assert system.snapshot() == system.expected


def test_sigterm_to_the_process_group(system: System) -> None:
    terminal = system.start()
    try:
        terminal.wait_for(READY, 120)
        began = time.monotonic()
        terminal.signal_group(signal.SIGTERM)
        assert _stopped_in_time(terminal, began, system.data_dir) == 0
    finally:
        terminal.close()
    assert system.snapshot() == system.expected


def test_sigkill_to_up_alone_takes_its_children_with_it(system: System) -> None:
    terminal = system.start()
    try:
        terminal.wait_for(READY, 120)
        children = processes_using(system.data_dir)
        assert any("java" in p for p in children), children
        assert any("smtp_discovery.cli worker" in p for p in children), children
        os.kill(terminal.pid, signal.SIGKILL)
        assert terminal.wait(10) == -signal.SIGKILL
        left = wait_until_gone(system.data_dir, 30)
        assert not left, f"orphans of a killed `up`: {left}"
    finally:
        terminal.close()
    assert system.snapshot() == system.expected


def test_ctrl_c_during_startup(system: System) -> None:
    terminal = system.start()
    try:
        terminal.wait_for("kafka       127.0.0.1:", 120)  # Kafka is up, the rest is starting
        began = time.monotonic()
        terminal.ctrl_c()
        assert _stopped_in_time(terminal, began, system.data_dir) == 0
    finally:
        terminal.close()
    assert READY not in terminal.output
    assert system.snapshot() == system.expected


def test_a_second_ctrl_c_stops_at_once(system: System) -> None:
    terminal = system.start()
    try:
        terminal.wait_for(READY, 120)
        terminal.ctrl_c()
        terminal.wait_for("stopping …", 10)
        began = time.monotonic()
        terminal.ctrl_c()
        status = terminal.wait(10)
        assert time.monotonic() - began < 5
        assert status == 128 + signal.SIGINT
        warning = "smtp-discovery up: second SIGINT: stopping at once"
        assert terminal.output.count(warning) == 1, terminal.output[-2000:]
        assert not wait_until_gone(system.data_dir, 10)
    finally:
        terminal.close()


def test_a_stop_past_its_deadline_kills_what_is_left(system: System) -> None:
    """A streams worker that cannot stop (frozen here) holds the stop up: at the deadline `up`
    kills it, says so in one line and exits non-zero."""
    terminal = Terminal(
        [sys.executable, "-m", "smtp_discovery.cli", "up"],
        env={**os.environ, **system.env, "DISCOVERY_STOP_TIMEOUT_S": "4"},
        cwd=ROOT,
    )
    try:
        out = terminal.wait_for(READY, 120)
        worker = int(re.search(r"worker      pid (\d+)", out).group(1))  # type: ignore[union-attr]
        os.kill(worker, signal.SIGSTOP)
        began = time.monotonic()
        terminal.ctrl_c()
        status = terminal.wait(30)
        assert time.monotonic() - began < 15
        assert status == 1
        lines = [line for line in terminal.output.splitlines() if "did not stop within 4 s" in line]
        assert len(lines) == 1, terminal.output[-2000:]
        assert f"the streams worker (pid {worker})" in lines[0]
        assert not wait_until_gone(system.data_dir, 10)
    finally:
        terminal.close()
    assert system.snapshot() == system.expected
