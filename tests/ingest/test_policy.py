from __future__ import annotations

import pytest

from smtp_discovery.ingest.policy import (
    CalloutResult,
    ProbeReading,
    Verdict,
    after_callout,
    decide_rcpt,
    read_rcpt_reply,
)
from smtp_discovery.schemas.address import parse_address
from smtp_discovery.schemas.state import AddressStatus as S
from smtp_discovery.schemas.tenant import DiscoverySettings

ON = DiscoverySettings(discovery_enabled=True)
ALICE = parse_address("alice@a.example")


@pytest.mark.parametrize(
    ("status", "verdict", "reply"),
    [
        (S.USER, Verdict.ACCEPT, "250 2.1.5"),
        (S.FUNCTIONAL, Verdict.ACCEPT, "250 2.1.5"),
        (S.ALIAS, Verdict.ACCEPT, "250 2.1.5"),
        (
            S.INVALID,
            Verdict.REJECT,
            "550 5.1.1 Recipient address rejected: the address is marked invalid",
        ),
        (S.PENDING, Verdict.CALLOUT, "0"),
        (S.DISCOVERED, Verdict.CALLOUT, "0"),
        (None, Verdict.CALLOUT, "0"),
    ],
)
def test_rcpt_by_address_state(status: S | None, verdict: Verdict, reply: str) -> None:
    decision = decide_rcpt(ALICE, ON, status)
    assert decision.verdict is verdict
    assert decision.reply.startswith(reply)


def test_unregistered_domains_are_never_relayed_even_in_monitor_mode() -> None:
    decision = decide_rcpt(ALICE, None, None)
    assert decision.reply == "550 5.7.1 Relaying denied"


def test_percent_and_bang_relay_hacks_are_refused() -> None:
    for text in ("bob%victim.example@a.example", "victim.example!bob@a.example"):
        assert decide_rcpt(parse_address(text), ON, None).reply.startswith("550 5.7.1")


@pytest.mark.parametrize(
    ("settings", "reason"),
    [
        (DiscoverySettings(discovery_enabled=False), "discovery_off"),
        (DiscoverySettings(discovery_enabled=True, directory_sync_enabled=True), "directory_sync"),
    ],
)
def test_unknown_recipients_are_rejected_when_discovery_cannot_run(
    settings: DiscoverySettings, reason: str
) -> None:
    for status in (None, S.PENDING, S.DISCOVERED):
        decision = decide_rcpt(ALICE, settings, status)
        assert decision.reply == "550 5.1.1 Recipient address rejected: user unknown"
        assert decision.reason == reason
    assert decide_rcpt(ALICE, settings, S.USER).verdict is Verdict.ACCEPT


def test_the_tenants_ndr_text_is_used_for_invalid_addresses() -> None:
    settings = DiscoverySettings(discovery_enabled=True, invalid_ndr_text="Gone: ask IT")
    assert decide_rcpt(ALICE, settings, S.INVALID).reply == "550 5.1.1 Gone: ask IT"


def test_monitor_mode_accepts_what_it_would_reject_and_says_so() -> None:
    settings = DiscoverySettings(discovery_enabled=True, monitor_mode=True)
    decision = decide_rcpt(ALICE, settings, S.INVALID)
    assert (decision.verdict, decision.monitored, decision.reason) == (
        Verdict.ACCEPT,
        True,
        "invalid",
    )
    missing = after_callout(CalloutResult.MISSING, settings, None)
    assert (missing.verdict, missing.monitored) == (Verdict.ACCEPT, True)


def test_after_callout() -> None:
    assert after_callout(CalloutResult.EXISTS, ON, None).reply == "250 2.1.5 Recipient OK"
    assert after_callout(CalloutResult.MISSING, ON, None).reply.startswith("550 5.1.1")
    assert after_callout(CalloutResult.TEMPFAIL, ON, S.PENDING).reply.startswith("451 4.4.3")


def test_tempfail_policy_accept_if_known() -> None:
    settings = DiscoverySettings(discovery_enabled=True, tempfail_policy="accept_if_known")
    assert after_callout(CalloutResult.TEMPFAIL, settings, S.DISCOVERED).verdict is Verdict.ACCEPT
    assert after_callout(CalloutResult.TEMPFAIL, settings, S.PENDING).verdict is Verdict.ACCEPT
    assert after_callout(CalloutResult.TEMPFAIL, settings, None).verdict is Verdict.DEFER


@pytest.mark.parametrize(
    ("code", "text", "result", "reason"),
    [
        (250, "2.1.5 Ok", CalloutResult.EXISTS, None),
        (450, "4.2.0 Greylisted", CalloutResult.TEMPFAIL, "reply_4xx"),
        # Refusals of the probe's form: nothing learnt about the mailbox.
        (501, "5.1.3 Bad recipient address syntax", CalloutResult.TEMPFAIL, "probe_refused"),
        (500, "5.5.2 Error: command not recognized", CalloutResult.TEMPFAIL, "probe_refused"),
        (503, "5.5.1 Error: need MAIL command", CalloutResult.TEMPFAIL, "probe_refused"),
        (555, "5.5.4 Unsupported option: SMTPUTF8", CalloutResult.TEMPFAIL, "probe_refused"),
        (
            553,
            "5.1.3 Bad destination mailbox address syntax",
            CalloutResult.TEMPFAIL,
            "probe_refused",
        ),
        (550, "5.5.0 Syntax error", CalloutResult.TEMPFAIL, "probe_refused"),
        # Refusals of the mailbox.
        (550, "5.1.1 <x@a.example>: User unknown", CalloutResult.MISSING, None),
        (550, "5.1.10 Recipient address rejected: null MX", CalloutResult.MISSING, None),
        (551, "5.1.6 User has moved", CalloutResult.MISSING, None),
        (550, "5.2.1 Mailbox disabled", CalloutResult.MISSING, None),
        (550, "No such user here", CalloutResult.MISSING, None),
        (553, "Mailbox name not allowed", CalloutResult.MISSING, None),
        # Other refusals prove nothing about the mailbox.
        (554, "5.7.1 Relay access denied", CalloutResult.TEMPFAIL, "reply_5xx"),
        (550, "5.7.1 Policy rejection", CalloutResult.TEMPFAIL, "reply_5xx"),
        (552, "5.2.2 Mailbox full", CalloutResult.TEMPFAIL, "reply_5xx"),
        (554, "Transaction failed", CalloutResult.TEMPFAIL, "reply_5xx"),
    ],
)
def test_only_a_refusal_of_the_mailbox_means_it_does_not_exist(
    code: int, text: str, result: CalloutResult, reason: str | None
) -> None:
    assert read_rcpt_reply(code, text) == ProbeReading(result, reason)
