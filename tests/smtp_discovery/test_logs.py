"""Structured logs: one JSON object per line, extra fields kept, nothing else leaked."""

from __future__ import annotations

import json
import logging

from smtp_discovery.logs import JsonFormatter, TextFormatter


def _record(**extra: object) -> logging.LogRecord:
    record = logging.LogRecord("smtp_discovery.streams", logging.INFO, __file__, 1, "transition",
                               None, None)  # fmt: skip
    for key, value in extra.items():
        setattr(record, key, value)
    return record


def test_json_lines_carry_the_structured_fields() -> None:
    line = JsonFormatter().format(_record(tenant="acme", event_id="e1", to_status="user"))
    entry = json.loads(line)
    assert (entry["message"], entry["tenant"], entry["event_id"], entry["to_status"]) == (
        "transition", "acme", "e1", "user")  # fmt: skip
    assert entry["level"] == "INFO" and entry["logger"] == "smtp_discovery.streams"
    assert "\n" not in line


def test_text_lines_append_the_fields() -> None:
    line = TextFormatter().format(_record(tenant="acme"))
    assert line.endswith("transition tenant=acme")
