"""Discovery behind a provider's own Postfix: a real Postfix gateway asks `smtp-discovery policy`
about each recipient and message and looks up its relay domains and transports in the service's
socketmap tables; a second real Postfix plays the tenant's server; a real streams worker keeps
the address state; tenants come from Kafka and the admin API.

One world per module (Postfix, Kafka topics, a worker process and the service take seconds to
start); the tests run in file order and each uses addresses of its own. The last one stops the
service.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiosmtplib
import httpx
import pytest
import pytest_asyncio

from smtp_discovery.admin.api import create_app
from smtp_discovery.admin.context import AdminContext
from smtp_discovery.admin.tokens import new_token
from smtp_discovery.ingest.policy_service import PolicyService
from smtp_discovery.localkafka.node import free_port
from smtp_discovery.platform.config import RuntimeConfig
from smtp_discovery.schemas.codec import decode
from smtp_discovery.schemas.mail import CalloutVerified, OutboundSent, RecipientDelivered
from smtp_discovery.schemas.topics import ADMIN_TOKENS, MAIL, MAIL_SETTLED
from smtp_discovery.sinks.migrate import migrate
from smtp_discovery.sinks.schema import Layout
from tests.ingest.harness import tenant
from tests.ingest.postfix import PostfixServer
from tests.ingest.postfix_front import DEFAULT_ACTION, PostfixFront
from tests.streams.worker_harness import WorkerRun
from tests.token_key import KEY

pytestmark = [pytest.mark.kafka, pytest.mark.asyncio(loop_scope="module")]

UNKNOWN_TEXT = "No such mailbox at Acme (policy test)"
BODY = b"From: news@partner.example\r\nSubject: hello\r\n\r\nHi.\r\n"


@dataclass
class World:
    run: WorkerRun
    service: PolicyService
    front: PostfixFront
    tenant_server: PostfixServer
    api: httpx.AsyncClient
    delays: list[float] = field(default_factory=list)

    def smtp(self, source: str | None = None) -> aiosmtplib.SMTP:
        kwargs: dict[str, Any] = {"source_address": (source, 0)} if source else {}
        return aiosmtplib.SMTP(
            hostname="127.0.0.1", port=self.front.port, start_tls=False, timeout=30, **kwargs
        )

    async def rcpt(self, recipient: str, sender: str = "news@partner.example",
                   source: str | None = None) -> tuple[int, str]:  # fmt: skip
        """The front's answer to one RCPT (then the transaction is dropped)."""
        async with self.smtp(source) as smtp:
            await smtp.mail(sender)
            reply = await smtp.execute_command(f"RCPT TO:<{recipient}>".encode())
            return reply.code, reply.message

    async def send(self, recipient: str, sender: str = "news@partner.example",
                   source: str | None = None) -> None:  # fmt: skip
        async with self.smtp(source) as smtp:
            await smtp.sendmail(sender, [recipient], BODY)

    async def mail_events(self) -> list[Any]:
        events = []
        for topic in (MAIL, MAIL_SETTLED):
            events += [decode(MAIL, value) for _key, value in await self.run.read(topic)]
        return events

    async def status(self, record_key: str) -> str | None:
        snapshot = (await self.run.states()).get(record_key)
        return None if snapshot is None or snapshot.record is None else str(snapshot.record.status)


