"""A report as text, HTML, CSV or JSON: presentation only, no queries.

``as_html`` is the one HTML of a report: the mail's HTML part, the admin API's ``format=html``
and the console's preview are all this function's output. It is mail HTML: a table layout with
inline styles only (no style sheet, script or image), at most 600 px wide, every value escaped.
"""

from __future__ import annotations

import csv
import html
import io
import json
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from urllib.parse import urlencode

from smtp_discovery.jobs.reports import ChangeSummary, Kind, Report, WarningSummary, last_notice
from smtp_discovery.platform.config import ReportSettings

DEFAULT_PROVIDER = str(ReportSettings.model_fields["report_provider_name"].default)


@dataclass(frozen=True, slots=True)
class Presentation:
    """What a report shows besides its data: the provider's name and where its console is."""

    provider: str = DEFAULT_PROVIDER
    console_url: str | None = None
    """The console's public address (DISCOVERY_REPORT_CONSOLE_URL), without a trailing slash."""

    @classmethod
    def of(cls, settings: ReportSettings) -> Presentation:
        return cls(settings.report_provider_name, settings.report_console_url)


INTRO = {
    Kind.NEW_USERS: "These addresses became users of the mail filtering service that week.",
    Kind.NEW_ALIASES: "These addresses were linked to a user as aliases that week.",
    Kind.WARNING: (
        "These addresses were discovered from your mail flow and wait for an administrator to "
        "create a user, a functional account or an alias, or to mark them invalid. Each "
        "expires after its notices left, this one included."
    ),
}

CONSOLE_PAGE: dict[Kind, tuple[str, dict[str, str]]] = {
    Kind.WARNING: ("discovered", {}),
    Kind.NEW_USERS: ("users", {"status": "user"}),
    Kind.NEW_ALIASES: ("users", {"status": "alias"}),
}
"""The console page each report leads to, and its filter (console.js reads ``tenant``)."""

ACTION = {
    Kind.WARNING: (
        "Review the waiting addresses",
        "Create users, functional accounts or aliases for these addresses, or mark them "
        "invalid, in the Discovered list of the web console.",
    ),
    Kind.NEW_USERS: ("Open the users", "The Users page of the web console lists every user."),
    Kind.NEW_ALIASES: (
        "Open the aliases",
        "The Users page of the web console lists every alias with its user.",
    ),
}
"""Per report: the link's label, and the sentence that says what to do where."""

NO_CONSOLE_URL = (
    "The web console is served under /console on the admin API (docs/admin-api.md describes "
    "it); your provider can tell you its address."
)


def console_link(report: Report, presentation: Presentation) -> str | None:
    """The console page for this report and tenant (no token: the console asks for one)."""
    if not presentation.console_url:
        return None
    page, params = CONSOLE_PAGE[report.kind]
    if report.kind is Kind.WARNING:
        # Every address still waiting: discovered within the tenant's notices, plus the day.
        params = {**params, "weeks": str(min(52, report.tenant.settings.notices_before_expiry + 1))}
    return f"{presentation.console_url}/{page}?" + urlencode(
        {"tenant": report.tenant.tenant_id, **params}
    )


def period(report: Report) -> str:
    """The days the report covers: 'Monday 16 to Sunday 22 November 2026'."""
    monday: date = report.week.monday
    sunday = monday + timedelta(days=6)
    if monday.year != sunday.year:
        start = f"{monday.day} {monday:%B %Y}"
    elif monday.month != sunday.month:
        start = f"{monday.day} {monday:%B}"
    else:
        start = str(monday.day)
    return f"Monday {start} to Sunday {sunday.day} {sunday:%B %Y}"


def _plural(count: int, one: str, many: str) -> str:
    return one if count == 1 else many


def summary_facts(report: Report) -> list[tuple[str, str]]:
    """The summary as (figure, what it counts) pairs, the same in every format."""
    summary = report.summary
    if isinstance(summary, WarningSummary):
        n, soon = summary.waiting, summary.expiring
        facts = [
            (str(n), _plural(n, "address waits", "addresses wait") + " for an administrator"),
            (str(soon), _plural(soon, "expires", "expire") + " before next week's report"),
        ]
        if summary.earliest_expiry:
            facts.append((summary.earliest_expiry, "earliest expiry"))
        return facts
    noun = {
        Kind.NEW_USERS: ("new user", "new users"),
        Kind.NEW_ALIASES: ("new alias", "new aliases"),
    }
    return [(str(summary.total), _plural(summary.total, *noun[report.kind]))]


