"""The three weekly reports: what each contains, read from ClickHouse with the queries of
``sinks.queries`` (which also says how they stay exact over the ReplacingMergeTree tables)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from smtp_discovery.schemas.calendar import Schedule, Week
from smtp_discovery.schemas.tenant import (
    PROVIDER_DEFAULTS_KEY,
    DiscoverySettings,
    effective_settings,
)
from smtp_discovery.sinks import queries
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
    rows = queries.tenant_rows(client, layout)
    defaults = DiscoverySettings()
    for row in rows:
        if row.tenant_id == PROVIDER_DEFAULTS_KEY:
            defaults = DiscoverySettings.model_validate(row.settings)
    return {
        row.tenant_id: Tenant(row.tenant_id, row.name, row.tech_contact, row.admin_contact,
                              effective_settings(defaults, row.settings))
        for row in rows
        if row.tenant_id != PROVIDER_DEFAULTS_KEY
    }  # fmt: skip


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


def _new_users(client: Any, layout: Layout, tenant: Tenant, start: datetime,
               end: datetime) -> list[tuple[Any, ...]]:  # fmt: skip
    return [
        (c.address, c.role or "end_user", HOW.get(c.reason, c.reason), _when(c.event_time))
        for c in queries.changes_into(client, layout, tenant.tenant_id, "user", start, end)
    ]


def _new_aliases(client: Any, layout: Layout, tenant: Tenant, start: datetime,
                 end: datetime) -> list[tuple[Any, ...]]:  # fmt: skip
    return [
        (c.address, c.primary, HOW.get(c.reason, c.reason), _when(c.event_time))
        for c in queries.changes_into(client, layout, tenant.tenant_id, "alias", start, end)
    ]


def _warning(client: Any, layout: Layout, tenant: Tenant, week: Week, schedule: Schedule,
             sent_at: datetime) -> Report:  # fmt: skip
    discovered = queries.discovered_addresses(client, layout, tenant.tenant_id)
    weeks = tenant.settings.notices_before_expiry
    rows = []
    for address, discovered_at in discovered:
        at = _aware(discovered_at)
        expires, left = schedule.expiry(at, weeks, sent_at)
        rows.append((address, _when(at), left, expires.date().isoformat()))
    catch_all = queries.catch_all_destinations(client, layout, tenant.tenant_id)
    notes = [
        f"Your mail server {destination} accepts mail for any address (last checked "
        f"{_when(_aware(at))}): callouts to it cannot tell which addresses exist."
        for destination, at in catch_all
    ]
    return Report(Kind.WARNING, tenant, week,
                  ("address", "discovered", "notices left", "expires on"), rows, notes)  # fmt: skip


def _aware(at: datetime) -> datetime:
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def _when(at: datetime) -> str:
    return _aware(at).astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
