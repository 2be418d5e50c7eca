"""``smtp-discovery demo``: a demo tenant and a minute of realistic mail, against a running `up`.

The demo starts a small mail server playing the tenant's own server (real mailboxes; unknown
users refused at RCPT), registers tenant ``demo`` through the admin API with that server as its
destination, and sends mail through the ingest node like the Internet and the tenant would:
inbound mail to existing and unknown recipients, outbound mail from the tenant's server (its own
loopback address, 127.0.0.2), and an address in the second domain that is an alias. Then it
watches the admin API until the outcome is visible and says where to look.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import aiosmtplib
from aiosmtpd.smtp import SMTP

from smtp_discovery.platform.config import RuntimeConfig, split_host_port
from smtp_discovery.platform.errors import OperatorError
from smtp_discovery.platform.kafka import client_options, idempotent_producer
from smtp_discovery.platform.running import RunningSystem, on_cluster
from smtp_discovery.schemas.calendar import Week
from smtp_discovery.schemas.codec import encode
from smtp_discovery.schemas.mail import CalloutVerified, RecipientDelivered
from smtp_discovery.schemas.topics import MAIL, TopicNames

TENANT = "demo"
DOMAINS = ("demo.example", "demo-mail.example")
MAILBOXES = (
    "erin@demo.example",
    "alice@demo.example",
    "alice@demo-mail.example",
    "bob@demo.example",
    "carol@demo.example",
    "dave@demo.example",
)
OUTBOUND_IP = "127.0.0.2"


@dataclass
class TenantServer:
    """The tenant's mail server: knows its mailboxes, refuses everyone else at RCPT."""

    mailboxes: frozenset[str]
    delivered: list[tuple[str, int]] = field(default_factory=list)

    async def handle_RCPT(
        self,
        server: Any,
        session: Any,
        envelope: Any,
        address: str,
        options: list[str],
    ) -> str:
        if address.lower() not in self.mailboxes:
            return f"550 5.1.1 <{address}>: Recipient address rejected: User unknown"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 Ok"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        for rcpt in envelope.rcpt_tos:
            self.delivered.append((rcpt, len(envelope.content)))
        return "250 2.0.0 Ok: queued"


def _message(sender: str, rcpt: str, subject: str) -> bytes:
    return (
        f"From: {sender}\r\nTo: {rcpt}\r\nSubject: {subject}\r\n"
        f"Date: {datetime.now(UTC):%a, %d %b %Y %H:%M:%S +0000}\r\n\r\n"
        "A demo message.\r\n"
    ).encode()


async def run_demo(config: RuntimeConfig, weeks: int = 0, timeout_s: float = 120.0) -> int:
    """``weeks`` > 0 first plays that many weeks of compressed history for erin, so the demo
    also shows an expiry (she was discovered long ago and nobody managed her)."""
    api = RunningSystem(config.data_dir)
    endpoints = api.endpoints
    smtp_host, smtp_port = split_host_port(endpoints["smtp"])

    loop = asyncio.get_running_loop()
    tenant_server = TenantServer(frozenset(MAILBOXES))
    server = await loop.create_server(
        lambda: SMTP(tenant_server, hostname="mx.demo.example", loop=loop), "127.0.0.1", 0
    )
    port = server.sockets[0].getsockname()[1]
    print(f"tenant mail server  127.0.0.1:{port} with {len(MAILBOXES)} mailboxes")
    try:
        await asyncio.to_thread(_register, api, port)
        if weeks > 0:
            await _history(client_options(on_cluster(config)), endpoints, weeks)
        await _traffic(smtp_host, smtp_port, expire=weeks > 0)
        if not await _until(api, timeout_s, lambda d, u: bool(u)):
            print("alice did not become a user in time")
            return 1
        await _alias_traffic(smtp_host, smtp_port)
        return await _watch(api, timeout_s, expire=weeks > 0)
    finally:
        server.close()


def _register(api: RunningSystem, port: int) -> None:
    body = {
        "name": "Demo Ltd",
        "domains": list(DOMAINS),
        "destinations": [{"host": "127.0.0.1", "port": port}],
        "outbound_ranges": [f"{OUTBOUND_IP}/32"],
        "tech_contact": "it@demo.example",
        "settings": {
            "discovery_enabled": True,
            "auto_add_outbound_users": True,
            "inbound_detection_threshold": 3,
        },
    }
    status, answer = api.call("PUT", f"/v1/tenants/{TENANT}", body)
    if status == 404:
        status, answer = api.call("POST", "/v1/tenants", {"tenant_id": TENANT, **body})
    if status >= 300:
        raise OperatorError(f"could not register the demo tenant: {answer}")
    print(f"tenant              {TENANT} ({', '.join(DOMAINS)}), destination 127.0.0.1:{port}")


