"""Before-queue relaying: the client's transaction replayed to the destination as it happens.

The ingest node keeps no mail queue. While a client sends MAIL, RCPT and DATA, the node holds a
conversation with the tenant's destination (or the outbound smarthost) and answers each RCPT and
the final dot with the destination's own reply, so a message is either on the destination's
disk or still the sender's responsibility. One conversation per client session, reused across
its transactions with RSET.
"""

from __future__ import annotations

import contextlib
import logging
import ssl
from dataclasses import dataclass

import aiosmtplib

from smtp_discovery.ingest.smtp_client import Target, open_client

log = logging.getLogger("smtp_discovery.ingest")


@dataclass(frozen=True, slots=True)
class Reply:
    code: int
    text: str

    @property
    def ok(self) -> bool:
        return 200 <= self.code < 300

    @property
    def line(self) -> str:
        """The reply as one line for our client (multi-line downstream text is joined)."""
        return f"{self.code} {' '.join(self.text.split())}"


UNREACHABLE = Reply(451, "4.4.1 The destination mail server did not answer, try again later")
LOST = Reply(451, "4.4.2 Connection to the destination mail server lost, try again later")

# Extensions a destination must offer before the matching MAIL parameter is passed on.
_PASSED_ON = {"SIZE": "size", "BODY": "8bitmime", "SMTPUTF8": "smtputf8"}


class Downstream:
    """One relay conversation with the first of ``targets`` that answers."""

    def __init__(
        self,
        targets: list[Target],
        *,
        helo_name: str,
        tls: ssl.SSLContext,
        connect_timeout: float,
        command_timeout: float,
        data_timeout: float = 600.0,
    ) -> None:
        self.targets = tuple(sorted(targets))
        self.helo_name = helo_name
        self.tls = tls
        self.connect_timeout = connect_timeout
        self.command_timeout = command_timeout
        self.data_timeout = data_timeout
        self._client: aiosmtplib.SMTP | None = None
        self.target: Target | None = None
        self.owner: str | None = None
        """Id of the client transaction the destination's open transaction belongs to."""

    async def begin(self, sender: str, options: list[str], owner: str) -> Reply:
        """Connect when needed and send MAIL FROM (``sender`` "" is the null sender)."""
        if self.owner is not None:
            await self.reset()
        connected = self._client is not None and self._client.is_connected
        if not connected and not await self._connect():
            return UNREACHABLE
        assert self._client is not None
        passed = [
            option
            for option in options
            if self._client.supports_extension(_PASSED_ON.get(option.split("=")[0].upper(), "-"))
        ]
        if "SMTPUTF8" in (o.upper() for o in options) and "SMTPUTF8" not in passed:
            return Reply(553, "5.6.7 The destination does not accept internationalized addresses")
        reply = await self._command(f"MAIL FROM:<{sender}> {' '.join(passed)}".rstrip())
        self.owner = owner if reply.ok else None
        return reply

    async def rcpt(self, address: str) -> Reply:
        return await self._command(f"RCPT TO:<{address}>")

    async def data(self, content: bytes) -> Reply:
        """Send the message; the destination's final answer (it owns the message on 2xx)."""
        assert self._client is not None
        self.owner = None
        try:
            response = await self._client.data(content, timeout=self.data_timeout)
        except aiosmtplib.SMTPResponseException as exc:
            return Reply(exc.code, exc.message)
        except (aiosmtplib.SMTPException, OSError, TimeoutError):
            await self.close()
            return LOST
        return Reply(response.code, response.message)

    async def reset(self) -> None:
        self.owner = None
        if self._client is not None and self._client.is_connected:
            reply = await self._command("RSET")
            if not reply.ok:
                await self.close()

    async def close(self) -> None:
        client, self._client = self._client, None
        self.owner = None
        if client is None:
            return
        with contextlib.suppress(Exception):
            await client.quit(timeout=2)
        client.close()

    async def _connect(self) -> bool:
        for target in self.targets:
            try:
                self._client = await open_client(
                    target,
                    helo_name=self.helo_name,
                    tls=self.tls,
                    connect_timeout=self.connect_timeout,
                    command_timeout=self.command_timeout,
                )
            except (aiosmtplib.SMTPException, OSError, TimeoutError, ssl.SSLError) as exc:
                log.warning("relay to %s failed to connect (%s)", target.name, type(exc).__name__)
                continue
            self.target = target
            return True
        return False

    async def _command(self, line: str) -> Reply:
        if self._client is None:
            return LOST
        try:
            response = await self._client.execute_command(
                line.encode("utf-8"), timeout=self.command_timeout
            )
        except (aiosmtplib.SMTPException, OSError, TimeoutError):
            await self.close()
            return LOST
        return Reply(response.code, response.message)
