from __future__ import annotations

from datetime import UTC, datetime, timedelta

from smtp_discovery.ingest.cache import TEMPFAIL_TTL_S, CatchAllTracker, VerificationCache
from smtp_discovery.ingest.policy import CalloutResult
from smtp_discovery.platform.clock import ManualClock
from smtp_discovery.schemas.tenant import DiscoverySettings

T0 = datetime(2026, 3, 2, 9, tzinfo=UTC)
SETTINGS = DiscoverySettings(positive_cache_ttl_s=7 * 86400, negative_cache_ttl_s=2 * 3600)


def test_positive_and_negative_lifetimes() -> None:
    clock = ManualClock(T0)
    cache = VerificationCache(clock)
    cache.put("acme:alice@a.example", CalloutResult.EXISTS, SETTINGS, epoch=0)
    cache.put("acme:ghost@a.example", CalloutResult.MISSING, SETTINGS, epoch=0)
    clock.set(T0 + timedelta(hours=1, minutes=59))
    assert cache.get("acme:ghost@a.example", 0) is CalloutResult.MISSING
    clock.set(T0 + timedelta(hours=2))
    assert cache.get("acme:ghost@a.example", 0) is None
    clock.set(T0 + timedelta(days=6, hours=23))
    assert cache.get("acme:alice@a.example", 0) is CalloutResult.EXISTS
    clock.set(T0 + timedelta(days=7))
    assert cache.get("acme:alice@a.example", 0) is None
    assert (cache.hits, cache.misses) == (2, 2)


def test_a_tempfail_is_remembered_briefly_and_zero_lifetimes_not_at_all() -> None:
    """A client repeating an address the tenant's server could not confirm gets the same
    answer for a short while, without another callout."""
    clock = ManualClock(T0)
    cache = VerificationCache(clock)
    cache.put("k", CalloutResult.TEMPFAIL, SETTINGS, epoch=0)
    no_negative = SETTINGS.model_copy(update={"negative_cache_ttl_s": 0})
    cache.put("n", CalloutResult.MISSING, no_negative, 0)
    cache.put("t", CalloutResult.TEMPFAIL, no_negative, 0)
    assert len(cache) == 1
    clock.set(T0 + timedelta(seconds=TEMPFAIL_TTL_S - 1))
    assert cache.get("k", 0) is CalloutResult.TEMPFAIL
    clock.set(T0 + timedelta(seconds=TEMPFAIL_TTL_S))
    assert cache.get("k", 0) is None


def test_state_changes_and_a_cleared_tenant_cache_invalidate() -> None:
    cache = VerificationCache(ManualClock(T0))
    cache.put("acme:a@a.example", CalloutResult.EXISTS, SETTINGS, epoch=0)
    cache.put("acme:b@a.example", CalloutResult.EXISTS, SETTINGS, epoch=0)
    cache.invalidate("acme:a@a.example")
    assert cache.get("acme:a@a.example", 0) is None
    assert cache.get("acme:b@a.example", 1) is None  # the admin bumped the tenant's epoch


def test_the_cache_is_bounded_least_recently_used_first() -> None:
    cache = VerificationCache(ManualClock(T0), max_entries=2)
    for key in ("a", "b"):
        cache.put(key, CalloutResult.EXISTS, SETTINGS, 0)
    cache.get("a", 0)
    cache.put("c", CalloutResult.EXISTS, SETTINGS, 0)
    assert cache.get("b", 0) is None
    assert cache.get("a", 0) is CalloutResult.EXISTS


def test_catch_all_checks_at_most_daily_and_report_changes() -> None:
    clock = ManualClock(T0)
    tracker = CatchAllTracker(clock)
    assert tracker.needs_check("mx:25")
    assert tracker.record("mx:25", True) is True
    assert tracker.is_catch_all("mx:25")
    clock.set(T0 + timedelta(hours=23))
    assert not tracker.needs_check("mx:25")
    clock.set(T0 + timedelta(days=1))
    assert tracker.needs_check("mx:25")
    assert tracker.record("mx:25", True) is False  # unchanged: no new event
    assert tracker.record("mx:25", False) is True
    assert not tracker.is_catch_all("mx:25")
    assert tracker.record("other:25", False) is False
