"""Upgrading a version-1 analytics database for real: migration 2 counts the stored mail events
into ``address_activity`` once, however often it runs, and drops ``address_state``'s first and
last seen; the view keeps the rollup current afterwards."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from smtp_discovery.schemas.mail import (
    CalloutRejected,
    CalloutTempfailed,
    CalloutVerified,
    CatchAllChecked,
    OutboundSent,
    RecipientDelivered,
)
from smtp_discovery.schemas.state import AddressRecord, AddressStateSnapshot, AddressStatus
from smtp_discovery.schemas.topics import ADDRESS_STATE, MAIL
from smtp_discovery.sinks.migrate import migrate
from smtp_discovery.sinks.schema import ADDRESS_STATE as ADDRESS_STATE_V1
from smtp_discovery.sinks.schema import MIGRATIONS, MIGRATIONS_TABLE, Layout
from tests.jobs.history import History

# Recent: mail events older than their TTL (180 days) are dropped as they are inserted.
NOW = datetime.now(UTC).replace(microsecond=0)
T0 = NOW - timedelta(days=10)
H = timedelta(hours=1)
IP = "192.0.2.1"


def at_version_1(client: Any, layout: Layout) -> None:
    """A database as an installation of migration 1 left it, recorded the way migrate does."""
    client.command(f"CREATE DATABASE IF NOT EXISTS {layout.database}")
    for sql in MIGRATIONS_TABLE.render(layout):
        client.command(sql)
    (first,) = [m for m in MIGRATIONS if m.version == 1]
    for sql in first.render(layout):
        client.command(sql)
    client.insert(
        layout.unsharded(MIGRATIONS_TABLE.name),
        [[1, first.name, datetime.now(UTC)]],
        column_names=["version", "name", "applied_at"],
    )


def v1_address_state(client: Any, layout: Layout) -> None:
    """Snapshots as the version-1 sink stored them, first and last seen included."""
    columns = [c.split(" ", 1)[0] for c in ADDRESS_STATE_V1.columns]
    rows = [
        ["t0", "t0:ann@t0.example", "Ann@t0.example", "discovered", "", "", "", "", T0,
         "threshold", T0, "threshold", T0, T0 + 3 * H, [], 4, 0, 0, 1, T0],
        ["t0", "t0:bob@t0.example", "bob@t0.example", "invalid", "", "", "", "", T0 + 5 * H,
         "destination_rejected", None, "", T0 + 5 * H, T0 + 6 * H, [], 2, 0, 0, 2, T0],
    ]  # fmt: skip
    client.insert(layout.name("address_state"), rows, column_names=columns)


def events() -> list[Any]:
    common = {"tenant_id": "t0", "node_id": "n1"}
    return [
        CalloutVerified(**common, address="Ann@t0.example", event_time=T0, destination="mx:25",
                        reply_code=250),
        RecipientDelivered(**common, address="Ann@t0.example", event_time=T0 + H,
                           verdict="clean", message_id="m1", client_ip=IP),
        RecipientDelivered(**common, address="ann@t0.example", event_time=T0 + 2 * H,
                           verdict="not_clean", message_id="m2", client_ip=IP),
        OutboundSent(**common, address="ANN@t0.example", event_time=T0 + 3 * H,
                     message_id="m3", client_ip=IP),
        # About the tenant's server, not Ann's mailbox: neither her first seen nor a count.
        CatchAllChecked(**common, address="ann@t0.example", event_time=T0 - 24 * H,
                        destination="mx:25", catch_all=False),
        CatchAllChecked(**common, address="zq7x0@t0.example", event_time=T0, destination="mx:25",
                        catch_all=True),
        CalloutRejected(**common, address="bob@t0.example", event_time=T0 + 5 * H,
                        destination="mx:25", reply_code=550),
        CalloutTempfailed(**common, address="bob@t0.example", event_time=T0 + 6 * H,
                          reason="timeout"),
        # The same address under another tenant is another address.
        RecipientDelivered(tenant_id="t1", address="ann@t0.example", event_time=T0 + 4 * H,
                           verdict="clean", message_id="m4", client_ip=IP),
    ]  # fmt: skip


def activity(client: Any, layout: Layout) -> dict[tuple[str, str], tuple[Any, ...]]:
    """(tenant, address key) -> first, last, messages, clean, outbound, verified, rejected,
    tempfailed: the rollup as a reader aggregates it."""
    rows = client.query(
        "SELECT tenant_id, address_key, min(first_seen), max(last_seen), sum(messages), "
        "sum(clean_messages), sum(outbound_messages), sum(verifications), sum(rejections), "
        f"sum(tempfails) FROM {layout.name('address_activity')} "
        "GROUP BY tenant_id, address_key"
    ).result_rows
    return {
        (t, k): (first.replace(tzinfo=UTC), last.replace(tzinfo=UTC), *map(int, counts))
        for t, k, first, last, *counts in rows
    }


BEFORE = {
    ("t0", "ann@t0.example"): (T0, T0 + 3 * H, 2, 1, 1, 1, 0, 0),
    ("t0", "bob@t0.example"): (T0 + 5 * H, T0 + 6 * H, 0, 0, 0, 0, 1, 1),
    ("t1", "ann@t0.example"): (T0 + 4 * H, T0 + 4 * H, 1, 1, 0, 0, 0, 0),
}


def columns(client: Any, layout: Layout, table: str) -> list[str]:
    return [
        row[0]
        for row in client.query(
            "SELECT name FROM system.columns WHERE database = {db:String} AND table = {t:String} "
            "ORDER BY position",
            parameters={"db": layout.database, "t": table},
        ).result_rows
    ]


def forget_version_2(client: Any, layout: Layout) -> None:
    """As if migrate died after migration 2's statements, before recording it."""
    client.command(
        f"ALTER TABLE {layout.unsharded(MIGRATIONS_TABLE.name)} DELETE WHERE version = 2 "
        "SETTINGS mutations_sync = 1"
    )