async def until(what: str, check: Callable[[], Awaitable[Any]], timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = await check()
        if value:
            return value
        assert time.monotonic() < deadline, f"never: {what}"
        await asyncio.sleep(0.1)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(
    kafka_bootstrap: str,
    clickhouse: Any,
    postfix_servers: dict[str, PostfixServer],
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[World]:
    strict = postfix_servers["strict"]
    directory = tmp_path_factory.mktemp("policy")
    run = WorkerRun(kafka_bootstrap, f"pol{uuid.uuid4().hex[:8]}", directory)
    acme = tenant(
        "acme",
        ["a.example"],
        strict.port,
        outbound_ranges=("127.0.0.2/32",),
        settings={"auto_add_outbound_users": True, "unknown_recipient_text": UNKNOWN_TEXT},
    )
    # Onboarding in monitor mode: nothing of its is refused, what would be is only logged.
    watched = tenant("watched", ["c.example"], strict.port, settings={"monitor_mode": True})
    await run.setup([acme, watched])
    env = {k: v for k, v in run.env("policy").items() if k.startswith(("KAFKA", "DISCOVERY"))}
    config = RuntimeConfig.from_env(
        {
            **env,
            "DISCOVERY_POLICY_LISTEN": "127.0.0.1:0",
            "DISCOVERY_POLICY_SOCKETMAP_LISTEN": "127.0.0.1:0",
            "DISCOVERY_INGEST_HOSTNAME": "gw.provider.test",
            "DISCOVERY_INGEST_NODE_ID": "policy-1",
        }
    )
    delays: list[float] = []

    async def tarpit(seconds: float) -> None:
        delays.append(seconds)

    options = {"bootstrap_servers": kafka_bootstrap}
    service = PolicyService(config, options, tarpit=tarpit, serve_metrics=False)
    await service.start()
    layout = Layout(f"pol_{uuid.uuid4().hex[:8]}")
    migrate(clickhouse, layout)
    admin = AdminContext(options, run.names, clickhouse, layout, token_key=KEY)
    await admin.start()
    bearer, token = new_token(None, "policy-test", key=KEY)
    await admin.publish(ADMIN_TOKENS, [token])
    api = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_app(admin)),
        base_url="http://admin",
        headers={"Authorization": f"Bearer {bearer}"},
    )
    front = PostfixFront(
        port=free_port(), policy=service.policy_address, socketmap=service.socketmap_address
    )
    run.start("w1")
    try:
        front.start()
        yield World(run, service, front, strict, api, delays)
    finally:
        front.stop()
        await service.stop()
        await api.aclose()
        await admin.stop()
        run.stop_all()


async def test_an_unknown_recipient_is_refused_with_the_tenants_text(world: World) -> None:
    code, message = await world.rcpt("nobody@a.example")
    assert code == 550, (code, message, world.front.log_text()[-2000:])
    assert message.startswith("5.1.1 ") and UNKNOWN_TEXT in message, message


async def test_a_known_recipient_is_accepted_and_relayed_to_the_tenants_server(
    world: World,
) -> None:
    before = len(world.tenant_server.delivered("bob@a.example"))
    await world.send("bob@a.example")
    delivered = await world.tenant_server.wait_delivered("bob@a.example", before + 1)
    assert len(delivered) == before + 1, world.front.log_text()[-3000:]
    assert b"Subject: hello" in delivered[-1]
    assert b"gw.provider.test" in delivered[-1], "relayed by the front Postfix"


async def test_three_clean_messages_discover_an_address(world: World) -> None:
    for _ in range(3):
        await world.send("dave@a.example")

    async def deliveries() -> list[Any]:
        events = await world.mail_events()
        found = [e for e in events if isinstance(e, RecipientDelivered)
                 and e.address == "dave@a.example"]  # fmt: skip
        return found if len(found) >= 3 else []

    delivered = await until("three deliveries to dave on Kafka", deliveries)
    assert [e.verdict for e in delivered] == ["clean"] * 3
    assert len({e.message_id for e in delivered}) == 3, "one event per message (queue id)"
    assert all(e.node_id == "policy-1" for e in delivered)
    callouts = [e for e in await world.mail_events() if isinstance(e, CalloutVerified)
                and e.address == "dave@a.example"]  # fmt: skip
    assert len(callouts) == 1, "verified once, then answered from the cache"
    await until(
        "dave discovered by the worker",
        lambda: _is(world, "acme:dave@a.example", "discovered"),
        timeout=90,
    )


