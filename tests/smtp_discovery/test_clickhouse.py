from __future__ import annotations

from pathlib import Path

import pytest

from smtp_discovery.platform.clickhouse import ClickHouseTarget, parse_clickhouse_url, redact_url
from smtp_discovery.platform.errors import ConfigError


def test_chdb_url() -> None:
    target = parse_clickhouse_url("chdb:///var/lib/smtp-discovery/clickhouse")
    assert target == ClickHouseTarget(kind="chdb", path=Path("/var/lib/smtp-discovery/clickhouse"))
    assert target.embedded


def test_http_url_with_credentials_database_and_settings() -> None:
    target = parse_clickhouse_url(
        "https://disc%40ov:p%3Ass@ch.example:9443/discovery?async_insert=1"
    )
    assert target.kind == "https"
    assert (target.host, target.port, target.database) == ("ch.example", 9443, "discovery")
    assert (target.username, target.password) == ("disc@ov", "p:ss")
    assert target.settings == {"async_insert": "1"}
    assert "p:ss" not in repr(target)


def test_http_defaults() -> None:
    target = parse_clickhouse_url("http://ch.example")
    assert (target.port, target.username, target.password, target.database) == (
        8123,
        "default",
        "",
        "default",
    )
    assert parse_clickhouse_url("https://ch.example").port == 8443


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("chdb://relative/path", "chdb:///absolute/path"),
        ("chdb://", "needs a data directory"),
        ("mysql://ch.example", "unsupported ClickHouse URL scheme"),
        ("http:///nohost", "has no host"),
        ("http://ch.example:99999", "invalid port"),
        ("http://ch.example/a/b", "one database name"),
    ],
)
def test_bad_urls_say_what_is_wrong(url: str, fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        parse_clickhouse_url(url)


def test_errors_never_show_the_password() -> None:
    with pytest.raises(ConfigError) as err:
        parse_clickhouse_url("http://user:s3cret@ch.example/a/b")
    assert "s3cret" not in str(err.value)
    assert (
        redact_url("http://user:s3cret@ch.example:8123/db") == "http://user:***@ch.example:8123/db"
    )


def test_embedded_chdb_answers_queries(clickhouse, unique: str) -> None:  # type: ignore[no-untyped-def]
    assert clickhouse.query("SELECT 1 + 1").result_rows == [(2,)]
    table = f"smoke_{unique}"
    clickhouse.command(
        f"CREATE TABLE {table} (tenant String, n UInt32) ENGINE = MergeTree ORDER BY tenant"
    )
    clickhouse.insert(table, [["acme", 1], ["acme", 2], ["other", 5]], column_names=["tenant", "n"])
    rows = clickhouse.query(
        f"SELECT tenant, sum(n) FROM {table} GROUP BY tenant ORDER BY tenant"
    ).result_rows
    assert rows == [("acme", 3), ("other", 5)]


def test_chdb_data_persists_on_disk(clickhouse, chdb_path: Path, unique: str) -> None:  # type: ignore[no-untyped-def]
    table = f"persist_{unique}"
    clickhouse.command(f"CREATE TABLE {table} (n UInt8) ENGINE = MergeTree ORDER BY n")
    clickhouse.insert(table, [[7]], column_names=["n"])
    assert any(chdb_path.rglob("*")), "chDB wrote nothing under its data path"
    assert clickhouse.query(f"SELECT n FROM {table}").result_rows == [(7,)]
