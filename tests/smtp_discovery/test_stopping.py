"""The stop every process shares: a deadline from the first signal, a second signal that ends it
at once, children killed on the way out, and a role's parts stopped in order."""

from __future__ import annotations

import asyncio
import io
import signal
import subprocess
import sys
import threading
import time
from typing import Any, NoReturn

import pytest

from smtp_discovery.platform.stopping import Children, Stopper, role_process


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


class Part:
    """A part of a role (an ops endpoint, a node) that says when it starts and stops."""

    def __init__(self, name: str, said: list[str]) -> None:
        self.name = name
        self.said = said

    async def start(self, listen: str) -> None:
        self.said.append(f"start {self.name} {listen}")

    async def stop(self) -> None:
        self.said.append(f"stop {self.name}")


def _forget_handlers() -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.remove_signal_handler(sig)


def test_a_role_process_stops_its_parts_last_started_first_within_the_deadline() -> None:
    said: list[str] = []

    async def main() -> Stopper:
        first: list[bool] = []
        try:
            async with role_process("role", 30, on_first_signal=lambda: first.append(True)) as s:
                ops: Any = Part("ops", said)
                await s.serve_ops(ops, "127.0.0.1:0")
                s.on_stop(Part("node", said).stop)
                signal.raise_signal(signal.SIGTERM)
                await asyncio.wait_for(s.event.wait(), 10)
                assert first == [True] and said == ["start ops 127.0.0.1:0"]
                assert s._timer is not None, "the signal armed the deadline"
            return s
        finally:
            _forget_handlers()

    stopper = asyncio.run(main())
    assert said == ["start ops 127.0.0.1:0", "stop node", "stop ops"]
    assert stopper._timer is not None
    stopper._timer.join(1)
    assert not stopper._timer.is_alive(), "the stop finished in time: the deadline is disarmed"


def test_a_role_that_fails_still_stops_its_parts() -> None:
    said: list[str] = []

    async def main() -> None:
        try:
            async with role_process("role", 30) as stopper:
                stopper.on_stop(Part("node", said).stop)
                raise RuntimeError("a part failed")
        finally:
            _forget_handlers()

    with pytest.raises(RuntimeError, match="a part failed"):
        asyncio.run(main())
    assert said == ["stop node"]


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