async def test_outbound_mail_auto_adds_its_sender_as_a_user(world: World) -> None:
    before = len(world.tenant_server.delivered("bob@a.example"))
    await world.send("bob@a.example", sender="alice@a.example", source="127.0.0.2")
    assert len(await world.tenant_server.wait_delivered("bob@a.example", before + 1)) == (
        before + 1
    )

    async def outbound() -> list[Any]:
        return [e for e in await world.mail_events() if isinstance(e, OutboundSent)]

    (sent,) = await until("the outbound event on Kafka", outbound)
    assert (sent.address, str(sent.client_ip)) == ("alice@a.example", "127.0.0.2")
    await until("alice is a user", lambda: _is(world, "acme:alice@a.example", "user"), 90)


async def test_a_relay_attempt_is_refused(world: World) -> None:
    code, message = await world.rcpt("someone@elsewhere.example")
    assert (code, message[:6]) == (550, "5.7.1 "), message
    # A tenant's outbound range is no licence to send as anyone.
    code, message = await world.rcpt(
        "someone@elsewhere.example", sender="spoof@elsewhere.example", source="127.0.0.2"
    )
    assert (code, message[:6]) == (550, "5.7.1 "), message
    # Nor does a %-hack through a tenant's domain reach another domain.
    code, message = await world.rcpt("victim%elsewhere.example@a.example")
    assert (code, message[:6]) == (550, "5.7.1 "), message


async def test_a_tenant_added_through_the_api_is_routable_at_once(world: World) -> None:
    code, message = await world.rcpt("carol@b.example")
    assert (code, message[:6]) == (550, "5.7.1 "), "no tenant has b.example yet"
    created = await world.api.post(
        "/v1/tenants",
        json={
            "tenant_id": "beta",
            "name": "Beta",
            "domains": ["b.example"],
            "destinations": [{"host": "127.0.0.1", "port": world.tenant_server.port}],
            "tech_contact": "it@b.example",
            "settings": {"discovery_enabled": True},
        },
    )
    assert created.status_code == 201, created.text
    started = time.monotonic()

    async def accepted() -> bool:
        return (await world.rcpt("carol@b.example"))[0] == 250

    await until("carol@b.example accepted", accepted, timeout=10)
    assert time.monotonic() - started < 10
    before = len(world.tenant_server.delivered("carol@b.example"))
    await world.send("carol@b.example")
    delivered = await world.tenant_server.wait_delivered("carol@b.example", before + 1)
    assert len(delivered) == before + 1, world.front.log_text()[-3000:]


async def test_the_policy_protocol_on_the_wire(world: World) -> None:
    """Connection reuse, the attribute blocks, and a specific answer to what Postfix never
    sends; harvest protection keyed on ``client_address``, as on the ingest node."""
    host, port = world.service.policy_address.split(":")
    reader, writer = await asyncio.open_connection(host, int(port))

    async def ask(attributes: dict[str, str]) -> str:
        block = "".join(f"{k}={v}\n" for k, v in attributes.items()) + "\n"
        writer.write(block.encode())
        await writer.drain()
        answer = await reader.readuntil(b"\n\n")
        return answer.decode().removeprefix("action=").rstrip("\n")

    def rcpt(recipient: str, client: str) -> dict[str, str]:
        return {"request": "smtpd_access_policy", "protocol_state": "RCPT",
                "client_address": client, "sender": "x@partner.example",
                "recipient": recipient, "instance": uuid.uuid4().hex,
                "future_attribute": "ignored"}  # fmt: skip

    assert await ask(rcpt("bob@a.example", "198.51.100.1")) == "OK"
    assert await ask(rcpt("x@nowhere.example", "198.51.100.1")) == "550 5.7.1 Relaying denied"
    assert await ask(rcpt("nobody@c.example", "198.51.100.1")) == "OK", "monitor mode"
    assert await ask({"request": "smtpd_access_policy", "protocol_state": "DATA"}) == "DUNNO"
    assert await ask(rcpt("bob@a.example", "not-an-ip")) == (
        "451 4.3.5 Policy request refused: client_address is not an IP address"
    )
    assert await ask({"request": "other"}) == (
        "451 4.3.5 Policy request refused: unknown request type 'other'"
    )
    # Twenty refusals from one client (the default limit), then it is deferred; another
    # client is not.
    for _ in range(20):
        answer = await ask(rcpt("nobody@a.example", "198.51.100.66"))
        assert answer.startswith("550 5.1.1"), answer
    assert await ask(rcpt("bob@a.example", "198.51.100.66")) == (
        "450 4.7.1 Too many invalid recipients, try again later"
    )
    assert world.delays, "the deferral was tarpitted"
    assert await ask(rcpt("bob@a.example", "198.51.100.67")) == "OK"
    writer.write(b"request=smtpd_access_policy\nno equals sign\n\n")
    await writer.drain()
    assert await reader.readuntil(b"\n\n") == (
        b"action=451 4.3.5 Policy request refused: attribute line without '='\n\n"
    )
    assert await reader.read() == b"", "the connection is closed after a broken request"
    writer.close()


