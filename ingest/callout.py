"""Recipient verification callouts: ask the tenant's own server whether an address exists.

EHLO, STARTTLS when offered, ``MAIL FROM`` with the tenant's probe sender, ``RCPT TO``, then
``RSET`` so the connection can serve the next probe; idle connections are closed with QUIT.
The address goes out with its domain in A-labels; a non-ASCII local part needs SMTPUTF8 on the
``MAIL FROM``, and a destination that does not offer it cannot verify such an address. 2xx means
the mailbox exists, and only a refusal of the mailbox means it does not
(``ingest.policy.read_rcpt_reply``); 4xx, other 5xx, timeouts, refused connections and TLS
failures are tempfails, after which the next destination (by priority) is tried.

Protections for the tenant's server: at most ``max_per_destination`` probes in flight per
destination, concurrent probes for the same address share one conversation, and a destination
that cannot be reached, or has had its share of probes this second, is not probed at all
(``ingest.callout_guard``: the RCPT gets the tenant's tempfail policy).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiosmtplib

from smtp_discovery.ingest.callout_guard import CONNECTION_FAILURES, DestinationGuard
from smtp_discovery.ingest.policy import CalloutResult, read_rcpt_reply
from smtp_discovery.ingest.smtp_client import Target, open_client, opportunistic_tls
from smtp_discovery.platform.clock import SystemClock

__all__ = ["ProbeOutcome", "Prober", "Target"]

log = logging.getLogger("smtp_discovery.ingest")


@dataclass(frozen=True, slots=True)
class ProbeOutcome:
    result: CalloutResult
    destination: str | None
    code: int | None = None
    text: str = ""
    reason: str | None = None
    """For tempfails: reply_4xx, probe_refused, reply_5xx, smtputf8_unsupported, timeout,
    connect_failed, tls_failed or no_destination; destination_paused or rate_limited when no
    destination was asked (``contacted`` False)."""
    latency_ms: float = 0.0
    contacted: bool = True


class _Connection:
    def __init__(self, client: aiosmtplib.SMTP) -> None:
        self.client = client
        self.idle_since = time.monotonic()


class Prober:
    def __init__(
        self,
        *,
        helo_name: str,
        connect_timeout: float = 10.0,
        command_timeout: float = 30.0,
        max_per_destination: int = 4,
        idle_seconds: float = 30.0,
        guard: DestinationGuard | None = None,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    ) -> None:
        self.helo_name = helo_name
        self.guard = guard or DestinationGuard(SystemClock(), rate_per_s=100.0)
        self.sleep = sleep
        self.connect_timeout = connect_timeout
        self.command_timeout = command_timeout
        self.idle_seconds = idle_seconds
        self._limits: defaultdict[str, asyncio.Semaphore] = defaultdict(
            lambda: asyncio.Semaphore(max_per_destination)
        )
        self._idle: defaultdict[str, list[_Connection]] = defaultdict(list)
        self._inflight: dict[tuple[str, str, tuple[Target, ...]], asyncio.Future[ProbeOutcome]] = {}
        self._tls = opportunistic_tls()

    async def probe(
        self,
        targets: list[Target],
        address: str,
        sender: str = "",
        *,
        smtputf8: bool = False,
        timeouts: tuple[float, float] | None = None,
    ) -> ProbeOutcome:
        """Verify ``address`` (its wire form: A-label domain) against the targets in priority
        order; one conversation for all concurrent callers asking the same question.
        ``smtputf8``: the address has a non-ASCII local part. ``timeouts`` (connect, command)
        are the tenant's, when it has its own."""
        key = (address.lower(), sender, tuple(sorted(targets)))
        shared = self._inflight.get(key)
        if shared is not None:
            return await asyncio.shield(shared)
        future: asyncio.Future[ProbeOutcome] = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        try:
            outcome = await self._probe_targets(
                sorted(targets), address, sender, smtputf8, timeouts or self.timeouts
            )
            future.set_result(outcome)
            return outcome
        except BaseException as exc:
            future.set_exception(exc)
            raise
        finally:
            del self._inflight[key]
            if future.done() and not future.cancelled():
                future.exception()  # retrieved: no "never retrieved" warning when unshared

    @property
    def timeouts(self) -> tuple[float, float]:
        return (self.connect_timeout, self.command_timeout)

    async def _probe_targets(
        self,
        targets: list[Target],
        address: str,
        sender: str,
        smtputf8: bool,
        timeouts: tuple[float, float],
    ) -> ProbeOutcome:
        if not targets:
            return ProbeOutcome(CalloutResult.TEMPFAIL, None, reason="no_destination")
        last = held_back = None
        for target in targets:
            refusal, wait = self.guard.admit(target.name)
            if refusal is not None:
                held_back = held_back or ProbeOutcome(
                    CalloutResult.TEMPFAIL, None, reason=refusal, contacted=False
                )
                continue
            last = await self._guarded_probe(target, address, sender, smtputf8, timeouts, wait)
            if last.result is not CalloutResult.TEMPFAIL:
                return last
        outcome = last or held_back
        assert outcome is not None
        return outcome

    async def _guarded_probe(
        self,
        target: Target,
        address: str,
        sender: str,
        smtputf8: bool,
        timeouts: tuple[float, float],
        wait_s: float,
    ) -> ProbeOutcome:
        """One admitted probe, after waiting for its turn, its outcome told to the guard."""
        outcome = None
        try:
            if wait_s > 0:
                await self.sleep(wait_s)
            outcome = await self._probe_one(target, address, sender, smtputf8, timeouts)
        finally:
            if outcome is None:
                self.guard.abandoned(target.name)
        if outcome.reason in CONNECTION_FAILURES:
            backoff = self.guard.failed(target.name)
            if backoff is not None:
                log.warning(
                    "destination unreachable: no callouts to it for a while",
                    extra={"destination": target.name, "reason": outcome.reason,
                           "backoff_s": backoff},
                )  # fmt: skip
        elif self.guard.answered(target.name):
            log.info("destination answers again", extra={"destination": target.name})
        return outcome

    async def _probe_one(
        self,
        target: Target,
        address: str,
        sender: str,
        smtputf8: bool,
        timeouts: tuple[float, float],
    ) -> ProbeOutcome:
        command_timeout = timeouts[1]
        began = time.monotonic()

        def outcome(result: CalloutResult, **kw: object) -> ProbeOutcome:
            latency = (time.monotonic() - began) * 1000
            return ProbeOutcome(result, target.name, latency_ms=latency, **kw)  # type: ignore[arg-type]

        async with self._limits[target.name]:
            try:
                connection = await self._checkout(target, timeouts)
            except ssl.SSLError as exc:
                return outcome(CalloutResult.TEMPFAIL, reason="tls_failed", text=str(exc))
            except (aiosmtplib.SMTPTimeoutError, TimeoutError):
                return outcome(CalloutResult.TEMPFAIL, reason="timeout")
            except (aiosmtplib.SMTPException, OSError) as exc:
                return outcome(CalloutResult.TEMPFAIL, reason="connect_failed", text=str(exc)[:200])
            client = connection.client
            if smtputf8 and not client.supports_extension("smtputf8"):
                # Never downgraded: without SMTPUTF8 this address cannot be asked about here.
                await self._finish(target, connection, reuse=True)
                return outcome(CalloutResult.TEMPFAIL, reason="smtputf8_unsupported")
            try:
                mail = await client.execute_command(
                    f"MAIL FROM:<{sender}>{' SMTPUTF8' if smtputf8 else ''}".encode(),
                    timeout=command_timeout,
                )
                if mail.code >= 400:  # our sender refused: nothing learnt about the mailbox
                    await self._finish(target, connection, reuse=mail.code < 500)
                    return outcome(
                        CalloutResult.TEMPFAIL,
                        code=mail.code,
                        text=mail.message,
                        reason="reply_4xx" if mail.code < 500 else "probe_refused",
                    )
                reply = await client.execute_command(
                    f"RCPT TO:<{address}>".encode(), timeout=command_timeout
                )
                await client.execute_command(b"RSET", timeout=command_timeout)
            except (aiosmtplib.SMTPTimeoutError, TimeoutError):
                await self._finish(target, connection, reuse=False)
                return outcome(CalloutResult.TEMPFAIL, reason="timeout")
            except (aiosmtplib.SMTPException, OSError) as exc:
                await self._finish(target, connection, reuse=False)
                return outcome(CalloutResult.TEMPFAIL, reason="connect_failed", text=str(exc)[:200])
            await self._finish(target, connection, reuse=True)
            reading = read_rcpt_reply(reply.code, reply.message)
            if reading.reason == "probe_refused":
                log.warning(
                    "the destination refused the probe's form, not the mailbox",
                    extra={"destination": target.name, "reply": f"{reply.code} {reply.message}"},
                )
            return outcome(
                reading.result, code=reply.code, text=reply.message, reason=reading.reason
            )

    async def _checkout(self, target: Target, timeouts: tuple[float, float]) -> _Connection:
        idle = self._idle[target.name]
        while idle:
            connection = idle.pop()
            if (
                connection.client.is_connected
                and time.monotonic() - connection.idle_since < self.idle_seconds
            ):
                return connection
            await self._quit(connection)
        client = await open_client(
            target,
            helo_name=self.helo_name,
            tls=self._tls,
            connect_timeout=timeouts[0],
            command_timeout=timeouts[1],
        )
        return _Connection(client)

    async def _finish(self, target: Target, connection: _Connection, *, reuse: bool) -> None:
        if reuse and connection.client.is_connected:
            connection.idle_since = time.monotonic()
            self._idle[target.name].append(connection)
        else:
            await self._quit(connection)

    async def _quit(self, connection: _Connection) -> None:
        with contextlib.suppress(Exception):
            await connection.client.quit(timeout=2)
        connection.client.close()

    async def close_idle(self) -> None:
        """QUIT every idle connection older than ``idle_seconds`` (call periodically)."""
        now = time.monotonic()
        for name, connections in self._idle.items():
            keep = []
            for connection in connections:
                if now - connection.idle_since >= self.idle_seconds:
                    await self._quit(connection)
                else:
                    keep.append(connection)
            self._idle[name] = keep

    async def close(self) -> None:
        for connections in self._idle.values():
            for connection in connections:
                await self._quit(connection)
        self._idle.clear()
