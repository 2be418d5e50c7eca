"""Report rendering: exports safe to open in a spreadsheet, whatever address came in with the
mail; the summary, the console link and mail HTML with every value escaped."""

from __future__ import annotations

import csv
import html
import io
import json
from dataclasses import replace

import pytest

from smtp_discovery.jobs.render import Presentation, as_csv, as_html, as_json, period, text
from smtp_discovery.jobs.reports import (
    NEW_ALIASES_COLUMNS,
    NEW_USERS_COLUMNS,
    ChangeSummary,
    Kind,
    Report,
    Tenant,
    WarningSummary,
    change_summary,
    last_notice,
    warning_summary,
)
from smtp_discovery.platform.config import ReportSettings
from smtp_discovery.platform.errors import ConfigError
from smtp_discovery.schemas.calendar import Week
from smtp_discovery.schemas.tenant import DiscoverySettings
from tests.jobs import samples
from tests.jobs.samples import Tags

PLANTED = [
    "=cmd|'/Ccalc'@a.example",
    "+cmd@a.example",
    "-2+3@a.example",
    "=1+1@a.example",
    "@SUM(A1)@a.example",
    "\tx@a.example",
    "\rx@a.example",
]


def test_cells_a_spreadsheet_would_run_are_made_text() -> None:
    tenant = Tenant("acme", "Acme", "it@acme.example", "", DiscoverySettings())
    rows = [(address, "end_user", "sent mail", "2026-11-30 06:34 UTC") for address in PLANTED]
    rows.append(("plain@a.example", "end_user", "sent mail", "2026-11-30 06:34 UTC"))
    report = Report(Kind.NEW_USERS, tenant, Week.parse("2026-W48"),
                    ("address", "role", "how", "when"), rows)  # fmt: skip
    read = list(csv.reader(io.StringIO(as_csv(report))))
    assert read[0] == ["address", "role", "how", "when"]
    cells = [row[0] for row in read[1:]]
    assert cells[:-1] == ["'" + address for address in PLANTED]
    assert cells[-1] == "plain@a.example"
    assert all(
        not cell.startswith(("=", "+", "-", "@", "\t", "\r")) for row in read for cell in row
    )


# ---- the summary, the link and the mail HTML --------------------------------------------------


def test_the_warning_summary_counts_waiting_expiring_and_the_earliest_expiry() -> None:
    rows = [
        ("a@x.example", "2026-11-20 12:00 UTC", 3, "2026-12-12"),
        ("b@x.example", "2026-11-02 08:00 UTC", 1, "2026-11-24"),
        ("c@x.example", "2026-10-30 08:00 UTC", 0, "2026-11-21"),  # a late report: none left
        ("d@x.example", "2026-11-10 08:00 UTC", 2, "2026-12-02"),
    ]
    assert warning_summary(rows) == WarningSummary(4, 2, "2026-11-21")
    assert warning_summary([]) == WarningSummary(0, 0, None)
    assert [last_notice(row) for row in rows] == [False, True, True, False]
    assert warning_summary(rows).as_dict() == {
        "waiting": 4, "expire_before_next_report": 2, "earliest_expiry": "2026-11-21"}  # fmt: skip


def test_new_users_and_aliases_are_counted_by_how() -> None:
    summary = change_summary(samples.new_users().rows)
    by_how = (("created by an administrator", 2),
              ("discovered and not managed before it expired", 1))  # fmt: skip
    assert summary == ChangeSummary(3, by_how)
    assert summary.as_dict() == {"total": 3, "by_how": dict(by_how)}
    ties = change_summary(samples.new_aliases().rows)  # one each: by name
    assert ties.by_how == (("added by an administrator", 1), ("detected automatically", 1))
    assert change_summary([]) == ChangeSummary(0, ())
    assert NEW_USERS_COLUMNS.index("how") == NEW_ALIASES_COLUMNS.index("how")


def test_every_format_but_csv_puts_the_summary_before_the_rows() -> None:
    shown = Presentation("Example Mail Protect", samples.CONSOLE)
    report = samples.warning()
    plain = text(report, shown)
    assert plain.index("Summary") < plain.index("address ") < plain.index("new@acme.example")
    assert "- 4 addresses wait for an administrator\n" in plain
    assert "- 1 expires before next week's report\n" in plain
    assert "- Earliest expiry: 2026-11-24\n" in plain
    markup = as_html(report, shown)
    assert markup.index("data-summary") < markup.index("data-rows")
    facts = " ".join(Tags(markup[: markup.index("data-rows")]).text)
    for fact in ("4", "addresses wait for an administrator", "1",
                 "expires before next week's report", "2026-11-24", "earliest expiry"):  # fmt: skip
        assert fact in facts
    assert json.loads(as_json(report, shown))["summary"] == {
        "waiting": 4, "expire_before_next_report": 1, "earliest_expiry": "2026-11-24"}  # fmt: skip
    assert (
        as_csv(report, shown).splitlines()[0]
        == '"address","discovered","notices left","expires on"'
    )
    assert len(as_csv(report, shown).splitlines()) == 1 + len(report.rows)

    users = text(samples.new_users(), shown)
    assert "- 3 new users, by how they were created:\n" in users
    assert "    2  created by an administrator\n" in users
    assert "    1  discovered and not managed before it expired\n" in users
    aliases = as_html(samples.new_aliases(), shown)
    assert "By how they were linked" in aliases and "new aliases" in aliases
    assert json.loads(as_json(samples.new_aliases()))["summary"]["total"] == 2


