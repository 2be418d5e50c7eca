"""The verification cache: recent callout answers per tenant and address, and catch-all flags.

Positive and negative answers live for the tenant's own lifetimes; a tempfail for
``TEMPFAIL_TTL_S`` (or the negative lifetime, if shorter), so that a client repeating an address
the tenant's server could not confirm does not make it ask again and again.
An entry dies early when the address's state changes (the address-state view says so) or when
an admin clears the tenant's cache (a new ``verification_cache_epoch`` on the tenants topic).
Time comes from an injected clock (``platform.clock``) so tests can age entries without waiting.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timedelta

from smtp_discovery.ingest.policy import CalloutResult
from smtp_discovery.platform.clock import Clock
from smtp_discovery.schemas.tenant import DiscoverySettings

CATCH_ALL_RECHECK = timedelta(days=1)
TEMPFAIL_TTL_S = 30


@dataclass(frozen=True, slots=True)
class Entry:
    result: CalloutResult
    expires: datetime
    epoch: int


class VerificationCache:
    def __init__(self, clock: Clock, max_entries: int = 1_000_000) -> None:
        self.clock = clock
        self.max_entries = max_entries
        self._entries: OrderedDict[str, Entry] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def get(self, record_key: str, epoch: int) -> CalloutResult | None:
        entry = self._entries.get(record_key)
        if entry is None or entry.epoch != epoch or entry.expires <= self.clock.now():
            if entry is not None:
                del self._entries[record_key]
            self.misses += 1
            return None
        self._entries.move_to_end(record_key)
        self.hits += 1
        return entry.result

    def put(
        self, record_key: str, result: CalloutResult, settings: DiscoverySettings, epoch: int
    ) -> None:
        if result is CalloutResult.EXISTS:
            ttl = settings.positive_cache_ttl_s
        elif result is CalloutResult.MISSING:
            ttl = settings.negative_cache_ttl_s
        else:
            ttl = min(TEMPFAIL_TTL_S, settings.negative_cache_ttl_s)
        if ttl <= 0:
            return
        self._entries[record_key] = Entry(result, self.clock.now() + timedelta(seconds=ttl), epoch)
        self._entries.move_to_end(record_key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def invalidate(self, record_key: str) -> None:
        self._entries.pop(record_key, None)

    def __len__(self) -> int:
        return len(self._entries)


class CatchAllTracker:
    """Which destinations accept any local part, checked at most once a day each."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self._checked: dict[str, tuple[datetime, bool]] = {}

    def needs_check(self, destination: str) -> bool:
        last = self._checked.get(destination)
        return last is None or self.clock.now() - last[0] >= CATCH_ALL_RECHECK

    def record(self, destination: str, accepts_anything: bool) -> bool:
        """Store a check's result; True when the flag changed (worth an event)."""
        previous = self._checked.get(destination)
        self._checked[destination] = (self.clock.now(), accepts_anything)
        return accepts_anything if previous is None else previous[1] != accepts_anything

    def is_catch_all(self, destination: str | None) -> bool:
        return destination is not None and self._checked.get(destination, (None, False))[1]
