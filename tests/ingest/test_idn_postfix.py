"""International domains and mailboxes against real Postfix: every form a client may use is
verified, relayed and discovered like an ASCII address, and a destination without SMTPUTF8 gets
no silent downgrade and no "user unknown".

Postfix looks up its tables with the address as it arrived, so a tenant's server lists its
domain and mailboxes in both forms (A-label and U-label); ``smtputf8_enable`` is Postfix's.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from smtp_discovery.localkafka.node import free_port
from smtp_discovery.schemas.mail import (
    CalloutRejected,
    CalloutTempfailed,
    CalloutVerified,
    RecipientDelivered,
)
from smtp_discovery.schemas.tenant import TenantConfig
from tests.ingest.harness import Ingest, running_ingest, tenant
from tests.ingest.postfix import PostfixServer
from tests.streams.world import World

pytestmark = pytest.mark.kafka

KOELN = ("köln.example", "xn--kln-sna.example")
MUENCHEN = ("münchen.example", "xn--mnchen-3ya.example")
CACHE_LOOKUPS = "smtp_discovery_ingest_verification_cache_lookups_total"
MESSAGE = "Subject: Grüße\r\n\r\nHallo.\r\n".encode()


def _both_forms(domains: tuple[str, str], locals_: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(f"{local}@{domain}" for domain in domains for local in locals_)


@pytest.fixture(scope="module")
def servers() -> Iterator[dict[str, PostfixServer]]:
    utf8 = PostfixServer(port=free_port(), domains=KOELN,
                         mailboxes=_both_forms(KOELN, ("alice", "bob", "jörg")))  # fmt: skip
    ascii_only = PostfixServer(port=free_port(), domains=MUENCHEN, smtputf8=False,
                               mailboxes=_both_forms(MUENCHEN, ("alice", "jörg")))  # fmt: skip
    started = []
    try:
        for server in (utf8, ascii_only):
            server.start()
            started.append(server)
        yield {"utf8": utf8, "ascii_only": ascii_only}
    finally:
        for server in started:
            server.stop()


async def _send(
    ingest: Ingest, recipient: str, *, smtputf8: bool, count: int = 1
) -> list[tuple[int, str]]:
    """``count`` messages to ``recipient`` in one session; the RCPT reply and DATA reply."""
    replies = []
    async with ingest.client() as smtp:
        for _ in range(count):
            options = ["SMTPUTF8"] if smtputf8 else []
            await smtp.mail("sender@outside.example", options=options)
            rcpt = await smtp.execute_command(f"RCPT TO:<{recipient}>".encode())
            if rcpt.code != 250:
                await smtp.rset()
                replies.append((rcpt.code, rcpt.message))
                continue
            data = await smtp.data(MESSAGE)
            replies.append((data.code, data.message))
    return replies


def _codes(replies: list[tuple[int, str]]) -> list[int]:
    return [code for code, _ in replies]


def _discovered(events: list[object], display: str, config: TenantConfig) -> str | None:
    """The status the streams rules give ``display`` after these events, in their order."""
    world = World(config=config)
    for event in events:
        if isinstance(event, (CalloutVerified, RecipientDelivered)):
            world.send(event)
    return world.status(display)


CASES = [
    # (id, recipient as the client writes it, SMTPUTF8, mailbox the relay delivered to)
    ("a-label", "bob@xn--kln-sna.example", False, "bob@xn--kln-sna.example"),
    ("u-label", "alice@köln.example", True, "alice@köln.example"),
    ("utf8-local-part", "jörg@köln.example", True, "jörg@köln.example"),
]


@pytest.mark.parametrize(("recipient", "smtputf8", "mailbox"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])  # fmt: skip
async def test_an_international_recipient_is_verified_relayed_and_discovered(
    kafka_bootstrap: str,
    tmp_path: Path,
    servers: dict[str, PostfixServer],
    recipient: str,
    smtputf8: bool,
    mailbox: str,
) -> None:
    utf8 = servers["utf8"]
    koeln = tenant("koeln", ["köln.example"], utf8.port)
    before = len(utf8.delivered(mailbox))
    async with running_ingest(kafka_bootstrap, tmp_path, [koeln]) as ingest:
        replies = await _send(ingest, recipient, smtputf8=smtputf8, count=3)
        assert [code for code, _ in replies] == [250, 250, 250], replies
        events = await ingest.events(5)  # the callout, a catch-all check, three deliveries
    assert len(await utf8.wait_delivered(mailbox, before + 3)) == before + 3
    display = recipient.split("@")[0] + "@köln.example"
    callouts = [e for e in events if isinstance(e, CalloutVerified)]
    deliveries = [e for e in events if isinstance(e, RecipientDelivered)]
    assert [e.address for e in callouts] == [display]
    assert [e.address for e in deliveries] == [display] * 3
    assert _discovered(events, display, koeln) == "discovered"
    assert "Illegal address syntax" not in utf8.log_text()


async def test_unknown_mailboxes_are_refused_in_either_form_and_share_one_identity(
    kafka_bootstrap: str, tmp_path: Path, servers: dict[str, PostfixServer]
) -> None:
    koeln = tenant("koeln", ["köln.example"], servers["utf8"].port)
    async with running_ingest(kafka_bootstrap, tmp_path, [koeln]) as ingest:
        (unknown,) = await _send(ingest, "nobody@xn--kln-sna.example", smtputf8=False)
        (unknown_utf8,) = await _send(ingest, "nobody@köln.example", smtputf8=True)
        assert unknown[0] == 550 and unknown_utf8[0] == 550, (unknown, unknown_utf8)
        # One record, one route key, one cache entry: the second form hits the first's answer.
        assert _codes(await _send(ingest, "alice@köln.example", smtputf8=True)) == [250]
        misses = ingest.count(CACHE_LOOKUPS, result="miss")
        assert _codes(await _send(ingest, "ALICE@xn--kln-sna.example", smtputf8=False)) == [250]
        assert ingest.count(CACHE_LOOKUPS, result="miss") == misses
        events = await ingest.events(4)  # two callouts (one per mailbox), their catch-all checks
    rejected = [e.address for e in events if isinstance(e, CalloutRejected)]
    assert rejected == ["nobody@köln.example"], "one callout for both forms, shown in U-labels"


async def test_a_destination_without_smtputf8_is_never_sent_a_downgrade(
    kafka_bootstrap: str, tmp_path: Path, servers: dict[str, PostfixServer]
) -> None:
    ascii_only = servers["ascii_only"]
    muenchen = tenant("muenchen", ["münchen.example"], ascii_only.port)
    before = len(ascii_only.delivered("alice@xn--mnchen-3ya.example"))
    async with running_ingest(kafka_bootstrap, tmp_path, [muenchen]) as ingest:
        # An ASCII mailbox in the A-label form needs nothing the destination lacks.
        assert _codes(await _send(ingest, "alice@xn--mnchen-3ya.example", smtputf8=False)) == [250]
        # A UTF-8 local part cannot be asked about: the tempfail policy, not "user unknown".
        (utf8_local,) = await _send(ingest, "jörg@münchen.example", smtputf8=True)
        assert utf8_local[0] == 451 and utf8_local[1].startswith("4.4.3"), utf8_local
        # A client that asked for SMTPUTF8 keeps it: the relay refuses rather than downgrade.
        (kept,) = await _send(ingest, "alice@münchen.example", smtputf8=True)
        assert kept[0] == 553 and kept[1].startswith("5.6.7"), kept
        events = await ingest.events(2)
    assert any(
        isinstance(e, CalloutTempfailed) and e.reason == "smtputf8_unsupported" for e in events
    ), events
    assert len(await ascii_only.wait_delivered("alice@xn--mnchen-3ya.example", before + 1)) == (
        before + 1
    )


async def test_a_refusal_of_the_probes_syntax_is_not_user_unknown(
    kafka_bootstrap: str, tmp_path: Path, servers: dict[str, PostfixServer]
) -> None:
    """Postfix answers 501 5.1.3 to an address form it cannot parse: that is a failed
    verification (the tempfail policy), never cached and never a 550."""
    koeln = tenant("koeln", ["köln.example"], servers["utf8"].port)
    async with running_ingest(kafka_bootstrap, tmp_path, [koeln]) as ingest:
        outcome = await ingest.node.prober.probe(
            await ingest.node.checker.destinations.targets(koeln),
            "bob@köln.example",  # the U-label without SMTPUTF8, as the old probe sent it
            "",
        )
    assert (outcome.result.value, outcome.reason, outcome.code) == (
        "tempfail", "probe_refused", 501)  # fmt: skip
