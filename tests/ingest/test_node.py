"""A whole ingest node against real peers: Postfix as the tenants' servers, Kafka for events."""

from __future__ import annotations

from pathlib import Path

import aiosmtplib
import pytest

from smtp_discovery.schemas.mail import (
    CalloutRejected,
    CalloutTempfailed,
    CalloutVerified,
    CatchAllChecked,
    RecipientDelivered,
)
from smtp_discovery.schemas.state import AddressStatus
from smtp_discovery.schemas.topics import MAIL, MAIL_SETTLED
from tests.ingest.harness import running_ingest, state, tenant
from tests.ingest.postfix import PostfixServer

pytestmark = pytest.mark.kafka

MESSAGE = b"From: sender@outside.example\r\nSubject: hello\r\n\r\nHi.\r\n"


@pytest.fixture
def acme(postfix_servers: dict[str, PostfixServer]):  # type: ignore[no-untyped-def]
    return tenant("acme", ["a.example"], postfix_servers["strict"].port)


async def test_a_known_user_is_relayed_and_counted(
    kafka_bootstrap: str, tmp_path: Path, postfix_servers: dict[str, PostfixServer], acme
) -> None:
    strict = postfix_servers["strict"]
    before = len(strict.delivered("alice@a.example"))
    states = [state("acme", "alice@a.example", AddressStatus.USER)]
    async with running_ingest(kafka_bootstrap, tmp_path, [acme], states) as ingest:
        async with ingest.client() as smtp:
            errors, reply = await smtp.sendmail(
                "sender@outside.example", ["Alice@A.example"], MESSAGE
            )
        assert errors == {} and reply.startswith("2"), reply
        (event,) = await ingest.events(1)
        assert isinstance(event, RecipientDelivered)
        assert (event.tenant_id, event.address, event.verdict) == (
            "acme",
            "Alice@a.example",
            "clean",
        )
        assert (
            ingest.count(
                "smtp_discovery_ingest_rcpt_decisions_total", outcome="accept", reason="user"
            )
            == 1
        )
    delivered = await strict.wait_delivered("alice@a.example", before + 1)
    assert len(delivered) == before + 1
    assert b"by ingest.test (smtp-discovery) with ESMTP id" in delivered[-1]


async def test_mail_of_users_goes_past_the_worker_mail_of_others_to_it(
    kafka_bootstrap: str, tmp_path: Path, postfix_servers: dict[str, PostfixServer], acme
) -> None:
    """One message to a user and to a pending address: the user's delivery is published to
    discovery.mail-settled (which the worker never reads), the pending one's to discovery.mail."""
    states = [
        state("acme", "alice@a.example", AddressStatus.USER),
        state("acme", "bob@a.example", AddressStatus.PENDING),
    ]
    async with running_ingest(kafka_bootstrap, tmp_path, [acme], states) as ingest:
        async with ingest.client() as smtp:
            errors, reply = await smtp.sendmail(
                "sender@outside.example", ["alice@a.example", "bob@a.example"], MESSAGE
            )
        assert errors == {} and reply.startswith("2"), reply
        settled = await ingest.events(1, topics=(MAIL_SETTLED,))
        # bob is pending, so his RCPT was verified first: the catch-all check and the callout
        # precede his delivery on the worker's input.
        to_worker = await ingest.events(3, topics=(MAIL,))
        assert [(type(e), e.address) for e in settled] == [(RecipientDelivered, "alice@a.example")]
        assert [e.address for e in to_worker if isinstance(e, RecipientDelivered)] == [
            "bob@a.example"
        ]
        routed = "smtp_discovery_ingest_events_routed_total"
        assert ingest.count(routed, topic=MAIL_SETTLED) == 1
        assert ingest.count(routed, topic=MAIL) == 3


async def _rcpt(smtp: aiosmtplib.SMTP, address: str) -> aiosmtplib.SMTPResponse:
    return await smtp.execute_command(f"RCPT TO:<{address}>".encode())


