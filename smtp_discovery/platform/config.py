"""Runtime configuration from environment variables, each declared once, in one section per role.

Every setting is a field of one section class below (``KafkaSettings``, ``IngestSettings``, ...),
declared with ``setting()``: its environment variable, its description, whether it is a secret,
its type, default and bounds. ``RuntimeConfig`` is all the sections together. The configuration
tables, ``smtp-discovery config`` and the deployment files' checks are derived from these
declarations (``RuntimeConfig.variables()``); scripts/config-table rewrites the tables in
docs/configuration.md.

Only ``from_env()`` reads the environment (through pydantic-settings' environment source):
constructing a section or ``RuntimeConfig`` takes its arguments and defaults, nothing else.
"""

from __future__ import annotations

import ipaddress
import os
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal, Self
from urllib.parse import urlsplit, urlunsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from smtp_discovery.platform.clickhouse import Layout, analytics_database, redact_url
from smtp_discovery.platform.errors import ConfigError
from smtp_discovery.schemas.address import AddressError, parse_address
from smtp_discovery.schemas.topics import TopicNames


@dataclass(frozen=True, slots=True)
class Variable:
    """One setting as operators see it: read-only, derived from its field's declaration."""

    env: str
    field: str
    description: str
    secret: bool = False
    section: str = ""
    shown_default: str | None = None
    """How the documentation states a computed default (None: the declared default)."""


def setting(
    env: str,
    description: str,
    *,
    secret: bool = False,
    shown_default: str | None = None,
    **field: Any,
) -> Any:
    """A setting's one declaration: a pydantic Field read from the environment variable ``env``.

    ``secret`` settings are never logged: left out of repr and masked by ``redacted()``.
    ``shown_default`` is how the docs state a default computed at run time. The other
    arguments (default, default_factory, bounds, pattern) go to ``Field``.
    """
    extra: dict[str, Any] = {"secret": secret}
    if shown_default is not None:
        extra["shown_default"] = shown_default
    return Field(
        validation_alias=env,
        description=description,
        json_schema_extra=extra,
        repr=not secret,
        **field,
    )


def _variable(name: str, field: FieldInfo, section: str) -> Variable:
    env, extra = field.validation_alias, field.json_schema_extra
    if not isinstance(env, str) or not field.description or not isinstance(extra, dict):
        raise TypeError(f"{name}: declare settings with setting(ENV_NAME, description, ...)")
    shown = extra.get("shown_default")
    return Variable(
        env=env,
        field=name,
        description=field.description,
        secret=extra.get("secret") is True,
        section=section,
        shown_default=shown if isinstance(shown, str) else None,
    )


def split_host_port(value: str) -> tuple[str, int]:
    """``host:port`` or ``[v6]:port`` into its parts, or a ValueError saying what is wrong."""
    name, sep, port = value.strip().rpartition(":")
    if not sep or not name or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ValueError(f"{value!r} is not host:port")
    return name.strip("[]"), int(port)


def _check_host_port(value: str | None) -> str | None:
    if value:
        split_host_port(value)
    return value


def _default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "smtp-discovery"


def _default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "smtp-discovery" / "kafka"


class _Environment(EnvSettingsSource):
    """pydantic-settings' environment source over ``env``: the declared variables only, matched
    case-sensitively, a blank one counting as unset (so the default applies)."""

    def __init__(self, settings_cls: type[SettingsSection], env: Mapping[str, str]) -> None:
        declared = {var.env for var in settings_cls.variables()}
        self._given = {k: v for k, v in env.items() if k in declared and v.strip() != ""}
        super().__init__(settings_cls, case_sensitive=True)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return self._given


