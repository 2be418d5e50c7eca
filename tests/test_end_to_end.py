"""The whole pipeline through its real interfaces, on simulated time.

SMTP in (aiosmtplib) to an ingest node whose destination is a real Postfix; events on Kafka;
a real streams worker (child process, event-time clock); the sink into chDB; the admin API for
actions; the report job sending through a local SMTP server. Time is a variable the ingest node,
the admin API and the jobs read, and the worker follows the event time, so four weeks pass in
seconds.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from email.policy import default
from pathlib import Path
from typing import Any

import aiosmtplib
import httpx
import pytest
from aiosmtpd.smtp import SMTP

from smtp_discovery.admin.api import create_app
from smtp_discovery.admin.context import AdminContext
from smtp_discovery.admin.tokens import new_token
from smtp_discovery.ingest.node import IngestNode
from smtp_discovery.jobs.runner import Jobs
from smtp_discovery.jobs.send import Mailer
from smtp_discovery.platform.clock import ManualClock
from smtp_discovery.platform.config import RuntimeConfig
from smtp_discovery.schemas.calendar import Schedule
from smtp_discovery.schemas.topics import ADMIN_TOKENS
from smtp_discovery.sinks.migrate import migrate
from smtp_discovery.sinks.queries import select
from smtp_discovery.sinks.schema import Layout
from smtp_discovery.sinks.sink import Sink, SinkSettings
from tests.ingest.postfix import PostfixServer
from tests.streams.worker_harness import WorkerRun
from tests.token_key import KEY

pytestmark = pytest.mark.kafka

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)  # Monday of ISO week 2026-W45
BODY = b"From: news@partner.example\r\nSubject: hello\r\n\r\nHi.\r\n"


class Inbox:
    def __init__(self) -> None:
        self.messages: list[Any] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(message_from_bytes(envelope.content, policy=default))
        return "250 OK"


async def until(what: str, check: Any, timeout: float = 90.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = await check()
        if value:
            return value
        assert time.monotonic() < deadline, f"never: {what}"
        await asyncio.sleep(0.1)


async def test_mail_to_reports_through_every_part(
    kafka_bootstrap: str,
    clickhouse: Any,
    postfix_servers: dict[str, PostfixServer],
    tmp_path: Path,
) -> None:
    strict = postfix_servers["strict"]
    run = WorkerRun(kafka_bootstrap, f"e2e{uuid.uuid4().hex[:8]}", tmp_path)
    await run.setup([])
    clock = ManualClock(T0)
    env = {k: v for k, v in run.env("node").items() if k.startswith(("KAFKA", "DISCOVERY"))}
    config = RuntimeConfig.from_env(
        {**env, "DISCOVERY_INGEST_LISTEN": "127.0.0.1:0", "DISCOVERY_INGEST_HOSTNAME": "gw.test"}
    )
    options = {"bootstrap_servers": kafka_bootstrap}
    layout = Layout(f"e2e_{uuid.uuid4().hex[:8]}")
    migrate(clickhouse, layout)
    admin_ctx = AdminContext(options, run.names, clickhouse, layout, clock=clock, token_key=KEY)
    await admin_ctx.start()
    bearer, token = new_token(None, "e2e", key=KEY)
    await admin_ctx.publish(ADMIN_TOKENS, [token])
    api = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_app(admin_ctx)),
        base_url="http://admin",
        headers={"Authorization": f"Bearer {bearer}"},
    )
    created = await api.post(
        "/v1/tenants",
        json={
            "tenant_id": "acme",
            "name": "Acme",
            "domains": ["a.example", "b.example"],
            "destinations": [{"host": "127.0.0.1", "port": strict.port}],
            "outbound_ranges": ["127.0.0.2/32"],
            "tech_contact": "it@acme.example",
            "settings": {
                "discovery_enabled": True,
                "auto_add_outbound_users": True,
                "invalid_ndr_text": "This address is closed (acme)",
            },
        },
    )
    assert created.status_code == 201, created.text
    run.start("w1")
    stop = asyncio.Event()
    sink = Sink(
        options,
        clickhouse,
        layout,
        run.names,
        SinkSettings(group=f"{run.app_id}-sink", batch_rows=500, batch_seconds=0.2),
    )
    sink_task = asyncio.create_task(sink.run(stop))
    node = IngestNode(config, options, clock=clock, serve_metrics=False)
    await node.start()

    async def status(address: str) -> str | None:
        rows = await admin_ctx.run(
            select,
            admin_ctx.clickhouse,
            f"SELECT status FROM {layout.name('address_state')} FINAL "
            "WHERE record_key = {k:String} AND is_deleted = 0",
            {"k": f"acme:{address}"},
        )
        return rows[0][0] if rows else None

    async def send(sender: str, rcpt: str, source: str | None = None) -> None:
        kwargs = {"source_address": (source, 0)} if source else {}
        async with aiosmtplib.SMTP(hostname="127.0.0.1", port=node.port, **kwargs) as smtp:
            await smtp.sendmail(sender, [rcpt], BODY)

    try:
        # Callout accept and reject; the threshold reached for bob, carol and dave.
        for _ in range(3):
            for rcpt in ("bob@a.example", "carol@b.example", "dave@a.example"):
                await send("news@partner.example", rcpt)
        with pytest.raises(aiosmtplib.SMTPRecipientsRefused) as refused:
            await send("spam@elsewhere.example", "nobody@a.example")
        assert refused.value.recipients[0].code == 550
        for address in ("bob@a.example", "carol@b.example", "dave@a.example"):
            await until(f"{address} discovered", lambda a=address: _is(status, a, "discovered"))
        # Outbound auto-add, then the alias auto-linked in the other domain.
        await send("alice@a.example", "bob@a.example", source="127.0.0.2")
        await until("alice is a user", lambda: _is(status, "alice@a.example", "user"))
        await send("news@partner.example", "alice@b.example")
        await until("alice@b is an alias", lambda: _is(status, "alice@b.example", "alias"))
        # Admin actions: create carol's user account, mark bob invalid.
        for action, address in (
            ("create_user", "carol@b.example"),
            ("mark_invalid", "bob@a.example"),
        ):
            answer = await api.post(
                "/v1/tenants/acme/actions",
                json={
                    "action": action,
                    "addresses": [address],
                    "users": [{"address": address, "first_name": "Carol"}],
                },
            )
            command = answer.json()["commands"][0]["command_id"]
            applied = await until(f"{action} applied", lambda c=command: _applied(api, c))
            assert applied == "applied"
        await until("carol is a user", lambda: _is(status, "carol@b.example", "user"))
        await until("bob is invalid", lambda: _is(status, "bob@a.example", "invalid"))
        await until("the ingest view knows bob is invalid", lambda: _view(node, "bob@a.example"))
        with pytest.raises(aiosmtplib.SMTPRecipientsRefused) as closed:
            await send("news@partner.example", "bob@a.example")
        assert closed.value.recipients[0].message == "5.1.1 This address is closed (acme)"

        # The weekly reports of week 45, on Thursday of week 46.
        inbox = Inbox()
        loop = asyncio.get_running_loop()
        server = await loop.create_server(lambda: SMTP(inbox, loop=loop), "127.0.0.1", 0)
        mailer = Mailer("127.0.0.1", server.sockets[0].getsockname()[1], "gw@gw.test", "gw.test")
        jobs = Jobs(
            clickhouse,
            layout,
            Schedule.parse("09:00", "UTC"),
            mailer,
            clock=ManualClock(datetime(2026, 11, 12, 9, 30, tzinfo=UTC)),
        )
        outcomes = await jobs.run_due()
        server.close()
        assert outcomes == {
            ("acme", "new-users"): "sent",
            ("acme", "new-aliases"): "sent",
            ("acme", "warning"): "sent",
        }
        mails = {
            m["Subject"].split(" for ")[0]: m.get_body(("plain",)).get_content()
            for m in inbox.messages
        }
        assert "alice@a.example" in mails["New users"] and "carol@b.example" in mails["New users"]
        assert "sent mail from your mail server" in mails["New users"]
        assert "alice@b.example  alice@a.example  detected automatically" in mails["New aliases"]
        assert "dave@a.example" in mails["Discovery warning"]

        # Four weeks later, dave (discovered, never managed) has expired: marked invalid.
        clock.set(T0 + timedelta(weeks=4))
        # Event time moves per partition: mail to dave's own key carries his clock past the end.
        await send("news@partner.example", "dave@a.example")
        await until("dave expired", lambda: _is(status, "dave@a.example", "invalid"), 120)
        history = (await api.get("/v1/tenants/acme/history?days=3650")).json()
        totals = {
            k: sum(day[k] for day in history)
            for k in ("new_users", "new_aliases", "new_discovered", "rejections")
        }
        assert totals == {"new_users": 2, "new_aliases": 1, "new_discovered": 3, "rejections": 1}
    finally:
        await node.stop()
        stop.set()
        await sink_task
        await api.aclose()
        await admin_ctx.stop()
        run.stop_all()


async def _is(status: Any, address: str, wanted: str) -> bool:
    return await status(address) == wanted


async def _applied(api: httpx.AsyncClient, command_id: str) -> str | None:
    answer = (await api.get(f"/v1/tenants/acme/commands/{command_id}")).json()
    return None if answer["status"] == "pending" else answer["status"]


async def _view(node: IngestNode, address: str) -> bool:
    return str(node.states.status(f"acme:{address}")) == "invalid"
