"""A command run as a person's shell runs it: in a pseudo-terminal, as its foreground process group.

Ctrl-C typed into a terminal is not a signal to one process: the terminal's line discipline sends
SIGINT to the whole foreground process group. Tests that signal only the parent miss what that
does to its children, so :meth:`Terminal.ctrl_c` writes the interrupt character instead.
"""

from __future__ import annotations

import fcntl
import os
import pty
import signal
import subprocess
import termios
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path


class Terminal:
    def __init__(self, argv: Sequence[str], *, env: Mapping[str, str], cwd: Path) -> None:
        master, slave = pty.openpty()
        self._master = master

        def become_session_leader_of_the_terminal() -> None:
            os.setsid()
            fcntl.ioctl(0, termios.TIOCSCTTY, 0)  # stdin is the terminal's slave side

        self.process = subprocess.Popen(
            list(argv),
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env=dict(env),
            cwd=cwd,
            preexec_fn=become_session_leader_of_the_terminal,
        )
        os.close(slave)
        self._output = bytearray()
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        """Drain the terminal (a full one would block the program), until it is closed."""
        while True:
            try:
                chunk = os.read(self._master, 65536)
            except OSError:  # EIO: every process holding the terminal has exited
                return
            if not chunk:
                return
            with self._lock:
                self._output += chunk

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def output(self) -> str:
        with self._lock:
            return self._output.decode(errors="replace").replace("\r\n", "\n")

    def ctrl_c(self) -> None:
        """Type Ctrl-C: the terminal sends SIGINT to its foreground process group."""
        os.write(self._master, b"\x03")

    def signal_group(self, sig: signal.Signals) -> None:
        os.killpg(self.process.pid, sig)

    def wait_for(self, text: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            out = self.output
            if text in out:
                return out
            if self.process.poll() is not None:
                self._reader.join(2)
                if text in self.output:
                    return self.output
                break
            time.sleep(0.05)
        raise AssertionError(f"{text!r} did not appear; the terminal shows:\n{self.output[-4000:]}")

    def wait(self, timeout: float) -> int:
        """The exit status (negative: the signal that ended it), or AssertionError on timeout."""
        try:
            status = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"still running after {timeout:g} s; the terminal shows:\n{self.output[-4000:]}"
            ) from None
        self._reader.join(2)
        return status

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        os.close(self._master)


def processes_using(needle: Path) -> list[str]:
    """Live processes whose command line or environment names ``needle`` (a data directory)."""
    text = str(needle).encode()
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
            if state == "Z":
                continue  # exited, waiting for its parent to read the status
            cmdline = (proc / "cmdline").read_bytes()
            environ = (proc / "environ").read_bytes()
        except (OSError, IndexError):
            continue
        if text in cmdline or text in environ:
            command = cmdline.replace(b"\0", b" ").decode(errors="replace")
            found.append(f"{proc.name} {command}")
    return found


def wait_until_gone(needle: Path, timeout: float) -> list[str]:
    """Poll until no process uses ``needle``; what is still there at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        left = processes_using(needle)
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.1)
