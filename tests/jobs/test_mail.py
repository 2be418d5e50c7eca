"""A report as it arrives: sent through a local SMTP server (aiosmtpd) and read back with the
email package, the way a mail client reads it."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default
from email.utils import parsedate_to_datetime
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from smtp_discovery.jobs.render import Presentation, as_html, text
from smtp_discovery.jobs.send import Mailer, compose, message_id
from smtp_discovery.localkafka.node import free_port
from tests.jobs import samples
from tests.jobs.samples import Tags

NOW = datetime(2026, 11, 26, 9, 0, 4, tzinfo=UTC)
SHOWN = Presentation("Example Mail Protect", samples.CONSOLE)


@dataclass
class Received:
    """What the local server was handed: envelope recipients and the message as parsed."""

    messages: list[tuple[list[str], EmailMessage]] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        parsed = message_from_bytes(envelope.content, policy=default)
        assert isinstance(parsed, EmailMessage)
        self.messages.append((list(envelope.rcpt_tos), parsed))
        return "250 OK"


@pytest.fixture
def smarthost() -> Iterator[tuple[Received, int]]:
    received = Received()
    port = free_port()
    controller = Controller(received, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield received, port
    finally:
        controller.stop()


@pytest.mark.parametrize("kind", list(samples.REPORTS))
async def test_a_report_arrives_as_text_and_html_with_the_headers_of_automatic_mail(
    smarthost: tuple[Received, int], kind: str
) -> None:
    received, port = smarthost
    report = samples.REPORTS[kind]('Stadtwerke Köln <script>\n"x"</script>')
    mailer = Mailer("127.0.0.1", port, "reports@filter.example.net", "gw.example.net",
                    presentation=SHOWN)  # fmt: skip
    await mailer.send(compose(report, mailer, NOW))

    ((recipients, mail),) = received.messages
    assert recipients == ["it@acme.example", "boss@acme.example"]
    assert mail.get_content_type() == "multipart/alternative"
    plain, rich = mail.iter_parts()
    assert [plain.get_content_type(), rich.get_content_type()] == ["text/plain", "text/html"]
    assert plain.get_content_charset() == rich.get_content_charset() == "utf-8"
    # What the tenant reads is what `report --format text|html` and the API preview show.
    assert plain.get_content().replace("\r\n", "\n") == text(report, SHOWN)
    assert rich.get_content().replace("\r\n", "\n") == as_html(report, SHOWN)

    assert mail["Message-ID"] == message_id(report, "gw.example.net")
    assert parsedate_to_datetime(mail["Date"]) == NOW
    assert mail["From"].addresses[0].display_name == "Example Mail Protect"
    assert mail["From"].addresses[0].addr_spec == "reports@filter.example.net"
    assert mail["To"] == "it@acme.example, boss@acme.example"
    label = {"warning": "Discovery warning", "new-users": "New users",
             "new-aliases": "New aliases"}[kind]  # fmt: skip
    # The name's line break is a space: nothing in a tenant's name can start another header.
    assert mail["Subject"] == f'{label} for Stadtwerke Köln <script> "x"</script>, week 2026-W47'
    assert mail["List-Id"].endswith(f"<{kind}.acme.reports.filter.example.net>")
    assert mail["Auto-Submitted"] == "auto-generated"
    assert mail["Precedence"] == "bulk"
    assert mail["X-Auto-Response-Suppress"] == "All"

    # The summary, first in both parts.
    facts = {
        "warning": ["4 addresses wait for an administrator", "1 expires before next week's report",
                    "2026-11-24"],
        "new-users": ["3 new users", "created by an administrator"],
        "new-aliases": ["2 new aliases", "detected automatically"],
    }[kind]  # fmt: skip
    for fact in facts:
        assert fact in plain.get_content(), fact
    markup = rich.get_content()
    summary = " ".join(Tags(markup[markup.index("data-summary") : markup.index("data-rows")]).text)
    for fact in facts:
        for part in fact.split(" ", 1):  # figure and label sit in elements of their own
            assert part in summary, fact
