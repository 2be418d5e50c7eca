"""Runtime configuration from environment variables, one table that the README mirrors.

Every variable any role reads is declared in VARIABLES; a test checks that the README documents
each one, and deployment files may set only these.
"""

from __future__ import annotations

import ipaddress
import os
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from smtp_discovery.platform.clickhouse import Layout, analytics_database, redact_url
from smtp_discovery.platform.errors import ConfigError
from smtp_discovery.schemas.address import AddressError, parse_address
from smtp_discovery.schemas.topics import TopicNames


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
        "DISCOVERY_STOP_TIMEOUT_S",
        "stop_timeout_s",
        "Seconds a process may take to stop in order after SIGINT or SIGTERM (for `up`, the "
        "whole system); past it what is left is killed. Keep it below the grace period of "
        "Kubernetes or compose.",
    ),
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
        "DISCOVERY_STREAMS_STANDBY_REPLICAS",
        "streams_standby_replicas",
        "Standby copies of each table partition kept by other workers, so a lost worker's "
        "partitions resume without a full restore.",
    ),
    Variable(
        "DISCOVERY_STREAMS_SESSION_TIMEOUT_S",
        "streams_session_timeout_s",
        "Seconds before a silent worker's partitions move to the others.",
    ),
    Variable(
        "DISCOVERY_SINK_GROUP",
        "sink_group",
        "Consumer group of the ClickHouse sinks (run several: they share partitions).",
    ),
    Variable(
        "DISCOVERY_SINK_BATCH_ROWS",
        "sink_batch_rows",
        "Rows per ClickHouse insert at most (one insert per partition and batch).",
    ),
    Variable(
        "DISCOVERY_SINK_BATCH_S",
        "sink_batch_s",
        "Seconds a partition's rows may wait before they are inserted.",
    ),
    Variable(
        "DISCOVERY_MAIL_EVENTS_TTL_DAYS",
        "mail_events_ttl_days",
        "Days mail events are kept in ClickHouse (rollups and state history are kept).",
    ),
    Variable(
        "DISCOVERY_REPORT_SMARTHOST",
        "report_smarthost",
        "host:port the weekly reports are sent through (unset: reports are only previewed).",
    ),
    Variable(
        "DISCOVERY_REPORT_SENDER",
        "report_sender",
        "From address of the weekly reports.",
    ),
    Variable(
        "DISCOVERY_REPORT_TIME",
        "report_time",
        "Time of day (HH:MM) the Thursday reports go out, in DISCOVERY_REPORT_TIMEZONE.",
    ),
    Variable(
        "DISCOVERY_REPORT_TIMEZONE",
        "report_timezone",
        "IANA time zone of the report schedule and report weeks, e.g. Europe/Berlin.",
    ),
    Variable(
        "DISCOVERY_ADMIN_LISTEN",
        "admin_listen",
        "host:port of the admin API and web console.",
    ),
    Variable(
        "DISCOVERY_ADMIN_TOKEN_KEY_FILE",
        "admin_token_key_file",
        "The admin role's token key (hex), which signs every API token record; a record on the "
        "tokens topic without its code grants nothing (default <data dir>/admin-token.key, "
        "made by `up` or `token init-key`). Only the admin role and `token create` need it.",
    ),
    Variable(
        "DISCOVERY_ADMIN_DOCS",
        "admin_docs",
        "Serve the interactive API docs at /docs (off by default: its page loads its scripts "
        "from a public CDN). The OpenAPI document is always at /openapi.json.",
    ),
    Variable(
        "DISCOVERY_LOG_FORMAT",
        "log_format",
        "text (human) or json (one object per line, for log shippers). Never message contents.",
    ),
    Variable(
        "DISCOVERY_INGEST_LISTEN",
        "ingest_listen",
        "host:port the SMTP ingest listens on (port 25 in production).",
    ),
    Variable(
        "DISCOVERY_INGEST_HOSTNAME",
        "ingest_hostname",
        "Name in the greeting, EHLO of callouts and relays, and Received headers "
        "(default: this host's FQDN).",
    ),
    Variable(
        "DISCOVERY_INGEST_NODE_ID",
        "ingest_node_id",
        "This ingest node's id in events (default: the host name).",
    ),
    Variable(
        "DISCOVERY_INGEST_TLS_CERT",
        "ingest_tls_cert",
        "PEM certificate chain offered with STARTTLS (unset: no STARTTLS).",
    ),
    Variable("DISCOVERY_INGEST_TLS_KEY", "ingest_tls_key", "PEM private key of that certificate."),
    Variable(
        "DISCOVERY_INGEST_REQUIRE_TLS",
        "ingest_require_tls",
        "Refuse mail transactions before STARTTLS (530).",
    ),
    Variable(
        "DISCOVERY_INGEST_MAX_MESSAGE_BYTES",
        "ingest_max_message_bytes",
        "Largest message accepted (advertised as SIZE; larger: 552).",
    ),
    Variable(
        "DISCOVERY_INGEST_MAX_LINE_BYTES",
        "ingest_max_line_bytes",
        "Longest line of a message accepted (RFC 5322: 998 plus CRLF).",
    ),
    Variable(
        "DISCOVERY_INGEST_MAX_RECIPIENTS",
        "ingest_max_recipients",
        "Recipients per message; more get 452 4.5.3 (the sender retries them separately).",
    ),
    Variable(
        "DISCOVERY_INGEST_MAX_COMMANDS",
        "ingest_max_commands",
        "Times one connection may send any one command (MAIL, RCPT, NOOP, ...); then "
        "421 4.7.0 and the connection closes.",
    ),
    Variable(
        "DISCOVERY_INGEST_IDLE_TIMEOUT_S",
        "ingest_idle_timeout_s",
        "Seconds a client may stay silent before the connection is closed.",
    ),
    Variable(
        "DISCOVERY_INGEST_PROXY_PROTOCOL",
        "ingest_proxy_protocol",
        "Expect a HAProxy PROXY header on each connection (behind a TCP load balancer), so the "
        "client IP is the real sender's.",
    ),
    Variable(
        "DISCOVERY_INGEST_PROXY_TRUSTED",
        "ingest_proxy_trusted",
        "Comma-separated networks of the load balancers whose PROXY header is believed; a "
        "header from anywhere else closes the connection.",
    ),
    Variable(
        "DISCOVERY_INGEST_SMARTHOST",
        "ingest_smarthost",
        "host:port that relays tenants' outbound mail (unset: outbound mail is refused).",
    ),
    Variable(
        "DISCOVERY_INGEST_SPOOL_DIR",
        "ingest_spool_dir",
        "Durable spool for events while Kafka is unreachable (default <data dir>/spool).",
    ),
    Variable(
        "DISCOVERY_INGEST_SPOOL_MAX_BYTES",
        "ingest_spool_max_bytes",
        "Spool size past which new transactions get 451 4.3.1.",
    ),
    Variable(
        "DISCOVERY_INGEST_PROBES_PER_DESTINATION",
        "ingest_probes_per_destination",
        "Concurrent verification callouts per destination host, to protect tenants' servers.",
    ),
    Variable(
        "DISCOVERY_INGEST_CALLOUTS_PER_S",
        "ingest_callouts_per_s",
        "Verification callouts per second to one destination host from all ingest nodes "
        "together; a callout beyond it waits up to 2 s for its turn, then the RCPT gets the "
        "tenant's tempfail policy.",
    ),
    Variable(
        "DISCOVERY_INGEST_NODES",
        "ingest_nodes",
        "How many ingest nodes share DISCOVERY_INGEST_CALLOUTS_PER_S (each keeps to its share).",
    ),
    Variable(
        "DISCOVERY_INGEST_SPAM_HEADER",
        "ingest_spam_header",
        "Header:regex marking a message not clean for the default verdict step "
        "(the upstream filter's verdict).",
    ),
    Variable(
        "DISCOVERY_INGEST_VERDICT",
        "ingest_verdict",
        "module:callable returning a verdict step, to replace the spam-header verdict.",
    ),
    Variable(
        "DISCOVERY_OPS_LISTEN",
        "ops_listen",
        "host:port where every role serves /metrics (Prometheus), /healthz and /readyz "
        "(off: no endpoint).",
    ),
)


