"""The interpreter settings a role's process starts with (``platform.interpreter``)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from smtp_discovery.platform.interpreter import GC_THRESHOLDS, SWITCH_INTERVAL_S

PROBE = (
    "import gc, json, sys\n"
    "before = [gc.get_threshold(), sys.getswitchinterval()]\n"
    "from smtp_discovery.platform.interpreter import tune\n"
    "tune()\n"
    "print(json.dumps([before, [gc.get_threshold(), sys.getswitchinterval()]]))\n"
)


def test_tune_sets_the_collector_and_the_switch_interval_of_its_process_only() -> None:
    # In a process of its own: the settings are process-wide, and this one runs the suite.
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True)
    before, after = json.loads(out.stdout)
    assert before != after, "the defaults already were these: the test shows nothing"
    assert after[0] == list(GC_THRESHOLDS)
    assert after[1] == pytest.approx(SWITCH_INTERVAL_S)  # kept in whole microseconds


def test_importing_a_role_changes_nothing() -> None:
    """Only a role's start sets them (``run_sink``, ``run_up``, ``run_worker``): importing the
    modules, as the tests and the benches do, leaves the interpreter as it was."""
    probe = (
        "import gc, json, sys\n"
        "before = [gc.get_threshold(), sys.getswitchinterval()]\n"
        "import smtp_discovery.sinks.run, smtp_discovery.embedded, smtp_discovery.streams.worker\n"
        "print(json.dumps(before == [gc.get_threshold(), sys.getswitchinterval()]))\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) is True
