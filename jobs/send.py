"""Sending a report once: the report log makes a rerun or a restart skip what was sent.

Before the mail goes out, a ``sending`` row is logged with the report's Message-ID; after the
smarthost accepted it, ``sent``. A job that finds ``sent`` (or ``empty``: nothing to report)
skips the report. One that finds ``sending`` (it died between the two) sends again with the same
Message-ID, so a rare repeat is recognisable as the same message.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime
from typing import Any

import aiosmtplib

from smtp_discovery.jobs.render import Presentation, as_html, text
from smtp_discovery.jobs.reports import Kind, Report
from smtp_discovery.sinks import queries
from smtp_discovery.sinks.schema import Layout

DONE = ("sent", "empty", "no_recipient")
NAMESPACE = uuid.UUID("7c1f8a36-56a4-4c5e-9e7b-4f3d0a6c2b11")
_DOT_ATOM = re.compile(r"[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*")
LIST_NAME = {
    Kind.NEW_USERS: "New users reports",
    Kind.NEW_ALIASES: "New aliases reports",
    Kind.WARNING: "Discovery warning reports",
}


@dataclass(frozen=True, slots=True)
class Mailer:
    host: str
    port: int
    sender: str
    helo: str
    timeout: float = 60.0
    presentation: Presentation = field(default_factory=Presentation)
    """The provider's name (the sender's display name) and the console the reports link to."""

    async def send(self, message: EmailMessage) -> None:
        await aiosmtplib.send(
            message,
            hostname=self.host,
            port=self.port,
            local_hostname=self.helo,
            start_tls=None,  # STARTTLS when the smarthost offers it
            validate_certs=False,
            timeout=self.timeout,
        )


def message_id(report: Report, domain: str) -> str:
    key = f"{report.tenant.tenant_id}/{report.kind.value}/{report.week}"
    return f"<{uuid.uuid5(NAMESPACE, key)}@{domain}>"


def list_id(report: Report, mailer: Mailer) -> str:
    """RFC 2919: one list per report kind and tenant, in the sender's domain (tenant ids are
    ``[a-z0-9_-]``, so the id is a dot-atom), for mail filters to sort the reports by."""
    domain = next(
        (d for d in (mailer.sender.rpartition("@")[2], mailer.helo) if _DOT_ATOM.fullmatch(d)),
        "localhost",
    )
    return (
        f"{LIST_NAME[report.kind]} <{report.kind.value}.{report.tenant.tenant_id}.reports.{domain}>"
    )


def compose(report: Report, mailer: Mailer, now: datetime) -> EmailMessage:
    """The report as multipart/alternative, text then HTML (both UTF-8): the same text and HTML
    as ``smtp-discovery report --format text|html`` and the admin API's preview at ``now``."""
    presentation = mailer.presentation
    message = EmailMessage()
    message["From"] = Address(display_name=presentation.provider, addr_spec=mailer.sender)
    message["To"] = ", ".join(report.tenant.recipients)
    message["Subject"] = " ".join(report.title.split())  # a name cannot break the header
    message["Date"] = format_datetime(now)
    message["Message-ID"] = message_id(report, mailer.helo)
    message["List-Id"] = list_id(report, mailer)
    # Automatic mail (RFC 3834): vacation replies and other auto-responders stay quiet.
    message["Auto-Submitted"] = "auto-generated"
    message["Precedence"] = "bulk"
    message["X-Auto-Response-Suppress"] = "All"  # Exchange's own switch for the same
    message.set_content(text(report, presentation), charset="utf-8")
    message.add_alternative(as_html(report, presentation), subtype="html", charset="utf-8")
    return message


class ReportLog:
    def __init__(self, client: Any, layout: Layout) -> None:
        self.client = client
        self.layout = layout
        self.table = layout.name("report_log")

    def state(self, report: Report) -> str | None:
        return queries.report_state(self.client, self.layout, report.tenant.tenant_id,
                                    report.kind.value, str(report.week))  # fmt: skip

    def record(self, report: Report, state: str, message: str, at: datetime) -> None:
        self.client.insert(
            self.table,
            [[report.tenant.tenant_id, report.kind.value, str(report.week), state, message,
              report.tenant.recipients, len(report.rows), at]],
            column_names=["tenant_id", "report", "week", "state", "message_id", "recipients",
                          "rows", "at"],
        )  # fmt: skip


async def deliver_once(report: Report, log: ReportLog, mailer: Mailer, now: datetime) -> str:
    """Send the report unless the log says it was handled; the state it ends in."""
    state = await asyncio.to_thread(log.state, report)
    if state in DONE:
        return f"skipped ({state})"
    mid = message_id(report, mailer.helo)
    if report.empty:
        await asyncio.to_thread(log.record, report, "empty", "", now)
        return "empty"
    if not report.tenant.recipients:
        await asyncio.to_thread(log.record, report, "no_recipient", "", now)
        return "no_recipient"
    await asyncio.to_thread(log.record, report, "sending", mid, now)
    await mailer.send(compose(report, mailer, now))
    await asyncio.to_thread(log.record, report, "sent", mid, datetime.now(UTC))
    return "sent"
