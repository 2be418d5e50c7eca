"""aiosmtpd's SMTP protocol with what the ingest node adds to it: every reply leaves in one
write (multi-line ones included), a 421 reply closes the connection (harvest protection), and a
closed connection ends its relay conversation."""

from __future__ import annotations

import asyncio
import logging
from typing import Any, AnyStr

from aiosmtpd.smtp import SMTP

from smtp_discovery.ingest.envelope_syntax import path_problem, plain_path
from smtp_discovery.ingest.handler import IngestHandler

log = logging.getLogger("smtp_discovery.ingest")

# HTTP methods, and the header lines that follow them, as the command word aiosmtpd reads.
_NOT_SMTP = (
    "GET", "POST", "PUT", "HEAD", "DELETE", "OPTIONS", "PATCH", "CONNECT", "TRACE",
    "HOST:", "USER-AGENT:", "ACCEPT:", "CONTENT-LENGTH:", "CONTENT-TYPE:", "CONNECTION:",
)  # fmt: skip


class IngestSMTP(SMTP):
    def __init__(self, handler: IngestHandler, *, max_line_bytes: int, **kwargs: Any) -> None:
        # aiosmtpd sizes its stream reader from this attribute inside __init__.
        self.line_length_limit = max_line_bytes
        super().__init__(handler, **kwargs)
        self._closing: asyncio.Task[None] | None = None
        self._continued: list[str] = []
        """Lines of a multi-line reply (``250-…``) held until its last line."""
        for command in _NOT_SMTP:
            self._smtp_methods[command] = self._not_smtp

    async def smtp_MAIL(self, arg: str | None) -> None:
        problem = arg and path_problem(arg, "FROM:")
        if problem:
            await self.push(f"501 5.1.3 {problem}")
            return
        await super().smtp_MAIL(arg)

    async def smtp_RCPT(self, arg: str | None) -> None:
        problem = arg and path_problem(arg, "TO:")
        if problem:
            await self.push(f"501 5.1.3 {problem}")
            return
        await super().smtp_RCPT(arg)

    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        """aiosmtpd's path reader, with the common path read without the header parser."""
        plain = plain_path(arg) if arg else None
        if plain is None:
            return super()._getaddr(arg)
        local = plain[0].rpartition("@")[0]
        if self.local_part_limit and len(local) > self.local_part_limit:
            return None, None
        return plain

    async def _not_smtp(self, arg: str | None) -> None:
        """An HTTP request (or a proxy's) sent to the SMTP port: say so once, and hang up, as
        Postfix does; answering each header line would only keep the connection busy."""
        peer = self.session.peer if self.session is not None else None
        log.warning("non-SMTP command from %s: closing the connection", peer)
        await self.push("221 2.7.0 Error: this is an SMTP server. Goodbye.")
        if self.transport is not None:
            self.transport.close()

    @property
    def in_transaction(self) -> bool:
        """Connected, and between MAIL FROM and the end of its DATA (or RSET)."""
        return self.connected and getattr(self.envelope, "mail_from", None) is not None

    @property
    def connected(self) -> bool:
        return self.transport is not None and not self.transport.is_closing()

    def shut_down(self) -> None:
        """Tell the client the service is going away and close (the node is stopping)."""
        if self.connected:
            assert self.transport is not None
            self.transport.write(b"421 4.3.2 Service shutting down, try again later\r\n")
            self.transport.close()

    async def push(self, status: AnyStr) -> None:
        """Send one reply line; the lines of a multi-line reply go out together with its last.

        aiosmtpd writes each line of EHLO's answer on its own. Clients that read one segment as
        the whole reply (scanners among them) then fall out of step with the conversation, and
        one such scanner reported a node that refused every relay attempt as an open relay.
        """
        text = status.decode("utf-8", "replace") if isinstance(status, bytes) else status
        if len(text) > 3 and text[3] == "-" and text[:3].isdigit():
            self._continued.append(text)
            return
        if self._continued:
            text = "\r\n".join([*self._continued, text])
            self._continued.clear()
        await super().push(text)
        if text.startswith("421") and self.transport is not None:
            self.transport.close()

    def connection_lost(self, error: Exception | None) -> None:
        session = self.session
        super().connection_lost(error)
        if session is not None:
            self._closing = self.loop.create_task(self.event_handler.session_closed(session))