def summary_breakdown(report: Report) -> list[tuple[str, int]]:
    """New users by how they were created, new aliases by how they were linked."""
    summary = report.summary
    return list(summary.by_how) if isinstance(summary, ChangeSummary) else []


def _breakdown_title(report: Report) -> str:
    return (
        "By how they were created" if report.kind is Kind.NEW_USERS else "By how they were linked"
    )


def _footer(report: Report, presentation: Presentation) -> str:
    return (
        f"{presentation.provider} sends this report every Thursday to the contacts of "
        f"{report.tenant.name}. It was generated automatically."
    )


# ---- text ------------------------------------------------------------------------------------


def _wrap(paragraph: str, indent: str = "") -> str:
    """Prose at most 76 characters a line, as mail text reads best (tables and links are kept
    whole: a table's rows and a URL are never broken)."""
    return textwrap.fill(paragraph, 76, subsequent_indent=indent, break_long_words=False,
                         break_on_hyphens=False)  # fmt: skip


def text(report: Report, presentation: Presentation = Presentation()) -> str:
    lines = [report.title, f"{presentation.provider}, {period(report)}", ""]
    lines.append("Summary")
    breakdown = summary_breakdown(report)
    for figure, label in summary_facts(report):
        if not figure.isdigit():  # the earliest expiry: a day, not a count
            lines.append(f"- {label[0].upper()}{label[1:]}: {figure}")
        elif breakdown:
            lines.append(f"- {figure} {label}, {_breakdown_title(report).lower()}:")
        else:
            lines.append(f"- {figure} {label}")
    if breakdown:
        width = max(len(str(count)) for _, count in breakdown)
        lines += [f"    {str(count).rjust(width)}  {how}" for how, count in breakdown]
    lines += ["", _wrap(INTRO[report.kind]), ""]
    lines += [_wrap(f"! {note}", "  ") for note in report.notes]
    if report.notes:
        lines.append("")
    label, sentence = ACTION[report.kind]
    link = console_link(report, presentation)
    lines.append(_wrap(sentence))
    lines.append(f"{label}: {link}" if link else _wrap(NO_CONSOLE_URL))  # a link on one line
    lines.append("")
    if not report.rows:
        lines.append("(none)")
    else:
        table = [report.columns, *[tuple(str(v) for v in row) for row in report.rows]]
        widths = [max(len(str(row[i])) for row in table) for i in range(len(report.columns))]
        for index, row in enumerate(table):
            cells = zip(row, widths, strict=True)
            lines.append("  ".join(str(v).ljust(w) for v, w in cells).rstrip())
            if index == 0:
                lines.append("  ".join("-" * w for w in widths))
    lines += ["", "-- ", _wrap(_footer(report, presentation))]
    return "\n".join(lines) + "\n"


# ---- HTML ------------------------------------------------------------------------------------

FONT = "font-family:Arial,Helvetica,sans-serif;"
INK = "#1f2933"
MUTED = "#52606d"
LINE = "#d9e2ec"
ACCENT = "#1d4ed8"
ALERT = "#b42318"

_ADDRESS_COLUMNS = {
    Kind.WARNING: {"address": "40%"},
    Kind.NEW_USERS: {"address": "30%"},
    Kind.NEW_ALIASES: {"alias": "30%", "user": "30%"},
}
"""Address columns break anywhere (an address can be longer than the mail is wide), so each
gets its share of the width: the table's automatic layout would squeeze it otherwise."""
_NO_WRAP_COLUMNS = {"when", "discovered", "expires on"}
_NUMBER_COLUMNS = {"notices left"}


def _e(value: object) -> str:
    """Text as HTML: every value shown is escaped, quotes included (attributes too)."""
    return html.escape(str(value), quote=True)


def _row(content: str, css: str = "padding:0 24px 16px;") -> str:
    """One band of the 600 px column."""
    return f'<tr><td style="{css}">{content}</td></tr>'


def _figure(figure: str, label: str, colour: str = INK) -> str:
    size = "28px" if len(figure) <= 6 else "18px"
    return (
        f'<div style="{FONT}font-size:{size};line-height:32px;font-weight:bold;color:{colour};">'
        f"{_e(figure)}</div>"
        f'<div style="{FONT}font-size:13px;line-height:18px;color:{MUTED};">{_e(label)}</div>'
    )


_BOX = f"padding:12px;background-color:#f5f7fa;border:1px solid {LINE};"


