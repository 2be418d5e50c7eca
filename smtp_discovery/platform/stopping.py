"""How every process of the system stops: in order, within a deadline, and never as an orphan.

The first SIGINT or SIGTERM begins an orderly stop and arms a deadline. A second signal, or the
deadline passing, ends the process at once with one line that says why, after killing the child
processes it started. Without the deadline a role whose Kafka has vanished waits forever on a
commit or a flush, and SIGTERM would no longer mean "exit within the grace period" to Kubernetes
or compose.

Children run in sessions of their own, so a terminal's Ctrl-C (SIGINT to the whole foreground
process group) reaches only the parent, which alone decides the order. A parent-death signal
ends them when the parent is killed outright.

Every role's run function is one :func:`role_process` block: it starts the role, registers what
must be stopped (its ops endpoint, its node) and waits for the stop; the block arms the deadline
and stops those parts in order, last started first. (The streams worker is the exception: Faust
owns its loop and signals, and tells the worker's :class:`Stopper` of them.)
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, NoReturn, TextIO

if TYPE_CHECKING:
    from smtp_discovery.platform.ops import OpsServer

_PR_SET_PDEATHSIG = 1


def die_with_parent(sig: signal.Signals = signal.SIGTERM) -> Callable[[], None]:
    """A ``preexec_fn``: the child gets ``sig`` when the thread that started it dies.

    Linux ties the parent-death signal to the creating thread, so start children from the main
    thread. If the parent died between fork and prctl, the child ends itself at once.
    """
    parent = os.getpid()

    def preexec() -> None:
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL("libc.so.6", use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, int(sig))
        if os.getppid() != parent:
            os.kill(os.getpid(), sig)

    return preexec


class Children:
    """The child processes a process started, by name, so that a forced stop can end them."""

    def __init__(self) -> None:
        self._processes: dict[str, subprocess.Popen[bytes]] = {}
        self._lock = threading.Lock()

    def add(self, name: str, process: subprocess.Popen[bytes]) -> None:
        with self._lock:
            self._processes[name] = process

    def remove(self, name: str) -> None:
        with self._lock:
            self._processes.pop(name, None)

    def kill_all(self) -> list[str]:
        """SIGKILL every child still running (and its process group); what was killed."""
        killed = []
        with self._lock:
            processes = list(self._processes.items())
        for name, process in processes:
            if process.poll() is not None:
                continue
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)  # a session leader: its group is its pid
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            killed.append(f"{name} (pid {process.pid})")
        return killed


class Stopper:
    """The stop of one process: an event to wait on, a deadline, and the forced way out.

    ``install`` makes SIGINT and SIGTERM set :attr:`event`; a role awaits it and then stops in
    its own order (:func:`role_process` runs the steps given to :meth:`on_stop`). Roles that own
    their signal handling (Faust's worker) call :meth:`signalled` from their handlers instead.
    """

    def __init__(
        self,
        timeout_s: float,
        *,
        name: str,
        children: Children | None = None,
        out: TextIO | None = None,
        exit_process: Callable[[int], NoReturn] = os._exit,
    ) -> None:
        self.timeout_s = timeout_s
        self.name = name
        self.children = children or Children()
        self.out = out
        self.event = asyncio.Event()
        self.signals = 0
        self._exit = exit_process
        self._timer: threading.Timer | None = None
        self._on_first: Callable[[], None] | None = None
        self._steps: list[Callable[[], Awaitable[object]]] = []

    def install(self, on_first: Callable[[], None] | None = None) -> None:
        """Handle SIGINT and SIGTERM on the running loop; ``on_first`` runs at the first one."""
        self._on_first = on_first
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self.signalled, sig)

    def signalled(self, sig: int) -> None:
        """The first signal begins the stop; a second one ends the process now."""
        self.signals += 1
        if self.signals > 1:
            self.force(f"second {signal.Signals(sig).name}: stopping at once", 128 + sig)
        self.begin()
        self.event.set()
        if self._on_first is not None:
            self._on_first()

    def begin(self) -> None:
        """Arm the deadline (once), whatever began the stop: a signal or a failed part."""
        if self._timer is not None or self.timeout_s <= 0:
            return
        self._timer = threading.Timer(self.timeout_s, self._expired)
        self._timer.daemon = True
        self._timer.start()

    def cancel(self) -> None:
        """The stop finished in time."""
        if self._timer is not None:
            self._timer.cancel()

    def on_stop(self, step: Callable[[], Awaitable[object]]) -> None:
        """Await ``step`` at the stop, before the steps registered earlier."""
        self._steps.append(step)

    async def serve_ops(self, ops: OpsServer, listen: str) -> None:
        """Start the ops endpoint on ``listen`` (empty: none) and close it at the stop."""
        await ops.start(listen)
        self.on_stop(ops.stop)

    async def run_stop_steps(self) -> None:
        """The registered steps, last registered first."""
        while self._steps:
            await self._steps.pop()()

    def _expired(self) -> None:
        self.force(f"did not stop within {self.timeout_s:g} s", 1)

    def force(self, why: str, code: int) -> NoReturn:
        killed = self.children.kill_all()
        suffix = f"; killed {', '.join(killed)}" if killed else ""
        print(f"{self.name}: {why}{suffix}", file=self.out or sys.stderr, flush=True)
        self._exit(code)


@contextlib.asynccontextmanager
async def role_process(
    name: str,
    timeout_s: float,
    *,
    children: Children | None = None,
    on_first_signal: Callable[[], None] | None = None,
) -> AsyncIterator[Stopper]:
    """One role's process, from its start to its stop, as an ``async with`` block.

    On entry SIGINT and SIGTERM are handled (:meth:`Stopper.install`, ``on_first_signal``
    running at the first). The block starts the role, registers what the stop must close
    (:meth:`Stopper.serve_ops`, :meth:`Stopper.on_stop`) and waits on :attr:`Stopper.event` or
    until its work ends. However it ends, the deadline (``timeout_s``) is then armed, the
    registered steps run, last registered first, and the deadline is disarmed.
    """
    stopper = Stopper(timeout_s, name=name, children=children)
    stopper.install(on_first_signal)
    try:
        yield stopper
    finally:
        stopper.begin()
        try:
            await stopper.run_stop_steps()
        finally:
            stopper.cancel()
