"""Log output for every role: human text, or one JSON object per line for log shippers.

Structured fields come from ``extra={...}`` on the logging call; they are what a mail log may
hold (ids, addresses, IPs, decisions, sizes), never message contents or secrets.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

from smtp_discovery.platform.clock import Clock, SystemClock

_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
}


def _extra(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            **_extra(record),
        }
        if record.exc_info and record.exc_info[0] is not None:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """The usual line, with the structured fields appended as key=value."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = _extra(record)
        if fields:
            line += " " + " ".join(f"{k}={_value(v)}" for k, v in fields.items())
        return line


def _value(value: Any) -> str:
    """A field's value, quoted and escaped (JSON string rules) when it holds a space, a quote,
    an ``=``, a backslash or a control character: a value such as the local part
    ``"forg to_status=user tenant=b"`` must not read as fields of its own to a key=value
    parser."""
    text = str(value)
    if not text or any(ch in ' "=\\' or ord(ch) < 32 or ord(ch) == 127 for ch in text):
        return json.dumps(text, ensure_ascii=False)
    return text


class RepeatFilter(logging.Filter):
    """One line per interval for each warning or error a Kafka library repeats.

    With its cluster gone, aiokafka logs a failed connection attempt many times a second (tens
    of thousands of lines a minute in `up`). The first such record passes; repeats of the same
    logger and message template within ``interval_s`` are counted instead, and the next one to
    pass says how many were held back. Our own log lines are never held back.
    """

    LIBRARIES = ("aiokafka", "kafka", "faust", "mode")

    def __init__(self, interval_s: float = 30.0, clock: Clock | None = None) -> None:
        super().__init__()
        self.interval_s = interval_s
        self.clock: Clock = clock if clock is not None else SystemClock()
        self._last: dict[tuple[str, str], float] = {}
        self._held: dict[tuple[str, str], int] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING or not record.name.startswith(self.LIBRARIES):
            return True
        key = (record.name, str(record.msg))
        now = self.clock.monotonic()
        last = self._last.get(key)
        if last is not None and now - last < self.interval_s:
            self._held[key] = self._held.get(key, 0) + 1
            return False
        self._last[key] = now
        held = self._held.pop(key, 0)
        if held:
            record.msg = f"{record.msg} ({held} more like it since the last such line)"
        return True


def configure(level: str, fmt: str) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(RepeatFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # aiosmtpd logs every command line (addresses included) at INFO: keep it for debugging only.
    logging.getLogger("mail.log").setLevel(max(logging.WARNING, root.level))
