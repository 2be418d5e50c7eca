"""`up`'s children kept running: a child that dies is started again, with backoff.

A streams worker killed by the kernel, or an ingest node that hit a bug, used to end the whole
system, including the SMTP node that was accepting mail. Now the child is started again after a
pause that doubles with each quick failure, and `up` prints one line saying so. A child that
keeps failing fast (``RestartPolicy.give_up_after`` exits, each within ``stable_s`` of its
start) is a fault a restart will not cure: `up` then stops in order and exits non-zero, saying
why. The policy is a pure function; the watching is one task per child.
"""

from __future__ import annotations

import asyncio
import logging
import subprocess
from collections.abc import Callable
from dataclasses import dataclass

from smtp_discovery.platform.clock import Clock, SystemClock
from smtp_discovery.platform.errors import OperatorError
from smtp_discovery.platform.stopping import Children

log = logging.getLogger("smtp_discovery.supervise")


@dataclass(frozen=True, slots=True)
class RestartPolicy:
    stable_s: float = 60.0
    """A child that ran this long before it died is not failing fast: its count starts over."""
    give_up_after: int = 5
    first_pause_s: float = 1.0
    max_pause_s: float = 30.0

    def after_exit(self, fast_failures: int, ran_s: float) -> tuple[int, float | None]:
        """The quick failures in a row counting this exit, and the pause before the restart
        (None: give up)."""
        failures = 1 if ran_s >= self.stable_s else fast_failures + 1
        if failures >= self.give_up_after:
            return failures, None
        return failures, min(self.max_pause_s, self.first_pause_s * 2 ** (failures - 1))


class Supervised:
    """One child process of `up`, started again whenever it dies until told to stop."""

    def __init__(
        self,
        name: str,
        start: Callable[[], subprocess.Popen[bytes]],
        children: Children,
        *,
        where: str = "",
        policy: RestartPolicy = RestartPolicy(),
        clock: Clock | None = None,
        say: Callable[[str], None] = lambda line: print(line, flush=True),
    ) -> None:
        self.name = name
        self._start = start
        self.children = children
        self.where = where
        self.policy = policy
        self.clock: Clock = clock if clock is not None else SystemClock()
        self.say = say
        self.restarts = 0
        self.process = self._launch()

    def _launch(self) -> subprocess.Popen[bytes]:
        process = self._start()
        self.children.add(self.name, process)
        self.started_at = self.clock.monotonic()
        return process

    async def watch(self) -> None:
        """Restart the child each time it exits; return never, raise OperatorError when it
        keeps failing. Cancel it before stopping the child on purpose."""
        failures = 0
        while True:
            status = await asyncio.to_thread(self.process.wait)
            ran_s = self.clock.monotonic() - self.started_at
            failures, pause = self.policy.after_exit(failures, ran_s)
            if pause is None:
                raise OperatorError(
                    f"{self.name} exited with status {status} {failures} times in a row, each "
                    f"within {self.policy.stable_s:g} s of its start; {self.where}".rstrip("; ")
                )
            self._tell(f"{self.name} exited with status {status}; starting it again in {pause:g} s")
            await asyncio.sleep(pause)
            self.process = self._launch()
            self.restarts += 1
            self._tell(f"{self.name} started again (pid {self.process.pid})")

    def _tell(self, line: str) -> None:
        """A line for the terminal, and for `up`'s log file (the terminal shows our INFO lines
        only with -v), where it explains the gap in the child's own log."""
        self.say(line)
        log.info("%s", line)
