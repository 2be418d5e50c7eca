"""Every ClickHouse query of the admin API and the reports, next to the tables they read
(``sinks/schema.py``): one function per question, so that routes and report builders keep only
HTTP handling and shaping.

Each function takes the clickhouse-connect client and the ``Layout`` and runs parameterised SQL:
values travel as ClickHouse server-side parameters (``{name:Type}``) and are never formatted into
the text; only table names from the layout, and names from the fixed lists here, are. Answers
are plain Python values, every timestamp an aware UTC ``datetime`` (ClickHouse hands
``DateTime64`` values back without their zone).

Exactness: ``address_state``, ``tenants`` and ``report_log`` are ReplacingMergeTree tables, read
with FINAL (one row per record, its newest version; deleted ones left out with
``is_deleted = 0``). The history tables (``state_changes``, ``mail_events``) are append-only and
need no FINAL; the rollups (``address_activity``, ``tenant_daily``) are aggregated when read,
since rows of one key may not be merged yet.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, Generic, Literal, TypeVar, get_args

from smtp_discovery.platform.clickhouse import Layout
from smtp_discovery.schemas.address import display_form

Row = TypeVar("Row")


@dataclass(frozen=True, slots=True)
class Page(Generic[Row]):
    """One page of a list, and how many rows the whole list has (0 past its last page)."""

    total: int
    rows: list[Row]


# ---- the tenants snapshot (reports) -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TenantRow:
    tenant_id: str
    name: str
    tech_contact: str
    admin_contact: str
    settings: dict[str, Any]
    """The stored settings: on the provider defaults' row (``PROVIDER_DEFAULTS_KEY``) every
    setting, on a tenant's only its overrides."""


def tenant_rows(client: Any, layout: Layout) -> list[TenantRow]:
    """Every record of the tenants snapshot that is not deleted: the tenants and the provider
    defaults' row, in no particular order."""
    rows = select(
        client,
        f"SELECT tenant_id, name, tech_contact, admin_contact, settings "
        f"FROM {layout.name('tenants')} FINAL WHERE is_deleted = 0",
    )
    return [
        TenantRow(tenant_id, name, tech, admin, json.loads(settings))
        for tenant_id, name, tech, admin, settings in rows
    ]


# ---- the state history (reports, erasure) -----------------------------------------------------


@dataclass(frozen=True, slots=True)
class Change:
    address: str
    role: str
    primary: str
    reason: str
    event_time: datetime


def changes_into(
    client: Any, layout: Layout, tenant_id: str, status: str, start: datetime, end: datetime
) -> list[Change]:
    """The tenant's addresses that moved into ``status`` from another status in
    ``[start, end)``, by event time, then address (the new users and new aliases reports)."""
    rows = select(
        client,
        f"SELECT address, role, primary, reason, event_time FROM {layout.name('state_changes')} "
        "WHERE tenant_id = {t:String} AND to_status = {s:String} AND from_status != {s:String} "
        "AND event_time >= {a:DateTime64(3, 'UTC')} AND event_time < {b:DateTime64(3, 'UTC')} "
        "ORDER BY event_time, address",
        {"t": tenant_id, "s": status, "a": _utc(start), "b": _utc(end)},
    )
    return [Change(*row) for row in rows]


def aliases_to_erase(client: Any, layout: Layout, tenant_id: str, forms: list[str]) -> list[str]:
    """The addresses to erase with one being erased (``forms``: its lowercase forms), by
    address: every address the state history made its alias, unless it is alive now as
    something other than its alias. So its aliases now, and those a run stopped half-way has
    already erased from the worker (``address_state`` may have merged such a version away
    behind a tombstone) but not yet from ClickHouse."""
    state = layout.name("address_state")
    rows = select(
        client,
        f"SELECT DISTINCT address FROM {layout.name('state_changes')} "
        "WHERE tenant_id = {t:String} AND to_status = 'alias' "
        "AND has({forms:Array(String)}, lower(`primary`)) AND lower(address) NOT IN ("
        f"SELECT lower(address) FROM {state} FINAL WHERE tenant_id = {{t:String}} "
        "AND is_deleted = 0 AND NOT (status = 'alias' "
        "AND has({forms:Array(String)}, lower(`primary`)))) ORDER BY address",
        {"t": tenant_id, "forms": forms},
    )
    return [row[0] for row in rows]


