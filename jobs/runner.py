"""``smtp-discovery jobs`` and ``smtp-discovery report``: the weekly schedule, and one report."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from typing import Any

from smtp_discovery.jobs.reports import Kind, Report, build, tenants
from smtp_discovery.jobs.send import Mailer, ReportLog, deliver_once
from smtp_discovery.platform.clock import Clock, SystemClock
from smtp_discovery.schemas.calendar import Schedule, Week
from smtp_discovery.sinks.schema import Layout

log = logging.getLogger("smtp_discovery.jobs")


class Jobs:
    def __init__(
        self,
        client: Any,
        layout: Layout,
        schedule: Schedule,
        mailer: Mailer,
        clock: Clock | None = None,
    ) -> None:
        self.client = client
        self.layout = layout
        self.schedule = schedule
        self.mailer = mailer
        self.clock: Clock = clock if clock is not None else SystemClock()
        self.log = ReportLog(client, layout)
        self.outcomes: Counter[str] = Counter()
        """Reports by outcome (sent, empty, failed, skipped ...), for the ops endpoint."""

    async def run_due(self) -> dict[tuple[str, str], str]:
        """Send every report of the latest Thursday slot not handled yet; what happened."""
        now = self.clock.now()
        _slot, week = self.schedule.latest_slot(now)
        outcomes: dict[tuple[str, str], str] = {}
        for tenant in (await asyncio.to_thread(tenants, self.client, self.layout)).values():
            for kind in Kind:
                if not tenant.wants(kind):
                    continue
                try:  # one tenant's failure must not stop the others
                    report = await asyncio.to_thread(
                        build, self.client, self.layout, tenant, kind, week, self.schedule
                    )
                    outcome = await deliver_once(report, self.log, self.mailer, now)
                except Exception as exc:
                    log.warning(
                        "report failed",
                        extra={"tenant": tenant.tenant_id, "report": kind.value,
                               "week": str(week), "error": type(exc).__name__},
                    )  # fmt: skip
                    outcome = "failed"
                outcomes[(tenant.tenant_id, kind.value)] = outcome
                self.outcomes[outcome.split(" ")[0]] += 1
        return outcomes

    async def run(self, stop: asyncio.Event, interval_s: float = 60.0) -> None:
        while not stop.is_set():
            try:
                outcomes = await self.run_due()
            except Exception as exc:  # ClickHouse away: try again at the next interval
                log.warning("the report run failed", extra={"error": type(exc).__name__})
                outcomes = {}
            sent = [key for key, outcome in outcomes.items() if outcome == "sent"]
            if sent:
                log.info("weekly reports sent", extra={"reports": len(sent)})
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval_s)


def one_report(
    client: Any, layout: Layout, schedule: Schedule, tenant_id: str, kind: Kind, week: Week
) -> Report:
    known = tenants(client, layout)
    if tenant_id not in known:
        raise LookupError(f"no tenant {tenant_id!r} in {layout.name('tenants')}")
    return build(client, layout, known[tenant_id], kind, week, schedule)
