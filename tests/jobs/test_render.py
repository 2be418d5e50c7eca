"""Report exports: safe to open in a spreadsheet, whatever address came in with the mail."""

from __future__ import annotations

import csv
import io

from smtp_discovery.jobs.render import as_csv
from smtp_discovery.jobs.reports import Kind, Report, Tenant
from smtp_discovery.schemas.calendar import Week
from smtp_discovery.schemas.tenant import DiscoverySettings

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