# ---- the address state (lists, reports, offboarding) ------------------------------------------

DiscoveredSort = Literal["address", "discovered_at", "last_seen", "messages"]
Order = Literal["asc", "desc"]


@dataclass(frozen=True, slots=True)
class DiscoveredAddress:
    address: str
    discovered_at: datetime | None
    discovered_reason: str
    first_seen: datetime | None
    """None: no mail event about the address is stored (first and last seen alike)."""
    last_seen: datetime | None
    messages: int
    clean_messages: int


def discovered_page(
    client: Any,
    layout: Layout,
    tenant_id: str,
    *,
    since: datetime,
    search: str,
    sort: DiscoveredSort,
    order: Order,
    limit: int,
    offset: int,
) -> Page[DiscoveredAddress]:
    """The tenant's Discovered list, a page at a time: its addresses discovered since ``since``
    whose address contains ``search`` (ignoring case; an A-label typed finds its U-label), with
    first and last seen and message counts from the per-address rollup of the mail events,
    sorted by ``sort`` in ``order``, then by address. The rollup is aggregated per address
    here, so the query reads one row per address the tenant has seen, not its events."""
    if sort not in get_args(DiscoveredSort) or order not in get_args(Order):
        raise ValueError(f"cannot sort the Discovered list by {sort!r} {order!r}")
    rows = select(
        client,
        f"SELECT s.address, s.discovered_at, s.discovered_reason, m.fs AS first_seen, "
        f"m.ls AS last_seen, m.n AS messages, m.clean AS clean_messages, count() OVER () AS total "
        f"FROM (SELECT * FROM {layout.name('address_state')} FINAL "
        "WHERE tenant_id = {t:String} AND status = 'discovered' AND is_deleted = 0 "
        "AND discovered_at >= {since:DateTime64(3, 'UTC')} "
        "AND positionCaseInsensitiveUTF8(address, {q:String}) > 0) AS s "
        "LEFT JOIN (SELECT address_key, toNullable(min(first_seen)) AS fs, "
        "toNullable(max(last_seen)) AS ls, sum(messages) AS n, sum(clean_messages) AS clean "
        f"FROM {layout.name('address_activity')} WHERE tenant_id = {{t:String}} "
        "GROUP BY address_key) AS m ON m.address_key = lower(s.address) "
        f"ORDER BY {sort} {order}, s.address LIMIT {{n:UInt32}} OFFSET {{o:UInt32}}",
        {"t": tenant_id, "since": _utc(since), "q": display_form(search), "n": limit,
         "o": offset},
    )  # fmt: skip
    return Page(
        int(rows[0][-1]) if rows else 0,
        [
            DiscoveredAddress(address, found, how, first, last, int(n or 0), int(clean or 0))
            for address, found, how, first, last, n, clean, _total in rows
        ],
    )


@dataclass(frozen=True, slots=True)
class InvalidAddress:
    address: str
    since: datetime
    reason: str


def invalid_page(
    client: Any, layout: Layout, tenant_id: str, *, search: str, limit: int, offset: int
) -> Page[InvalidAddress]:
    """The tenant's Marked Invalid list, a page at a time by address: its invalid addresses
    whose address contains ``search`` (ignoring case; an A-label finds its U-label)."""
    rows = select(
        client,
        f"SELECT address, status_since, status_reason, count() OVER () FROM "
        f"{layout.name('address_state')} FINAL WHERE tenant_id = {{t:String}} "
        "AND status = 'invalid' AND is_deleted = 0 "
        "AND positionCaseInsensitiveUTF8(address, {q:String}) > 0 "
        "ORDER BY address LIMIT {n:UInt32} OFFSET {o:UInt32}",
        {"t": tenant_id, "q": display_form(search), "n": limit, "o": offset},
    )
    return Page(
        int(rows[0][3]) if rows else 0,
        [InvalidAddress(address, since, reason) for address, since, reason, _ in rows],
    )


