"""Bounded requests, authentication first (``admin.limits``).

The rules are tested pure (the failure limiter on an injected clock); what they are for is
tested against a real uvicorn server on a loopback port, in this process, with a raw socket: a
client that declares 400 MB and sends nothing must get its answer (so the server did not wait
for the body), and one that streams must be cut off without the process growing.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import select
import socket
import time
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from pydantic import BaseModel, ValidationError, field_validator

from smtp_discovery.admin import api, errors
from smtp_discovery.admin.api import create_app
from smtp_discovery.admin.limits import (
    MAX_ACTION_BYTES,
    MAX_BODY_BYTES,
    MAX_IMPORT_BYTES,
    MIB,
    FailureLimiter,
    body_limit,
    client_key,
)
from smtp_discovery.platform.clock import ManualClock
from tests.admin.conftest import Admin

HUGE = 400 * MIB


# ---- the rules, pure ----------------------------------------------------------------------------


def test_a_client_may_fail_a_burst_then_one_every_refill() -> None:
    clock = ManualClock()
    limiter = FailureLimiter(burst=10, refill_seconds=5, clock=clock)
    assert [limiter.failed("192.0.2.1") for _ in range(10)] == [0] * 10
    assert limiter.failed("192.0.2.1") == 5  # Retry-After: a whole refill
    clock.advance(4)
    assert limiter.failed("192.0.2.1") == 1  # 4 of 5 s refilled: whole seconds, at least one
    clock.advance(1)
    assert limiter.failed("192.0.2.1") == 0  # one failure refilled
    assert limiter.failed("192.0.2.1") == 5
    clock.advance(3600)
    assert [limiter.failed("192.0.2.1") for _ in range(11)] == [0] * 10 + [5]  # never > burst


def test_clients_are_counted_apart_in_bounded_memory() -> None:
    clock = ManualClock()
    limiter = FailureLimiter(burst=2, refill_seconds=60, max_clients=3, clock=clock)
    for client in ("a", "b", "c"):
        limiter.failed(client)
        limiter.failed(client)
    assert [limiter.failed(c) for c in ("a", "b", "c")] == [60, 60, 60]
    limiter.failed("a")  # a was seen last: b is the least recent now
    assert limiter.failed("d") == 0
    assert len(limiter) == 3
    assert limiter.failed("b") == 0  # forgotten, so a full bucket again (c went to make room)
    assert limiter.failed("a") == 60  # still remembered, still limited
    for n in range(100_000):
        limiter.failed(f"198.51.{n // 256}.{n % 256}")
    assert len(limiter) == 3


def test_ipv6_clients_are_counted_by_their_64() -> None:
    assert client_key("2001:db8::1") == client_key("2001:db8::ffff:1") == "2001:db8::/64"
    assert client_key("2001:db8:0:1::1") != client_key("2001:db8::1")
    assert client_key("::ffff:192.0.2.7") == client_key("192.0.2.7") == "192.0.2.7"
    assert client_key(None) == "" and client_key("testclient") == "testclient"


def test_every_route_has_a_body_limit_from_one_table() -> None:
    assert api.MAX_IMPORT_BYTES is MAX_IMPORT_BYTES == 20 * MIB  # the import's own check agrees
    assert body_limit("POST", "/v1/tenants/acme/users/import") == MAX_IMPORT_BYTES
    assert body_limit("POST", "/v1/tenants/acme/actions") == MAX_ACTION_BYTES == MIB
    small = [
        ("PUT", "/v1/tenants/acme"),
        ("POST", "/v1/tenants"),
        ("POST", "/v1/tenants/acme/actions/x"),
        ("GET", "/v1/tenants/acme/actions"),
        ("POST", "/v1/tenants/a/b/actions"),
        ("POST", "/console/"),
    ]
    for method, path in small:
        assert body_limit(method, path) == MAX_BODY_BYTES == 64 * 1024, (method, path)
    # A batch at the models' maxima fits the action limit.
    name = "n" * 100
    addresses = [f"{'x' * 240}{i:04}@a.example" for i in range(api.MAX_BATCH)]  # 254 bytes
    users = [{"address": a, "first_name": name, "surname": name} for a in addresses]
    batch = {"action": "create_user", "addresses": addresses, "users": users}
    assert len(json.dumps(batch)) < MAX_ACTION_BYTES


class _Domain(BaseModel):
    domain: str

    @field_validator("domain")
    @classmethod
    def _check(cls, value: str) -> str:
        raise ValueError(f"invalid domain {value!r}")  # as schemas.tenant's validators write


def test_error_messages_quote_a_short_escaped_prefix_of_the_input() -> None:
    assert errors.quoted("ann@a.example") == "'ann@a.example'"
    assert errors.quoted("a\nb\x00") == "'a\\nb\\x00'"
    assert errors.quoted("x" * 5000) == repr("x" * 60) + "…"
    with pytest.raises(ValidationError) as caught:
        _Domain(domain="d" * 50_000)
    message = errors.problems(caught.value.errors())
    assert message.startswith("domain: invalid domain 'ddd") and len(message) < 400
    hand_made = [{"loc": ("body", "settings", "k" * 500), "msg": "bad", "input": "SECRET" * 9}]
    message = errors.problems(hand_made)
    assert "SECRET" not in message and len(message) < 100 and message.endswith("…: bad")


# ---- the server ---------------------------------------------------------------------------------


@dataclass
class Answer:
    status: int | None
    headers: dict[str, str]
    body: bytes
    sent: int
    """Body bytes the client got to send before the answer or the close."""

    def json(self) -> Any:
        return json.loads(self.body)


def request_head(method: str, path: str, headers: dict[str, str]) -> bytes:
    fields = {"Host": "admin.test", "Content-Type": "application/json", **headers}
    lines = [f"{method} {path} HTTP/1.1", *(f"{k}: {v}" for k, v in fields.items()), "", ""]
    return "\r\n".join(lines).encode()


def exchange(port: int, head: bytes, body: Iterable[bytes] = (), timeout: float = 20) -> Answer:
    """One request on a raw socket: ``head``, then the pieces of ``body`` until the answer
    arrives or the server closes; then the answer. Blocking: run it in a thread, since the
    server is served by this process's event loop."""
    sent = 0
    received = bytearray()
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(head)
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            for piece in body:
                if select.select([sock], [], [], 0)[0]:
                    break  # the answer (or the close) is here
                sock.sendall(piece)
                sent += len(piece)
        with contextlib.suppress(ConnectionResetError):
            while not _complete(received) and (data := sock.recv(65536)):
                received += data
    return _parse(bytes(received), sent)