def test_an_upgrade_backfills_the_activity_once_and_drops_the_snapshot_columns(
    clickhouse: Any, unique: str
) -> None:
    layout = Layout(f"up_{unique}")
    at_version_1(clickhouse, layout)
    history = History(clickhouse, layout)
    history.add(MAIL, *events())
    v1_address_state(clickhouse, layout)
    assert {"first_seen", "last_seen"} <= set(columns(clickhouse, layout, "address_state"))

    assert migrate(clickhouse, layout) == [2]
    assert activity(clickhouse, layout) == BEFORE
    remaining = columns(clickhouse, layout, "address_state")
    assert "first_seen" not in remaining and "last_seen" not in remaining
    kept = clickhouse.query(
        f"SELECT address, status, record_version FROM {layout.name('address_state')} FINAL "
        "ORDER BY address"
    ).result_rows
    assert kept == [("Ann@t0.example", "discovered", 4), ("bob@t0.example", "invalid", 2)]

    assert migrate(clickhouse, layout) == []
    assert activity(clickhouse, layout) == BEFORE

    # New events reach the rollup through the view.
    history.add(
        MAIL,
        RecipientDelivered(tenant_id="t0", address="Ann@t0.example", event_time=NOW,
                           verdict="clean", message_id="m5", client_ip=IP),
        OutboundSent(tenant_id="t0", address="carol@t0.example", event_time=NOW - H,
                     message_id="m6", client_ip=IP),
    )  # fmt: skip
    after = {
        **BEFORE,
        ("t0", "ann@t0.example"): (T0, NOW, 3, 2, 1, 1, 0, 0),
        ("t0", "carol@t0.example"): (NOW - H, NOW - H, 0, 0, 1, 0, 0, 0),
    }
    assert activity(clickhouse, layout) == after

    # The sink's rows fit the migrated table.
    record = AddressRecord(
        tenant_id="t0",
        address="Ann@t0.example",
        status=AddressStatus.USER,
        status_since=NOW,
        status_reason="admin:create_user",
        version=5,
    )
    history.add(ADDRESS_STATE, AddressStateSnapshot(tenant_id="t0", address="Ann@t0.example",
                                                    event_time=NOW, record=record))  # fmt: skip
    status = clickhouse.query(
        f"SELECT status FROM {layout.name('address_state')} FINAL "
        "WHERE record_key = 't0:ann@t0.example'"
    ).result_rows
    assert status == [("user",)]


def test_an_interrupted_upgrade_run_again_counts_every_event_once(
    clickhouse: Any, unique: str
) -> None:
    """Migrate died after the backfill (or halfway through it) and before recording version 2,
    while a sink kept inserting events through the view: running it again still counts each
    stored event once."""
    layout = Layout(f"re_{unique}")
    at_version_1(clickhouse, layout)
    history = History(clickhouse, layout)
    history.add(MAIL, *events())
    assert migrate(clickhouse, layout) == [2]
    forget_version_2(clickhouse, layout)
    history.add(
        MAIL,
        RecipientDelivered(tenant_id="t0", address="Ann@t0.example", event_time=NOW,
                           verdict="clean", message_id="m5", client_ip=IP),
    )  # fmt: skip
    # Half a backfill written when it died: one block of the backfill's partition.
    clickhouse.insert(
        layout.name("address_activity"),
        [["t0", "ann@t0.example", T0, T0, 1, 1, 0, 0, 0, 0, 1]],
        column_names=["tenant_id", "address_key", "first_seen", "last_seen", "messages",
                      "clean_messages", "outbound_messages", "verifications", "rejections",
                      "tempfails", "backfilled"],
    )  # fmt: skip
    expected = {**BEFORE, ("t0", "ann@t0.example"): (T0, NOW, 3, 2, 1, 1, 0, 0)}
    for _ in range(2):
        assert migrate(clickhouse, layout) == [2]
        assert activity(clickhouse, layout) == expected
        forget_version_2(clickhouse, layout)
    assert migrate(clickhouse, layout) == [2]
    assert migrate(clickhouse, layout) == []
    assert activity(clickhouse, layout) == expected
