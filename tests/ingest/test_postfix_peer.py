"""The tenant-server stand-in behaves as the ingest tests rely on (a real Postfix)."""

from __future__ import annotations

import asyncio

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
    server = postfix_servers["strict"]
    await aiosmtplib.send(
        b"Subject: hello\r\n\r\nbody\r\n",
        sender="sender@elsewhere.example",
        recipients=["bob@a.example"],
        hostname="127.0.0.1",
        port=server.port,
    )
    for _ in range(100):
        if server.delivered("bob@a.example"):
            break
        await asyncio.sleep(0.1)
    messages = server.delivered("bob@a.example")
    assert messages and b"Subject: hello" in messages[0], server.log_text()[-2000:]