async def _history(options: dict[str, Any], endpoints: dict[str, str], weeks: int) -> None:
    """Weeks of past mail in a second: the events an ingest node produced back then (the same
    contract), dated in the past. The worker applies them on event time."""
    names = TopicNames(endpoints["topic_prefix"])
    began = datetime.now(UTC) - timedelta(weeks=weeks)
    address = "erin@demo.example"
    common = {"tenant_id": TENANT, "address": address, "node_id": "demo-history"}
    events: list[Any] = [
        CalloutVerified(**common, event_time=began, destination="history:25", reply_code=250)
    ]
    events += [
        RecipientDelivered(
            **common,
            event_time=began + timedelta(hours=i + 1),
            verdict="clean",
            message_id=f"history-{i}",
            client_ip="192.0.2.1",
        )
        for i in range(3)
    ]
    producer = idempotent_producer(options)
    await producer.start()
    try:
        for event in events:
            await producer.send_and_wait(names(MAIL), encode(event), key=event.kafka_key())
    finally:
        await producer.stop()
    print(f"history             {weeks} weeks ago: {address} received 3 clean messages")


async def _traffic(host: str, port: int, *, expire: bool = False) -> None:
    rejected = 0
    async with aiosmtplib.SMTP(hostname=host, port=port, timeout=60) as smtp:
        for round_ in range(3):
            for rcpt in ("bob@demo.example", "carol@demo.example", "dave@demo.example"):
                await smtp.sendmail(
                    "news@partner.example",
                    [rcpt],
                    _message("news@partner.example", rcpt, f"Hello #{round_}"),
                )
        for unknown in ("nobody@demo.example", "sales-old@demo.example"):
            try:
                await smtp.sendmail(
                    "spam@elsewhere.example",
                    [unknown],
                    _message("spam@elsewhere.example", unknown, "?"),
                )
            except aiosmtplib.SMTPRecipientsRefused:
                rejected += 1
    print(f"inbound             9 messages to bob, carol and dave; {rejected} unknown refused")
    if expire:
        async with aiosmtplib.SMTP(hostname=host, port=port, timeout=60) as smtp:
            await smtp.sendmail(
                "news@partner.example",
                ["erin@demo.example"],
                _message("news@partner.example", "erin@demo.example", "Hi"),
            )
        print("inbound             1 message to erin@demo.example today")
    async with aiosmtplib.SMTP(
        hostname=host, port=port, timeout=60, source_address=(OUTBOUND_IP, 0)
    ) as smtp:
        await smtp.sendmail(
            "alice@demo.example",
            ["bob@demo.example"],
            _message("alice@demo.example", "bob@demo.example", "Lunch?"),
        )
    print("outbound            1 message from alice@demo.example via the tenant's server")


async def _alias_traffic(host: str, port: int) -> None:
    """Once alice is a user, mail to her address in the other domain is linked to her."""
    async with aiosmtplib.SMTP(hostname=host, port=port, timeout=60) as smtp:
        await smtp.sendmail(
            "news@partner.example",
            ["alice@demo-mail.example"],
            _message("news@partner.example", "alice@demo-mail.example", "Hi"),
        )
    print("inbound             1 message to alice@demo-mail.example (her other domain)")


async def _state(api: RunningSystem) -> tuple[list[str], list[dict[str, Any]]]:
    _, discovered = await asyncio.to_thread(api.call, "GET", f"/v1/tenants/{TENANT}/discovered")
    _, users = await asyncio.to_thread(api.call, "GET", f"/v1/tenants/{TENANT}/users?q=alice")
    found = sorted(item["address"] for item in (discovered or {}).get("items", []))
    return found, users if isinstance(users, list) else []


async def _until(api: RunningSystem, timeout_s: float, done: Any) -> bool:
    """Poll the admin API (what the console shows) until ``done`` or the deadline."""
    deadline = time.monotonic() + timeout_s
    while not done(*await _state(api)):
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(1)
    return True


def _aliases(api: RunningSystem) -> list[dict[str, Any]]:
    week = Week.of(datetime.now(UTC).date())
    _, report = api.call("GET", f"/v1/tenants/{TENANT}/reports/new-aliases?week={week}")
    return list((report or {}).get("rows", []))


def _invalid(api: RunningSystem) -> list[str]:
    _, listed = api.call("GET", f"/v1/tenants/{TENANT}/invalid")
    return [item["address"] for item in (listed or {}).get("items", [])]


async def _watch(api: RunningSystem, timeout_s: float, expire: bool = False) -> int:
    if not await _until(
        api,
        timeout_s,
        lambda found, users: (
            len(found) >= 3 and bool(_aliases(api)) and (not expire or bool(_invalid(api)))
        ),
    ):
        print(f"still waiting after {timeout_s:.0f}s: {await _state(api)}")
        return 1
    found, users = await _state(api)
    aliases = await asyncio.to_thread(_aliases, api)
    week = Week.of(datetime.now(UTC).date())
    print(f"discovered          {', '.join(found)}")
    print(f"users               {', '.join(u['address'] for u in users)} (outbound auto-add)")
    for row in aliases:
        print(f"alias               {row['alias']} -> {row['user']} ({row['how']})")
    for address in await asyncio.to_thread(_invalid, api) if expire else []:
        print(f"expired             {address}: discovered weeks ago, never managed, now invalid")
    print("next                open the console, or try:")
    print(f"  .venv/bin/smtp-discovery report new-users --tenant {TENANT} --week {week}")
    print(f"  .venv/bin/smtp-discovery report new-aliases --tenant {TENANT} --week {week}")
    return 0
