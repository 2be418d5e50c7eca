"""Reports built by hand (no ClickHouse) for the rendering, mail and browser tests."""

from __future__ import annotations

from html.parser import HTMLParser

from smtp_discovery.jobs.reports import (
    NEW_ALIASES_COLUMNS,
    NEW_USERS_COLUMNS,
    WARNING_COLUMNS,
    Kind,
    Report,
    Tenant,
)
from smtp_discovery.schemas.calendar import Week
from smtp_discovery.schemas.tenant import DiscoverySettings

WEEK = Week.parse("2026-W47")
CONSOLE = "https://discovery.example.net/console"
XSS_NAME = 'Acme <script>alert("name")</script> & "Sons"'
XSS_ADDRESS = '"<img src=x onerror=alert(1)>"@acme.example'
LONG_ADDRESS = "a-very-long-local-part-that-goes-on-and-on.and.on@subdomain.department.acme.example"
CATCH_ALL = (
    "Your mail server mx.acme.example:25 accepts mail for any address (last checked "
    "2026-11-18 10:00 UTC): callouts to it cannot tell which addresses exist."
)


def tenant(name: str = "Acme") -> Tenant:
    return Tenant("acme", name, "it@acme.example", "boss@acme.example", DiscoverySettings())


def warning(name: str = "Acme") -> Report:
    rows = [
        ("old@acme.example", "2026-11-02 08:00 UTC", 1, "2026-11-24"),
        (XSS_ADDRESS, "2026-11-10 08:00 UTC", 2, "2026-12-02"),
        (LONG_ADDRESS, "2026-11-11 08:00 UTC", 2, "2026-12-03"),
        ("new@acme.example", "2026-11-20 12:00 UTC", 3, "2026-12-12"),
    ]
    return Report(Kind.WARNING, tenant(name), WEEK, WARNING_COLUMNS, rows, [CATCH_ALL])


def new_users(name: str = "Acme") -> Report:
    rows = [
        ("ann@acme.example", "end_user", "created by an administrator", "2026-11-18 10:00 UTC"),
        ("bob@acme.example", "end_user", "discovered and not managed before it expired",
         "2026-11-19 10:00 UTC"),
        ("cy@acme.example", "silent_user", "created by an administrator", "2026-11-19 11:00 UTC"),
    ]  # fmt: skip
    return Report(Kind.NEW_USERS, tenant(name), WEEK, NEW_USERS_COLUMNS, rows)


def new_aliases(name: str = "Acme") -> Report:
    rows = [
        ("ann@acme2.example", "ann@acme.example", "detected automatically",
         "2026-11-18 10:00 UTC"),
        ("info@acme2.example", "ann@acme.example", "added by an administrator",
         "2026-11-20 09:00 UTC"),
    ]  # fmt: skip
    return Report(Kind.NEW_ALIASES, tenant(name), WEEK, NEW_ALIASES_COLUMNS, rows)


REPORTS = {"warning": warning, "new-users": new_users, "new-aliases": new_aliases}


class Tags(HTMLParser):
    """Every start tag with its attributes, and the text, of an HTML document."""

    def __init__(self, markup: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.feed(markup)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)