@dataclass(frozen=True, slots=True)
class UserEntry:
    address: str
    first_name: str
    surname: str
    status: str
    """``user`` or ``functional``."""
    role: str
    """Empty when the address has none (a functional account)."""


def users_matching(
    client: Any, layout: Layout, tenant_id: str, *, search: str, limit: int
) -> list[UserEntry]:
    """The first ``limit`` of the tenant's users and functional accounts, by address, whose
    address or name ("first surname") contains ``search`` (ignoring case): the typeahead."""
    rows = select(
        client,
        f"SELECT address, first_name, surname, status, role FROM "
        f"{layout.name('address_state')} FINAL WHERE tenant_id = {{t:String}} "
        "AND status IN ('user', 'functional') AND is_deleted = 0 AND ("
        "positionCaseInsensitiveUTF8(address, {q:String}) > 0 OR "
        "positionCaseInsensitiveUTF8(concat(first_name, ' ', surname), {q:String}) > 0) "
        "ORDER BY address LIMIT {n:UInt32}",
        {"t": tenant_id, "q": display_form(search), "n": limit},
    )
    return [UserEntry(*row) for row in rows]


AccountStatus = Literal["user", "functional", "alias"]
ACCOUNT_STATUSES: tuple[str, ...] = get_args(AccountStatus)
"""The statuses of the Users list: the addresses an admin (or an import) has decided about."""


@dataclass(frozen=True, slots=True)
class Account:
    address: str
    status: str
    """One of ``ACCOUNT_STATUSES``."""
    role: str
    """Empty when the address has none (a functional account, an alias)."""
    first_name: str
    """A functional account's display name is kept here."""
    surname: str
    primary: str
    """The user an alias belongs to; empty for the others."""
    aliases: list[str]
    """A user's aliases, as its record lists them."""
    since: datetime
    """When the address got its status."""
    reason: str
    """How it got it (``admin:create_user``, ``import``, ``alias_detected``, …)."""


def accounts_page(
    client: Any,
    layout: Layout,
    tenant_id: str,
    *,
    search: str,
    statuses: Sequence[str] = ACCOUNT_STATUSES,
    limit: int,
    offset: int,
) -> Page[Account]:
    """The tenant's Users list, a page at a time by address: its users, functional accounts
    and aliases (those of ``statuses``) whose address, name ("first surname") or primary
    contains ``search`` (ignoring case; an A-label typed finds its U-label)."""
    unknown = set(statuses) - set(ACCOUNT_STATUSES)
    if unknown or not statuses:
        raise ValueError(f"the Users list has no status {sorted(unknown)!r}")
    rows = select(
        client,
        f"SELECT address, status, role, first_name, surname, `primary`, aliases, status_since, "
        f"status_reason, count() OVER () FROM {layout.name('address_state')} FINAL "
        "WHERE tenant_id = {t:String} AND is_deleted = 0 AND has({s:Array(String)}, status) AND ("
        "positionCaseInsensitiveUTF8(address, {q:String}) > 0 OR "
        "positionCaseInsensitiveUTF8(concat(first_name, ' ', surname), {q:String}) > 0 OR "
        "positionCaseInsensitiveUTF8(`primary`, {q:String}) > 0) "
        "ORDER BY address LIMIT {n:UInt32} OFFSET {o:UInt32}",
        {"t": tenant_id, "s": list(statuses), "q": display_form(search), "n": limit,
         "o": offset},
    )  # fmt: skip
    return Page(
        int(rows[0][-1]) if rows else 0,
        [Account(*row[:6], list(row[6]), *row[7:9]) for row in rows],
    )


def discovered_addresses(client: Any, layout: Layout, tenant_id: str) -> list[tuple[str, datetime]]:
    """Every address the tenant has in the Discovered list now, with when it was discovered, by
    discovery time, then address (the warning report)."""
    return [
        (address, discovered_at)
        for address, discovered_at in select(
            client,
            f"SELECT address, discovered_at FROM {layout.name('address_state')} FINAL "
            "WHERE tenant_id = {t:String} AND status = 'discovered' AND is_deleted = 0 "
            "ORDER BY discovered_at, address",
            {"t": tenant_id},
        )
    ]


