"""Directory-harvest protection: count rejected recipients per client IP and tenant.

A sender guessing addresses collects rejections. Past the tenant's limit within its sliding
window, further RCPTs are deferred (450) after a delay that grows with the excess; at twice the
limit the connection is closed (421). Counting is per tenant because the limits are tenant
settings.

The clock is injected (``platform.clock``, the one the rest of the node uses), and the window
reads its ``monotonic()`` seconds, not its ``now()``: the window measures elapsed time, which a
stepped wall clock (NTP, an operator's ``date``) would stretch or cut short, freeing a guesser
early or keeping an honest client deferred. Seconds as floats also keep the window cheap (one
float per rejection), as it was when the guard took a bare monotonic function.
"""

from __future__ import annotations

from collections import defaultdict, deque
from dataclasses import dataclass
from enum import StrEnum

from smtp_discovery.platform.clock import Clock
from smtp_discovery.schemas.tenant import DiscoverySettings

MAX_DELAY_S = 10.0


class Action(StrEnum):
    ALLOW = "allow"
    DEFER = "defer"
    DISCONNECT = "disconnect"


@dataclass(frozen=True, slots=True)
class Verdict:
    action: Action
    delay_s: float = 0.0

    @property
    def reply(self) -> str:
        if self.action is Action.DISCONNECT:
            return "421 4.7.0 Too many invalid recipients, closing connection"
        if self.action is Action.DEFER:
            return "450 4.7.1 Too many invalid recipients, try again later"
        return ""


class HarvestGuard:
    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self._rejections: defaultdict[tuple[str, str], deque[float]] = defaultdict(deque)

    def _window(self, key: tuple[str, str], settings: DiscoverySettings) -> deque[float]:
        window = self._rejections[key]
        horizon = self.clock.monotonic() - settings.dha_window_s
        while window and window[0] <= horizon:
            window.popleft()
        return window

    def rejected(self, client_ip: str, tenant_id: str, settings: DiscoverySettings) -> None:
        self._window((client_ip, tenant_id), settings).append(self.clock.monotonic())

    def check(self, client_ip: str, tenant_id: str, settings: DiscoverySettings) -> Verdict:
        window = self._window((client_ip, tenant_id), settings)
        limit = settings.dha_max_rejections
        excess = len(window) - limit
        if excess < 0:
            if not window:
                self._rejections.pop((client_ip, tenant_id), None)
            return Verdict(Action.ALLOW)
        if len(window) >= 2 * limit:
            return Verdict(Action.DISCONNECT, MAX_DELAY_S)
        return Verdict(Action.DEFER, min(MAX_DELAY_S, 1.0 + excess))

    def __len__(self) -> int:
        return len(self._rejections)