async def test_the_socketmap_tables_on_the_wire(world: World) -> None:
    host, port = world.service.socketmap_address.split(":")
    reader, writer = await asyncio.open_connection(host, int(port))

    async def lookup(request: bytes) -> bytes:
        writer.write(b"%d:%s," % (len(request), request))
        await writer.drain()
        length = await reader.readuntil(b":")
        return (await reader.readexactly(int(length[:-1]) + 1))[:-1]

    strict = world.tenant_server.port
    assert await lookup(b"relay a.example") == b"OK acme"
    assert await lookup(b"relay A.EXAMPLE") == b"OK acme"
    assert await lookup(b"transport a.example") == f"OK smtp:[127.0.0.1]:{strict}".encode()
    assert await lookup(b"relay nowhere.example") == b"NOTFOUND "
    assert await lookup(b"transport bob@a.example") == f"OK smtp:[127.0.0.1]:{strict}".encode()
    assert await lookup(b"transport bob@nowhere.example") == b"NOTFOUND "
    assert await lookup(b"transport *") == b"NOTFOUND "
    assert await lookup(b"transport .a.example") == b"NOTFOUND "
    assert await lookup(b"aliases a.example") == (
        b"PERM no map named 'aliases' (maps: relay, transport)"
    )
    writer.write(b"x5:relay,")
    await writer.drain()
    refusal = b"PERM malformed request: netstring length is not a decimal number"
    assert await reader.read() == b"%d:%s," % (len(refusal), refusal)
    writer.close()