async def test_an_unknown_recipient_is_verified_by_callout_then_relayed(
    kafka_bootstrap: str, tmp_path: Path, postfix_servers: dict[str, PostfixServer], acme
) -> None:
    strict = postfix_servers["strict"]
    before = len(strict.delivered("bob@a.example"))
    async with running_ingest(kafka_bootstrap, tmp_path, [acme]) as ingest:
        async with ingest.client() as smtp:
            await smtp.sendmail("sender@outside.example", ["bob@a.example"], MESSAGE)
            # The second message is decided from the cache: no second callout.
            await smtp.sendmail("sender@outside.example", ["bob@a.example"], MESSAGE)
        events = await ingest.events(4)
        kinds = [type(e) for e in events]
        assert kinds.count(CalloutVerified) == 1 and kinds.count(RecipientDelivered) == 2
        (check,) = [e for e in events if isinstance(e, CatchAllChecked)]
        assert (check.catch_all, check.destination) == (False, f"127.0.0.1:{strict.port}")
        (verified,) = [e for e in events if isinstance(e, CalloutVerified)]
        assert (verified.address, verified.reply_code, verified.catch_all) == (
            "bob@a.example",
            250,
            False,
        )
        metric = "smtp_discovery_ingest_verification_cache_lookups_total"
        assert (ingest.count(metric, result="miss"), ingest.count(metric, result="hit")) == (1, 1)
    assert len(await strict.wait_delivered("bob@a.example", before + 2)) == before + 2


async def test_a_recipient_the_destination_does_not_know_gets_550_and_no_mail(
    kafka_bootstrap: str, tmp_path: Path, postfix_servers: dict[str, PostfixServer], acme
) -> None:
    async with running_ingest(kafka_bootstrap, tmp_path, [acme]) as ingest:
        async with ingest.client() as smtp:
            await smtp.mail("sender@outside.example")
            first = await _rcpt(smtp, "nobody@a.example")
            second = await _rcpt(smtp, "nobody@a.example")
        assert (first.code, first.message) == (
            550,
            "5.1.1 Recipient address rejected: user unknown",
        )
        assert (second.code, second.message) == (first.code, first.message)
        (event,) = await ingest.events(1)
        assert isinstance(event, CalloutRejected)
        assert (event.reply_code, event.enhanced_status) == (550, "5.1.1")
        assert (
            ingest.count(
                "smtp_discovery_ingest_rcpt_decisions_total", outcome="reject", reason="unknown"
            )
            == 2
        )


async def test_relaying_is_denied_for_every_domain_no_tenant_registered(
    kafka_bootstrap: str, tmp_path: Path, acme
) -> None:
    async with (
        running_ingest(kafka_bootstrap, tmp_path, [acme]) as ingest,
        ingest.client() as smtp,
    ):
        await smtp.mail("sender@outside.example")
        replies = {
            address: await smtp.execute_command(f"RCPT TO:{address}".encode())
            for address in (
                "<victim@elsewhere.example>",
                "<@a.example,@relay.example:victim@elsewhere.example>",
                "<victim%elsewhere.example@a.example>",
                "<elsewhere.example!victim@a.example>",
                "<victim@[192.0.2.1]>",
            )
        }
        after = await smtp.noop()
    assert {a: (r.code, r.message[:5]) for a, r in replies.items()} == {
        a: (550, "5.7.1") for a in replies
    }
    assert after.code == 250


@pytest.mark.parametrize(
    ("settings", "status", "expected"),
    [
        ({}, AddressStatus.INVALID, "550 5.1.1 Recipient address rejected: the address is marked"),
        (
            {"invalid_ndr_text": "This mailbox is closed, write to help@a.example"},
            AddressStatus.INVALID,
            "550 5.1.1 This mailbox is closed, write to help@a.example",
        ),
        ({"discovery_enabled": False}, None, "550 5.1.1 Recipient address rejected: user unknown"),
        ({"directory_sync_enabled": True}, None, "550 5.1.1 Recipient address rejected"),
        ({"monitor_mode": True}, AddressStatus.INVALID, "250 "),
    ],
    ids=["invalid", "invalid-custom-ndr", "discovery-off", "directory-sync", "monitor-mode"],
)
async def test_tenant_policy_decides_without_a_callout(
    kafka_bootstrap: str,
    tmp_path: Path,
    postfix_servers: dict[str, PostfixServer],
    settings: dict[str, object],
    status: AddressStatus | None,
    expected: str,
) -> None:
    acme = tenant("acme", ["a.example"], postfix_servers["strict"].port, settings=settings)
    states = [state("acme", "alice@a.example", status)] if status else []
    async with running_ingest(kafka_bootstrap, tmp_path, [acme], states) as ingest:
        async with ingest.client() as smtp:
            await smtp.mail("sender@outside.example")
            reply = await _rcpt(smtp, "alice@a.example")
        assert f"{reply.code} {reply.message}".startswith(expected)
        metric = "smtp_discovery_ingest_verification_cache_lookups_total"
        assert ingest.count(metric, result="miss") == 0, "no callout may be made"


