"""The migrations: DDL for a cluster checked as text, the single-node schema run for real."""

from __future__ import annotations

import re
from typing import Any

from smtp_discovery.schemas.topics import ADDRESS_STATE
from smtp_discovery.sinks.columns import SOURCES
from smtp_discovery.sinks.migrate import migrate
from smtp_discovery.sinks.schema import ADDRESS_STATE_V2, MIGRATIONS, Layout


def _ddl(layout: Layout) -> list[str]:
    return [sql for migration in MIGRATIONS for sql in migration.render(layout)]


def test_cluster_mode_creates_replicated_local_tables_behind_distributed_ones() -> None:
    statements = _ddl(Layout("discovery", cluster="gw"))
    creates = [s for s in statements if s.startswith("CREATE TABLE")]
    # Every DDL statement runs on the whole cluster; the one data statement (migration 2's
    # backfill) reaches every shard through the Distributed tables instead.
    ddl = [s for s in statements if not s.startswith("INSERT")]
    assert all(" ON CLUSTER `gw` " in s for s in ddl)
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
    assert len(views) == 3 and all(
        re.search(r" TO discovery\.(tenant_daily|address_activity)_local AS\n", s)
        and re.search(r"FROM discovery\.\w+_local\n", s)
        for s in views
    )
    activity = next(s for s in local if "address_activity_local" in s)
    assert "ENGINE = ReplicatedAggregatingMergeTree('/clickhouse/tables/{shard}/discovery/" \
        "address_activity_local', '{replica}')\nPARTITION BY backfilled\n" \
        "ORDER BY (tenant_id, address_key)" in activity  # fmt: skip
    assert any("Distributed(`gw`, discovery, address_activity_local, cityHash64(tenant_id))" in s
               for s in distributed)  # fmt: skip


def test_cluster_backfill_goes_through_distributed_tables_and_columns_drop_everywhere() -> None:
    (upgrade,) = [m for m in MIGRATIONS if m.version == 2]
    statements = upgrade.render(Layout("discovery", cluster="gw"))
    assert "ALTER TABLE discovery.address_activity_local ON CLUSTER `gw` DROP PARTITION 1" in (
        statements
    )
    (backfill,) = [s for s in statements if s.startswith("INSERT")]
    assert backfill.startswith("INSERT INTO discovery.address_activity (")
    assert "FROM discovery.mail_events\n" in backfill
    assert "FROM discovery.address_activity\nWHERE backfilled = 0" in backfill
    assert "_local" not in backfill
    assert "insert_distributed_sync = 1" in backfill and "insert_deduplicate = 0" in backfill
    drops = [s for s in statements if "DROP COLUMN" in s]
    assert drops == [
        f"ALTER TABLE discovery.{table} ON CLUSTER `gw` DROP COLUMN IF EXISTS first_seen, "
        "DROP COLUMN IF EXISTS last_seen"
        for table in ("address_state", "address_state_local")
    ]


def test_the_first_migration_is_what_deployments_applied() -> None:
    """An applied migration never changes: address_state keeps first/last seen in migration 1
    (migration 2 drops them), and the sink inserts the columns the migrations leave."""
    (first,) = [m for m in MIGRATIONS if m.version == 1]
    state = next(s for s in first.render(Layout("discovery")) if "address_state (" in s)
    assert "first_seen Nullable(DateTime64(3, 'UTC'))" in state
    assert "last_seen Nullable(DateTime64(3, 'UTC'))" in state
    assert SOURCES[ADDRESS_STATE].columns == tuple(
        c.split(" ", 1)[0] for c in ADDRESS_STATE_V2.columns
    )
    assert not {"first_seen", "last_seen"} & set(SOURCES[ADDRESS_STATE].columns)


def test_single_node_mode_has_plain_tables_with_a_dedup_window() -> None:
    statements = _ddl(Layout("discovery"))
    assert not any("ON CLUSTER" in s or "Replicated" in s or "Distributed" in s for s in statements)
    changes = next(s for s in statements if "discovery.state_changes (" in s)
    assert "PARTITION BY toYYYYMM(event_time)" in changes
    assert "ORDER BY (tenant_id, event_time, address)" in changes
    assert "SETTINGS non_replicated_deduplication_window" in changes
    mail = next(s for s in statements if "discovery.mail_events (" in s)
    assert "TTL toDateTime(event_time) + INTERVAL 180 DAY" in mail
    activity = next(s for s in statements if "discovery.address_activity (" in s)
    assert "ENGINE = AggregatingMergeTree()" in activity
    assert "SETTINGS non_replicated_deduplication_window" in activity
    view = next(s for s in statements if "address_activity_from_mail" in s)
    assert "TO discovery.address_activity AS" in view and "FROM discovery.mail_events\n" in view
    assert "catch_all_checked" not in view and "'outbound_sent'" in view
    drops = [s for s in statements if "DROP COLUMN" in s]
    assert drops == ["ALTER TABLE discovery.address_state DROP COLUMN IF EXISTS first_seen, "
                     "DROP COLUMN IF EXISTS last_seen"]  # fmt: skip


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
        "address_activity",
        "address_activity_from_mail",
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


def test_every_table_the_sink_writes_has_exactly_the_sink_columns(
    clickhouse: Any, unique: str
) -> None:
    """After every migration, the sink's rows fit their tables (a dropped or added column is in
    the sink's column list too)."""
    layout = Layout(f"c_{unique}")
    migrate(clickhouse, layout)
    for source in SOURCES.values():
        columns = clickhouse.query(
            "SELECT name FROM system.columns WHERE database = {db:String} AND table = {t:String} "
            "ORDER BY position",
            parameters={"db": layout.database, "t": source.table},
        ).result_rows
        assert tuple(row[0] for row in columns) == source.columns, source.table