def tenant_addresses(client: Any, layout: Layout, tenant_id: str) -> list[str]:
    """Every address the tenant has a live record of, whatever its status, by address."""
    rows = select(
        client,
        f"SELECT address FROM {layout.name('address_state')} FINAL "
        "WHERE tenant_id = {t:String} AND is_deleted = 0 ORDER BY address",
        {"t": tenant_id},
    )
    return [row[0] for row in rows]


# ---- the mail events (reports) ----------------------------------------------------------------


def catch_all_destinations(
    client: Any, layout: Layout, tenant_id: str
) -> list[tuple[str, datetime]]:
    """The tenant's mail servers whose latest catch-all check found them accepting any
    address, with when they were last checked, by destination (the warning report)."""
    return [
        (destination, at)
        for destination, at in select(
            client,
            f"SELECT destination, max(event_time) FROM {layout.name('mail_events')} "
            "WHERE tenant_id = {t:String} AND type = 'catch_all_checked' "
            "GROUP BY destination HAVING argMax(catch_all, event_time) = 1 ORDER BY destination",
            {"t": tenant_id},
        )
    ]


# ---- the daily rollup (history) ---------------------------------------------------------------

DAILY_COUNTS = ("messages", "clean_messages", "outbound_messages", "verifications", "rejections",
                "tempfails", "new_pending", "new_discovered", "new_users", "new_aliases",
                "new_invalid")  # fmt: skip
"""The counts ``tenant_daily`` keeps per tenant and day."""


@dataclass(frozen=True, slots=True)
class DayCounts:
    day: date
    counts: dict[str, int]
    """Every one of ``DAILY_COUNTS``, in that order."""


def daily_counts(client: Any, layout: Layout, tenant_id: str, since: date) -> list[DayCounts]:
    """The tenant's counts per day from ``since`` on, by day (days without a row are left
    out)."""
    rows = select(
        client,
        f"SELECT day, {', '.join(f'sum({c})' for c in DAILY_COUNTS)} FROM "
        f"{layout.name('tenant_daily')} WHERE tenant_id = {{t:String}} "
        "AND day >= {since:Date} GROUP BY day ORDER BY day",
        {"t": tenant_id, "since": since},
    )
    return [
        DayCounts(row[0], dict(zip(DAILY_COUNTS, map(int, row[1:]), strict=True))) for row in rows
    ]


# ---- the report log (jobs) --------------------------------------------------------------------


def report_state(client: Any, layout: Layout, tenant_id: str, report: str, week: str) -> str | None:
    """Where sending the tenant's ``report`` of ``week`` got to (``sending``, ``sent``,
    ``empty``, ``no_recipient``), or None if it was never tried."""
    rows = select(
        client,
        f"SELECT state FROM {layout.name('report_log')} FINAL WHERE tenant_id = {{t:String}} "
        "AND report = {r:String} AND week = {w:String}",
        {"t": tenant_id, "r": report, "w": week},
    )
    return str(rows[0][0]) if rows else None


# ---- erasure and offboarding ------------------------------------------------------------------

ADDRESS_ROWS = {
    # table: the rows about the address (``{forms}``: its lowercase forms; ``{key}``: its key)
    "address_state": "record_key = {key:String}",
    "state_changes": "has({forms:Array(String)}, lower(address))",
    "mail_events": "has({forms:Array(String)}, lower(address))",
    "address_activity": "has({forms:Array(String)}, address_key)",
}
"""The one table of where an address's own rows are; every such table is in it."""

NAMING_ROWS = {
    # table: (the assignment that forgets the address, the rows that name it)
    "address_state": (
        "`primary` = if(has({forms:Array(String)}, lower(`primary`)), '', `primary`), "
        "aliases = arrayFilter(x -> NOT has({forms:Array(String)}, lower(x)), aliases)",
        "has({forms:Array(String)}, lower(`primary`)) "
        "OR hasAny(arrayMap(x -> lower(x), aliases), {forms:Array(String)})",
    ),
    "state_changes": ("`primary` = ''", "has({forms:Array(String)}, lower(`primary`))"),
}
"""Rows of other addresses that name this one."""


