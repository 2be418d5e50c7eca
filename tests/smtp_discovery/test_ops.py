"""The ops endpoint every role serves: metrics, liveness, readiness."""

from __future__ import annotations

import asyncio
from collections import Counter

from prometheus_client import CollectorRegistry

from smtp_discovery.platform.ops import CounterView, OpsServer


async def _get(address: str, path: str) -> tuple[int, str]:
    host, port = address.rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    await writer.drain()
    response = (await reader.read()).decode()
    writer.close()
    status = int(response.split(" ", 2)[1])
    return status, response.split("\r\n\r\n", 1)[1]


async def test_metrics_health_and_readiness() -> None:
    counts: Counter[str] = Counter({"applied": 3, "duplicate": 1})
    registry = CollectorRegistry()
    registry.register(CounterView("demo_messages", "Messages.", "outcome", lambda: dict(counts)))
    ready = False
    server = OpsServer(registry, ready=lambda: ready)
    await server.start("127.0.0.1:0")
    try:
        assert await _get(server.address, "/healthz") == (200, "ok\n")
        assert (await _get(server.address, "/readyz"))[0] == 503
        ready = True
        assert await _get(server.address, "/readyz") == (200, "ready\n")
        counts["applied"] += 1  # read at scrape time
        status, body = await _get(server.address, "/metrics")
        assert status == 200
        assert 'demo_messages_total{outcome="applied"} 4.0' in body
        assert 'demo_messages_total{outcome="duplicate"} 1.0' in body
        assert (await _get(server.address, "/nope"))[0] == 404
    finally:
        await server.stop()


async def test_an_empty_address_serves_nothing() -> None:
    server = OpsServer(CollectorRegistry(), ready=lambda: True)
    await server.start("")
    assert server.address == ""
    await server.stop()
