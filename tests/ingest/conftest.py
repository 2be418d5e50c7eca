"""Ingest test peers: real Postfix servers playing tenants' mail servers, one of each kind."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from smtp_discovery.localkafka.node import free_port
from tests.ingest.postfix import PostfixServer


@pytest.fixture(scope="session")
def postfix_servers() -> Iterator[dict[str, PostfixServer]]:
    servers = {}
    for mode in ("strict", "greylist", "catchall"):
        server = PostfixServer(
            port=free_port(),
            domains=("a.example", "g.example", "c.example", "b.example"),
            mailboxes=("alice@a.example", "bob@a.example", "carol@b.example"),
            mode=mode,
        )
        server.start()
        servers[mode] = server
    yield servers
    for server in servers.values():
        server.stop()
