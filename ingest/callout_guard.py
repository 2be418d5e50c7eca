"""What keeps the callouts themselves from hurting a tenant's server: a circuit breaker and a
rate cap per destination.

Without them, every RCPT for an unknown address made a fresh callout: when a tenant's server
stopped answering, one client sent 1,223 such RCPTs in ten seconds and each one cost a
connection attempt (or a connect timeout) at that server. Now:

* **Circuit breaker.** After ``FAILURES_TO_OPEN`` connection failures or timeouts in a row, a
  destination is not probed for a backoff period (``BACKOFF_S``, doubling up to
  ``MAX_BACKOFF_S`` while it keeps failing). Then one probe is let through: an answer closes the
  breaker, another failure opens it again for longer. Any SMTP answer counts as an answer,
  whatever it says: the server is up.
* **Rate cap.** A token bucket per destination: at most ``rate`` probes a second, with a second's
  worth of burst. A probe beyond it waits for its turn, up to ``MAX_WAIT_S`` (a burst of new
  recipients is smoothed, not refused); past that it is held back. The operator sets the rate
  for the whole fleet and how many ingest nodes share it; each node knows no more than that, so
  it keeps to its share.

A probe either guard holds back is not made: the RCPT gets the tenant's tempfail policy, and no
event is published (nothing was asked). Pure bookkeeping over an injected monotonic clock.
"""

from __future__ import annotations

from dataclasses import dataclass

from smtp_discovery.platform.clock import Clock

FAILURES_TO_OPEN = 3
BACKOFF_S = 10.0
MAX_BACKOFF_S = 300.0
MAX_WAIT_S = 2.0

PAUSED = "destination_paused"
RATE_LIMITED = "rate_limited"
CONNECTION_FAILURES = frozenset({"connect_failed", "timeout", "tls_failed"})
"""Probe outcomes that say the destination could not be talked to (the breaker's failures)."""


@dataclass(slots=True)
class _Destination:
    tokens: float
    refilled: float
    failures: int = 0
    opened: int = 0
    """Times the breaker opened since the destination last answered (sets the backoff)."""
    open_until: float | None = None
    trial: bool = False
    """A probe is on its way through a breaker that has just reopened."""


class DestinationGuard:
    def __init__(self, clock: Clock, rate_per_s: float) -> None:
        self.clock = clock
        self.rate_per_s = rate_per_s
        self.burst = max(1.0, rate_per_s)
        self._destinations: dict[str, _Destination] = {}
        self.held_back = {PAUSED: 0, RATE_LIMITED: 0}

    def _state(self, destination: str) -> _Destination:
        state = self._destinations.get(destination)
        if state is None:
            state = _Destination(self.burst, self.clock.monotonic())
            self._destinations[destination] = state
        return state

    def admit(self, destination: str) -> tuple[str | None, float]:
        """``(None, wait_s)`` when a probe may go to ``destination`` after ``wait_s`` seconds
        (its turn is taken: call ``answered``, ``failed`` or ``abandoned`` afterwards), else
        ``(why not, 0)``: ``PAUSED`` or ``RATE_LIMITED``."""
        state = self._state(destination)
        now = self.clock.monotonic()
        if state.open_until is not None:
            if now < state.open_until or state.trial:
                return self._hold(PAUSED), 0.0
            state.trial = True  # half open: this one probe finds out
        state.tokens = min(self.burst, state.tokens + (now - state.refilled) * self.rate_per_s)
        state.refilled = now
        wait = max(0.0, (1.0 - state.tokens) / self.rate_per_s)
        if wait > MAX_WAIT_S:
            state.trial = False
            return self._hold(RATE_LIMITED), 0.0
        state.tokens -= 1.0  # may go below zero: the probes waiting for their turn
        return None, wait

    def _hold(self, reason: str) -> str:
        self.held_back[reason] += 1
        return reason

    def answered(self, destination: str) -> bool:
        """The destination answered an admitted probe. True when that closed its breaker."""
        state = self._state(destination)
        was_open = state.open_until is not None
        state.failures, state.opened, state.open_until, state.trial = 0, 0, None, False
        return was_open

    def failed(self, destination: str) -> float | None:
        """An admitted probe could not talk to the destination. The backoff in seconds when
        that opened (or reopened) its breaker, else None."""
        state = self._state(destination)
        state.failures += 1
        now = self.clock.monotonic()
        if not state.trial and (
            state.failures < FAILURES_TO_OPEN  # not yet
            or (state.open_until is not None and now < state.open_until)  # already open
        ):
            return None
        backoff = min(MAX_BACKOFF_S, BACKOFF_S * 2**state.opened)
        state.opened += 1
        state.open_until = now + backoff
        state.trial = False
        return backoff

    def abandoned(self, destination: str) -> None:
        """An admitted probe ended without an outcome (cancelled): a trial may be made again."""
        self._state(destination).trial = False

    def paused(self) -> int:
        """Destinations whose breaker is open now."""
        now = self.clock.monotonic()
        return sum(1 for s in self._destinations.values() if s.open_until and now < s.open_until)
