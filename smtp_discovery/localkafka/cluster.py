"""Start, wait for, and stop one or three local KRaft nodes that keep their data between runs."""

from __future__ import annotations

import asyncio
import base64
import json
import subprocess
import time
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import Any

from smtp_discovery.localkafka.jars import resolve_kafka_classpath
from smtp_discovery.localkafka.node import (
    KafkaNode,
    NodePorts,
    client_properties,
    find_java,
    free_port,
    port_is_free,
    render_properties,
    write_private,
)
from smtp_discovery.platform.errors import InfrastructureError
from smtp_discovery.platform.kafka_login import KafkaLogin
from smtp_discovery.platform.stopping import Children

DEFAULT_KAFKA_VERSION = "4.1.1"
HOST = "127.0.0.1"


def new_cluster_id() -> str:
    """A Kafka cluster id: 16 random bytes, URL-safe base64 without padding (22 characters)."""
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode("ascii")
        if not cid.startswith("-"):
            return cid


class LocalKafka:
    """A single broker (``nodes=1``) or a three-node cluster (replication 3, min ISR 2).

    The cluster id and ports live in ``directory/cluster.json``, so a restart reuses the same
    storage and, when they are still free, the same ports (clients configured once keep working).

    With a ``login`` (the embedded mode's) every listener requires it (SASL); storage formatted
    before, by a broker that required none, is given the login once before it starts locked.
    """

    def __init__(
        self,
        directory: Path,
        *,
        nodes: int = 1,
        kafka_version: str = DEFAULT_KAFKA_VERSION,
        cache_dir: Path,
        heap: str = "512m",
        login: KafkaLogin | None = None,
        users: Sequence[KafkaLogin] = (),
        authorize: bool = False,
    ) -> None:
        if nodes not in (1, 3):
            raise ValueError("a local Kafka has 1 node, or 3 for fault tests")
        self.directory = directory
        self.node_count = nodes
        self.kafka_version = kafka_version
        self.cache_dir = cache_dir
        self.heap = heap
        self.login = login
        self.users = tuple(users)
        """More SCRAM logins, made when the storage is formatted (tests of least ACLs)."""
        self.authorize = authorize
        if (users or authorize) and login is None:
            raise ValueError("users and ACLs need a login: the super user who grants them")
        self._locked: KafkaLogin | None = None
        """The login the nodes are configured to require now."""
        self.nodes: dict[int, KafkaNode] = {}
        self.ports: dict[int, NodePorts] = {}
        self.startup_seconds: float | None = None
        self._stopping = False

    @property
    def replication(self) -> int:
        return self.node_count

    @property
    def bootstrap(self) -> str:
        return ",".join(f"{HOST}:{p.broker}" for _, p in sorted(self.ports.items()))

    def client_options(self) -> dict[str, Any]:
        """What an aiokafka client needs to use this broker (its login, if it requires one)."""
        return self._options(self.login)

    def _options(self, login: KafkaLogin | None) -> dict[str, Any]:
        return {"bootstrap_servers": self.bootstrap, **(login.client_options() if login else {})}

    def _state_file(self) -> Path:
        return self.directory / "cluster.json"

    def _load_layout(self) -> tuple[str, bool]:
        """Cluster id and ports: reused from the last run where possible; and whether the
        storage was made by a broker that required a login."""
        state = {}
        if self._state_file().is_file():
            state = json.loads(self._state_file().read_text())
        secured = bool(state.get("secured"))
        cluster_id = state.get("cluster_id") or new_cluster_id()
        saved = {int(k): NodePorts(**v) for k, v in state.get("ports", {}).items()}
        taken: set[int] = set()
        for node_id in range(1, self.node_count + 1):
            ports = saved.get(node_id)
            if ports is None or not (port_is_free(ports.broker) and port_is_free(ports.controller)):
                ports = NodePorts(
                    broker=self._fresh_port(taken), controller=self._fresh_port(taken)
                )
            taken.update((ports.broker, ports.controller))
            self.ports[node_id] = ports
        self.directory.mkdir(parents=True, exist_ok=True)
        self._save_layout(cluster_id, secured)
        return cluster_id, secured

    def _save_layout(self, cluster_id: str, secured: bool) -> None:
        self._state_file().write_text(
            json.dumps(
                {
                    "cluster_id": cluster_id,
                    "kafka_version": self.kafka_version,
                    "ports": {str(k): vars_of(v) for k, v in self.ports.items()},
                    "secured": secured,
                },
                indent=2,
            )
        )

    @staticmethod
    def _fresh_port(taken: set[int]) -> int:
        while True:
            port = free_port(HOST)
            if port not in taken:
                return port

    def start(self, timeout: float = 120.0) -> str:
        """Start every node and return the bootstrap string once all brokers serve metadata."""
        began = time.monotonic()
        self.prepare()
        self.launch()
        self._await_serving(began, timeout)
        return self.bootstrap

    async def start_async(self, timeout: float = 120.0, *, children: Children | None = None) -> str:
        """:meth:`start` for an event loop: the JVMs are launched from the loop's thread (their
        parent-death signal is tied to the thread that starts them, and the main thread lives
        as long as the process), and a cancelled start stops what it launched."""
        began = time.monotonic()
        await asyncio.to_thread(self.prepare)
        self.launch()
        for name, process in self.processes().items():
            if children is not None:
                children.add(name, process)
        try:
            await asyncio.to_thread(self._await_serving, began, timeout)
        except asyncio.CancelledError:
            await asyncio.to_thread(self.stop)
            raise
        return self.bootstrap

    def prepare(self) -> None:
        """Resolve the jars, lay out the ports, write each node's configuration, format once."""
        classpath = resolve_kafka_classpath(self.kafka_version, self.cache_dir)
        java = find_java()
        cluster_id, secured = self._load_layout()
        for node_id in range(1, self.node_count + 1):
            self.nodes[node_id] = KafkaNode(
                node_id=node_id,
                directory=self.directory / f"node-{node_id}",
                classpath=classpath,
                java=java,
                heap=self.heap,
            )
        formatted = all(node.is_formatted() for node in self.nodes.values())
        if self.login is not None and formatted and not secured:
            self._add_login()
        self._configure(self.login)
        for node in self.nodes.values():
            if not node.is_formatted():
                node.format(cluster_id, [self.login, *self.users] if self.login else [])
        self._save_layout(cluster_id, self.login is not None)

    def _configure(self, login: KafkaLogin | None) -> None:
        self._locked = login
        for node_id, node in self.nodes.items():
            node.configure(
                render_properties(
                    node_id=node_id,
                    ports=self.ports[node_id],
                    voters=self.ports,
                    log_dir=node.log_dir,
                    replication=self.replication,
                    login=login,
                    authorize=self.authorize,
                )
            )

    def _add_login(self) -> None:
        """Storage made before the broker required a login: started once as it was (on
        loopback, for seconds), it is given the SCRAM credential, then stopped to start locked."""
        assert self.login is not None
        self._configure(None)
        self.launch()
        try:
            self.wait_until_serving(self.node_count, 120)
            self.nodes[1].add_scram(self.bootstrap, self.login)
        finally:
            self.stop()

    def grant(self, commands: Sequence[Sequence[str]]) -> None:
        """Run Kafka's ACL command once per argument list (``platform.access``), as the
        super user."""
        assert self.login is not None and self.authorize
        config = self.directory / ".super-user.properties"
        write_private(config, client_properties(self.login))
        for arguments in commands:
            self.nodes[1].run_tool(
                "granting ACLs", "org.apache.kafka.tools.AclCommand", "--bootstrap-server",
                self.bootstrap, "--command-config", str(config), *arguments,
            )  # fmt: skip

    def launch(self) -> None:
        self._stopping = False
        for node in self.nodes.values():
            node.start()

    def processes(self) -> dict[str, subprocess.Popen[bytes]]:
        """The running JVMs by name, for a parent that must be able to kill them."""
        return {
            f"kafka node {node_id}": node.process
            for node_id, node in self.nodes.items()
            if node.process is not None
        }

    def _await_serving(self, began: float, timeout: float) -> None:
        try:
            self.wait_until_serving(self.node_count, timeout - (time.monotonic() - began))
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - began

    def wait_until_serving(self, brokers: int, timeout: float = 60.0) -> None:
        """Poll cluster metadata until ``brokers`` brokers are registered, or fail with logs."""
        deadline = time.monotonic() + max(timeout, 1.0)
        last_error = "no answer yet"
        while time.monotonic() < deadline:
            if self._stopping:
                raise InfrastructureError("Kafka was stopped while it was starting")
            for node_id, node in self.nodes.items():
                if node.process is not None and not node.running():
                    raise InfrastructureError(
                        f"Kafka node {node_id} exited during startup; its log ends:\n"
                        + node.log_tail()
                    )
            live = [
                f"{HOST}:{self.ports[n].broker}"
                for n, node in self.nodes.items()
                if node.running() and not port_is_free(self.ports[n].broker)
            ]
            if not live:
                time.sleep(0.2)
                continue
            try:
                options = {**self._options(self._locked), "bootstrap_servers": ",".join(live)}
                count = _run_async(_broker_count(options))
                if count >= brokers:
                    return
                last_error = f"{count} of {brokers} brokers registered"
            except Exception as exc:
                last_error = f"{type(exc).__name__}: {exc}"
            time.sleep(0.2)
        tails = "\n".join(f"--- node {n}\n{node.log_tail(15)}" for n, node in self.nodes.items())
        raise InfrastructureError(
            f"Kafka did not serve metadata within {timeout:.0f}s ({last_error}).\n{tails}"
        )

    def stop(self) -> None:
        self._stopping = True
        for node in self.nodes.values():
            if node.running():
                node.process.terminate()  # type: ignore[union-attr]
        for node in self.nodes.values():
            node.stop()

    def kill_node(self, node_id: int) -> None:
        self.nodes[node_id].kill()

    def start_node(self, node_id: int, timeout: float = 60.0) -> None:
        self.nodes[node_id].start()
        self.wait_until_serving(sum(n.running() for n in self.nodes.values()), timeout)

    def __enter__(self) -> LocalKafka:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def vars_of(ports: NodePorts) -> dict[str, int]:
    return {"broker": ports.broker, "controller": ports.controller}


async def _broker_count(options: dict[str, Any]) -> int:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(**options, request_timeout_ms=3000)
    try:
        await admin.start()
        cluster = await admin.describe_cluster()
        return len(cluster["brokers"])
    finally:
        await admin.close()


def _run_async(coro: object) -> int:
    """Run a coroutine to completion whether or not this thread already runs an event loop."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()  # type: ignore[arg-type]
