"""The migrations: DDL for a cluster checked as text, the single-node schema run for real."""

from __future__ import annotations

from typing import Any

from sinks.migrate import migrate
from sinks.schema import MIGRATIONS, Layout


def _ddl(layout: Layout) -> list[str]:
    return [sql for migration in MIGRATIONS for sql in migration.render(layout)]


def test_cluster_mode_creates_replicated_local_tables_behind_distributed_ones() -> None:
    statements = _ddl(Layout("discovery", cluster="gw"))
    creates = [s for s in statements if s.startswith("CREATE TABLE")]
    assert all(" ON CLUSTER `gw` " in s for s in statements)
    local = [s for s in creates if "_local ON CLUSTER" in s.split("(")[0]]
    distributed = [s for s in creates if "ENGINE = Distributed(" in s]
    assert len(local) == len(distributed) > 0
    for s in local:
        assert "ENGINE = Replicated" in s
        assert "'/clickhouse/tables/{shard}/discovery/" in s and "'{replica}'" in s
        assert "non_replicated_deduplication_window" not in s
    state = next(s for s in local if "address_state_local" in s)
    assert "ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/discovery/" \
        "address_state_local', '{replica}', kafka_offset, is_deleted)" in state  # fmt: skip
    assert any(
        "discovery.state_changes ON CLUSTER `gw` AS discovery.state_changes_local ENGINE = "
        "Distributed(`gw`, discovery, state_changes_local, cityHash64(tenant_id))" in s
        for s in distributed
    )
    views = [s for s in statements if s.startswith("CREATE MATERIALIZED VIEW")]
    assert views and all(
        "TO discovery.tenant_daily_local" in s and "FROM discovery." in s and "_local" in s
        for s in views
    )


def test_single_node_mode_has_plain_tables_with_a_dedup_window() -> None:
    statements = _ddl(Layout("discovery"))
    assert not any("ON CLUSTER" in s or "Replicated" in s or "Distributed" in s for s in statements)
    changes = next(s for s in statements if "discovery.state_changes (" in s)
    assert "PARTITION BY toYYYYMM(event_time)" in changes
    assert "ORDER BY (tenant_id, event_time, address)" in changes
    assert "SETTINGS non_replicated_deduplication_window" in changes
    mail = next(s for s in statements if "discovery.mail_events (" in s)
    assert "TTL toDateTime(event_time) + INTERVAL 180 DAY" in mail


def test_migrate_runs_for_real_and_is_idempotent(clickhouse: Any, unique: str) -> None:
    layout = Layout(f"m_{unique}", mail_events_ttl_days=30)
    assert migrate(clickhouse, layout) == [m.version for m in MIGRATIONS]
    assert migrate(clickhouse, layout) == []
    tables = {
        row[0]
        for row in clickhouse.query(
            "SELECT name FROM system.tables WHERE database = {db:String}",
            parameters={"db": layout.database},
        ).result_rows
    }
    assert {
        "address_state",
        "state_changes",
        "mail_events",
        "tenant_daily",
        "tenant_daily_from_mail",
        "tenant_daily_from_changes",
        "tenants",
        "report_log",
        "sink_progress",
        "schema_migrations",
    } <= tables
    ttl = clickhouse.query(
        "SELECT create_table_query FROM system.tables WHERE database = {db:String} "
        "AND name = 'mail_events'",
        parameters={"db": layout.database},
    ).result_rows[0][0]
    assert "toIntervalDay(30)" in ttl
