"""The three weekly reports: what each contains, read from ClickHouse with the queries of
``sinks.queries`` (which also says how they stay exact over the ReplacingMergeTree tables)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
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

NEW_USERS_COLUMNS = ("address", "role", "how", "when")
NEW_ALIASES_COLUMNS = ("alias", "user", "how", "when")
WARNING_COLUMNS = ("address", "discovered", "notices left", "expires on")


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
        name = " ".join(self.tenant.name.split())  # one line, whatever the name holds
        return f"{label} for {name}, week {self.week}"

    @property
    def empty(self) -> bool:
        return not self.rows and not self.notes

    @property
    def summary(self) -> WarningSummary | ChangeSummary:
        """What the report says in short, from its rows (shown above its table)."""
        if self.kind is Kind.WARNING:
            return warning_summary(self.rows)
        return change_summary(self.rows)


@dataclass(frozen=True, slots=True)
class WarningSummary:
    """The warning report in short: how many addresses wait, how many of them this report is
    the last notice for, and the first day one expires."""

    waiting: int
    expiring: int
    """Addresses that expire before next week's report (this notice is their last)."""
    earliest_expiry: str | None
    """The earliest ``expires on`` day (ISO date), None when nothing waits."""

    def as_dict(self) -> dict[str, Any]:
        return {
            "waiting": self.waiting,
            "expire_before_next_report": self.expiring,
            "earliest_expiry": self.earliest_expiry,
        }


@dataclass(frozen=True, slots=True)
class ChangeSummary:
    """The New users or New aliases report in short: how many, and how many each way."""

    total: int
    by_how: tuple[tuple[str, int], ...]
    """(how, count), the most frequent first (ties by name)."""

    def as_dict(self) -> dict[str, Any]:
        return {"total": self.total, "by_how": dict(self.by_how)}


def last_notice(row: Sequence[Any]) -> bool:
    """A warning row (``WARNING_COLUMNS``) whose address expires before next week's report:
    notices left counts this report, so one left (or none, if the report is late) is the last."""
    return int(row[WARNING_COLUMNS.index("notices left")]) <= 1


def warning_summary(rows: Sequence[Sequence[Any]]) -> WarningSummary:
    """From rows shaped like ``WARNING_COLUMNS``."""
    expires = WARNING_COLUMNS.index("expires on")
    return WarningSummary(
        waiting=len(rows),
        expiring=sum(1 for row in rows if last_notice(row)),
        earliest_expiry=min((str(row[expires]) for row in rows), default=None),
    )


def change_summary(rows: Sequence[Sequence[Any]]) -> ChangeSummary:
    """From rows shaped like ``NEW_USERS_COLUMNS`` or ``NEW_ALIASES_COLUMNS`` (``how`` third)."""
    how = NEW_USERS_COLUMNS.index("how")  # == NEW_ALIASES_COLUMNS.index("how")
    counts = Counter(str(row[how]) for row in rows)
    return ChangeSummary(len(rows), tuple(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))))


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
        return Report(kind, tenant, week, NEW_USERS_COLUMNS,
                      _new_users(client, layout, tenant, start, end))  # fmt: skip
    if kind is Kind.NEW_ALIASES:
        return Report(kind, tenant, week, NEW_ALIASES_COLUMNS,
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
    rows.sort(key=lambda row: (row[3], row[0]))  # the first to expire first
    catch_all = queries.catch_all_destinations(client, layout, tenant.tenant_id)
    notes = [
        f"Your mail server {destination} accepts mail for any address (last checked "
        f"{_when(_aware(at))}): callouts to it cannot tell which addresses exist."
        for destination, at in catch_all
    ]
    return Report(Kind.WARNING, tenant, week, WARNING_COLUMNS, rows, notes)


def _aware(at: datetime) -> datetime:
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def _when(at: datetime) -> str:
    return _aware(at).astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