async def test_a_greylisting_destination_defers_and_is_not_asked_again_at_once(
    kafka_bootstrap: str, tmp_path: Path, postfix_servers: dict[str, PostfixServer]
) -> None:
    """A tempfail is remembered for a short while: the client repeating the address gets the
    same answer without another callout to the tenant's server."""
    grey = tenant("grey", ["g.example"], postfix_servers["greylist"].port)
    async with running_ingest(kafka_bootstrap, tmp_path, [grey]) as ingest:
        async with ingest.client() as smtp:
            await smtp.mail("sender@outside.example")
            first = await _rcpt(smtp, "dave@g.example")
            second = await _rcpt(smtp, "dave@g.example")
        assert (first.code, first.message[:5]) == (451, "4.4.3")
        assert (second.code, second.message[:5]) == (451, "4.4.3")
        (event,) = await ingest.events(1)
        assert isinstance(event, CalloutTempfailed)
        assert (event.reason, event.reply_code) == ("reply_4xx", 450)
        lookups = "smtp_discovery_ingest_verification_cache_lookups_total"
        assert (ingest.count(lookups, result="miss"), ingest.count(lookups, result="hit")) == (1, 1)


async def test_an_unreachable_destination_tempfails_after_trying_every_host(
    kafka_bootstrap: str, tmp_path: Path, postfix_servers: dict[str, PostfixServer]
) -> None:
    from smtp_discovery.localkafka.node import free_port
    from smtp_discovery.schemas.tenant import Destination

    dead = tenant("dead", ["a.example"], free_port())
    dead = dead.model_copy(
        update={
            "destinations": (
                *dead.destinations,
                Destination(host="127.0.0.1", port=free_port(), priority=20),
            )
        }
    )
    async with running_ingest(kafka_bootstrap, tmp_path, [dead]) as ingest:
        async with ingest.client() as smtp:
            await smtp.mail("sender@outside.example")
            reply = await _rcpt(smtp, "alice@a.example")
        assert (reply.code, reply.message[:5]) == (451, "4.4.3")
        (event,) = await ingest.events(1)
        assert isinstance(event, CalloutTempfailed) and event.reason == "connect_failed"


async def test_a_catch_all_destination_is_flagged_and_proves_nothing(
    kafka_bootstrap: str, tmp_path: Path, postfix_servers: dict[str, PostfixServer]
) -> None:
    catchy = tenant("catchy", ["c.example"], postfix_servers["catchall"].port)
    async with running_ingest(kafka_bootstrap, tmp_path, [catchy]) as ingest:
        async with ingest.client() as smtp:
            await smtp.sendmail("sender@outside.example", ["anyone@c.example"], MESSAGE)
            await smtp.sendmail("sender@outside.example", ["someone@c.example"], MESSAGE)
        await ingest.events(5)
    # The node has stopped and flushed what it published: every event, a second check included
    # if there were one, is on the topics now.
    events = await ingest.all_events()
    checks = [e for e in events if isinstance(e, CatchAllChecked)]
    assert [c.catch_all for c in checks] == [True], "checked once, not per callout"
    verified = [e for e in events if isinstance(e, CalloutVerified)]
    delivered = [e for e in events if isinstance(e, RecipientDelivered)]
    assert len(verified) == 2 and all(e.catch_all for e in verified)
    assert len(delivered) == 2 and all(e.catch_all for e in delivered)