def _complete(received: bytearray) -> bool:
    head, found, body = bytes(received).partition(b"\r\n\r\n")
    if not found:
        return False
    length = _parse(head + found, 0).headers.get("content-length")
    return length is not None and len(body) >= int(length)


def _parse(received: bytes, sent: int) -> Answer:
    head, _, body = received.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n") if head else [""]
    parts = status_line.split(" ")
    status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    return Answer(status, headers, body, sent)


def chunked(prefix: bytes, block: bytes, total: int) -> Iterator[bytes]:
    """A chunked body: ``prefix``, then ``block`` (the same object each time, so the client
    holds no more than one) until ``total`` bytes."""
    yield b"%x\r\n%s\r\n" % (len(prefix), prefix)
    size = b"%x\r\n" % len(block)
    for _ in range(total // len(block)):
        yield size
        yield block
        yield b"\r\n"
    yield b"0\r\n\r\n"


def rss() -> int:
    """This process's resident memory in bytes (the server runs in it)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc/self/status")


@dataclass
class Served:
    port: int
    admin: Admin

    async def send(self, head: bytes, body: Iterable[bytes] = (), timeout: float = 20) -> Answer:
        return await asyncio.to_thread(exchange, self.port, head, body, timeout)


@pytest.fixture
async def served(admin: Admin) -> AsyncIterator[Served]:
    """The admin API under uvicorn on a free loopback port, in this event loop, as in
    production (``admin.run``)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    app = create_app(admin.ctx)
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
    server = uvicorn.Server(config)
    server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign]
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        deadline = time.monotonic() + 30
        while not server.started:  # uvicorn offers a flag, not an event
            assert not task.done(), "uvicorn stopped before it started"
            assert time.monotonic() < deadline, "uvicorn did not start within 30 s"
            await asyncio.sleep(0.02)
        await admin.tenant("a")
        yield Served(sock.getsockname()[1], admin)
    finally:
        server.should_exit = True
        await task
        sock.close()


