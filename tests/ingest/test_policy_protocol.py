"""The policy delegation protocol and the socketmap codec, as pure functions: what Postfix sends
is read as it means it, what it never sends gets a specific answer, and every decision of the
ingest node maps onto the access(5) action that keeps its meaning."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smtp_discovery.ingest import socketmap
from smtp_discovery.ingest.policy_protocol import (
    MAX_LINE_BYTES,
    PolicyRequest,
    ProtocolError,
    TempfailAction,
    format_action,
    parse_block,
    parse_line,
    parse_request,
    refusal,
)
from smtp_discovery.platform.views import TenantDirectory
from smtp_discovery.schemas.codec import encode
from smtp_discovery.schemas.tenant import Destination
from tests.ingest.harness import tenant

POSTFIX_RCPT = [
    b"request=smtpd_access_policy",
    b"protocol_state=RCPT",
    b"protocol_name=ESMTP",
    b"client_address=192.0.2.7",
    b"helo_name=mail.partner.example",
    b"sender=news@partner.example",
    b"recipient=bob@a.example",
    b"instance=1b2e.6781f2c1.a1b2c.0",
    b"encryption_cipher=",
    b"policy_context=",
]


def test_a_postfix_request_is_read_attribute_by_attribute() -> None:
    request = parse_request([*POSTFIX_RCPT, b"", b"request=ignored-after-the-end"])
    assert (request.request, request.state) == ("smtpd_access_policy", "RCPT")
    assert request.get("recipient") == "bob@a.example"
    assert request.get("encryption_cipher") == "" and request.get("never_sent") == ""


def test_values_keep_equals_signs_and_utf8() -> None:
    assert parse_line("recipient=jörg=x@köln.example".encode()) == (
        "recipient",
        "jörg=x@köln.example",
    )
    assert parse_line(b"sender=a@b.example\r") == ("sender", "a@b.example")
    assert parse_line(b"") is None


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        (b"no equals sign", "attribute line without '='"),
        (b"=value", "bad attribute name ''"),
        (b"Bad-Name=x", "bad attribute name 'Bad-Name'"),
        ("n\u00e4me=x".encode(), "attribute name is not ASCII"),
        (b"recipient=" + b"x" * MAX_LINE_BYTES, f"longer than {MAX_LINE_BYTES} bytes"),
    ],
)
def test_what_postfix_never_sends_is_refused_by_name(line: bytes, problem: str) -> None:
    with pytest.raises(ProtocolError, match=problem):
        parse_line(line)


def test_too_many_attributes_are_refused() -> None:
    with pytest.raises(ProtocolError, match="more than 200 attributes"):
        parse_request([f"a{i}=x".encode() for i in range(201)])


_NAMES = st.from_regex(r"[a-z_][a-z0-9_]{0,70}", fullmatch=True)
_VALUES = st.text(st.characters(blacklist_characters="\n\r", blacklist_categories=("Cs",)),
                  max_size=40)  # fmt: skip


@given(st.dictionaries(_NAMES, _VALUES, min_size=1, max_size=40), st.booleans())
def test_a_whole_block_reads_as_its_lines_do(attributes: dict[str, str], crlf: bool) -> None:
    """The one-pass reading of a request and the line-by-line one agree, odd forms included
    (a CR before each newline, names longer than the fast path takes)."""
    end = "\r\n" if crlf else "\n"
    block = ("".join(f"{k}={v}{end}" for k, v in attributes.items()) + "\n").encode()
    assert parse_block(block).attributes == attributes


@pytest.mark.parametrize(
    ("block", "problem"),
    [
        (b"\n\n", "request without attributes"),
        (b"\nrequest=x\n\n", "empty line inside a request"),
        (b"request=x\nno equals sign\n\n", "attribute line without '='"),
        (b"".join(b"a%d=x\n" % i for i in range(201)) + b"\n", "more than 200 attributes"),
    ],
)
def test_a_broken_block_is_refused_by_name(block: bytes, problem: str) -> None:
    with pytest.raises(ProtocolError, match=problem):
        parse_block(block)


def test_an_answer_is_one_action_line_and_an_empty_line() -> None:
    assert format_action("OK") == b"action=OK\n\n"
    # A newline inside would end the answer early and desynchronise Postfix.
    assert format_action("550 5.1.1 two\nlines") == b"action=550 5.1.1 two lines\n\n"


@pytest.mark.parametrize(
    ("reply", "tempfail", "action"),
    [
        ("550 5.1.1 No such user", TempfailAction.REPLY, "550 5.1.1 No such user"),
        ("550 5.1.1 No such user", TempfailAction.DEFER_IF_PERMIT, "550 5.1.1 No such user"),
        ("451 4.4.3 Try later", TempfailAction.REPLY, "451 4.4.3 Try later"),
        ("451 4.4.3 Try later", TempfailAction.DEFER_IF_PERMIT, "DEFER_IF_PERMIT 4.4.3 Try later"),
        # Harvest protection's 421 closes the connection: only the numeric reply does that.
        ("421 4.7.0 Too many", TempfailAction.DEFER_IF_PERMIT, "421 4.7.0 Too many"),
    ],
)
def test_decisions_map_onto_access_actions(
    reply: str, tempfail: TempfailAction, action: str
) -> None:
    assert refusal(reply, tempfail) == action


def test_a_reply_without_an_enhanced_status_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="not an SMTP reply"):
        refusal("250 fine")


def test_request_state_is_case_insensitive() -> None:
    assert PolicyRequest({"protocol_state": "end-of-message"}).state == "END-OF-MESSAGE"


# ---- socketmap ---------------------------------------------------------------------------------


@given(st.lists(st.binary(max_size=300), max_size=8), st.integers(min_value=1, max_value=50))
def test_netstrings_survive_any_split(payloads: list[bytes], chunk: int) -> None:
    stream = b"".join(socketmap.netstring(p) for p in payloads)
    reader = socketmap.NetstringReader()
    out = []
    for start in range(0, len(stream), chunk):
        out += reader.feed(stream[start : start + chunk])
    assert out == payloads and reader.pending == 0


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (b"x5:relay,", "not a decimal number"),
        (b"05:relay,", "not a decimal number"),
        (b"5:relayX", "does not end with ','"),
        (b"999999:", "longer than"),
        (b"1234567", "has no ':'"),
    ],
)
def test_broken_netstrings_are_refused_by_name(data: bytes, problem: str) -> None:
    with pytest.raises(socketmap.NetstringError, match=problem):
        socketmap.NetstringReader().feed(data)


def _directory(*tenants: object) -> TenantDirectory:
    directory = TenantDirectory()
    for config in tenants:
        directory.apply(config.kafka_key(), encode(config))  # type: ignore[attr-defined]
    return directory


def test_lookups_answer_from_the_tenants_view() -> None:
    mx = tenant("mx", ["köln.example"], None).model_copy(
        update={"destinations": (Destination(kind="mx", domain="mail.koeln.example", port=26),)}
    )
    void = tenant("void", ["v.example"], None)
    directory = _directory(tenant("acme", ["a.example"], 2525), mx, void)
    answer = socketmap.answer
    assert answer(b"relay a.example", directory) == b"7:OK acme,"
    assert answer(b"relay xn--kln-sna.example", directory) == b"5:OK mx,"
    assert answer(b"transport bob@A.example", directory) == b"24:OK smtp:[127.0.0.1]:2525,"
    assert answer("transport jörg@köln.example".encode(), directory) == (
        socketmap.found("smtp:mail.koeln.example:26")
    )
    # No destination: the mail waits in the queue; not found would send it to the public MX.
    assert answer(b"transport x@v.example", directory) == socketmap.found(socketmap.NO_DESTINATION)
    for key in (b"nowhere.example", b".a.example", b"*", b"x@[192.0.2.1]", b"bad..domain"):
        assert answer(b"relay " + key, directory) == socketmap.NOT_FOUND, key


def test_bad_lookups_get_a_permanent_error_and_an_incomplete_view_a_temporary_one() -> None:
    directory = _directory(tenant("acme", ["a.example"], 2525))
    assert socketmap.answer(b"relay", directory) == socketmap.perm(
        "request is not '<map name> <key>'"
    )
    assert socketmap.answer(b"virtual a.example", directory) == socketmap.perm(
        "no map named 'virtual' (maps: relay, transport)"
    )
    assert socketmap.answer(b"relay \xff", directory) == socketmap.perm("request is not UTF-8")
    assert socketmap.answer(b"relay a.example", directory, ready=False) == socketmap.temp(
        "the tenants view is still loading"
    )
