"""Runtime configuration from environment variables, one table that the README mirrors.

Every variable any role reads is declared in VARIABLES; a test checks that the README documents
each one, and deployment files may set only these.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from schemas.topics import TopicNames
from smtp_discovery.errors import ConfigError


@dataclass(frozen=True, slots=True)
class Variable:
    env: str
    field: str
    description: str
    secret: bool = False


VARIABLES: tuple[Variable, ...] = (
    Variable(
        "KAFKA_BOOTSTRAP",
        "kafka_bootstrap",
        "host:port[,host:port] of an existing Kafka cluster. Unset: the embedded mode starts a "
        "local broker under the data directory.",
    ),
    Variable(
        "KAFKA_SECURITY_PROTOCOL",
        "kafka_security_protocol",
        "PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL.",
    ),
    Variable(
        "KAFKA_SASL_MECHANISM", "kafka_sasl_mechanism", "PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512."
    ),
    Variable("KAFKA_SASL_USERNAME", "kafka_sasl_username", "SASL user name."),
    Variable("KAFKA_SASL_PASSWORD", "kafka_sasl_password", "SASL password.", secret=True),
    Variable(
        "KAFKA_SSL_CAFILE", "kafka_ssl_cafile", "CA bundle that signed the brokers' certificates."
    ),
    Variable(
        "CLICKHOUSE_URL",
        "clickhouse_url",
        "chdb:///path (embedded chDB, the default: <data dir>/clickhouse) or "
        "http(s)://user:password@host:port/database for a ClickHouse server.",
        secret=True,
    ),
    Variable(
        "CLICKHOUSE_CLUSTER",
        "clickhouse_cluster",
        "ClickHouse cluster name for ON CLUSTER DDL (empty: single node).",
    ),
    Variable(
        "DISCOVERY_DATA_DIR",
        "data_dir",
        "Where the embedded mode keeps Kafka logs, chDB data and local state "
        "(default ~/.local/share/smtp-discovery).",
    ),
    Variable(
        "DISCOVERY_KAFKA_VERSION", "kafka_version", "Apache Kafka version of the embedded broker."
    ),
    Variable(
        "DISCOVERY_KAFKA_CACHE",
        "kafka_cache_dir",
        "Where the embedded broker's jars are cached (default ~/.cache/smtp-discovery/kafka).",
    ),
    Variable(
        "DISCOVERY_KAFKA_HEAP", "kafka_heap", "JVM heap of each embedded Kafka node, e.g. 512m."
    ),
    Variable(
        "DISCOVERY_TOPIC_PARTITIONS",
        "topic_partitions",
        "Partitions of the co-partitioned topics (discovery.mail and friends): the most streams "
        "workers that can share the work. Fixed once topics exist.",
    ),
    Variable(
        "DISCOVERY_TOPIC_REPLICATION",
        "topic_replication",
        "Replication factor of new topics (default: 1 on the embedded broker, otherwise "
        "min(3, brokers)).",
    ),
    Variable(
        "DISCOVERY_TOPIC_PREFIX",
        "topic_prefix",
        "Prefix of every topic name (e.g. 'staging.'), for deployments sharing one cluster.",
    ),
    Variable("DISCOVERY_LOG_LEVEL", "log_level", "DEBUG, INFO, WARNING or ERROR."),
    Variable(
        "DISCOVERY_STREAMS_APP_ID",
        "streams_app_id",
        "Faust application id of the streams workers: their consumer group and table names.",
    ),
    Variable(
        "DISCOVERY_STREAMS_STORE",
        "streams_store",
        "Table storage of a streams worker: rocksdb (production) or memory.",
    ),
    Variable(
        "DISCOVERY_CLOCK",
        "clock",
        "Clock of the expiry timer: system (wall clock) or event-time (the newest event time "
        "seen; for replays and simulations).",
    ),
    Variable(
        "DISCOVERY_EXPIRY_SCAN_S",
        "expiry_scan_s",
        "Seconds between a worker's scans for addresses due to expire or be pruned.",
    ),
    Variable(
        "DISCOVERY_STREAMS_COMMIT_S",
        "streams_commit_s",
        "Seconds between a worker's offset commits (work redone after a crash is at most this).",
    ),
    Variable(
        "DISCOVERY_STREAMS_SESSION_TIMEOUT_S",
        "streams_session_timeout_s",
        "Seconds before a silent worker's partitions move to the others.",
    ),
)


def _default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "smtp-discovery"


def _default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "smtp-discovery" / "kafka"


class RuntimeConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    kafka_bootstrap: str | None = None
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    kafka_sasl_username: str | None = None
    kafka_sasl_password: str | None = Field(default=None, repr=False)
    kafka_ssl_cafile: Path | None = None
    clickhouse_url: str | None = Field(default=None, repr=False)
    clickhouse_cluster: str | None = None
    data_dir: Path = Field(default_factory=_default_data_dir)
    kafka_version: str = Field(default="4.1.1", pattern=r"^4\.\d+\.\d+$")
    kafka_cache_dir: Path = Field(default_factory=_default_cache_dir)
    kafka_heap: str = Field(default="512m", pattern=r"^\d+[kmg]$")
    topic_partitions: int = Field(default=12, ge=1, le=10_000)
    topic_replication: int | None = Field(default=None, ge=1, le=7)
    topic_prefix: str = Field(default="", pattern=r"^[A-Za-z0-9._-]{0,100}$")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    streams_app_id: str = Field(
        default="smtp-discovery-streams", pattern=r"^[A-Za-z0-9._-]{1,100}$"
    )
    streams_store: Literal["rocksdb", "memory"] = "rocksdb"
    clock: Literal["system", "event-time"] = "system"
    expiry_scan_s: float = Field(default=300.0, gt=0, le=3600)
    streams_commit_s: float = Field(default=2.8, gt=0, le=60)
    streams_session_timeout_s: float = Field(default=60.0, ge=6, le=1800)

    @field_validator("kafka_bootstrap")
    @classmethod
    def _bootstrap(cls, value: str | None) -> str | None:
        if value is None:
            return None
        hosts = [h.strip() for h in value.split(",") if h.strip()]
        for host in hosts:
            name, sep, port = host.rpartition(":")
            if not sep or not name or not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError(f"{host!r} is not host:port")
        return ",".join(hosts)

    @property
    def topics(self) -> TopicNames:
        return TopicNames(self.topic_prefix)

    @property
    def embedded_kafka(self) -> bool:
        return self.kafka_bootstrap is None

    @property
    def effective_clickhouse_url(self) -> str:
        return self.clickhouse_url or f"chdb://{self.data_dir / 'clickhouse'}"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> RuntimeConfig:
        env = os.environ if env is None else env
        values = {v.field: env[v.env] for v in VARIABLES if env.get(v.env, "").strip() != ""}
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            by_field = {v.field: v.env for v in VARIABLES}
            problems = []
            for error in exc.errors(include_url=False):
                name = (
                    by_field.get(str(error["loc"][0]), str(error["loc"][0]))
                    if error["loc"]
                    else "?"
                )
                problems.append(f"{name}: {error['msg'].removeprefix('Value error, ')}")
            raise ConfigError("invalid configuration: " + "; ".join(problems)) from None

    def redacted(self) -> dict[str, str]:
        """What ``smtp-discovery config`` prints: every variable, secrets masked."""
        from smtp_discovery.clickhouse import redact_url

        out = {}
        for var in VARIABLES:
            value = getattr(self, var.field)
            if var.field == "clickhouse_url":
                value = redact_url(self.effective_clickhouse_url)
            elif var.secret and value:
                value = "***"
            out[var.env] = "" if value is None else str(value)
        return out
