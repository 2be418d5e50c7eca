"""One ClickHouse client factory for every role: embedded chDB or a server, same client and SQL."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from smtp_discovery.platform.errors import ConfigError, InfrastructureError


@dataclass(frozen=True, slots=True)
class ClickHouseTarget:
    """A parsed CLICKHOUSE_URL. The password never appears in repr or logs."""

    kind: str  # "chdb", "http" or "https"
    path: Path | None = None
    host: str | None = None
    port: int | None = None
    username: str = "default"
    password: str = field(default="", repr=False)
    database: str = "default"
    settings: dict[str, str] = field(default_factory=dict)

    @property
    def embedded(self) -> bool:
        return self.kind == "chdb"


def parse_clickhouse_url(url: str) -> ClickHouseTarget:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme == "chdb":
        if parts.netloc:
            raise ConfigError(
                f"chDB URLs name a local directory: chdb:///absolute/path, not chdb://{parts.netloc}/…"
            )
        if not parts.path or parts.path == "/":
            raise ConfigError("a chDB URL needs a data directory: chdb:///absolute/path")
        return ClickHouseTarget(kind="chdb", path=Path(unquote(parts.path)))
    if scheme in ("http", "https"):
        if not parts.hostname:
            raise ConfigError(f"ClickHouse URL has no host: {redact_url(url)}")
        try:
            port = parts.port or (8443 if scheme == "https" else 8123)
        except ValueError:
            raise ConfigError(f"ClickHouse URL has an invalid port: {redact_url(url)}") from None
        database = parts.path.strip("/") or "default"
        if "/" in database:
            raise ConfigError(f"ClickHouse URL path must be one database name: {redact_url(url)}")
        return ClickHouseTarget(
            kind=scheme,
            host=parts.hostname,
            port=port,
            username=unquote(parts.username) if parts.username else "default",
            password=unquote(parts.password) if parts.password else "",
            database=database,
            settings=dict(parse_qsl(parts.query)),
        )
    raise ConfigError(
        f"unsupported ClickHouse URL scheme {parts.scheme!r}: use chdb:///path, http:// or https://"
    )


DEFAULT_DATABASE = "discovery"


def analytics_database(url: str) -> str:
    """The database of the analytics tables: the one a server URL names, else ``discovery``."""
    parts = urlsplit(url)
    named = parts.path.strip("/") if parts.scheme.lower() in ("http", "https") else ""
    return named or DEFAULT_DATABASE


def redact_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()


class SerializedClient:
    """A client whose calls take turns. The embedded engine runs in this process and its client is
    not reentrant, while the roles sharing it (sink, jobs, admin API) call it from worker
    threads at the same time."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self._lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._client, name)
        if not callable(attribute):
            return attribute

        def locked(*args: Any, **kwargs: Any) -> Any:
            with self._lock:
                return attribute(*args, **kwargs)

        return locked


def connect(url: str, **client_options: Any) -> Any:
    """A clickhouse-connect client for the URL.

    chDB runs in this process and allows one data path per process, so every role of the
    embedded mode must share one process (and one client per path is enough).
    """
    import clickhouse_connect

    target = parse_clickhouse_url(url)
    try:
        if target.embedded:
            assert target.path is not None
            target.path.mkdir(parents=True, exist_ok=True)
            return SerializedClient(
                clickhouse_connect.get_client(dsn=f"chdb://{target.path}", **client_options)
            )
        return clickhouse_connect.get_client(
            host=target.host,
            port=target.port,
            username=target.username,
            password=target.password,
            database=target.database,
            secure=target.kind == "https",
            settings=target.settings or None,
            # Roles share a client across threads: without a session, calls never lock each other.
            autogenerate_session_id=False,
            **client_options,
        )
    except ConfigError:
        raise
    except Exception as exc:
        raise InfrastructureError(
            f"cannot open ClickHouse at {redact_url(url)}: {type(exc).__name__}: {exc}"
        ) from None


@dataclass(frozen=True, slots=True)
class Layout:
    database: str
    cluster: str | None = None
    mail_events_ttl_days: int = 180

    def local(self, table: str) -> str:
        """The table that stores rows (``_local`` behind a Distributed table on a cluster)."""
        return f"{self.database}.{table}_local" if self.cluster else f"{self.database}.{table}"

    def unsharded(self, table: str) -> str:
        """A table kept whole on every replica (no Distributed table in front)."""
        return self.local(table)

    def name(self, table: str) -> str:
        """The table queries and inserts address."""
        return f"{self.database}.{table}"

    @property
    def on_cluster(self) -> str:
        return f" ON CLUSTER {quote_ident(self.cluster)}" if self.cluster else ""


def quote_ident(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"