class SettingsSection(BaseSettings):
    """Settings of one component; a field is a variable, declared with ``setting()``."""

    model_config = SettingsConfigDict(
        frozen=True,
        extra="forbid",
        # Fields are set by name in code and tests, by environment variable in from_env().
        validate_by_name=True,
        validate_by_alias=True,
        validate_default=False,
        case_sensitive=True,
    )

    section_title: ClassVar[str] = ""
    variable_prefix: ClassVar[str] = ""
    """What every variable of the section starts with."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Constructing takes the arguments given and nothing else: from_env() reads variables."""
        return (init_settings,)

    @classmethod
    def variables(cls) -> tuple[Variable, ...]:
        """The section's variables, in declaration order."""
        return tuple(
            _variable(name, field, cls.section_title) for name, field in cls.model_fields.items()
        )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Self:
        """The settings from environment variables (the process's unless ``env`` is given).

        A variable unset or blank leaves the default; bad values are one ConfigError that
        names each variable.
        """
        values = _Environment(cls, os.environ if env is None else env)()
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            by_field = {v.field: v.env for v in cls.variables()}
            problems = []
            for error in exc.errors(include_url=False):
                message = error["msg"].removeprefix("Value error, ")
                if error["loc"]:
                    where = str(error["loc"][0])
                    message = f"{by_field.get(where, where)}: {message}"
                problems.append(message)
            raise ConfigError("invalid configuration: " + "; ".join(problems)) from None

    def as_environment(self, *fields: str) -> dict[str, str]:
        """These settings as the variables a child process reads them from (unset: left out)."""
        by_field = {v.field: v.env for v in self.variables()}
        return {by_field[f]: str(getattr(self, f)) for f in fields if getattr(self, f) is not None}

    def redacted(self) -> dict[str, str]:
        """Every variable with its value in effect, secrets masked."""
        out = {}
        for var in self.variables():
            value = getattr(self, var.field)
            if var.secret and value:
                value = "***"
            out[var.env] = "" if value is None else str(value)
        return out


def _env_name(section: type[SettingsSection], field: str) -> str:
    return str(section.model_fields[field].validation_alias)


class KafkaSettings(SettingsSection):
    """Which Kafka cluster the roles use and how they log in."""

    section_title = "Kafka"
    variable_prefix = "KAFKA_"

    kafka_bootstrap: str | None = setting(
        "KAFKA_BOOTSTRAP",
        "host:port[,host:port] of an existing Kafka cluster. Unset: the embedded mode starts a "
        "local broker under the data directory.",
        default=None,
        shown_default="(embedded broker)",
    )
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = setting(
        "KAFKA_SECURITY_PROTOCOL",
        "PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL.",
        default="PLAINTEXT",
    )
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = setting(
        "KAFKA_SASL_MECHANISM", "PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512.", default=None
    )
    kafka_sasl_username: str | None = setting(
        "KAFKA_SASL_USERNAME", "SASL user name.", default=None
    )
    kafka_sasl_password: str | None = setting(
        "KAFKA_SASL_PASSWORD", "SASL password.", secret=True, default=None
    )
    kafka_ssl_cafile: Path | None = setting(
        "KAFKA_SSL_CAFILE", "CA bundle that signed the brokers' certificates.", default=None
    )

    @field_validator("kafka_bootstrap")
    @classmethod
    def _bootstrap(cls, value: str | None) -> str | None:
        if value is None:
            return None
        hosts = [h.strip() for h in value.split(",") if h.strip()]
        for host in hosts:
            split_host_port(host)
        return ",".join(hosts)

    @property
    def embedded_kafka(self) -> bool:
        return self.kafka_bootstrap is None


class ClickHouseSettings(SettingsSection):
    """Where the analytics tables live (the sink, migrate, the jobs and the admin API)."""

    section_title = "ClickHouse"
    variable_prefix = "CLICKHOUSE_"

    clickhouse_url: str | None = setting(
        "CLICKHOUSE_URL",
        "chdb:///path (embedded chDB, the default: <data dir>/clickhouse) or "
        "http(s)://user:password@host:port/database for a ClickHouse server.",
        secret=True,
        default=None,
        shown_default="`chdb://<data dir>/clickhouse`",
    )
    clickhouse_cluster: str | None = setting(
        "CLICKHOUSE_CLUSTER",
        "ClickHouse cluster name for ON CLUSTER DDL (empty: single node).",
        default=None,
    )