@pytest.mark.parametrize(
    ("kind", "page"),
    [("warning", "discovered?tenant=acme&weeks=4"), ("new-users", "users?tenant=acme&status=user"),
     ("new-aliases", "users?tenant=acme&status=alias")],
)  # fmt: skip
def test_each_report_links_to_its_console_page_when_the_console_url_is_set(
    kind: str, page: str
) -> None:
    report = samples.REPORTS[kind]()
    url = f"{samples.CONSOLE}/{page}"
    shown = Presentation(console_url=samples.CONSOLE)
    links = [attrs for tag, attrs in Tags(as_html(report, shown)).tags if tag == "a"]
    assert [link["href"] for link in links] == [url]
    assert f": {url}\n" in text(report, shown)
    assert "token" not in url
    # Without the setting: where the console is documented, and no address at all.
    for rendered in (as_html(report), text(report)):
        assert "/console on the admin API" in rendered and "docs/admin-api.md" in rendered
        assert "http" not in rendered and "href" not in rendered


def test_every_value_is_escaped_and_the_html_is_mail_html() -> None:
    """A tenant name or an address that is markup shows as its characters; the HTML holds no
    script, style sheet, image or event handler, and is at most 600 px wide."""
    shown = Presentation('Provider <b>"bold"</b>', samples.CONSOLE)
    for make in samples.REPORTS.values():
        report = make(samples.XSS_NAME)
        markup = as_html(report, shown)
        parsed = Tags(markup)
        tags = {tag for tag, _ in parsed.tags}
        assert tags <= {"html", "head", "meta", "title", "body", "table", "thead", "tbody", "tr",
                        "th", "td", "div", "p", "h1", "h2", "strong", "a"}, tags  # fmt: skip
        attributes = {name for _, attrs in parsed.tags for name in attrs}
        assert not {a for a in attributes if a.startswith("on") or a in ("src", "class")}
        assert "<script" not in markup.lower() and "<img" not in markup.lower()
        text_shown = "".join(parsed.text)
        assert samples.XSS_NAME in text_shown and 'Provider <b>"bold"</b>' in text_shown
        assert (
            "&lt;script&gt;alert(&quot;name&quot;)&lt;/script&gt; &amp; &quot;Sons&quot;" in markup
        )
        report_table = next(attrs for tag, attrs in parsed.tags if "data-report" in attrs)
        assert report_table["width"] == "600" and "max-width:600px" in str(report_table["style"])
    warned = as_html(samples.warning(), shown)
    assert samples.XSS_ADDRESS in "".join(Tags(warned).text)
    assert html.escape(samples.XSS_ADDRESS, quote=True) in warned


def test_the_week_is_named_by_its_days() -> None:
    assert period(samples.warning()) == "Monday 16 to Sunday 22 November 2026"
    across = replace(samples.warning(), week=Week.parse("2026-W49"))
    assert period(across) == "Monday 30 November to Sunday 6 December 2026"
    new_year = replace(samples.warning(), week=Week.parse("2026-W53"))
    assert period(new_year) == "Monday 28 December 2026 to Sunday 3 January 2027"


@pytest.mark.parametrize(
    ("given", "kept"),
    [("https://discovery.example.net/console", "https://discovery.example.net/console"),
     ("http://127.0.0.1:8025/console/", "http://127.0.0.1:8025/console"),
     (" https://example.net/tools/console ", "https://example.net/tools/console")],
)  # fmt: skip
def test_the_console_url_is_an_http_url(given: str, kept: str) -> None:
    settings = ReportSettings.from_env({"DISCOVERY_REPORT_CONSOLE_URL": given})
    assert settings.report_console_url == kept
    assert Presentation.of(settings).console_url == kept


@pytest.mark.parametrize(
    "given",
    ["discovery.example.net/console", "ftp://example.net/console", "javascript:alert(1)",
     "https://user:secret@example.net/console", "https://example.net/console?token=abc",
     "https://example.net/console#x", "https:///console", "https://example.net/a b",
     'https://example.net/"><script>', "https://example.net:99999/console"],
)  # fmt: skip
def test_a_console_url_that_is_not_a_plain_http_url_is_refused(given: str) -> None:
    with pytest.raises(ConfigError, match="DISCOVERY_REPORT_CONSOLE_URL"):
        ReportSettings.from_env({"DISCOVERY_REPORT_CONSOLE_URL": given})


def test_the_provider_name_defaults_to_something_neutral() -> None:
    assert ReportSettings().report_provider_name == "Mail filtering service"
    assert Presentation().provider == "Mail filtering service"
    named = ReportSettings.from_env({"DISCOVERY_REPORT_PROVIDER_NAME": " Example Mail "})
    assert named.report_provider_name == "Example Mail"
    with pytest.raises(ConfigError, match="DISCOVERY_REPORT_PROVIDER_NAME"):
        ReportSettings.from_env({"DISCOVERY_REPORT_PROVIDER_NAME": "Two\nlines"})
