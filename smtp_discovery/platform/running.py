"""Talking to a running ``smtp-discovery up`` from another process (the demo, the report CLI).

`up` leaves what such a process needs in its data directory: the lock it holds, the operator
token it made and ``endpoints.json``: where Kafka, SMTP and the admin API listen, its topic
prefix, its ClickHouse (password masked), the ops endpoints of its child processes (``ops``: role
-> ``host:port``; the ingest node's only when DISCOVERY_OPS_LISTEN is on) and whether it runs the
report jobs (``jobs``).
"""

from __future__ import annotations

import fcntl
import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from smtp_discovery.platform.config import RuntimeConfig, split_host_port
from smtp_discovery.platform.errors import ConfigError, OperatorError
from smtp_discovery.platform.kafka_login import KafkaLogin, load_login

LOCK = ".lock"


def embedded_kafka_dir(data_dir: Path) -> Path:
    return data_dir / "kafka"


def embedded_login(data_dir: Path, *, create: bool = False) -> KafkaLogin:
    """The embedded broker's login (``kafka/login.json``, mode 0600): who can read it can use
    the broker, so the data directory's owner is the boundary."""
    return load_login(embedded_kafka_dir(data_dir) / "login.json", create=create)


def on_embedded(config: RuntimeConfig, bootstrap: str, login: KafkaLogin) -> RuntimeConfig:
    """``config`` with the embedded broker at ``bootstrap`` and its login."""
    return config.model_copy(update={"kafka_bootstrap": bootstrap, **login.settings()})


def data_dir_in_use(data_dir: Path) -> bool:
    """True while an `up` holds ``data_dir`` (and with it the embedded chDB)."""
    lock = data_dir / LOCK
    if not lock.exists():
        return False
    with lock.open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
    return False


def on_cluster(config: RuntimeConfig) -> RuntimeConfig:
    """``config`` with the Kafka the operator commands act on: KAFKA_BOOTSTRAP when it is set
    (a cluster, with its other variables), else that of the `up` running on the data directory
    (its lock is held; its ``endpoints.json`` says where its Kafka listens and its topic
    prefix; the broker's login is beside it), so that `tenant`, `token`, `users` and `cache
    clear` find it as `report` does."""
    if config.kafka_bootstrap:
        return config
    found = up_endpoints(config.data_dir)
    if found is not None:
        return on_up(config, found)
    raise ConfigError(
        f"no `smtp-discovery up` is running on {config.data_dir}: start one (same "
        "DISCOVERY_DATA_DIR), or set KAFKA_BOOTSTRAP to the cluster the system uses"
    )


def up_endpoints(data_dir: Path) -> dict[str, Any] | None:
    """What the `up` running on ``data_dir`` wrote to its ``endpoints.json``; None when no `up`
    holds the directory (a file left by one that stopped says nothing)."""
    endpoints = data_dir / "endpoints.json"
    if data_dir_in_use(data_dir) and endpoints.is_file():
        found: dict[str, Any] = json.loads(endpoints.read_text())
        return found
    return None


def on_up(config: RuntimeConfig, endpoints: dict[str, Any]) -> RuntimeConfig:
    """``config`` with the Kafka and topic prefix of the `up` whose ``endpoints`` these are."""
    embedded = config.model_copy(update={"topic_prefix": endpoints["topic_prefix"]})
    return on_embedded(embedded, endpoints["kafka"], embedded_login(config.data_dir))


class RunningSystem:
    def __init__(self, data_dir: Path) -> None:
        token_file = data_dir / "operator-token"
        endpoints_file = data_dir / "endpoints.json"
        if not token_file.is_file() or not endpoints_file.is_file():
            raise OperatorError(
                f"no running system under {data_dir}: start `smtp-discovery up` first "
                "(same DISCOVERY_DATA_DIR)"
            )
        self.endpoints: dict[str, Any] = json.loads(endpoints_file.read_text())
        host, port = split_host_port(self.endpoints["admin"])
        self.base = f"http://{host}:{port}"
        self.token = token_file.read_text().strip()

    def call(
        self, method: str, path: str, body: Any = None, timeout: float = 60
    ) -> tuple[int, Any]:
        """One admin API request as the operator: (status, decoded JSON)."""
        status, text = self.fetch(method, path, body, timeout)
        return status, json.loads(text or "null")

    def fetch(
        self, method: str, path: str, body: Any = None, timeout: float = 60
    ) -> tuple[int, str]:
        request = urllib.request.Request(
            self.base + path,
            method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()
        except urllib.error.URLError as exc:
            raise OperatorError(
                f"the admin API at {self.base} does not answer ({exc.reason}): is `smtp-discovery"
                " up` running?"
            ) from None
