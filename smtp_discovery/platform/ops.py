"""The operations endpoint every role serves on ``DISCOVERY_OPS_LISTEN``.

``/metrics`` (Prometheus text), ``/healthz`` (liveness: answered by the role's own event loop,
so a wedged loop fails it) and ``/readyz`` (200 once the role can do its work, 503 before). A
few lines of asyncio instead of a web framework: it must run inside every role's loop,
Faust's included.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import Collector

from smtp_discovery.platform.config import split_host_port

log = logging.getLogger("smtp_discovery.platform.ops")


class OpsServer:
    def __init__(self, registry: CollectorRegistry, ready: Callable[[], bool]) -> None:
        self.registry = registry
        self.ready = ready
        self._server: asyncio.base_events.Server | None = None

    async def start(self, listen: str) -> None:
        """Serve on ``listen`` (``host:port``); an empty value means no endpoint."""
        if not listen:
            return
        host, port = split_host_port(listen)
        self._server = await asyncio.start_server(self._handle, host, port)
        log.info("ops endpoint on %s (/metrics, /healthz, /readyz)", self.address)

    @property
    def address(self) -> str:
        if self._server is None:
            return ""
        host, port = self._server.sockets[0].getsockname()[:2]
        return f"{host}:{port}"

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 5)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await asyncio.wait_for(reader.readline(), 10)
            while (await asyncio.wait_for(reader.readline(), 10)) not in (b"\r\n", b"\n", b""):
                pass  # headers: nothing here needs them
            parts = request.decode("latin-1").split()
            path = parts[1].split("?")[0] if len(parts) >= 2 else ""
            status, kind, body = self._answer(path)
            writer.write(
                f"HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {len(body)}\r\n"
                "Connection: close\r\n\r\n".encode()
                + body
            )
            await writer.drain()
        except (TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()

    def _answer(self, path: str) -> tuple[str, str, bytes]:
        if path == "/metrics":
            return "200 OK", CONTENT_TYPE_LATEST, generate_latest(self.registry)
        if path == "/healthz":
            return "200 OK", "text/plain", b"ok\n"
        if path == "/readyz":
            if self.ready():
                return "200 OK", "text/plain", b"ready\n"
            return "503 Service Unavailable", "text/plain", b"not ready\n"
        return "404 Not Found", "text/plain", b"/metrics, /healthz or /readyz\n"


class CounterView(Collector):
    """Prometheus counters read, at scrape time, from a dict a role already keeps."""

    def __init__(
        self, name: str, documentation: str, label: str, values: Callable[[], dict[str, float]]
    ) -> None:
        self.name = name
        self.documentation = documentation
        self.label = label
        self.values = values

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily(self.name, self.documentation, labels=[self.label])
        for value, count in sorted(self.values().items()):
            family.add_metric([value], count)
        yield family


class GaugeView(Collector):
    """One gauge computed at scrape time."""

    def __init__(self, name: str, documentation: str, value: Callable[[], float]) -> None:
        self.name = name
        self.documentation = documentation
        self.value = value

    def collect(self) -> Iterator[GaugeMetricFamily]:
        yield GaugeMetricFamily(self.name, self.documentation, value=self.value())
