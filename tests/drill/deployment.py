"""docker-compose.yml's services as local processes on the local three-broker cluster.

No Docker engine runs on these machines, so the drill reads each service's command and
environment from the compose file itself and runs ``smtp-discovery <command>`` with them, the way
the image would (its ENTRYPOINT, and the Dockerfile's ENV under the compose environment). What a
container gets from Docker becomes a local equivalent:

* the hostnames ``kafka-1..3:9092`` are the local cluster's brokers (``LocalKafka``, three KRaft
  nodes, replication 3, min ISR 2, SASL on every listener, ACLs enforced);
* compose's ``kafka-users`` one-shot (compose/kafka-users.sh: each role's SCRAM login, then
  compose/kafka-acls.sh) is the cluster's own user creation and ``grant``: the same logins, and
  the ACLs of ``platform.access``, which compose/kafka-acls.sh is generated from (a test in
  tests/test_deployment.py keeps the two equal);
* the ClickHouse server is chDB, in the data directory of compose's ``clickhouse-data`` volume;
  the sink and the admin API share one process over it (tests/drill/chdb_roles.py), as in
  ``smtp-discovery up`` (chDB allows one process per data path);
* a named volume is a directory (``volumes/<name>``) and a container's own file system another
  (``containers/<service>``); every ``0.0.0.0:PORT`` a role listens on is a free loopback port,
  the same across the restarts of the service.

The drill adds, on top of compose, only what :attr:`Deployment.overrides` lists (each with its
reason); everything else a role reads comes from the compose file.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from smtp_discovery.localkafka import LocalKafka
from smtp_discovery.localkafka.node import free_port
from smtp_discovery.platform.access import ROLES, acl_arguments
from smtp_discovery.platform.config import RuntimeConfig
from smtp_discovery.platform.kafka_login import KafkaLogin
from smtp_discovery.platform.stopping import die_with_parent
from tests.smtp_discovery.ops_helpers import ready

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
TIMESHIFT = Path(__file__).parent / "timeshift"
PASSWORD_VARIABLES = {
    "KAFKA_ADMIN_PASSWORD": "kafka-admin",
    **{f"SMTP_DISCOVERY_{role.upper()}_PASSWORD": f"smtp-discovery-{role}" for role in ROLES},
}
"""compose's password variables (``${VAR:?…}``: compose refuses to start without them), and
the Kafka user each is the password of."""


def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def substitute(value: object, variables: dict[str, str]) -> str:
    """Compose's ``${VAR}``, ``${VAR:-default}``, ``${VAR:?error}`` and ``$$``, from
    ``variables`` (a required one missing fails as compose would)."""

    def one(match: re.Match[str]) -> str:
        name, operator, argument = match.groups()
        if name in variables and (variables[name] or not operator or ":" not in operator):
            return variables[name]
        if operator and "?" in operator:
            raise KeyError(f"compose needs {name}: {argument}")
        return argument or ""

    text = re.sub(r"\$\{(\w+)(?:(:?[-?])([^}]*))?\}", one, str(value))
    return text.replace("$$", "$")


def dockerfile_env() -> dict[str, str]:
    """The final stage's ENV of the project's image (what every role inherits), DISCOVERY_* only:
    PATH and the like belong to the image's file system, not to the drill's."""
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    final = text.rsplit("\nFROM ", 1)[-1]
    env: dict[str, str] = {}
    for line in final.splitlines():
        if line.startswith("ENV "):
            for name, value in re.findall(r"(\w+)=(\S+)", line):
                if name.startswith("DISCOVERY_"):
                    env[name] = value
    return env


@dataclass
class Process:
    """A running service: its process, its log, and its ops port (0: none)."""

    service: str
    popen: subprocess.Popen[bytes]
    log: Path
    ops_port: int


@dataclass
class Deployment:
    """One compose project (``name``) on the shared cluster: its topics, consumer groups and
    ClickHouse are its own, so an undisturbed run and a drilled one can share the brokers."""

    kafka: LocalKafka
    passwords: dict[str, str]
    directory: Path
    name: str
    clock_file: Path
    overrides: dict[str, str] = field(default_factory=dict)
    """Variables the drill sets on top of compose, for every service."""
    worker_overrides: dict[str, str] = field(default_factory=dict)
    """Variables the drill sets on top of compose, for the streams workers."""
    processes: dict[str, Process] = field(default_factory=dict)
    _ports: dict[tuple[str, str], int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.compose = compose()
        self.services: dict[str, dict[str, Any]] = self.compose["services"]
        # Its own namespace on the shared brokers: topics, the workers' and the sinks' groups.
        self.overrides = {
            "DISCOVERY_TOPIC_PREFIX": f"{self.name}.",
            "DISCOVERY_STREAMS_APP_ID": f"{self.name}-streams",
            "DISCOVERY_SINK_GROUP": f"{self.name}-sink",
            **self.overrides,
        }
        (self.directory / "logs").mkdir(parents=True, exist_ok=True)

    # --- what each service gets -----------------------------------------------------------

    def config(self) -> RuntimeConfig:
        """The project's topic names and groups, as its roles read them."""
        return RuntimeConfig.from_env(self.env("worker-1"))

    def _volume(self, service: str, target: str) -> Path | None:
        for volume in self.services[service].get("volumes", []):
            source, mount, *_ = str(volume).split(":")
            if mount.rstrip("/") == target.rstrip("/"):
                named = not source.startswith((".", "/"))
                return self.directory / "volumes" / source if named else ROOT / source
        return None

    def _localize(self, service: str, variable: str, value: str) -> str:
        if variable == "KAFKA_BOOTSTRAP":
            brokers = []
            for host in value.split(","):
                match = re.fullmatch(r"kafka-(\d+):9092", host)
                assert match, f"{service}: {host} is not one of compose's Kafka nodes"
                brokers.append(f"127.0.0.1:{self.kafka.ports[int(match.group(1))].broker}")
            return ",".join(brokers)
        if variable == "CLICKHOUSE_URL":
            assert "@clickhouse:8123/" in value, f"{service}: {value} is not compose's ClickHouse"
            # compose's ClickHouse server, as chDB in its volume; the database (``discovery``,
            # from the server URL) is chDB's default one too.
            assert value.rsplit("/", 1)[1] == "discovery"
            return f"chdb://{self._volume('clickhouse', '/var/lib/clickhouse')}"
        if variable.endswith("_LISTEN") and value.startswith("0.0.0.0:"):
            key = (service, variable)
            if key not in self._ports:
                self._ports[key] = free_port()
            return f"127.0.0.1:{self._ports[key]}"
        if value.startswith("/var/lib/"):
            mount = "/var/lib/smtp-discovery"
            if value == mount or value.startswith(mount + "/"):
                base = self._volume(service, mount) or self.directory / "containers" / service
                base.mkdir(parents=True, exist_ok=True)
                return str(base) + value.removeprefix(mount)
        return value

    def env(self, service: str) -> dict[str, str]:
        """The service's environment: the image's ENV, then compose's, made local, then the
        drill's overrides; none of the drill process's own KAFKA_/DISCOVERY_/CLICKHOUSE_."""
        spec = self.services[service]
        variables = {**self.passwords}
        declared = {**dockerfile_env()}
        declared.update(
            {k: substitute(v, variables) for k, v in (spec.get("environment") or {}).items()}
        )
        local = {k: self._localize(service, k, v) for k, v in declared.items()}
        inherited = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("KAFKA_", "DISCOVERY_", "CLICKHOUSE_"))
        }
        pythonpath = os.pathsep.join(p for p in (str(TIMESHIFT), str(ROOT)) if p)
        env = {
            **inherited,
            **local,
            **self.overrides,
            "PYTHONPATH": pythonpath,
            "DISCOVERY_TEST_CLOCK_FILE": str(self.clock_file),
        }
        if spec.get("command") == ["worker"]:
            env.update(self.worker_overrides)
        return env

    def port(self, service: str, variable: str) -> int:
        """The loopback port ``service``'s ``variable`` (a ``*_LISTEN``) listens on."""
        return int(self.env(service)[variable].rsplit(":", 1)[1])

    # --- running them -----------------------------------------------------------------------

    def _popen(self, name: str, args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        log = self.directory / "logs" / f"{name}.log"
        with log.open("ab") as out:
            # Ended with the drill, however it ends (a role outliving it would hold its ports).
            return subprocess.Popen(
                args,
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                preexec_fn=die_with_parent(),
            )

    def cli(self, service: str, *args: str, timeout: float = 180) -> str:
        """``smtp-discovery`` in ``service``'s environment (a one-shot, or ``docker compose exec
        SERVICE smtp-discovery …``): its output; it must succeed."""
        command = list(args) or list(self.services[service]["command"])
        result = subprocess.run(
            [sys.executable, "-m", "smtp_discovery.cli", *command],
            cwd=ROOT,
            env=self.env(service),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        assert result.returncode == 0, (
            f"{service}: smtp-discovery {' '.join(command)} failed:\n{result.stdout}{result.stderr}"
        )
        return result.stdout

    def start(self, service: str) -> Process:
        """A long-running service, as compose starts (and, after a crash, restarts) it."""
        env = self.env(service)
        args = [sys.executable, "-m", "smtp_discovery.cli", *self.services[service]["command"]]
        ops = int(env["DISCOVERY_OPS_LISTEN"].rsplit(":", 1)[1])
        process = Process(service, self._popen(service, args, env), self._log(service), ops)
        self.processes[service] = process
        return process

    def start_chdb_roles(self) -> Process:
        """compose's ``sink`` and ``admin`` in one process over chDB (see the module's doc)."""
        admin_env = self.directory / "containers" / "admin.env.json"
        admin_env.parent.mkdir(parents=True, exist_ok=True)
        admin_env.touch(mode=0o600)
        admin_env.write_text(json.dumps(self.env("admin")))  # it holds the admin's password
        env = self.env("sink")
        ops = int(env["DISCOVERY_OPS_LISTEN"].rsplit(":", 1)[1])
        args = [sys.executable, "-m", "tests.drill.chdb_roles", str(admin_env)]
        process = Process("sink", self._popen("sink", args, env), self._log("sink"), ops)
        self.processes["sink"] = process
        return process

    def dump_clickhouse(self) -> dict[str, list[list[Any]]]:
        """The rows the drill compares, read by a process of their own once the chDB roles
        have stopped (chDB: one process per data path)."""
        assert "sink" not in self.processes, "stop the chDB roles first"
        out = self.directory / "clickhouse-rows.json"
        env = self.env("sink")
        result = subprocess.run(
            [sys.executable, "-m", "tests.drill.chdb_roles", "--dump", str(out)],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
        assert result.returncode == 0, result.stderr[-3000:]
        return json.loads(out.read_text())

    def _log(self, service: str) -> Path:
        return self.directory / "logs" / f"{service}.log"

    def wait_ready(self, service: str, timeout: float = 180) -> float:
        """Seconds until the service's /readyz answers 200; fails with its log if it exits."""
        began = time.monotonic()
        process = self.processes[service]
        while not ready(process.ops_port):
            assert process.popen.poll() is None, self.exited(service)
            assert time.monotonic() - began < timeout, (
                f"{service} not ready in {timeout}s:\n{self.report(service)}"
            )
            time.sleep(0.1)
        return time.monotonic() - began

    def kill(self, service: str) -> None:
        """SIGKILL, as a crash: no stop, no flush, no commit."""
        process = self.processes[service]
        process.popen.send_signal(signal.SIGKILL)
        process.popen.wait(30)
        del self.processes[service]  # only now: a caller polling for it knows it is dead

    def stop(self, service: str) -> None:
        """SIGTERM, as ``docker compose stop``, within the service's stop_grace_period."""
        process = self.processes.pop(service)
        process.popen.terminate()
        try:
            process.popen.wait(60)
        except subprocess.TimeoutExpired:
            process.popen.kill()
            process.popen.wait()
            raise AssertionError(
                f"{service} did not stop in 60 s:\n{self.report(service)}"
            ) from None

    def stop_all(self) -> None:
        for process in self.processes.values():
            process.popen.terminate()
        for process in self.processes.values():
            try:
                process.popen.wait(60)
            except subprocess.TimeoutExpired:
                process.popen.kill()
        self.processes.clear()

    def assert_running(self) -> None:
        for name, process in self.processes.items():
            assert process.popen.poll() is None, self.exited(name)

    def exited(self, service: str) -> str:
        """Why ``service`` is gone: its exit status and :meth:`report`."""
        status = self.processes[service].popen.returncode
        return f"{service} exited with status {status}:\n{self.report(service)}"

    def tail(self, service: str, chars: int = 4000) -> str:
        log = self._log(service)
        return log.read_text(errors="replace")[-chars:] if log.exists() else "(no log)"

    def report(self, service: str, errors: int = 3, chars: int = 2500) -> str:
        """What to read of a failed service's log: where the whole log is, its first error
        records (a role's own failure is logged long before the tail, which is its stop
        sequence: a Faust crash is reported last, its cause first), and its tail."""
        log = self._log(service)
        if not log.exists():
            return f"(no log at {log})"
        lines = log.read_text(errors="replace").splitlines()
        first = [line for line in lines if re.search(r'"level": "(ERROR|CRITICAL)"', line)]
        parts = [f"log: {log}"]
        if first:
            parts.append("first errors:\n" + "\n".join(line[:chars] for line in first[:errors]))
        parts.append("tail:\n" + "\n".join(lines)[-chars:])
        return "\n".join(parts)


def cluster_logins(passwords: dict[str, str]) -> tuple[KafkaLogin, list[KafkaLogin]]:
    """The super user and the roles' SCRAM logins compose's ``kafka-users`` makes."""
    logins = [KafkaLogin(user, passwords[var]) for var, user in PASSWORD_VARIABLES.items()]
    return logins[0], logins[1:]


def grant(kafka: LocalKafka, projects: list[Deployment]) -> None:
    """Compose's ``kafka-users`` one-shot, its ACL half: each role's least ACLs
    (``platform.access.grants``, which compose/kafka-acls.sh is generated from) on the projects'
    topics and groups (the logins were made with the cluster's storage). One ACL command per
    principal, resource type and operations, naming the resources of every project: each
    command is a JVM start, seconds on two cores."""
    principals = {role: f"User:smtp-discovery-{role}" for role in ROLES}
    merged: dict[tuple[str, ...], list[str]] = {}
    for project in projects:
        for command in acl_arguments(project.config(), principals):
            targets = [p for i, p in enumerate(command) if _is_target(command, i)]
            head = tuple(p for i, p in enumerate(command) if not _is_target(command, i))
            merged.setdefault(head, []).extend(targets)
    kafka.grant(
        [
            [*head[:-2], *targets, *head[-2:]] if head[-1] == "prefixed" else [*head, *targets]
            for head, targets in merged.items()
        ]
    )


def _is_target(command: list[str], i: int) -> bool:
    """Whether ``command[i]`` names a resource (``--topic NAME``, ``--group NAME``…)."""
    options = ("--topic", "--group", "--transactional-id")
    return command[i] in options or (i > 0 and command[i - 1] in options)