async def test_a_harvesting_client_is_slowed_then_disconnected(
    kafka_bootstrap: str, tmp_path: Path, postfix_servers: dict[str, PostfixServer]
) -> None:
    acme = tenant(
        "acme", ["a.example"], postfix_servers["strict"].port, settings={"dha_max_rejections": 2}
    )
    async with running_ingest(kafka_bootstrap, tmp_path, [acme]) as ingest:
        smtp = ingest.client()
        await smtp.connect()
        await smtp.mail("harvester@outside.example")
        codes = [(await _rcpt(smtp, f"guess{i}@a.example")).code for i in range(4)]
        assert codes == [550, 550, 450, 450]
        last = await _rcpt(smtp, "guess4@a.example")
        assert (last.code, last.message[:5]) == (421, "4.7.0")
        with pytest.raises(aiosmtplib.SMTPServerDisconnected):
            await smtp.noop()
        assert ingest.delays and all(d > 0 for d in ingest.delays), "deferrals are slowed"
        async with ingest.client() as other:  # the node keeps serving everyone else
            assert (await other.noop()).code == 250


async def test_the_spam_header_makes_a_delivery_not_clean(
    kafka_bootstrap: str, tmp_path: Path, postfix_servers: dict[str, PostfixServer], acme
) -> None:
    states = [state("acme", "alice@a.example", AddressStatus.PENDING)]
    spam = b"X-Spam-Flag: YES\r\nSubject: buy\r\n\r\nNow.\r\n"
    async with running_ingest(kafka_bootstrap, tmp_path, [acme], states) as ingest:
        async with ingest.client() as smtp:
            await smtp.sendmail("sender@outside.example", ["alice@a.example"], spam)
            await smtp.sendmail("sender@outside.example", ["alice@a.example"], MESSAGE)
        events = [e for e in await ingest.events(3) if isinstance(e, RecipientDelivered)]
    assert [e.verdict for e in events] == ["not_clean", "clean"]


async def test_recipients_of_two_destinations_are_split_across_transactions(
    kafka_bootstrap: str, tmp_path: Path, postfix_servers: dict[str, PostfixServer], acme
) -> None:
    beta = tenant("beta", ["b.example"], postfix_servers["catchall"].port)
    states = [
        state("acme", "alice@a.example", AddressStatus.USER),
        state("beta", "carol@b.example", AddressStatus.USER),
    ]
    async with (
        running_ingest(
            kafka_bootstrap,
            tmp_path,
            [acme, beta],
            states,
            env={"DISCOVERY_INGEST_MAX_RECIPIENTS": "2"},
        ) as ingest,
        ingest.client() as smtp,
    ):
        await smtp.mail("sender@outside.example")
        first = await _rcpt(smtp, "alice@a.example")
        other = await _rcpt(smtp, "carol@b.example")
        again = await _rcpt(smtp, "alice@a.example")
        too_many = await _rcpt(smtp, "alice@a.example")
        await smtp.rset()
        await smtp.mail("sender@outside.example")
        retried = await _rcpt(smtp, "carol@b.example")
    assert (first.code, again.code, retried.code) == (250, 250, 250)
    assert (other.code, other.message[:5]) == (452, "4.5.3")
    assert (too_many.code, too_many.message[:5]) == (452, "4.5.3")


async def test_a_stopping_node_finishes_transactions_in_flight_and_refuses_new_ones(
    kafka_bootstrap: str, tmp_path: Path, postfix_servers: dict[str, PostfixServer], acme
) -> None:
    import asyncio

    strict = postfix_servers["strict"]
    before = len(strict.delivered("alice@a.example"))
    states = [state("acme", "alice@a.example", AddressStatus.USER)]
    async with running_ingest(kafka_bootstrap, tmp_path, [acme], states) as ingest:
        busy = ingest.client()
        idle = ingest.client()
        await busy.connect()
        await idle.connect()
        await busy.ehlo()
        await idle.ehlo()
        await busy.mail("sender@outside.example")
        await busy.rcpt("alice@a.example")
        port = ingest.port
        stopping = asyncio.create_task(ingest.node.stop(drain_s=30))
        while not stopping.done() and ingest.node._server.is_serving():  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        with pytest.raises(aiosmtplib.SMTPConnectError):
            await aiosmtplib.SMTP(hostname="127.0.0.1", port=port, timeout=5).connect()
        reply = await busy.data(MESSAGE)
        assert reply.code == 250, reply
        await busy.quit()
        await asyncio.wait_for(stopping, 30)
        with pytest.raises(aiosmtplib.SMTPServerDisconnected):
            await idle.noop()
        (event,) = await ingest.events(1)
        assert isinstance(event, RecipientDelivered)
    assert len(await strict.wait_delivered("alice@a.example", before + 1)) == before + 1
