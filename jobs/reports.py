"""The three weekly reports: what each contains, read from ClickHouse.

Exactness: the address-state table is a ReplacingMergeTree, so the warning report reads it with
FINAL (one row per address, the newest version, deleted ones gone). The history tables are
append-only and need no FINAL.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from smtp_discovery.schemas.calendar import Schedule, Week
from smtp_discovery.schemas.tenant import PROVIDER_DEFAULTS_KEY, DiscoverySettings
from smtp_discovery.sinks.schema import Layout


class Kind(StrEnum):
    NEW_USERS = "new-users"
    NEW_ALIASES = "new-aliases"
    WARNING = "warning"


HOW = {
    "admin:create_user": "created by an administrator",
    "admin:create_functional": "created by an administrator (functional account)",
    "admin:add_alias": "added by an administrator",
    "outbound": "sent mail from your mail server",
    "expired": "discovered and not managed before it expired",
    "alias_detected": "detected automatically",
    "import": "imported",
}


@dataclass(frozen=True, slots=True)
class Tenant:
    tenant_id: str
    name: str
    tech_contact: str
    admin_contact: str
    settings: DiscoverySettings

    @property
    def recipients(self) -> list[str]:
        out = [self.tech_contact] if self.tech_contact else []
        if self.settings.report_include_admin_contact and self.admin_contact:
            out.append(self.admin_contact)
        return list(dict.fromkeys(out))

    def wants(self, kind: Kind) -> bool:
        if kind is Kind.NEW_USERS:
            return self.settings.report_new_users
        if kind is Kind.NEW_ALIASES:
            return self.settings.report_new_aliases
        return True  # the warning is the weekly notice before expiry: always on, sent if not empty


@dataclass(frozen=True, slots=True)
class Report:
    kind: Kind
    tenant: Tenant
    week: Week
    columns: tuple[str, ...]
    rows: list[tuple[Any, ...]]
    notes: list[str] = field(default_factory=list)
    """Extra lines (catch-all warnings) shown above the table."""

    @property
    def title(self) -> str:
        label = {
            Kind.NEW_USERS: "New users",
            Kind.NEW_ALIASES: "New aliases",
            Kind.WARNING: "Discovery warning",
        }[self.kind]
        return f"{label} for {self.tenant.name}, week {self.week}"

    @property
    def empty(self) -> bool:
        return not self.rows and not self.notes


def tenants(client: Any, layout: Layout) -> dict[str, Tenant]:
    """Every tenant of the tenants snapshot, with its effective settings."""
    rows = client.query(
        f"SELECT tenant_id, name, tech_contact, admin_contact, settings "
        f"FROM {layout.name('tenants')} FINAL WHERE is_deleted = 0"
    ).result_rows
    defaults = DiscoverySettings()
    for tenant_id, _name, _tech, _admin, settings in rows:
        if tenant_id == PROVIDER_DEFAULTS_KEY:
            defaults = DiscoverySettings.model_validate(json.loads(settings))
    out = {}
    for tenant_id, name, tech, admin, settings in rows:
        if tenant_id == PROVIDER_DEFAULTS_KEY:
            continue
        effective = DiscoverySettings.model_validate(
            {**defaults.model_dump(), **json.loads(settings)}
        )
        out[tenant_id] = Tenant(tenant_id, name, tech, admin, effective)
    return out


def build(
    client: Any, layout: Layout, tenant: Tenant, kind: Kind, week: Week, schedule: Schedule
) -> Report:
    start, end = week.bounds(schedule.zone)
    if kind is Kind.NEW_USERS:
        return Report(kind, tenant, week, ("address", "role", "how", "when"),
                      _new_users(client, layout, tenant, start, end))  # fmt: skip
    if kind is Kind.NEW_ALIASES:
        return Report(kind, tenant, week, ("alias", "user", "how", "when"),
                      _new_aliases(client, layout, tenant, start, end))  # fmt: skip
    sent_at = schedule.slot(Week.of(end.date()))
    return _warning(client, layout, tenant, week, schedule, sent_at)


def _changes(client: Any, layout: Layout, tenant: Tenant, status: str, start: datetime,
             end: datetime) -> list[tuple[Any, ...]]:  # fmt: skip
    return client.query(
        f"SELECT address, role, primary, reason, event_time FROM {layout.name('state_changes')} "
        "WHERE tenant_id = {t:String} AND to_status = {s:String} AND from_status != {s:String} "
        "AND event_time >= {a:DateTime64(3, 'UTC')} AND event_time < {b:DateTime64(3, 'UTC')} "
        "ORDER BY event_time, address",
        parameters={"t": tenant.tenant_id, "s": status, "a": _utc(start), "b": _utc(end)},
    ).result_rows


def _new_users(client: Any, layout: Layout, tenant: Tenant, start: datetime,
               end: datetime) -> list[tuple[Any, ...]]:  # fmt: skip
    return [
        (address, role or "end_user", HOW.get(reason, reason), _when(at))
        for address, role, _primary, reason, at in _changes(client, layout, tenant, "user",
                                                            start, end)
    ]  # fmt: skip


def _new_aliases(client: Any, layout: Layout, tenant: Tenant, start: datetime,
                 end: datetime) -> list[tuple[Any, ...]]:  # fmt: skip
    return [
        (address, primary, HOW.get(reason, reason), _when(at))
        for address, _role, primary, reason, at in _changes(client, layout, tenant, "alias",
                                                            start, end)
    ]  # fmt: skip


def _warning(client: Any, layout: Layout, tenant: Tenant, week: Week, schedule: Schedule,
             sent_at: datetime) -> Report:  # fmt: skip
    discovered = client.query(
        f"SELECT address, discovered_at FROM {layout.name('address_state')} FINAL "
        "WHERE tenant_id = {t:String} AND status = 'discovered' AND is_deleted = 0 "
        "ORDER BY discovered_at, address",
        parameters={"t": tenant.tenant_id},
    ).result_rows
    weeks = tenant.settings.notices_before_expiry
    rows = []
    for address, discovered_at in discovered:
        at = _aware(discovered_at)
        expires, left = schedule.expiry(at, weeks, sent_at)
        rows.append((address, _when(at), left, expires.date().isoformat()))
    catch_all = client.query(
        f"SELECT destination, max(event_time) FROM {layout.name('mail_events')} "
        "WHERE tenant_id = {t:String} AND type = 'catch_all_checked' "
        "GROUP BY destination HAVING argMax(catch_all, event_time) = 1 ORDER BY destination",
        parameters={"t": tenant.tenant_id},
    ).result_rows
    notes = [
        f"Your mail server {destination} accepts mail for any address (last checked "
        f"{_when(_aware(at))}): callouts to it cannot tell which addresses exist."
        for destination, at in catch_all
    ]
    return Report(Kind.WARNING, tenant, week,
                  ("address", "discovered", "notices left", "expires on"), rows, notes)  # fmt: skip


def _utc(at: datetime) -> datetime:
    return at.astimezone(UTC).replace(tzinfo=None)


def _aware(at: datetime) -> datetime:
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def _when(at: datetime) -> str:
    return _aware(at).astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
