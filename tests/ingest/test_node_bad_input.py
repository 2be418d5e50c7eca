"""Hostile and broken clients: every mistake gets a specific reply and the node keeps serving."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from smtp_discovery.schemas.state import AddressStatus
from tests.ingest.harness import Ingest, running_ingest, state, tenant
from tests.ingest.postfix import PostfixServer

pytestmark = pytest.mark.kafka


class Raw:
    """A byte-level SMTP client: sends exactly what the test says, reads whole replies."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, ingest: Ingest) -> Raw:
        reader, writer = await asyncio.open_connection("127.0.0.1", ingest.port, limit=1 << 20)
        raw = cls(reader, writer)
        assert (await raw.reply()).startswith("220 ")
        return raw

    async def reply(self) -> str:
        """One reply (the last line of a multi-line one), or "" once the server closed."""
        while True:
            line = await asyncio.wait_for(self.reader.readline(), 30)
            if not line:
                return ""
            text = line.decode("utf-8", "replace").rstrip("\r\n")
            if len(text) < 4 or text[3] != "-":
                return text

    async def send(self, data: bytes, replies: int = 1) -> list[str]:
        self.writer.write(data)
        await self.writer.drain()
        return [await self.reply() for _ in range(replies)]

    async def command(self, line: str | bytes) -> str:
        data = line if isinstance(line, bytes) else line.encode()
        (answer,) = await self.send(data + b"\r\n")
        return answer

    async def close(self) -> None:
        self.writer.close()


@pytest.fixture
async def ingest(kafka_bootstrap: str, tmp_path: Path, postfix_servers: dict[str, PostfixServer]):  # type: ignore[no-untyped-def]
    acme = tenant("acme", ["a.example"], postfix_servers["strict"].port)
    env = {
        "DISCOVERY_INGEST_MAX_MESSAGE_BYTES": "4096",
        "DISCOVERY_INGEST_MAX_COMMANDS": "20",
    }
    states = [state("acme", "alice@a.example", AddressStatus.USER)]
    async with running_ingest(kafka_bootstrap, tmp_path, [acme], states, env=env) as node:
        yield node


async def _session(ingest: Ingest) -> Raw:
    raw = await Raw.open(ingest)
    assert (await raw.command("EHLO client.example")).startswith("250 ")
    return raw


CASES = [
    ("RCPT TO:<alice@a.example>", "503 "),
    ("DATA", "503 "),
    ("MAIL FROM bogus", "501 "),
    ("FOO bar", "500 "),
    ("MAIL FROM:<" + "x" * 600 + "@outside.example>", "500 "),
]


@pytest.mark.parametrize(("line", "expected"), CASES, ids=[c[1] + c[0][:12] for c in CASES])
async def test_protocol_mistakes_get_specific_replies(
    ingest: Ingest, line: str, expected: str
) -> None:
    raw = await _session(ingest)
    assert (await raw.command(line)).startswith(expected)
    assert (await raw.command("NOOP")).startswith("250")
    await raw.close()


ADDRESSES = [
    (b"<a\x00b@a.example>", "553 5.1.3"),
    (b"<" + b"l" * 65 + b"@a.example>", "553 5.1."),
    (b"<user@xn--zz.example>", "553 5.1.3"),
    ("<user@ex\u00e4mple\u2024com>".encode(), "553 5.1."),
    (b"<user@a..example>", "553 5.1."),
    (b"<@a.example,@b.example:victim@elsewhere.example>", "550 5.7.1"),
    (b"<victim%elsewhere.example@a.example>", "550 5.7.1"),
    (b"<victim@unregistered.example>", "550 5.7.1"),
]


@pytest.mark.parametrize(
    ("address", "expected"),
    ADDRESSES,
    ids=[a[0][:24].decode("utf-8", "replace") for a in ADDRESSES],
)
async def test_bad_recipients_are_refused_with_a_reason(
    ingest: Ingest, address: bytes, expected: str
) -> None:
    raw = await _session(ingest)
    assert (await raw.command("MAIL FROM:<sender@outside.example>")).startswith("250")
    assert (await raw.command(b"RCPT TO:" + address)).startswith(expected)
    assert (await raw.command("RCPT TO:<alice@a.example>")).startswith("250"), "still serving"
    await raw.close()


async def test_an_oversized_message_is_refused_and_not_delivered(ingest: Ingest) -> None:
    raw = await _session(ingest)
    await raw.command("MAIL FROM:<sender@outside.example>")
    await raw.command("RCPT TO:<alice@a.example>")
    assert (await raw.command("DATA")).startswith("354")
    body = b"Subject: big\r\n\r\n" + (b"y" * 70 + b"\r\n") * 100 + b".\r\n"
    (answer,) = await raw.send(body)
    assert answer.startswith("552 ")
    assert (await raw.command("NOOP")).startswith("250")
    await raw.close()
    assert await ingest.events(1, timeout=1) == [], "nothing was delivered"


async def test_an_overlong_line_in_a_message_is_refused(ingest: Ingest) -> None:
    raw = await _session(ingest)
    await raw.command("MAIL FROM:<sender@outside.example>")
    await raw.command("RCPT TO:<alice@a.example>")
    await raw.command("DATA")
    (answer,) = await raw.send(b"Subject: long\r\n\r\n" + b"z" * 2000 + b"\r\n.\r\n")
    assert answer.startswith("500 Line too long")
    assert (await raw.command("NOOP")).startswith("250")


