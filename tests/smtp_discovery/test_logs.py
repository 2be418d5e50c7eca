"""Structured logs: one JSON object per line, extra fields kept, nothing else leaked; and a
quiet terminal: library INFO lines go to `up`'s files, not to a person's screen."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka.consumer import group_coordinator
from aiokafka.errors import GroupCoordinatorNotAvailableError, KafkaConnectionError

from smtp_discovery import cli
from smtp_discovery.platform.clock import ManualClock
from smtp_discovery.platform.config import RuntimeConfig
from smtp_discovery.platform.logs import (
    QUIET,
    JsonFormatter,
    RepeatFilter,
    StartupCoordinatorFilter,
    TerminalFilter,
    TerminalLevels,
    TextFormatter,
    configure,
    terminal_levels,
)


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


def _coordinator_error(error: Exception) -> logging.LogRecord:
    return logging.LogRecord(StartupCoordinatorFilter.LOGGER, logging.ERROR, __file__, 1,
                             "Group Coordinator Request failed: %s", (error,), None)  # fmt: skip


def test_the_coordinator_not_available_at_a_start_is_info() -> None:
    clock = ManualClock()
    startup = StartupCoordinatorFilter(grace_s=60, clock=clock)
    record = _coordinator_error(GroupCoordinatorNotAvailableError())
    assert startup.filter(record), "downgraded, never dropped: the file keeps it"
    assert (record.levelno, record.levelname) == (logging.INFO, "INFO")
    assert "GroupCoordinatorNotAvailableError" in record.getMessage()


def test_other_aiokafka_errors_pass_as_errors() -> None:
    startup = StartupCoordinatorFilter(clock=ManualClock())
    others = [
        _coordinator_error(KafkaConnectionError("refused")),  # same message, another error
        logging.LogRecord(
            StartupCoordinatorFilter.LOGGER,
            logging.ERROR,
            __file__,
            1,
            "Heartbeat send request failed: %s. Will retry.",
            (GroupCoordinatorNotAvailableError(),),
            None,
        ),
        logging.LogRecord(
            "aiokafka",
            logging.ERROR,
            __file__,
            1,
            "Unable connect to node with id %s: %s",
            (1, "refused"),
            None,
        ),
    ]
    for record in others:
        assert startup.filter(record)
        assert record.levelno == logging.ERROR, record.getMessage()


def test_a_coordinator_that_stays_unavailable_is_an_error_again() -> None:
    clock = ManualClock()
    startup = StartupCoordinatorFilter(grace_s=60, clock=clock)
    levels = []
    for _ in range(80):  # aiokafka asks again every retry_backoff_ms
        record = _coordinator_error(GroupCoordinatorNotAvailableError())
        startup.filter(record)
        levels.append(record.levelno)
        clock.advance(1)
    assert levels[:60] == [logging.INFO] * 60
    assert levels[60:] == [logging.ERROR] * 20, "past the grace, no transient"
    clock.advance(3600)  # hours later, a new spell (a broker restarted): a transient again
    record = _coordinator_error(GroupCoordinatorNotAvailableError())
    startup.filter(record)
    assert record.levelno == logging.INFO


def test_the_filter_is_on_aiokafkas_own_logger() -> None:
    assert group_coordinator.log.name == StartupCoordinatorFilter.LOGGER


@pytest.mark.parametrize(
    ("base", "verbose", "asked", "expected"),
    [
        (QUIET, 0, None, (logging.WARNING, logging.ERROR)),
        (QUIET, 1, None, (logging.INFO, logging.WARNING)),
        (QUIET, 2, None, (logging.DEBUG, logging.DEBUG)),
        (QUIET, 3, None, (logging.DEBUG, logging.DEBUG)),
        (QUIET, 0, "INFO", (logging.INFO, logging.INFO)),
        (QUIET, 1, "ERROR", (logging.INFO, logging.WARNING)),  # each only ever shows more
        (TerminalLevels.every("INFO"), 0, None, (logging.INFO, logging.INFO)),
        (TerminalLevels.every("WARNING"), 2, "WARNING", (logging.DEBUG, logging.DEBUG)),
    ],
)
def test_verbosity_levels(
    base: TerminalLevels, verbose: int, asked: str | None, expected: tuple[int, int]
) -> None:
    assert terminal_levels(base, verbose, asked) == TerminalLevels(*expected)


@pytest.mark.parametrize(
    ("argv", "verbose"),
    [(["config"], 0), (["-v", "tenant", "list"], 1), (["-vv", "config"], 2),
     (["tenant", "list", "-v"], 1), (["cache", "clear", "acme", "-vv"], 2)],
)  # fmt: skip
def test_v_before_or_after_the_command(argv: list[str], verbose: int) -> None:
    assert cli.build_parser().parse_args(argv).verbose == verbose


@pytest.fixture
def root_logging() -> Iterator[None]:
    """Put back what :func:`configure` changes (it configures the whole process)."""
    root = logging.getLogger()
    coordinator = logging.getLogger(StartupCoordinatorFilter.LOGGER)
    mail = logging.getLogger("mail.log")
    saved = (root.handlers[:], root.level, coordinator.filters[:], mail.level)
    try:
        yield
    finally:
        for handler in root.handlers:
            if handler not in saved[0]:
                handler.close()
        root.handlers[:], coordinator.filters[:] = saved[0], saved[2]
        root.setLevel(saved[1])
        mail.setLevel(saved[3])
        logging.captureWarnings(False)


def _log_a_start() -> None:
    logging.getLogger("aiokafka.conn").info("Authenticated as smtp-discovery via SCRAM-SHA-512")
    logging.getLogger("smtp_discovery.ingest").info("SMTP ingest listening on 127.0.0.1:2525")
    group_coordinator.log.error("Group Coordinator Request failed: %s",
                                GroupCoordinatorNotAvailableError())  # fmt: skip
    logging.getLogger("aiokafka.consumer.group_coordinator").warning("Marking the coordinator dead")
    logging.getLogger("smtp_discovery.ingest").warning("Kafka is away: spooling")
    logging.getLogger("aiokafka").error("Unable connect to node with id 1: refused")
    for handler in logging.getLogger().handlers:
        handler.flush()


@pytest.mark.usefixtures("root_logging")
def test_up_sends_library_info_to_its_file_and_not_to_the_terminal(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log_file = tmp_path / "logs" / "up.log"
    configure("INFO", "text", terminal=QUIET, file=log_file)
    _log_a_start()
    terminal = capsys.readouterr().err.splitlines()
    assert [line.split(" ", 2)[2] for line in terminal] == [
        "WARNING smtp_discovery.ingest Kafka is away: spooling",
        "ERROR aiokafka Unable connect to node with id 1: refused",
    ]
    kept = log_file.read_text().splitlines()
    assert [line.split(" ", 3)[2:] for line in kept] == [
        ["INFO", "aiokafka.conn Authenticated as smtp-discovery via SCRAM-SHA-512"],
        ["INFO", "smtp_discovery.ingest SMTP ingest listening on 127.0.0.1:2525"],
        [
            "INFO",
            "aiokafka.consumer.group_coordinator Group Coordinator Request failed: "
            "[Error 15] GroupCoordinatorNotAvailableError",
        ],
        ["WARNING", "aiokafka.consumer.group_coordinator Marking the coordinator dead"],
        ["WARNING", "smtp_discovery.ingest Kafka is away: spooling"],
        ["ERROR", "aiokafka Unable connect to node with id 1: refused"],
    ]
    assert log_file.parent.stat().st_mode & 0o777 == 0o700, "logs hold addresses"


@pytest.mark.usefixtures("root_logging")
def test_a_role_on_its_own_logs_everything_to_stderr_as_before(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure("INFO", "json")
    _log_a_start()
    entries = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert [(e["level"], e["logger"]) for e in entries] == [
        ("INFO", "aiokafka.conn"),
        ("INFO", "smtp_discovery.ingest"),
        ("INFO", "aiokafka.consumer.group_coordinator"),  # the start's transient: no ERROR
        ("WARNING", "aiokafka.consumer.group_coordinator"),
        ("WARNING", "smtp_discovery.ingest"),
        ("ERROR", "aiokafka"),
    ]


def _terminal() -> TerminalLevels:
    (handler,) = [h for h in logging.getLogger().handlers if type(h) is logging.StreamHandler]
    (terminal,) = [f for f in handler.filters if isinstance(f, TerminalFilter)]
    return terminal.levels


@pytest.mark.usefixtures("root_logging")
@pytest.mark.parametrize(
    ("argv", "env", "expected"),
    [
        (["tenant", "list"], {}, QUIET),
        (["config"], {}, QUIET),
        (["-v", "tenant", "list"], {}, TerminalLevels(logging.INFO, logging.WARNING)),
        (["tenant", "list"], {"DISCOVERY_LOG_LEVEL": "INFO"}, TerminalLevels.every("INFO")),
        (["ingest"], {}, TerminalLevels.every("INFO")),
        (["sink"], {"DISCOVERY_LOG_LEVEL": "WARNING"}, TerminalLevels.every("WARNING")),
        (["ingest", "--log-file", "LOG"], {}, QUIET),  # one of `up`'s children
        (["worker", "-v", "--log-file", "LOG"], {}, TerminalLevels(logging.INFO, logging.WARNING)),
    ],
)
def test_which_commands_are_quiet(
    argv: list[str],
    env: dict[str, str],
    expected: TerminalLevels,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("DISCOVERY_LOG_LEVEL", raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    argv = [str(tmp_path / "ingest.log") if arg == "LOG" else arg for arg in argv]
    args = cli.build_parser().parse_args(argv)
    cli._configure_logs(args, RuntimeConfig.from_env())
    assert _terminal() == expected
    files = [h for h in logging.getLogger().handlers if isinstance(h, logging.FileHandler)]
    assert [Path(h.baseFilename) for h in files] == (
        [tmp_path / "ingest.log"] if "--log-file" in argv else []
    )