def _summary_html(report: Report) -> str:
    """The warning's figures side by side; a change report's total with its breakdown."""
    facts = summary_facts(report)
    heading = (
        f'<h2 style="margin:0 0 8px;{FONT}font-size:15px;line-height:20px;color:{INK};">'
        "Summary</h2>"
    )
    table = (
        '<table role="presentation" data-summary width="100%" cellpadding="0" cellspacing="0" '
        'border="0" style="width:100%;border-collapse:separate;">'
    )
    breakdown = summary_breakdown(report)
    if report.kind is Kind.WARNING or not breakdown:
        share = 100 // len(facts)
        cells = []
        for index, (figure, label) in enumerate(facts):
            soon = report.kind is Kind.WARNING and index == 1 and figure != "0"
            cells.append(
                f'<td width="{share}%" valign="top" style="width:{share}%;{_BOX}">'
                f"{_figure(figure, label, ALERT if soon else INK)}</td>"
            )
        spacer = '<td width="8" style="width:8px;font-size:0;line-height:0;">&nbsp;</td>'
        return f"{heading}{table}<tr>{spacer.join(cells)}</tr></table>"
    ((figure, label),) = facts
    rows = "".join(
        f'<tr><td style="padding:4px 12px 4px 0;border-top:1px solid {LINE};{FONT}'
        f'font-size:13px;line-height:18px;color:{INK};">{_e(how)}</td>'
        f'<td align="right" style="padding:4px 0;border-top:1px solid {LINE};{FONT}'
        f'font-size:13px;line-height:18px;font-weight:bold;color:{INK};">{count}</td></tr>'
        for how, count in breakdown
    )
    return (
        f"{heading}{table}<tr>"
        f'<td width="30%" valign="top" style="width:30%;{_BOX}border-right:0;">'
        f"{_figure(figure, label)}</td>"
        f'<td valign="top" style="{_BOX}border-left:0;">'
        f'<div style="{FONT}font-size:13px;line-height:18px;color:{MUTED};padding-bottom:4px;">'
        f"{_e(_breakdown_title(report))}</div>"
        '<table role="presentation" data-breakdown width="100%" cellpadding="0" '
        f'cellspacing="0" border="0" style="width:100%;border-collapse:collapse;">{rows}</table>'
        "</td></tr></table>"
    )


def _action_html(report: Report, presentation: Presentation) -> str:
    label, sentence = ACTION[report.kind]
    link = console_link(report, presentation)
    paragraph = f'<p style="margin:0 0 12px;{FONT}font-size:14px;line-height:20px;color:{INK};">'
    if link is None:
        return f"{paragraph}{_e(sentence)}</p>{paragraph}{_e(NO_CONSOLE_URL)}</p>"
    href = _e(link)
    button = (
        '<table role="presentation" cellpadding="0" cellspacing="0" border="0"><tr>'
        f'<td bgcolor="{ACCENT}" style="background-color:{ACCENT};border-radius:4px;">'
        f'<a data-console href="{href}" target="_blank" rel="noopener noreferrer" '
        f'style="display:inline-block;padding:10px 18px;{FONT}font-size:14px;font-weight:bold;'
        f'color:#ffffff;text-decoration:none;">{_e(label)}</a></td></tr></table>'
    )
    shown = (
        f'<p style="margin:8px 0 0;{FONT}font-size:12px;line-height:16px;color:{MUTED};'
        f'word-break:break-all;">{href}</p>'
    )
    return f"{paragraph}{_e(sentence)}</p>{button}{shown}"


def _table_html(report: Report) -> str:
    if not report.rows:
        return f'<p style="margin:0;{FONT}font-size:14px;color:{MUTED};">(none)</p>'

    def style(column: str, head: bool) -> str:
        out = f"padding:6px 8px;{FONT}font-size:13px;line-height:18px;text-align:left;"
        out += f"border-bottom:1px solid {LINE};vertical-align:top;"
        if head:
            out += f"background-color:#f5f7fa;color:{MUTED};font-weight:bold;"
        else:
            out += f"color:{INK};"
        if column in _ADDRESS_COLUMNS[report.kind] and not head:
            out += "overflow-wrap:anywhere;word-break:break-word;"
        if column in _NO_WRAP_COLUMNS and not head:
            out += "white-space:nowrap;"
        if column in _NUMBER_COLUMNS:
            out += "text-align:right;"
        return out

    def width(column: str) -> str:
        share = _ADDRESS_COLUMNS[report.kind].get(column)
        return f' width="{share}"' if share else ""

    def cell(column: str, value: object, row: tuple[object, ...]) -> str:
        css = style(column, False)
        if column == "expires on" and report.kind is Kind.WARNING and last_notice(row):
            css += f"color:{ALERT};font-weight:bold;"
        return f'<td style="{css}">{_e(value)}</td>'

    head = "".join(f'<th{width(c)} style="{style(c, True)}">{_e(c)}</th>' for c in report.columns)
    body = "".join(
        "<tr>"
        + "".join(cell(c, v, row) for c, v in zip(report.columns, row, strict=True))
        + "</tr>"
        for row in report.rows
    )
    return (
        '<table data-rows width="100%" cellpadding="0" cellspacing="0" border="0" '
        f'style="width:100%;border-collapse:collapse;border:1px solid {LINE};">'
        f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
    )