class CommonSettings(SettingsSection):
    """Read by every role: data directory, embedded broker, topics, logs, stopping, ops endpoint."""

    section_title = "Common and embedded mode"
    variable_prefix = "DISCOVERY_"

    data_dir: Path = setting(
        "DISCOVERY_DATA_DIR",
        "Where the embedded mode keeps Kafka logs, chDB data and local state "
        "(default ~/.local/share/smtp-discovery).",
        default_factory=_default_data_dir,
        shown_default="`~/.local/share/smtp-discovery`",
    )
    kafka_version: str = setting(
        "DISCOVERY_KAFKA_VERSION",
        "Apache Kafka version of the embedded broker.",
        default="4.1.1",
        pattern=r"^4\.\d+\.\d+$",
    )
    kafka_cache_dir: Path = setting(
        "DISCOVERY_KAFKA_CACHE",
        "Where the embedded broker's jars are cached (default ~/.cache/smtp-discovery/kafka).",
        default_factory=_default_cache_dir,
        shown_default="`~/.cache/smtp-discovery/kafka`",
    )
    kafka_heap: str = setting(
        "DISCOVERY_KAFKA_HEAP",
        "JVM heap of each embedded Kafka node, e.g. 512m.",
        default="512m",
        pattern=r"^\d+[kmg]$",
    )
    topic_partitions: int = setting(
        "DISCOVERY_TOPIC_PARTITIONS",
        "Partitions of the co-partitioned topics (discovery.mail and friends): the most streams "
        "workers that can share the work. Fixed once topics exist.",
        default=12,
        ge=1,
        le=10_000,
    )
    topic_replication: int | None = setting(
        "DISCOVERY_TOPIC_REPLICATION",
        "Replication factor of new topics (default: 1 on the embedded broker, otherwise "
        "min(3, brokers)).",
        default=None,
        ge=1,
        le=7,
        shown_default="1 embedded, else min(3, brokers)",
    )
    topic_prefix: str = setting(
        "DISCOVERY_TOPIC_PREFIX",
        "Prefix of every topic name (e.g. 'staging.'), for deployments sharing one cluster.",
        default="",
        pattern=r"^[A-Za-z0-9._-]{0,100}$",
        shown_default="(none)",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = setting(
        "DISCOVERY_LOG_LEVEL", "DEBUG, INFO, WARNING or ERROR.", default="INFO"
    )
    log_format: Literal["text", "json"] = setting(
        "DISCOVERY_LOG_FORMAT",
        "text (human) or json (one object per line, for log shippers). Never message contents.",
        default="text",
    )
    stop_timeout_s: float = setting(
        "DISCOVERY_STOP_TIMEOUT_S",
        "Seconds a process may take to stop in order after SIGINT or SIGTERM (for `up`, the "
        "whole system); past it what is left is killed. Keep it below the grace period of "
        "Kubernetes or compose.",
        default=30.0,
        ge=1,
        le=3600,
    )
    ops_listen: str = setting(
        "DISCOVERY_OPS_LISTEN",
        "host:port where every role serves /metrics (Prometheus), /healthz and /readyz "
        "(off: no endpoint).",
        default="127.0.0.1:9125",
    )

    @field_validator("ops_listen")
    @classmethod
    def _ops(cls, value: str) -> str:
        """``off`` turns the endpoint off (an empty variable means the default, as for all)."""
        if value.strip().lower() == "off":
            return ""
        split_host_port(value)
        return value

    @property
    def topics(self) -> TopicNames:
        return TopicNames(self.topic_prefix)


class IngestSettings(SettingsSection):
    """The SMTP ingest nodes (`smtp-discovery ingest`)."""

    section_title = "SMTP ingest"
    variable_prefix = "DISCOVERY_INGEST_"

    ingest_listen: str = setting(
        "DISCOVERY_INGEST_LISTEN",
        "host:port the SMTP ingest listens on (port 25 in production).",
        default="127.0.0.1:2525",
    )
    ingest_hostname: str = setting(
        "DISCOVERY_INGEST_HOSTNAME",
        "Name in the greeting, EHLO of callouts and relays, and Received headers "
        "(default: this host's FQDN).",
        default_factory=socket.getfqdn,
        max_length=255,
        shown_default="(this host's FQDN)",
    )
    ingest_node_id: str = setting(
        "DISCOVERY_INGEST_NODE_ID",
        "This ingest node's id in events (default: the host name).",
        default_factory=socket.gethostname,
        max_length=128,
        shown_default="(this host's name)",
    )
    ingest_tls_cert: Path | None = setting(
        "DISCOVERY_INGEST_TLS_CERT",
        "PEM certificate chain offered with STARTTLS (unset: no STARTTLS).",
        default=None,
    )
    ingest_tls_key: Path | None = setting(
        "DISCOVERY_INGEST_TLS_KEY", "PEM private key of that certificate.", default=None
    )
    ingest_require_tls: bool = setting(
        "DISCOVERY_INGEST_REQUIRE_TLS",
        "Refuse mail transactions before STARTTLS (530).",
        default=False,
    )
    ingest_max_message_bytes: int = setting(
        "DISCOVERY_INGEST_MAX_MESSAGE_BYTES",
        "Largest message accepted (advertised as SIZE; larger: 552).",
        default=50 * 1024 * 1024,
        ge=1024,
    )
    ingest_max_line_bytes: int = setting(
        "DISCOVERY_INGEST_MAX_LINE_BYTES",
        "Longest line of a message accepted (RFC 5322: 998 plus CRLF).",
        default=1000,
        ge=512,
        le=1_000_000,
    )
    ingest_max_recipients: int = setting(
        "DISCOVERY_INGEST_MAX_RECIPIENTS",
        "Recipients per message; more get 452 4.5.3 (the sender retries them separately).",
        default=100,
        ge=1,
        le=100_000,
    )
    ingest_max_commands: int = setting(
        "DISCOVERY_INGEST_MAX_COMMANDS",
        "Times one connection may send any one command (MAIL, RCPT, NOOP, ...); then "
        "421 4.7.0 and the connection closes.",
        default=10_000,
        ge=10,
        le=10_000_000,
    )
    ingest_idle_timeout_s: float = setting(
        "DISCOVERY_INGEST_IDLE_TIMEOUT_S",
        "Seconds a client may stay silent before the connection is closed.",
        default=300.0,
        gt=0,
        le=3600,
    )
    ingest_proxy_protocol: bool = setting(
        "DISCOVERY_INGEST_PROXY_PROTOCOL",
        "Expect a HAProxy PROXY header on each connection (behind a TCP load balancer), so the "
        "client IP is the real sender's.",
        default=False,
    )
    ingest_proxy_trusted: str = setting(
        "DISCOVERY_INGEST_PROXY_TRUSTED",
        "Comma-separated networks of the load balancers whose PROXY header is believed; a "
        "header from anywhere else closes the connection.",
        default="127.0.0.0/8,::1/128",
    )
    ingest_smarthost: str | None = setting(
        "DISCOVERY_INGEST_SMARTHOST",
        "host:port that relays tenants' outbound mail (unset: outbound mail is refused).",
        default=None,
    )
    ingest_spool_dir: Path | None = setting(
        "DISCOVERY_INGEST_SPOOL_DIR",
        "Durable spool for events while Kafka is unreachable (default <data dir>/spool).",
        default=None,
        shown_default="`<data dir>/spool`",
    )
    ingest_spool_max_bytes: int = setting(
        "DISCOVERY_INGEST_SPOOL_MAX_BYTES",
        "Spool size past which new transactions get 451 4.3.1.",
        default=1024**3,
        ge=1024 * 1024,
    )
    ingest_probes_per_destination: int = setting(
        "DISCOVERY_INGEST_PROBES_PER_DESTINATION",
        "Concurrent verification callouts per destination host, to protect tenants' servers.",
        default=4,
        ge=1,
        le=1000,
    )
    ingest_callouts_per_s: float = setting(
        "DISCOVERY_INGEST_CALLOUTS_PER_S",
        "Verification callouts per second to one destination host from all ingest nodes "
        "together; a callout beyond it waits up to 2 s for its turn, then the RCPT gets the "
        "tenant's tempfail policy.",
        default=100.0,
        gt=0,
        le=100_000,
    )
    ingest_nodes: int = setting(
        "DISCOVERY_INGEST_NODES",
        "How many ingest nodes share DISCOVERY_INGEST_CALLOUTS_PER_S (each keeps to its share).",
        default=1,
        ge=1,
        le=10_000,
    )
    ingest_spam_header: str = setting(
        "DISCOVERY_INGEST_SPAM_HEADER",
        "Header:regex marking a message not clean for the default verdict step "
        "(the upstream filter's verdict).",
        default=r"X-Spam-Flag:^\s*yes\b",
        min_length=3,
    )
    ingest_verdict: str | None = setting(
        "DISCOVERY_INGEST_VERDICT",
        "module:callable returning a verdict step, to replace the spam-header verdict.",
        default=None,
        pattern=r"^[\w.]+:[\w.]+$",
    )

    @field_validator("ingest_listen", "ingest_smarthost")
    @classmethod
    def _ingest_host_port(cls, value: str | None) -> str | None:
        return _check_host_port(value)

    @field_validator("ingest_proxy_trusted")
    @classmethod
    def _trusted(cls, value: str) -> str:
        for item in filter(None, (part.strip() for part in value.split(","))):
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError:
                raise ValueError(f"{item!r} is not a network (CIDR)") from None
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
    def _tls_pair(self) -> Self:
        def env(field: str) -> str:
            return _env_name(IngestSettings, field)

        if (self.ingest_tls_cert is None) != (self.ingest_tls_key is None):
            raise ValueError(f"{env('ingest_tls_cert')} and {env('ingest_tls_key')} go together")
        if self.ingest_require_tls and self.ingest_tls_cert is None:
            raise ValueError(f"{env('ingest_require_tls')} needs a certificate")
        return self

    @property
    def proxy_networks(self) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
        return [
            ipaddress.ip_network(item.strip(), strict=False)
            for item in self.ingest_proxy_trusted.split(",")
            if item.strip()
        ]


class PolicySettings(SettingsSection):
    """The Postfix policy service and lookup tables (`smtp-discovery policy`). It decides with
    the ingest settings above (node id, callout limits, spool, verdict header) as well."""

    section_title = "Postfix policy service"
    variable_prefix = "DISCOVERY_POLICY_"

    policy_listen: str = setting(
        "DISCOVERY_POLICY_LISTEN",
        "host:port of the policy delegation server (Postfix `check_policy_service inet:...`).",
        default="127.0.0.1:10040",
    )
    policy_socketmap_listen: str = setting(
        "DISCOVERY_POLICY_SOCKETMAP_LISTEN",
        "host:port of the socketmap server for `relay_domains` and `transport_maps` "
        "(`socketmap:inet:host:port:relay`, `...:transport`).",
        default="127.0.0.1:10041",
    )
    policy_tempfail_action: Literal["reply", "defer_if_permit"] = setting(
        "DISCOVERY_POLICY_TEMPFAIL_ACTION",
        "How a deferred recipient is answered: `reply` (the 451 4.4.3 reply, final) or "
        "`defer_if_permit` (DEFER_IF_PERMIT: a later restriction that rejects still wins).",
        default="reply",
    )
    policy_verdict: Literal["clean", "after_queue"] = setting(
        "DISCOVERY_POLICY_VERDICT",
        "Verdict of mail Postfix queued: `clean` at end of data, or `after_queue`: the "
        "content filter after the queue reports it (docs/postfix.md).",
        default="clean",
    )
    policy_verdict_wait_s: float = setting(
        "DISCOVERY_POLICY_VERDICT_WAIT_S",
        "With `after_queue`, seconds a message waits for its verdict; unreported, its "
        "deliveries never count towards discovery.",
        default=3600.0,
        gt=0,
        le=7 * 86400,
    )
    policy_idle_timeout_s: float = setting(
        "DISCOVERY_POLICY_IDLE_TIMEOUT_S",
        "Seconds an idle Postfix connection is kept (Postfix's own "
        "smtpd_policy_service_max_idle is 300 s).",
        default=600.0,
        gt=0,
        le=86400,
    )

    @field_validator("policy_listen", "policy_socketmap_listen")
    @classmethod
    def _policy_host_port(cls, value: str) -> str | None:
        return _check_host_port(value)


class WorkerSettings(SettingsSection):
    """The streams workers (`smtp-discovery worker`)."""

    section_title = "Streams worker"
    variable_prefix = "DISCOVERY_"

    streams_app_id: str = setting(
        "DISCOVERY_STREAMS_APP_ID",
        "Faust application id of the streams workers: their consumer group and table names.",
        default="smtp-discovery-streams",
        pattern=r"^[A-Za-z0-9._-]{1,100}$",
    )
    streams_store: Literal["rocksdb", "memory"] = setting(
        "DISCOVERY_STREAMS_STORE",
        "Table storage of a streams worker: rocksdb (production) or memory.",
        default="rocksdb",
    )
    clock: Literal["system", "event-time"] = setting(
        "DISCOVERY_CLOCK",
        "Clock of the expiry timer: system (wall clock) or event-time (the newest event time "
        "seen; for replays and simulations).",
        default="system",
    )
    expiry_scan_s: float = setting(
        "DISCOVERY_EXPIRY_SCAN_S",
        "Seconds between a worker's scans for addresses due to expire or be pruned.",
        default=300.0,
        gt=0,
        le=3600,
    )
    streams_commit_s: float = setting(
        "DISCOVERY_STREAMS_COMMIT_S",
        "Seconds between a worker's offset commits (work redone after a crash is at most this).",
        default=2.8,
        gt=0,
        le=60,
    )
    streams_standby_replicas: int = setting(
        "DISCOVERY_STREAMS_STANDBY_REPLICAS",
        "Standby copies of each table partition kept by other workers, so a lost worker's "
        "partitions resume without a full restore.",
        default=1,
        ge=0,
        le=10,
    )
    streams_session_timeout_s: float = setting(
        "DISCOVERY_STREAMS_SESSION_TIMEOUT_S",
        "Seconds before a silent worker's partitions move to the others.",
        default=60.0,
        ge=6,
        le=1800,
    )


class SinkSectionSettings(SettingsSection):
    """The ClickHouse sinks (`smtp-discovery sink`) and the analytics tables they fill."""

    section_title = "ClickHouse sink"
    variable_prefix = "DISCOVERY_"

    sink_group: str = setting(
        "DISCOVERY_SINK_GROUP",
        "Consumer group of the ClickHouse sinks (run several: they share partitions).",
        default="smtp-discovery-sink",
        pattern=r"^[A-Za-z0-9._-]{1,100}$",
    )
    sink_batch_rows: int = setting(
        "DISCOVERY_SINK_BATCH_ROWS",
        "Rows per ClickHouse insert at most (one insert per partition and batch).",
        default=10_000,
        ge=1,
        le=1_000_000,
    )
    sink_batch_s: float = setting(
        "DISCOVERY_SINK_BATCH_S",
        "Seconds a partition's rows may wait before they are inserted.",
        default=1.0,
        gt=0,
        le=300,
    )
    mail_events_ttl_days: int = setting(
        "DISCOVERY_MAIL_EVENTS_TTL_DAYS",
        "Days mail events are kept in ClickHouse (rollups and state history are kept).",
        default=180,
        ge=1,
        le=3650,
    )


class ReportSettings(SettingsSection):
    """The weekly reports (`smtp-discovery jobs` and `report`)."""

    section_title = "Weekly reports"
    variable_prefix = "DISCOVERY_REPORT_"

    report_smarthost: str | None = setting(
        "DISCOVERY_REPORT_SMARTHOST",
        "host:port the weekly reports are sent through (unset: reports are only previewed).",
        default=None,
    )
    report_sender: str = setting(
        "DISCOVERY_REPORT_SENDER",
        "From address of the weekly reports.",
        default="smtp-discovery@localhost",
        min_length=3,
        max_length=256,
    )
    report_time: str = setting(
        "DISCOVERY_REPORT_TIME",
        "Time of day (HH:MM) the Thursday reports go out, in DISCOVERY_REPORT_TIMEZONE.",
        default="09:00",
        pattern=r"^([01]\d|2[0-3]):[0-5]\d$",
    )
    report_timezone: str = setting(
        "DISCOVERY_REPORT_TIMEZONE",
        "IANA time zone of the report schedule and report weeks, e.g. Europe/Berlin.",
        default="UTC",
    )
    report_provider_name: str = setting(
        "DISCOVERY_REPORT_PROVIDER_NAME",
        "The provider's name as the reports show it: their sender's name, their header and footer.",
        default="Mail filtering service",
        min_length=1,
        max_length=100,
    )
    report_console_url: str | None = setting(
        "DISCOVERY_REPORT_CONSOLE_URL",
        "Public address of the web console, e.g. `https://discovery.example.net/console`: each "
        "report links to its page there (unset: the reports say where the console is "
        "documented instead). No user, query or fragment: a link never carries a token.",
        default=None,
        max_length=500,
    )

    @field_validator("report_smarthost")
    @classmethod
    def _report_host_port(cls, value: str | None) -> str | None:
        return _check_host_port(value)

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

    @field_validator("report_provider_name")
    @classmethod
    def _provider_name(cls, value: str) -> str:
        if not value.strip() or any(ord(c) < 32 or ord(c) == 127 for c in value):
            raise ValueError("a name on one line, not blank")
        return value.strip()

    @field_validator("report_console_url")
    @classmethod
    def _console_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.strip()
        if any(c.isspace() or ord(c) < 32 or ord(c) == 127 or c in '"<>\\^`{|}' for c in value):
            raise ValueError(f"{value!r}: spaces or characters a URL cannot hold unencoded")
        url = urlsplit(value)
        try:
            url.port  # noqa: B018 (a port out of range raises)
        except ValueError:
            raise ValueError(f"{value!r}: not a valid port") from None
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ValueError(f"{value!r} is not an http(s) URL")
        if url.username is not None or url.password is not None or url.query or url.fragment:
            raise ValueError(f"{value!r}: no user, password, query or fragment in the address")
        return urlunsplit(url._replace(path=url.path.rstrip("/")))


class AdminSettings(SettingsSection):
    """The admin API and web console (`smtp-discovery admin`)."""

    section_title = "Admin API"
    variable_prefix = "DISCOVERY_ADMIN_"

    admin_listen: str = setting(
        "DISCOVERY_ADMIN_LISTEN",
        "host:port of the admin API and web console.",
        default="127.0.0.1:8025",
    )
    admin_token_key_file: Path | None = setting(
        "DISCOVERY_ADMIN_TOKEN_KEY_FILE",
        "The admin role's token key (hex), which signs every API token record; a record on the "
        "tokens topic without its code grants nothing (default <data dir>/admin-token.key, "
        "made by `up` or `token init-key`). Only the admin role and `token create` need it.",
        default=None,
    )
    admin_docs: bool = setting(
        "DISCOVERY_ADMIN_DOCS",
        "Serve the interactive API docs at /docs (off by default: its page loads its scripts "
        "from a public CDN). The OpenAPI document is always at /openapi.json.",
        default=False,
    )

    @field_validator("admin_listen")
    @classmethod
    def _admin_host_port(cls, value: str | None) -> str | None:
        return _check_host_port(value)


class RuntimeConfig(
    KafkaSettings,
    ClickHouseSettings,
    CommonSettings,
    IngestSettings,
    PolicySettings,
    WorkerSettings,
    SinkSectionSettings,
    ReportSettings,
    AdminSettings,
):
    """Every setting of every role: the sections together (declare no field here)."""

    section_title = ""
    variable_prefix = ""

    @classmethod
    def variables(cls) -> tuple[Variable, ...]:
        """Every variable, section by section."""
        return tuple(var for section in SECTIONS for var in section.variables())

    @property
    def effective_clickhouse_url(self) -> str:
        return self.clickhouse_url or f"chdb://{self.data_dir / 'clickhouse'}"

    @property
    def analytics_layout(self) -> Layout:
        """Where the analytics tables live: the URL's database, else ``discovery``."""
        return Layout(
            database=analytics_database(self.effective_clickhouse_url),
            cluster=self.clickhouse_cluster or None,
            mail_events_ttl_days=self.mail_events_ttl_days,
        )

    @property
    def token_key_path(self) -> Path:
        return self.admin_token_key_file or self.data_dir / "admin-token.key"

    @property
    def effective_spool_dir(self) -> Path:
        return self.ingest_spool_dir or self.data_dir / "spool"

    def redacted(self) -> dict[str, str]:
        """What ``smtp-discovery config`` prints: every variable, secrets masked (the ClickHouse
        URL in effect shown without its password)."""
        out = super().redacted()
        out[_env_name(ClickHouseSettings, "clickhouse_url")] = redact_url(
            self.effective_clickhouse_url
        )
        return out


SECTIONS: tuple[type[SettingsSection], ...] = RuntimeConfig.__bases__
"""The sections RuntimeConfig is made of, in the order they are documented."""

VARIABLES: tuple[Variable, ...] = RuntimeConfig.variables()
"""Every variable any role reads (derived from the declarations above)."""

KAFKA_FIELDS: tuple[str, ...] = tuple(KafkaSettings.model_fields)
"""The settings that say which Kafka a role uses and how it logs in."""
