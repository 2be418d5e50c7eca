"""Structured logs: one JSON object per line, extra fields kept, nothing else leaked."""

from __future__ import annotations

import json
import logging
import re

from smtp_discovery.platform.clock import ManualClock
from smtp_discovery.platform.logs import JsonFormatter, RepeatFilter, TextFormatter


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


def _kafka_error(msg: str = "Unable connect to node with id %s: %s") -> logging.LogRecord:
    return logging.LogRecord("aiokafka", logging.ERROR, __file__, 1, msg, (1, "refused"), None)


def test_a_kafka_library_repeating_itself_is_said_once_per_interval() -> None:
    clock = ManualClock()
    repeats = RepeatFilter(interval_s=30, clock=clock)
    assert repeats.filter(_kafka_error())
    held = 0
    for _ in range(500):  # a reconnect loop, many times a second
        clock.advance(0.02)
        held += not repeats.filter(_kafka_error())
    assert held == 500
    assert repeats.filter(_kafka_error("Unable to update metadata from %s")), "another kind"
    clock.advance(30)
    record = _kafka_error()
    assert repeats.filter(record)
    assert record.getMessage() == (
        "Unable connect to node with id 1: refused (500 more like it since the last such line)"
    )


def test_our_own_lines_and_library_info_are_never_held_back() -> None:
    repeats = RepeatFilter(interval_s=30, clock=ManualClock())
    ours = logging.LogRecord("smtp_discovery.jobs", logging.WARNING, __file__, 1, "report failed",
                             None, None)  # fmt: skip
    info = logging.LogRecord("aiokafka.consumer", logging.INFO, __file__, 1, "joined", None, None)
    assert all(repeats.filter(ours) for _ in range(5))
    assert all(repeats.filter(info) for _ in range(5))


def test_a_value_cannot_forge_fields_in_text_logs() -> None:
    forged = '"forg to_status=user reason=admin:create_user tenant=b"@a.example'
    line = TextFormatter().format(_record(tenant="a", address=forged, to_status="pending"))
    fields = line.split(" transition ", 1)[1]
    parsed = dict(
        (key, json.loads(value) if value.startswith('"') else value)
        for key, value in re.findall(r'(\w+)=("(?:[^"\\]|\\.)*"|\S+)', fields)
    )
    assert parsed == {"tenant": "a", "address": forged, "to_status": "pending"}
    assert "\n" not in TextFormatter().format(_record(address="a\nforged=1"))