async def test_pipelined_commands_are_answered_in_order(ingest: Ingest) -> None:
    raw = await _session(ingest)
    burst = (
        b"MAIL FROM:<sender@outside.example>\r\n"
        b"RCPT TO:<nobody@unregistered.example>\r\n"
        b"RCPT TO:<alice@a.example>\r\n"
        b"RSET\r\n"
        b"NOOP\r\n"
    )
    answers = await raw.send(burst, replies=5)
    assert [a[:3] for a in answers] == ["250", "550", "250", "250", "250"]


async def test_too_many_commands_close_the_connection(ingest: Ingest) -> None:
    raw = await _session(ingest)
    answers = [await raw.command("NOOP") for _ in range(21)]
    assert answers[:20] == ["250 OK"] * 20
    assert answers[20].startswith("421 4.7.0")
    assert await raw.reply() == "", "the node hung up"
    other = await _session(ingest)  # and serves the next client
    assert (await other.command("NOOP")).startswith("250")


async def test_a_bare_lf_dot_does_not_end_a_message(
    ingest: Ingest, postfix_servers: dict[str, PostfixServer]
) -> None:
    """SMTP smuggling: LF.LF inside DATA must not start a second, forged message."""
    strict = postfix_servers["strict"]
    before = len(strict.delivered("alice@a.example"))
    raw = await _session(ingest)
    await raw.command("MAIL FROM:<sender@outside.example>")
    await raw.command("RCPT TO:<alice@a.example>")
    await raw.command("DATA")
    smuggled = (
        b"Subject: one\r\n\r\nfirst\n.\nMAIL FROM:<forged@a.example>\n"
        b"RCPT TO:<bob@a.example>\nDATA\nSubject: forged\n\r\n.\r\n"
    )
    (answer,) = await raw.send(smuggled)
    assert answer.startswith("250")
    assert (await raw.command("QUIT")).startswith("221")
    delivered = await strict.wait_delivered("alice@a.example", before + 1)
    assert len(delivered) == before + 1
    assert b"forged@a.example" in delivered[-1], "the smuggled lines stayed inside the message"
    assert strict.delivered("bob@a.example") == [] or all(
        b"Subject: forged" not in m for m in strict.delivered("bob@a.example")
    )


PATHS = [
    (b"<alice@a.example", "501 5.1.3"),
    (b"alice@a.example>", "501 5.1.3"),
    (b"<<alice@a.example>>", "501 5.1.3"),
    (b"<alice@a.example>junk", "501 5.1.3"),
    (b"<alice@a.example> ===", "501 5.1.3"),
    (b"<alice@a.example> NOTIFY=NEVER", "250 "),  # a real ESMTP parameter
    (b" <alice@a.example>", "250 "),  # leniency real MTAs need: a space after the colon
    (b"alice@a.example", "250 "),  # and a path without angle brackets
]


@pytest.mark.parametrize(("path", "expected"), PATHS, ids=[p[0].decode() for p in PATHS])
async def test_a_recipient_path_is_strict_where_no_real_mta_is_lenient(
    ingest: Ingest, path: bytes, expected: str
) -> None:
    raw = await _session(ingest)
    assert (await raw.command("MAIL FROM:<sender@outside.example>")).startswith("250")
    answer = await raw.command(b"RCPT TO:" + path)
    # NOTIFY is DSN, which aiosmtpd does not offer: its 555 still proves the path was read.
    assert answer.startswith(expected) or (b"NOTIFY" in path and answer.startswith("555")), answer
    assert (await raw.command("RCPT TO:<alice@a.example>")).startswith("250"), "still serving"
    await raw.close()


async def test_an_unbalanced_sender_path_is_refused(ingest: Ingest) -> None:
    raw = await _session(ingest)
    assert (await raw.command("MAIL FROM:<sender@outside.example")).startswith("501 5.1.3")
    assert (await raw.command("MAIL FROM:<sender@outside.example>")).startswith("250")


@pytest.mark.parametrize(
    "request_line", ["GET / HTTP/1.1", "POST /login HTTP/1.0", "CONNECT a.example:25 HTTP/1.1",
                     "Host: mx.a.example", "User-Agent: curl/8.0"],
)  # fmt: skip
async def test_an_http_request_is_answered_once_and_the_connection_closed(
    ingest: Ingest, request_line: str
) -> None:
    raw = await Raw.open(ingest)
    (answer,) = await raw.send(f"{request_line}\r\nHost: a\r\nAccept: */*\r\n\r\n".encode())
    assert answer.startswith("221 2.7.0")
    assert await raw.reply() == "", "the node hung up after one answer"


async def test_every_reply_leaves_in_one_write(
    ingest: Ingest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """EHLO's reply is several lines; a client that reads one segment as the whole reply must
    get all of them. Counted at the server's transport, the writes a reply takes; and at the
    socket, one read after the reply's first byte holds all of it."""
    from smtp_discovery.ingest.server import IngestSMTP

    writes: list[bytes] = []
    made = IngestSMTP.connection_made

    def counting(self: IngestSMTP, transport: asyncio.BaseTransport) -> None:
        write = transport.write  # type: ignore[attr-defined]

        def recorded(data: bytes) -> None:
            writes.append(bytes(data))
            write(data)

        transport.write = recorded  # type: ignore[attr-defined]
        made(self, transport)

    monkeypatch.setattr(IngestSMTP, "connection_made", counting)
    for _ in range(5):
        reader, writer = await asyncio.open_connection("127.0.0.1", ingest.port)
        await reader.readline()  # the greeting
        writes.clear()
        writer.write(b"EHLO client.example\r\n")
        await writer.drain()
        first = await reader.read(65536)  # whatever the first segment holds
        lines = first.decode().split("\r\n")
        assert lines[0].startswith("250-") and lines[-2].startswith("250 "), first
        assert lines[-1] == "", "the whole reply, and nothing after it"
        assert len(writes) == 1, writes
        writer.close()
