"""The tenant-server stand-in behaves as the ingest tests rely on (a real Postfix)."""

from __future__ import annotations

import uuid

import aiosmtplib

from tests.ingest.postfix import PostfixServer


async def rcpt(server: PostfixServer, address: str) -> int:
    client = aiosmtplib.SMTP(hostname="127.0.0.1", port=server.port, timeout=10)
    await client.connect()
    try:
        await client.ehlo()
        await client.mail("")
        response = await client.execute_command(f"RCPT TO:<{address}>".encode())
        return response.code
    finally:
        client.close()


async def test_strict_rejects_unknown_users_at_rcpt(
    postfix_servers: dict[str, PostfixServer],
) -> None:
    assert await rcpt(postfix_servers["strict"], "alice@a.example") == 250
    assert await rcpt(postfix_servers["strict"], "nobody@a.example") == 550


async def test_greylist_defers(postfix_servers: dict[str, PostfixServer]) -> None:
    assert await rcpt(postfix_servers["greylist"], "alice@a.example") == 450


async def test_catchall_accepts_anything(postfix_servers: dict[str, PostfixServer]) -> None:
    assert await rcpt(postfix_servers["catchall"], "x7f3k9q2@a.example") == 250


async def test_strict_delivers_to_mailboxes(postfix_servers: dict[str, PostfixServer]) -> None:
    """The servers are shared by the session, so other tests may have filled bob's mailbox
    already: look for this test's own message among those delivered after it was sent."""
    server = postfix_servers["strict"]
    before = len(server.delivered("bob@a.example"))
    subject = f"hello {uuid.uuid4().hex}".encode()
    await aiosmtplib.send(
        b"Subject: " + subject + b"\r\n\r\nbody\r\n",
        sender="sender@elsewhere.example",
        recipients=["bob@a.example"],
        hostname="127.0.0.1",
        port=server.port,
    )
    messages = await server.wait_delivered("bob@a.example", before + 1)
    assert any(b"Subject: " + subject in m for m in messages), server.log_text()[-2000:]