KAFKA_FIELDS = (
    "kafka_bootstrap",
    "kafka_security_protocol",
    "kafka_sasl_mechanism",
    "kafka_sasl_username",
    "kafka_sasl_password",
    "kafka_ssl_cafile",
)
"""The settings that say which Kafka a role uses and how it logs in."""


def split_host_port(value: str) -> tuple[str, int]:
    """``host:port`` or ``[v6]:port`` into its parts, or a ValueError saying what is wrong."""
    name, sep, port = value.strip().rpartition(":")
    if not sep or not name or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ValueError(f"{value!r} is not host:port")
    return name.strip("[]"), int(port)


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
    stop_timeout_s: float = Field(default=30.0, ge=1, le=3600)
    streams_app_id: str = Field(
        default="smtp-discovery-streams", pattern=r"^[A-Za-z0-9._-]{1,100}$"
    )
    streams_store: Literal["rocksdb", "memory"] = "rocksdb"
    clock: Literal["system", "event-time"] = "system"
    expiry_scan_s: float = Field(default=300.0, gt=0, le=3600)
    streams_commit_s: float = Field(default=2.8, gt=0, le=60)
    streams_session_timeout_s: float = Field(default=60.0, ge=6, le=1800)
    streams_standby_replicas: int = Field(default=1, ge=0, le=10)
    sink_group: str = Field(default="smtp-discovery-sink", pattern=r"^[A-Za-z0-9._-]{1,100}$")
    sink_batch_rows: int = Field(default=10_000, ge=1, le=1_000_000)
    sink_batch_s: float = Field(default=1.0, gt=0, le=300)
    mail_events_ttl_days: int = Field(default=180, ge=1, le=3650)
    report_smarthost: str | None = None
    report_sender: str = Field(default="smtp-discovery@localhost", min_length=3, max_length=256)
    report_time: str = Field(default="09:00", pattern=r"^([01]\d|2[0-3]):[0-5]\d$")
    report_timezone: str = "UTC"
    admin_listen: str = "127.0.0.1:8025"
    admin_docs: bool = False
    admin_token_key_file: Path | None = None
    log_format: Literal["text", "json"] = "text"
    ingest_listen: str = Field(default="127.0.0.1:2525")
    ingest_hostname: str = Field(default_factory=socket.getfqdn, max_length=255)
    ingest_node_id: str = Field(default_factory=socket.gethostname, max_length=128)
    ingest_tls_cert: Path | None = None
    ingest_tls_key: Path | None = None
    ingest_require_tls: bool = False
    ingest_max_message_bytes: int = Field(default=50 * 1024 * 1024, ge=1024)
    ingest_max_line_bytes: int = Field(default=1000, ge=512, le=1_000_000)
    ingest_max_recipients: int = Field(default=100, ge=1, le=100_000)
    ingest_max_commands: int = Field(default=10_000, ge=10, le=10_000_000)
    ingest_idle_timeout_s: float = Field(default=300.0, gt=0, le=3600)
    ingest_proxy_protocol: bool = False
    ingest_proxy_trusted: str = "127.0.0.0/8,::1/128"
    ingest_smarthost: str | None = None
    ingest_spool_dir: Path | None = None
    ingest_spool_max_bytes: int = Field(default=1024**3, ge=1024 * 1024)
    ingest_probes_per_destination: int = Field(default=4, ge=1, le=1000)
    ingest_callouts_per_s: float = Field(default=100.0, gt=0, le=100_000)
    ingest_nodes: int = Field(default=1, ge=1, le=10_000)
    ingest_spam_header: str = Field(default=r"X-Spam-Flag:^\s*yes\b", min_length=3)
    ingest_verdict: str | None = Field(default=None, pattern=r"^[\w.]+:[\w.]+$")
    ops_listen: str = Field(default="127.0.0.1:9125")

    @field_validator("kafka_bootstrap")
    @classmethod
    def _bootstrap(cls, value: str | None) -> str | None:
        if value is None:
            return None
        hosts = [h.strip() for h in value.split(",") if h.strip()]
        for host in hosts:
            split_host_port(host)
        return ",".join(hosts)

    @field_validator("ingest_proxy_trusted")
    @classmethod
    def _trusted(cls, value: str) -> str:
        for item in filter(None, (part.strip() for part in value.split(","))):
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError:
                raise ValueError(f"{item!r} is not a network (CIDR)") from None
        return value

    @property
    def proxy_networks(self) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
        return [
            ipaddress.ip_network(item.strip(), strict=False)
            for item in self.ingest_proxy_trusted.split(",")
            if item.strip()
        ]

    @field_validator("ops_listen")
    @classmethod
    def _ops(cls, value: str) -> str:
        """``off`` turns the endpoint off (an empty variable means the default, as for all)."""
        if value.strip().lower() == "off":
            return ""
        split_host_port(value)
        return value

    @field_validator("report_timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r} (use an IANA name)") from None
        return value

    @field_validator("report_sender")
    @classmethod
    def _sender(cls, value: str) -> str:
        try:
            parse_address(value)
        except AddressError as exc:
            raise ValueError(exc.message) from None
        return value

    @field_validator(
        "ingest_listen",
        "ingest_smarthost",
        "report_smarthost",
        "admin_listen",
    )
    @classmethod
    def _host_port(cls, value: str | None) -> str | None:
        if value:
            split_host_port(value)
        return value

    @field_validator("ingest_spam_header")
    @classmethod
    def _spam_header(cls, value: str) -> str:
        name, sep, pattern = value.partition(":")
        if not sep or not name.strip() or not pattern:
            raise ValueError("must be Header-Name:regex, e.g. X-Spam-Flag:^\\s*yes")
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ValueError(f"invalid regex {pattern!r}: {exc}") from None
        return value

    @model_validator(mode="after")
    def _tls_pair(self) -> RuntimeConfig:
        if (self.ingest_tls_cert is None) != (self.ingest_tls_key is None):
            raise ValueError("DISCOVERY_INGEST_TLS_CERT and DISCOVERY_INGEST_TLS_KEY go together")
        if self.ingest_require_tls and self.ingest_tls_cert is None:
            raise ValueError("DISCOVERY_INGEST_REQUIRE_TLS needs a certificate")
        return self

    @property
    def analytics_layout(self) -> Layout:
        """Where the analytics tables live: the URL's database, else ``discovery``."""
        return Layout(
            database=analytics_database(self.effective_clickhouse_url),
            cluster=self.clickhouse_cluster or None,
            mail_events_ttl_days=self.mail_events_ttl_days,
        )

    def as_environment(self, *fields: str) -> dict[str, str]:
        """These settings as the variables a child process reads them from (unset: left out)."""
        by_field = {v.field: v.env for v in VARIABLES}
        return {by_field[f]: str(getattr(self, f)) for f in fields if getattr(self, f) is not None}

    @property
    def token_key_path(self) -> Path:
        return self.admin_token_key_file or self.data_dir / "admin-token.key"

    @property
    def effective_spool_dir(self) -> Path:
        return self.ingest_spool_dir or self.data_dir / "spool"

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
                message = error["msg"].removeprefix("Value error, ")
                if error["loc"]:
                    field = str(error["loc"][0])
                    message = f"{by_field.get(field, field)}: {message}"
                problems.append(message)
            raise ConfigError("invalid configuration: " + "; ".join(problems)) from None

    def redacted(self) -> dict[str, str]:
        """What ``smtp-discovery config`` prints: every variable, secrets masked."""
        out = {}
        for var in VARIABLES:
            value = getattr(self, var.field)
            if var.field == "clickhouse_url":
                value = redact_url(self.effective_clickhouse_url)
            elif var.secret and value:
                value = "***"
            out[var.env] = "" if value is None else str(value)
        return out
