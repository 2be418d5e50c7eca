"""The stop every process shares: a deadline from the first signal, a second signal that ends it
at once, and children killed on the way out."""

from __future__ import annotations

import asyncio
import io
import signal
import subprocess
import sys
import threading
import time
from typing import NoReturn

import pytest

from smtp_discovery.platform.stopping import Children, Stopper


class Exited(Exception):
    def __init__(self, code: int) -> None:
        self.code = code


def _exit(code: int) -> NoReturn:
    raise Exited(code)


def _sleeper() -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"],
                            start_new_session=True)  # fmt: skip


def test_the_first_signal_sets_the_event_and_a_second_one_exits_at_once() -> None:
    out = io.StringIO()
    child = _sleeper()
    children = Children()
    children.add("a sleeper", child)
    first: list[bool] = []
    stopper = Stopper(0, name="role", children=children, out=out, exit_process=_exit)
    stopper._on_first = lambda: first.append(True)
    stopper.signalled(signal.SIGINT)
    assert stopper.event.is_set() and first == [True]
    assert child.poll() is None, "the first signal asks, it does not kill"
    with pytest.raises(Exited) as exited:
        stopper.signalled(signal.SIGINT)
    assert exited.value.code == 130
    assert child.wait(10) == -signal.SIGKILL
    assert out.getvalue() == (
        f"role: second SIGINT: stopping at once; killed a sleeper (pid {child.pid})\n"
    )


def test_the_deadline_kills_what_is_left_and_says_so_once() -> None:
    out = io.StringIO()
    done = threading.Event()
    codes: list[int] = []

    def record(code: int) -> None:
        codes.append(code)
        done.set()

    child = _sleeper()
    children = Children()
    children.add("the worker", child)
    stopper = Stopper(
        0.05,
        name="up",
        children=children,
        out=out,
        exit_process=record,  # type: ignore[arg-type]
    )
    stopper.begin()
    stopper.begin()  # armed once, whatever began the stop
    assert done.wait(10)
    assert codes == [1]
    assert child.wait(10) == -signal.SIGKILL
    assert out.getvalue().splitlines() == [
        f"up: did not stop within 0.05 s; killed the worker (pid {child.pid})"
    ]


def test_a_stop_in_time_cancels_the_deadline() -> None:
    stopper = Stopper(0.05, name="up", exit_process=_exit)
    stopper.begin()
    stopper.cancel()
    assert stopper._timer is not None
    stopper._timer.join(1)
    assert not stopper._timer.is_alive()


def test_installed_handlers_turn_sigterm_into_the_event() -> None:
    async def main() -> bool:
        stopper = Stopper(0, name="role", exit_process=_exit)
        stopper.install()
        try:
            signal.raise_signal(signal.SIGTERM)
            await asyncio.wait_for(stopper.event.wait(), 10)
            return stopper.signals == 1
        finally:
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)

    assert asyncio.run(main())


def test_a_child_dies_with_its_parent() -> None:
    """The parent here is a middle process that starts a grandchild and is then SIGKILLed."""
    script = (
        "import subprocess, sys, time\n"
        "from smtp_discovery.platform.stopping import die_with_parent\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'],\n"
        "                         preexec_fn=die_with_parent(), start_new_session=True)\n"
        "print(child.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    middle = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE)
    assert middle.stdout is not None
    grandchild = int(middle.stdout.readline())
    middle.kill()
    middle.wait()
    deadline = time.monotonic() + 10
    while _alive(grandchild):
        assert time.monotonic() < deadline, "the grandchild outlived its parent"
        time.sleep(0.05)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False