def as_html(report: Report, presentation: Presentation = Presentation()) -> str:
    """The report as mail HTML (see the module's docstring): what is sent, served and shown."""
    title = _e(report.title)
    notes = "".join(
        f'<p style="margin:0 0 8px;padding:10px 12px;background-color:#fff4e5;'
        f'border-left:4px solid #c2410c;{FONT}font-size:13px;line-height:18px;color:{INK};">'
        f"<strong>{_e(note)}</strong></p>"
        for note in report.notes
    )
    rows = [
        _row(
            f'<div style="{FONT}font-size:13px;line-height:18px;color:#ffffff;font-weight:bold;">'
            f"{_e(presentation.provider)}</div>",
            css=f"padding:14px 24px;background-color:{INK};",
        ),
        _row(
            f'<h1 style="margin:0;{FONT}font-size:20px;line-height:26px;color:{INK};">{title}</h1>'
            f'<p style="margin:4px 0 0;{FONT}font-size:13px;line-height:18px;color:{MUTED};">'
            f"{_e(period(report))}</p>",
            css="padding:20px 24px 16px;",
        ),
        _row(_summary_html(report)),
        _row(
            f'<p style="margin:0;{FONT}font-size:14px;line-height:20px;color:{INK};">'
            f"{_e(INTRO[report.kind])}</p>"
        ),
    ]
    if notes:
        rows.append(_row(notes, css="padding:0 24px 8px;"))
    rows.append(_row(_action_html(report, presentation)))
    rows.append(_row(_table_html(report), css="padding:0 24px 20px;"))
    rows.append(
        _row(
            f'<p style="margin:0;{FONT}font-size:12px;line-height:16px;color:{MUTED};">'
            f"{_e(_footer(report, presentation))}</p>",
            css=f"padding:12px 24px 16px;border-top:1px solid {LINE};",
        )
    )
    return (
        "<!doctype html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta name="color-scheme" content="light">'
        f"<title>{title}</title></head>\n"
        '<body style="margin:0;padding:0;background-color:#eef2f6;">\n'
        '<table role="presentation" width="100%" cellpadding="0" cellspacing="0" border="0" '
        'style="width:100%;background-color:#eef2f6;"><tr>'
        '<td align="center" style="padding:16px 8px;">\n'
        '<table role="presentation" data-report width="600" cellpadding="0" cellspacing="0" '
        f'border="0" style="width:100%;max-width:600px;background-color:#ffffff;'
        f'border:1px solid {LINE};text-align:left;">\n'
        + "\n".join(rows)
        + "\n</table>\n</td></tr></table>\n</body></html>\n"
    )


# ---- CSV and JSON ----------------------------------------------------------------------------


def as_csv(report: Report, presentation: Presentation = Presentation()) -> str:
    """Every cell quoted, and any cell a spreadsheet would run as a formula made inert. The rows
    only: no summary, no link."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n", quoting=csv.QUOTE_ALL)
    writer.writerow([spreadsheet_safe(cell) for cell in report.columns])
    writer.writerows([spreadsheet_safe(cell) for cell in row] for row in report.rows)
    return out.getvalue()


_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(cell: object) -> object:
    """A text cell that starts like a formula gets a leading apostrophe (OWASP's advice for CSV
    injection). Addresses come from anyone who can send mail to a tenant, so
    ``=cmd|'/Ccalc'@a.example`` is a discovered address like any other; opened in a spreadsheet,
    it must stay text."""
    if isinstance(cell, str) and cell.startswith(_FORMULA_STARTS):
        return "'" + cell
    return cell


def as_json(report: Report, presentation: Presentation = Presentation()) -> str:
    return (
        json.dumps(
            {
                "report": report.kind.value,
                "tenant": report.tenant.tenant_id,
                "week": str(report.week),
                "summary": report.summary.as_dict(),
                "notes": report.notes,
                "rows": [dict(zip(report.columns, row, strict=True)) for row in report.rows],
            },
            indent=2,
            default=str,
        )
        + "\n"
    )


FORMATS: dict[str, Callable[[Report, Presentation], str]] = {
    "text": text,
    "html": as_html,
    "csv": as_csv,
    "json": as_json,
}
"""Each format as ``render(report, presentation)``."""