def delete_address_rows(
    client: Any, layout: Layout, table: str, tenant_id: str, key: str, forms: Sequence[str]
) -> int:
    """Delete the rows about one address of the tenant from ``table`` (one of
    ``ADDRESS_ROWS``; ``key``: its record key, ``forms``: its lowercase forms); how many there
    were. Done when it returns."""
    return _mutate(client, layout, table, "DELETE", ADDRESS_ROWS[table],
                   {"t": tenant_id, "key": key, "forms": list(forms)})  # fmt: skip


def unname_address(
    client: Any, layout: Layout, table: str, tenant_id: str, forms: Sequence[str]
) -> int:
    """Make the tenant's rows of ``table`` (one of ``NAMING_ROWS``) that name the address
    (``forms``: its lowercase forms) forget it; how many rows named it. Done when it returns."""
    assignment, where = NAMING_ROWS[table]
    return _mutate(client, layout, table, f"UPDATE {assignment}", where,
                   {"t": tenant_id, "forms": list(forms)})  # fmt: skip


def delete_tenant_rows(client: Any, layout: Layout, table: str, tenant_id: str) -> int:
    """Delete every row of the tenant from ``table``; how many there were. Done when it
    returns."""
    return _mutate(client, layout, table, "DELETE", "1", {"t": tenant_id})


def count_tenant_rows(client: Any, layout: Layout, table: str, tenant_id: str) -> int:
    """How many rows of ``table`` belong to the tenant."""
    rows = select(
        client,
        f"SELECT count() FROM {layout.name(table)} WHERE tenant_id = {{t:String}}",
        {"t": tenant_id},
    )
    return int(rows[0][0])


def tenant_tables(client: Any, layout: Layout) -> list[str]:
    """Every table of the analytics database with a ``tenant_id`` column, by the name queries
    use (on a cluster, the one in front of its ``_local`` table), sorted; views hold no data of
    their own. Found, not listed: a table a later migration adds is covered without a change."""
    rows = select(
        client,
        "SELECT c.table FROM system.columns AS c INNER JOIN system.tables AS t "
        "ON t.database = c.database AND t.name = c.table WHERE c.database = {d:String} "
        "AND c.name = 'tenant_id' AND t.engine NOT LIKE '%View%'",
        {"d": layout.database},
    )
    return sorted({row[0].removesuffix("_local") for row in rows})


def _mutate(
    client: Any, layout: Layout, table: str, action: str, where: str, parameters: dict[str, Any]
) -> int:
    """Count the tenant's rows of ``table`` that ``where`` picks, then change them with a
    mutation that is done when it returns (none if there are none)."""
    condition = f"tenant_id = {{t:String}} AND ({where})"
    ((count,),) = select(
        client, f"SELECT count() FROM {layout.name(table)} WHERE {condition}", parameters
    )
    if count:
        select(
            client,
            f"ALTER TABLE {layout.local(table)}{layout.on_cluster} {action} WHERE {condition} "
            "SETTINGS mutations_sync = 2",
            parameters,
        )
    return int(count)


# ---- helpers ----------------------------------------------------------------------------------


def select(
    client: Any, sql: str, parameters: dict[str, Any] | None = None
) -> list[tuple[Any, ...]]:
    """Rows of any read, with every timestamp in UTC (the tests' own checks use it too)."""
    return [tuple(map(_zoned, row)) for row in client.query(sql, parameters=parameters).result_rows]


def _zoned(value: Any) -> Any:
    """Every time the system keeps is UTC: give a ``DateTime64`` value its zone back."""
    if isinstance(value, datetime) and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


def _utc(at: datetime) -> datetime:
    """A time as a ``DateTime64(3, 'UTC')`` parameter takes it: UTC, without a zone."""
    return at.astimezone(UTC).replace(tzinfo=None) if at.tzinfo else at


# ---- the system in figures (smtp-discovery status) --------------------------------------------


def addresses_by_status(client: Any, layout: Layout) -> dict[str, int]:
    """How many live addresses each status has, over every tenant (a status none has is left
    out), in status order."""
    rows = select(
        client,
        f"SELECT status, count() FROM {layout.name('address_state')} FINAL "
        "WHERE is_deleted = 0 GROUP BY status ORDER BY status",
    )
    return {str(status): int(count) for status, count in rows}
