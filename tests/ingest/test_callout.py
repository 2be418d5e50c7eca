"""Callouts against real Postfix servers."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator

import pytest

from smtp_discovery.ingest.callout import Prober, Target
from smtp_discovery.ingest.policy import CalloutResult
from smtp_discovery.localkafka.node import free_port
from tests.ingest.postfix import PostfixServer


@pytest.fixture
async def prober() -> AsyncIterator[Prober]:
    p = Prober(helo_name="ingest.test", connect_timeout=2, command_timeout=5)
    yield p
    await p.close()


def target(server: PostfixServer, priority: int = 10) -> Target:
    return Target(priority, "127.0.0.1", server.port)


def connections(server: PostfixServer) -> int:
    return len(re.findall(r"postfix/smtpd\[\d+\]: connect from", server.log_text()))


async def test_existing_and_missing_mailboxes(
    prober: Prober, postfix_servers: dict[str, PostfixServer]
) -> None:
    strict = postfix_servers["strict"]
    found = await prober.probe([target(strict)], "alice@a.example")
    assert (found.result, found.code, found.destination) == (
        CalloutResult.EXISTS,
        250,
        f"127.0.0.1:{strict.port}",
    )
    missing = await prober.probe([target(strict)], "nobody@a.example")
    assert (missing.result, missing.code) == (CalloutResult.MISSING, 550)
    assert "User unknown" in missing.text


async def test_greylisting_is_a_tempfail(
    prober: Prober, postfix_servers: dict[str, PostfixServer]
) -> None:
    outcome = await prober.probe([target(postfix_servers["greylist"])], "alice@a.example")
    assert (outcome.result, outcome.code, outcome.reason) == (
        CalloutResult.TEMPFAIL,
        450,
        "reply_4xx",
    )


async def test_a_catch_all_server_accepts_random_local_parts(
    prober: Prober, postfix_servers: dict[str, PostfixServer]
) -> None:
    outcome = await prober.probe([target(postfix_servers["catchall"])], "zq81xk@a.example")
    assert outcome.result is CalloutResult.EXISTS


async def test_the_next_destination_answers_when_the_first_cannot(
    prober: Prober, postfix_servers: dict[str, PostfixServer]
) -> None:
    dead = Target(10, "127.0.0.1", free_port())
    greylist = target(postfix_servers["greylist"], priority=20)
    strict = target(postfix_servers["strict"], priority=30)
    outcome = await prober.probe([strict, greylist, dead], "nobody@a.example")
    assert (outcome.result, outcome.destination) == (CalloutResult.MISSING, strict.name)


async def test_no_destination_answering_is_a_tempfail(prober: Prober) -> None:
    outcome = await prober.probe([Target(10, "127.0.0.1", free_port())], "alice@a.example")
    assert (outcome.result, outcome.reason) == (CalloutResult.TEMPFAIL, "connect_failed")
    assert (await prober.probe([], "alice@a.example")).reason == "no_destination"


async def test_a_silent_server_times_out() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # never greet

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    prober = Prober(helo_name="ingest.test", connect_timeout=0.3, command_timeout=0.3)
    try:
        outcome = await prober.probe([Target(10, "127.0.0.1", port)], "alice@a.example")
    finally:
        await prober.close()
        server.close()
    assert (outcome.result, outcome.reason) == (CalloutResult.TEMPFAIL, "timeout")


async def test_probes_reuse_one_connection(
    prober: Prober, postfix_servers: dict[str, PostfixServer]
) -> None:
    strict = postfix_servers["strict"]
    before = connections(strict)
    for address in ("alice@a.example", "bob@a.example", "nobody@a.example", "alice@a.example"):
        await prober.probe([target(strict)], address)
    await _until(lambda: connections(strict) > before)
    assert connections(strict) - before == 1


async def test_concurrent_probes_for_one_address_share_a_conversation(
    prober: Prober, postfix_servers: dict[str, PostfixServer]
) -> None:
    strict = postfix_servers["strict"]
    outcomes = await asyncio.gather(
        *(prober.probe([target(strict)], "ghost1@a.example") for _ in range(10))
    )
    assert {o.result for o in outcomes} == {CalloutResult.MISSING}
    await _until(lambda: "ghost1@a.example" in strict.log_text())
    rejects = [line for line in strict.log_text().splitlines() if "to=<ghost1@a.example>" in line]
    assert len(rejects) == 1


async def test_concurrency_per_destination_is_capped(
    postfix_servers: dict[str, PostfixServer],
) -> None:
    strict = postfix_servers["strict"]
    prober = Prober(helo_name="ingest.test", max_per_destination=2)
    before = connections(strict)
    try:
        await asyncio.gather(*(prober.probe([target(strict)], f"u{i}@a.example") for i in range(8)))
    finally:
        await prober.close()
    await _until(lambda: connections(strict) > before)
    assert connections(strict) - before <= 2


async def _until(condition, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    """Postfix writes its log asynchronously: poll for the line, with a deadline."""
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        if condition():
            return
        await asyncio.sleep(0.05)
