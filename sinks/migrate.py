"""``smtp-discovery migrate``: bring the analytics schema to the newest version, idempotently."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from smtp_discovery.sinks.schema import MIGRATIONS, MIGRATIONS_TABLE, Layout, ttl_statement


def migrate(client: Any, layout: Layout) -> list[int]:
    """Apply the migrations not applied yet, in order; the versions applied now."""
    client.command(f"CREATE DATABASE IF NOT EXISTS {layout.database}{layout.on_cluster}")
    for sql in MIGRATIONS_TABLE.render(layout):
        client.command(sql)
    table = layout.unsharded(MIGRATIONS_TABLE.name)
    applied = {row[0] for row in client.query(f"SELECT version FROM {table}").result_rows}
    done = []
    for migration in MIGRATIONS:
        if migration.version in applied:
            continue
        for sql in migration.render(layout):
            client.command(sql)
        client.insert(
            table,
            [[migration.version, migration.name, datetime.now(UTC)]],
            column_names=["version", "name", "applied_at"],
        )
        done.append(migration.version)
    client.command(ttl_statement(layout))
    return done