class PolicyClient:
    """Postfix's side of the policy protocol on one connection, for what a test Postfix cannot
    be made to send on cue (a content filter's verdict report, many recipients at once)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def connect(cls, address: str) -> PolicyClient:
        host, port = address.split(":")
        return cls(*await asyncio.open_connection(host, int(port)))

    async def ask(self, **attributes: str) -> str:
        block = "".join(f"{k}={v}\n" for k, v in attributes.items()) + "\n"
        self.writer.write(block.encode())
        await self.writer.drain()
        answer = await self.reader.readuntil(b"\n\n")
        return answer.decode().removeprefix("action=").rstrip("\n")

    async def transaction(self, instance: str, recipients: list[str], queue_id: str) -> list[str]:
        """RCPT for each recipient, then END-OF-MESSAGE: every answer, in order."""
        common = {"request": "smtpd_access_policy", "client_address": "198.51.100.9",
                  "sender": "news@partner.example", "instance": instance}  # fmt: skip
        answers = [await self.ask(**common, protocol_state="RCPT", recipient=r) for r in recipients]
        end = {"protocol_state": "END-OF-MESSAGE", "queue_id": queue_id, "size": "1234",
               "recipient_count": str(answers.count("OK"))}  # fmt: skip
        answers.append(await self.ask(**common, **end))
        return answers

    def close(self) -> None:
        self.writer.close()


async def _deliveries(world: World, message_id: str, count: int) -> list[RecipientDelivered]:
    async def found() -> list[RecipientDelivered]:
        events = [e for e in await world.mail_events()
                  if isinstance(e, RecipientDelivered) and e.message_id == message_id]  # fmt: skip
        return events if len(events) >= count else []

    events = await until(f"{count} deliveries of {message_id}", found)
    return sorted(events, key=lambda e: e.address)


async def test_end_of_message_counts_the_recipients_its_transaction_accepted(
    world: World,
) -> None:
    client = await PolicyClient.connect(world.service.policy_address)
    recipients = ["bob@a.example", "nobody@a.example", "carol@b.example"]
    answers = await client.transaction("inst-1", recipients, "Q1CLEAN")
    client.close()
    assert answers[0] == "OK" and answers[1].startswith("550 5.1.1") and answers[2:] == [
        "OK", "DUNNO"]  # fmt: skip
    delivered = await _deliveries(world, "Q1CLEAN", 2)
    assert [(e.address, e.verdict, e.size) for e in delivered] == [
        ("bob@a.example", "clean", 1234), ("carol@b.example", "clean", 1234)]  # fmt: skip
    assert {e.tenant_id for e in delivered} == {"acme", "beta"}


async def test_the_after_queue_filter_reports_the_verdict(
    world: World, tmp_path_factory: pytest.TempPathFactory
) -> None:
    config = world.service.config.model_copy(
        update={
            "policy_verdict": "after_queue",
            "policy_listen": "127.0.0.1:0",
            "policy_socketmap_listen": "127.0.0.1:0",
            "ingest_node_id": "policy-aq",
            "ingest_spool_dir": tmp_path_factory.mktemp("aq-spool"),
        }
    )
    service = PolicyService(config, {"bootstrap_servers": world.run.bootstrap},
                            serve_metrics=False)  # fmt: skip
    await service.start()
    try:
        client = await PolicyClient.connect(service.policy_address)
        answers = await client.transaction("inst-2", ["bob@a.example", "alice@a.example"], "Q2AQ")
        assert answers == ["OK", "OK", "DUNNO"]
        assert not [e for e in await world.mail_events() if getattr(e, "message_id", "") == "Q2AQ"]
        report = {"request": "smtp_discovery_verdict", "queue_id": "Q2AQ"}
        assert await client.ask(**report, verdict="spam") == (
            "REJECT verdict must be clean or not_clean"
        )
        assert await client.ask(**report, verdict="not_clean") == "OK"
        assert await client.ask(**report, verdict="clean") == (
            "REJECT unknown queue_id (never queued here, or reported already)"
        )
        client.close()
        delivered = await _deliveries(world, "Q2AQ", 2)
        assert [(e.address, e.verdict, e.node_id) for e in delivered] == [
            ("alice@a.example", "not_clean", "policy-aq"),
            ("bob@a.example", "not_clean", "policy-aq"),
        ]
    finally:
        await service.stop()


async def test_postfix_applies_its_default_action_when_the_service_is_stopped(
    world: World,
) -> None:
    assert (await world.rcpt("bob@a.example"))[0] == 250
    await world.service.stop()
    code, message = await world.rcpt("bob@a.example")
    # Postfix tried twice (smtpd_policy_service_try_limit), then answered its default action.
    assert code == 451, (code, message)
    text = DEFAULT_ACTION.removeprefix("451 4.3.5 ")
    assert message == f"4.3.5 <bob@a.example>: Recipient address rejected: {text}", message


async def _is(world: World, record_key: str, wanted: str) -> bool:
    return await world.status(record_key) == wanted
