"""aiosmtpd's SMTP protocol with the two things the ingest node adds to it: a 421 reply closes
the connection (harvest protection), and a closed connection ends its relay conversation."""

from __future__ import annotations

import asyncio
from typing import Any, AnyStr

from aiosmtpd.smtp import SMTP

from ingest.handler import IngestHandler


class IngestSMTP(SMTP):
    def __init__(self, handler: IngestHandler, *, max_line_bytes: int, **kwargs: Any) -> None:
        # aiosmtpd sizes its stream reader from this attribute inside __init__.
        self.line_length_limit = max_line_bytes
        super().__init__(handler, **kwargs)
        self._closing: asyncio.Task[None] | None = None

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
        await super().push(status)
        text = status.decode("ascii", "replace") if isinstance(status, bytes) else status
        if text.startswith("421") and self.transport is not None:
            self.transport.close()

    def connection_lost(self, error: Exception | None) -> None:
        session = self.session
        super().connection_lost(error)
        if session is not None:
            self._closing = self.loop.create_task(self.event_handler.session_closed(session))