ACTIONS = "/v1/tenants/a/actions"


@pytest.mark.kafka
async def test_a_request_without_a_token_is_refused_before_its_body_is_read(
    served: Served,
) -> None:
    head = request_head("POST", ACTIONS, {"Content-Length": str(HUGE)})
    started = time.monotonic()
    answer = await served.send(head)  # and no body at all: the answer cannot wait for it
    assert answer.status == 401, answer
    assert answer.json()["error"] == {
        "code": "unauthenticated",
        "message": "send a valid token: Authorization: Bearer sd_…",
    }
    assert time.monotonic() - started < 5
    assert answer.headers["connection"] == "close"  # the body is not drained either
    assert answer.headers["cache-control"] == "no-store"  # an API answer like any other


@pytest.mark.kafka
async def test_a_declared_length_above_the_limit_is_refused_before_the_body(
    served: Served,
) -> None:
    token = await served.admin.token("a")
    head = request_head("POST", ACTIONS, {**token, "Content-Length": str(HUGE)})
    answer = await served.send(head)
    assert answer.status == 413, answer
    assert answer.json()["error"]["code"] == "too_large"
    assert str(MAX_ACTION_BYTES) in answer.json()["error"]["message"]
    # A 50 MB address in an action that is otherwise valid: refused, not read, not echoed.
    address = b"x" * MIB
    pieces = [b'{"action": "mark_invalid", "addresses": ["', *[address] * 50, b'@a.example"]}']
    length = str(sum(map(len, pieces)))
    head = request_head("POST", ACTIONS, {**token, "Content-Length": length})
    answer = await served.send(head, pieces)
    assert answer.status == 413 and len(answer.body) < 200, answer
    assert answer.sent < 25 * MIB


@pytest.mark.kafka
async def test_a_streamed_body_is_cut_off_at_the_limit_without_growing_the_process(
    served: Served,
) -> None:
    token = await served.admin.token("a")
    head = request_head("POST", ACTIONS, {**token, "Transfer-Encoding": "chunked"})
    block = b"x" * MIB
    prefix = b'{"action": "mark_invalid", "addresses": ["'
    warm = await served.send(head, chunked(prefix, block, 4 * MIB))  # first-use allocations
    assert warm.status == 413, warm
    before = rss()
    answer = await served.send(head, chunked(prefix, block, HUGE))
    grown = rss() - before
    assert answer.status == 413, answer
    assert answer.json()["error"]["code"] == "too_large"
    assert grown < 16 * MIB, f"the process grew by {grown / MIB:.1f} MiB"
    assert answer.sent < 64 * MIB, f"{answer.sent / MIB:.0f} MiB were read of {HUGE / MIB:.0f}"


@pytest.mark.kafka
async def test_an_invalid_address_is_named_by_a_short_prefix(served: Served) -> None:
    token = await served.admin.token("a")
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{served.port}") as http:
        for address in ("x" * 2048, "x" * 2048 + "@elsewhere.example"):
            body = {"action": "mark_invalid", "addresses": ["ok@a.example", address]}
            response = await http.post(ACTIONS, json=body, headers=token)
            assert response.status_code == 422, response.text
            assert len(response.content) < 1024, len(response.content)
            assert "'xxxx" in response.json()["error"]["message"]
        unknown = await http.get(f"/v1/tenants/{'t' * 4000}", headers=served.admin.operator)
        assert unknown.status_code == 404 and len(unknown.content) < 1024


@pytest.mark.kafka
async def test_a_client_failing_to_authenticate_is_slowed_but_a_valid_token_is_not(
    served: Served,
) -> None:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{served.port}") as http:
        statuses = []
        for n in range(12):
            forged = {"Authorization": f"Bearer sd_{n:012x}_guess"}
            response = await http.get("/v1/tenants", headers=forged)
            statuses.append(response.status_code)
        assert statuses == [401] * 10 + [429] * 2
        assert response.json()["error"]["code"] == "too_many_failures"
        assert response.headers["retry-after"].isdigit()
        assert int(response.headers["retry-after"]) >= 1
        assert (await http.get("/v1/tenants")).status_code == 429  # no token is a failure too
        valid = await http.get("/v1/tenants", headers=served.admin.operator)
        assert valid.status_code == 200, valid.text
        assert (await http.get("/console/")).status_code == 200  # the console needs no token
