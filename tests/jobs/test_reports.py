"""Report contents against histories built here, and exactly-once sending to a local server."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from email.policy import default
from typing import Any

import pytest
from aiosmtpd.smtp import SMTP

from smtp_discovery.jobs.render import FORMATS, Presentation
from smtp_discovery.jobs.reports import Kind, build, tenants
from smtp_discovery.jobs.runner import Jobs
from smtp_discovery.jobs.send import Mailer
from smtp_discovery.platform.clock import ManualClock
from smtp_discovery.schemas.calendar import Schedule, Week
from smtp_discovery.schemas.mail import CatchAllChecked
from smtp_discovery.schemas.state import (
    AddressRecord,
    AddressStateSnapshot,
    AddressStatus,
    StateChange,
)
from smtp_discovery.schemas.tenant import ProviderDefaults, TenantConfig
from smtp_discovery.schemas.topics import ADDRESS_STATE, MAIL, STATE_CHANGES, TENANTS
from smtp_discovery.sinks.migrate import migrate
from smtp_discovery.sinks.schema import Layout
from tests.jobs.history import History

WEEK = Week.parse("2026-W47")  # Monday 16 to Sunday 22 November 2026
IN_WEEK = datetime(2026, 11, 18, 10, tzinfo=UTC)
SCHEDULE = Schedule.parse("09:00", "UTC")


def change(tenant: str, address: str, to: AddressStatus, reason: str, at: datetime,
           primary: str | None = None, frm: AddressStatus | None = AddressStatus.DISCOVERED) -> StateChange:  # fmt: skip  # noqa: E501
    return StateChange(tenant_id=tenant, address=address, event_time=at, from_status=frm,
                       to_status=to, reason=reason, version=2, primary=primary)  # fmt: skip


def snapshot(tenant: str, address: str, status: AddressStatus, discovered: datetime) -> AddressStateSnapshot:  # fmt: skip  # noqa: E501
    record = AddressRecord(tenant_id=tenant, address=address, status=status,
                           status_since=discovered, status_reason="threshold",
                           discovered_at=discovered)  # fmt: skip
    return AddressStateSnapshot(tenant_id=tenant, address=address, event_time=discovered,
                                record=record)  # fmt: skip


def tenant(tenant_id: str, **settings: Any) -> TenantConfig:
    return TenantConfig(tenant_id=tenant_id, event_time=IN_WEEK, name=tenant_id.title(),
                        domains=(f"{tenant_id}.example",),
                        tech_contact=f"tech@{tenant_id}.example",
                        admin_contact=f"boss@{tenant_id}.example", settings=settings)  # fmt: skip


@pytest.fixture
def history(clickhouse: Any, unique: str) -> History:
    layout = Layout(f"r_{unique}")
    migrate(clickhouse, layout)
    h = History(clickhouse, layout)
    h.add(TENANTS, ProviderDefaults(event_time=IN_WEEK), tenant("acme"),
          tenant("beta", report_new_users=False, report_include_admin_contact=False))  # fmt: skip
    h.add(
        STATE_CHANGES,
        change("acme", "ann@acme.example", AddressStatus.USER, "admin:create_user", IN_WEEK),
        change("acme", "bob@acme.example", AddressStatus.USER, "expired", IN_WEEK + timedelta(days=1)),  # noqa: E501
        change("acme", "cy@acme.example", AddressStatus.USER, "outbound", datetime(2026, 11, 23, tzinfo=UTC)),  # noqa: E501
        change("acme", "old@acme.example", AddressStatus.USER, "outbound", datetime(2026, 11, 15, 23, 59, tzinfo=UTC)),  # noqa: E501
        change("acme", "ann@acme2.example", AddressStatus.ALIAS, "alias_detected", IN_WEEK,
               primary="ann@acme.example"),
        change("beta", "dee@beta.example", AddressStatus.USER, "admin:create_user", IN_WEEK),
    )  # fmt: skip
    h.add(
        ADDRESS_STATE,
        snapshot("acme", "new@acme.example", AddressStatus.DISCOVERED, datetime(2026, 11, 20, 12, tzinfo=UTC)),  # noqa: E501
        snapshot("acme", "zed@acme.example", AddressStatus.DISCOVERED, datetime(2026, 11, 5, 8, tzinfo=UTC)),  # noqa: E501
        snapshot("acme", "gone@acme.example", AddressStatus.DISCOVERED, datetime(2026, 11, 10, tzinfo=UTC)),  # noqa: E501
        (b"acme:gone@acme.example", None),
        snapshot("acme", "done@acme.example", AddressStatus.USER, datetime(2026, 11, 1, tzinfo=UTC)),  # noqa: E501
    )  # fmt: skip
    h.add(MAIL, CatchAllChecked(tenant_id="acme", address="sd-probe-1@acme.example",
                                event_time=IN_WEEK, destination="mx.acme.example:25",
                                catch_all=True))  # fmt: skip
    return h


def test_new_users_lists_the_weeks_users_and_how_each_was_created(history: History) -> None:
    acme = tenants(history.client, history.layout)["acme"]
    report = build(history.client, history.layout, acme, Kind.NEW_USERS, WEEK, SCHEDULE)
    assert [(r[0], r[2]) for r in report.rows] == [
        ("ann@acme.example", "created by an administrator"),
        ("bob@acme.example", "discovered and not managed before it expired"),
    ]
    assert json.loads(FORMATS["json"](report))["rows"][0]["address"] == "ann@acme.example"
    assert FORMATS["csv"](report).splitlines()[0] == '"address","role","how","when"'


def test_new_aliases_name_their_users(history: History) -> None:
    acme = tenants(history.client, history.layout)["acme"]
    report = build(history.client, history.layout, acme, Kind.NEW_ALIASES, WEEK, SCHEDULE)
    assert [(r[0], r[1], r[2]) for r in report.rows] == [
        ("ann@acme2.example", "ann@acme.example", "detected automatically")
    ]


def test_the_warning_lists_addresses_awaiting_action_with_notices_left(history: History) -> None:
    acme = tenants(history.client, history.layout)["acme"]
    report = build(history.client, history.layout, acme, Kind.WARNING, WEEK, SCHEDULE)
    # Discovered on Friday 20 Nov, 3 weekly notices: expires at the end of Fri 11 Dec; the
    # report of Thu 26 Nov is the first of the notices on 26 Nov, 3 and 10 Dec. Discovered on
    # Thu 5 Nov: expires at the end of Thu 26 Nov, so this report is its last notice. The first
    # to expire comes first.
    assert report.rows == [
        ("zed@acme.example", "2026-11-05 08:00 UTC", 1, "2026-11-27"),
        ("new@acme.example", "2026-11-20 12:00 UTC", 3, "2026-12-12"),
    ]
    assert report.notes and "mx.acme.example:25 accepts mail for any address" in report.notes[0]
    html = FORMATS["html"](report, Presentation())
    assert (
        ">new@acme.example</td>" in html
        and ">Discovery warning for Acme, week 2026-W47</h1>" in html
    )
    assert json.loads(FORMATS["json"](report, Presentation()))["summary"] == {
        "waiting": 2, "expire_before_next_report": 1, "earliest_expiry": "2026-11-27"}  # fmt: skip


def test_tenant_settings_decide_which_reports_and_who_gets_them(history: History) -> None:
    known = tenants(history.client, history.layout)
    assert known["acme"].recipients == ["tech@acme.example", "boss@acme.example"]
    assert known["beta"].recipients == ["tech@beta.example"]
    assert not known["beta"].wants(Kind.NEW_USERS) and known["beta"].wants(Kind.NEW_ALIASES)


class Inbox:
    """A local SMTP server that keeps what it receives, and can refuse a recipient."""

    def __init__(self) -> None:
        self.messages: list[Any] = []
        self.refuse: set[str] = set()

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str,
                          options: list[str]) -> str:  # fmt: skip
        if address in self.refuse:
            return "451 4.3.0 try later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(message_from_bytes(envelope.content, policy=default))
        return "250 OK"


async def test_each_report_is_sent_once_even_when_a_run_fails_halfway(history: History) -> None:
    inbox = Inbox()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: SMTP(inbox, loop=loop), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    thursday = datetime(2026, 11, 26, 9, 30, tzinfo=UTC)
    mailer = Mailer("127.0.0.1", port, "reports@gateway.example", "gateway.example")
    jobs = Jobs(history.client, history.layout, SCHEDULE, mailer, clock=ManualClock(thursday))
    try:
        inbox.refuse = {"tech@acme.example", "boss@acme.example"}  # acme's mail fails at first
        first = await jobs.run_due()
        inbox.refuse = set()
        second = await jobs.run_due()
        third = await jobs.run_due()
    finally:
        server.close()
    acme = [("acme", "new-users"), ("acme", "new-aliases"), ("acme", "warning")]
    beta = {("beta", "new-aliases"): "empty", ("beta", "warning"): "empty"}
    assert first == {**dict.fromkeys(acme, "failed"), **beta}
    assert second == {**dict.fromkeys(acme, "sent"), **{k: "skipped (empty)" for k in beta}}
    assert set(third.values()) == {"skipped (sent)", "skipped (empty)"}
    subjects = sorted(m["Subject"] for m in inbox.messages)
    assert subjects == [
        "Discovery warning for Acme, week 2026-W47",
        "New aliases for Acme, week 2026-W47",
        "New users for Acme, week 2026-W47",
    ]
    mail = inbox.messages[0]
    assert mail["To"] == "tech@acme.example, boss@acme.example"
    assert {part.get_content_type() for part in mail.iter_parts()} == {"text/plain", "text/html"}
