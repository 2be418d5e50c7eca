"""Log output for every role: human text, or one JSON object per line for log shippers.

Structured fields come from ``extra={...}`` on the logging call; they are what a mail log may
hold (ids, addresses, IPs, decisions, sizes), never message contents or secrets.

Where the lines go: a role run on its own (under an orchestrator) logs everything at
``DISCOVERY_LOG_LEVEL`` to stderr. `up`, its children and the short operator commands keep the
terminal quiet: it shows our warnings and errors and the libraries' errors only, and `up`'s
processes write everything else to a file of their own under ``<data dir>/logs``
(:func:`role_log`). ``-v`` and ``-vv`` ask for more (:func:`terminal_levels`).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiokafka.errors import GroupCoordinatorNotAvailableError

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


OURS = "smtp_discovery"
"""The project's loggers: this one and its children. Every other logger is a library's."""


def is_ours(name: str) -> bool:
    return name == OURS or name.startswith(OURS + ".")


class StartupCoordinatorFilter(logging.Filter):
    """aiokafka's ERROR ``Group Coordinator Request failed: [Error 15]
    GroupCoordinatorNotAvailableError``, written as INFO while it is a start's transient.

    A consumer group's first member asks for its coordinator before the broker has loaded the
    offsets topic (always on a new broker, often on a restarted one); the broker answers "not
    available", aiokafka logs an ERROR and asks again, and a moment later the group is joined.
    This filter sits on aiokafka's group-coordinator logger and downgrades that one record
    (that logger, that message, that error class) to INFO: it goes to the log file, not to a
    quiet terminal. While the coordinator stays unavailable for ``grace_s`` or more it is no
    transient: from then on the records pass as the ERRORs they are. Every other aiokafka error
    is left as it is.
    """

    LOGGER = "aiokafka.consumer.group_coordinator"
    MESSAGE = "Group Coordinator Request failed: %s"

    def __init__(self, grace_s: float = 60.0, clock: Clock | None = None) -> None:
        super().__init__()
        self.grace_s = grace_s
        self.clock: Clock = clock if clock is not None else SystemClock()
        self._since: float | None = None  # when the coordinator became unavailable
        self._last: float | None = None  # the latest such record

    def filter(self, record: logging.LogRecord) -> bool:
        if not (
            record.name == self.LOGGER
            and record.levelno == logging.ERROR
            and record.msg == self.MESSAGE
            and isinstance(record.args, tuple)
            and record.args
            and isinstance(record.args[0], GroupCoordinatorNotAvailableError)
        ):
            return True
        now = self.clock.monotonic()
        if self._since is None or self._last is None or now - self._last > self.grace_s:
            self._since = now  # a new spell (the last one ended long ago)
        self._last = now
        if now - self._since < self.grace_s:
            record.levelno, record.levelname = logging.INFO, logging.getLevelName(logging.INFO)
        return True


@dataclass(frozen=True, slots=True)
class TerminalLevels:
    """The lowest level the terminal (stderr) shows of our records and of the libraries'."""

    ours: int
    libraries: int

    @classmethod
    def every(cls, level: str | int) -> TerminalLevels:
        number = logging.getLevelName(level) if isinstance(level, str) else level
        return cls(number, number)

    @property
    def lowest(self) -> int:
        return min(self.ours, self.libraries)


QUIET = TerminalLevels(ours=logging.WARNING, libraries=logging.ERROR)
"""`up` and the short commands by default: our warnings and errors, the libraries' errors."""


def terminal_levels(
    base: TerminalLevels, verbose: int = 0, asked: str | None = None
) -> TerminalLevels:
    """``base`` with what was asked for added (each only ever shows more): ``asked`` (a
    DISCOVERY_LOG_LEVEL set in the environment) for every logger; ``-v`` our INFO and the
    libraries' warnings; ``-vv`` everything at DEBUG."""
    ours, libraries = base.ours, base.libraries
    if asked:
        level = logging.getLevelName(asked)
        ours, libraries = min(ours, level), min(libraries, level)
    if verbose >= 1:
        ours, libraries = min(ours, logging.INFO), min(libraries, logging.WARNING)
    if verbose >= 2:
        ours = libraries = logging.DEBUG
    return TerminalLevels(ours, libraries)


class TerminalFilter(logging.Filter):
    """Our records from ``levels.ours`` up, the libraries' from ``levels.libraries`` up."""

    def __init__(self, levels: TerminalLevels) -> None:
        super().__init__()
        self.levels = levels

    def filter(self, record: logging.LogRecord) -> bool:
        floor = self.levels.ours if is_ours(record.name) else self.levels.libraries
        return record.levelno >= floor


def role_log(data_dir: Path, role: str) -> Path:
    """The log file of one of `up`'s processes: ``up`` itself (the sink, the admin API and the
    jobs run in it), ``ingest``, ``worker``."""
    return data_dir / "logs" / f"{role}.log"


def configure(
    level: str | int,
    fmt: str,
    *,
    terminal: TerminalLevels | None = None,
    file: Path | None = None,
) -> None:
    """Logging for this process. stderr shows ``terminal`` (default: every record at ``level``
    and up). With ``file``, every record at ``level`` and up (or lower, if the terminal shows
    more) is also appended to ``file``: the terminal keeps what a person should read."""
    terminal = terminal if terminal is not None else TerminalLevels.every(level)
    formatter: logging.Formatter = JsonFormatter() if fmt == "json" else TextFormatter()
    handler = logging.StreamHandler()
    handler.setFormatter(formatter)
    handler.setLevel(terminal.lowest)
    handler.addFilter(TerminalFilter(terminal))
    handler.addFilter(RepeatFilter())
    handlers: list[logging.Handler] = [handler]
    lowest = terminal.lowest
    if file is not None:
        file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)  # logs hold addresses
        number = logging.getLevelName(level) if isinstance(level, str) else level
        to_file = logging.FileHandler(file, encoding="utf-8")
        to_file.setFormatter(formatter)
        to_file.setLevel(min(number, terminal.lowest))
        to_file.addFilter(RepeatFilter())  # one per handler: each counts what it held back
        handlers.append(to_file)
        lowest = min(lowest, to_file.level)
    if file is not None or terminal.libraries > logging.WARNING:
        # A quiet terminal: Python's warnings (deprecations and the like) are a library's
        # lines too (logger ``py.warnings``), for the file or for -v.
        logging.captureWarnings(True)
    root = logging.getLogger()
    root.handlers[:] = handlers
    root.setLevel(lowest)
    coordinator = logging.getLogger(StartupCoordinatorFilter.LOGGER)
    for old_filter in list(coordinator.filters):
        if isinstance(old_filter, StartupCoordinatorFilter):
            coordinator.removeFilter(old_filter)
    coordinator.addFilter(StartupCoordinatorFilter())
    # aiosmtpd logs every command line (addresses included) at INFO: keep it for debugging only.
    logging.getLogger("mail.log").setLevel(max(logging.WARNING, root.level))
