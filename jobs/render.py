"""A report as text, HTML, CSV or JSON: presentation only, no queries."""

from __future__ import annotations

import csv
import html
import io
import json

from smtp_discovery.jobs.reports import Kind, Report

INTRO = {
    Kind.NEW_USERS: "These addresses became users of the mail filtering service that week.",
    Kind.NEW_ALIASES: "These addresses were linked to a user as aliases that week.",
    Kind.WARNING: (
        "These addresses were discovered from your mail flow and wait for an administrator to "
        "create a user, a functional account or an alias, or to mark them invalid. Each "
        "expires after its notices left, this one included."
    ),
}


def text(report: Report) -> str:
    lines = [report.title, "", INTRO[report.kind], ""]
    lines += [f"! {note}" for note in report.notes]
    if report.notes:
        lines.append("")
    if not report.rows:
        lines.append("(none)")
        return "\n".join(lines) + "\n"
    table = [report.columns, *[tuple(str(v) for v in row) for row in report.rows]]
    widths = [max(len(str(row[i])) for row in table) for i in range(len(report.columns))]
    for index, row in enumerate(table):
        lines.append("  ".join(str(v).ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())
        if index == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines) + "\n"


def as_html(report: Report) -> str:
    e = html.escape
    parts = [
        "<!doctype html>",
        f"<html><head><meta charset='utf-8'><title>{e(report.title)}</title></head><body>",
        f"<h1>{e(report.title)}</h1>",
        f"<p>{e(INTRO[report.kind])}</p>",
    ]
    parts += [f"<p><strong>{e(note)}</strong></p>" for note in report.notes]
    if report.rows:
        head = "".join(f"<th>{e(c)}</th>" for c in report.columns)
        body = "".join(
            "<tr>" + "".join(f"<td>{e(str(v))}</td>" for v in row) + "</tr>" for row in report.rows
        )
        parts.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
    else:
        parts.append("<p>(none)</p>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def as_csv(report: Report) -> str:
    """Every cell quoted, and any cell a spreadsheet would run as a formula made inert."""
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


def as_json(report: Report) -> str:
    return (
        json.dumps(
            {
                "report": report.kind.value,
                "tenant": report.tenant.tenant_id,
                "week": str(report.week),
                "notes": report.notes,
                "rows": [dict(zip(report.columns, row, strict=True)) for row in report.rows],
            },
            indent=2,
            default=str,
        )
        + "\n"
    )


FORMATS = {"text": text, "html": as_html, "csv": as_csv, "json": as_json}
