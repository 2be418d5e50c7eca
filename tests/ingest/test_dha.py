from __future__ import annotations

from smtp_discovery.ingest.dha import Action, HarvestGuard
from smtp_discovery.platform.clock import ManualClock
from smtp_discovery.schemas.tenant import DiscoverySettings

SETTINGS = DiscoverySettings(dha_max_rejections=5, dha_window_s=60)


def test_rejections_past_the_limit_defer_then_disconnect() -> None:
    clock = ManualClock()
    guard = HarvestGuard(clock)
    for _ in range(4):
        guard.rejected("192.0.2.7", "acme", SETTINGS)
    assert guard.check("192.0.2.7", "acme", SETTINGS).action is Action.ALLOW
    guard.rejected("192.0.2.7", "acme", SETTINGS)
    verdict = guard.check("192.0.2.7", "acme", SETTINGS)
    assert (verdict.action, verdict.reply[:9]) == (Action.DEFER, "450 4.7.1")
    for _ in range(5):
        guard.rejected("192.0.2.7", "acme", SETTINGS)
    verdict = guard.check("192.0.2.7", "acme", SETTINGS)
    assert (verdict.action, verdict.reply[:9]) == (Action.DISCONNECT, "421 4.7.0")


def test_the_delay_grows_with_the_excess() -> None:
    guard = HarvestGuard(ManualClock())
    delays = []
    for _ in range(9):
        guard.rejected("192.0.2.7", "acme", SETTINGS)
        delays.append(guard.check("192.0.2.7", "acme", SETTINGS).delay_s)
    assert delays[:4] == [0.0] * 4
    assert delays[4:] == sorted(delays[4:]) and delays[-1] > delays[4]


def test_the_window_slides() -> None:
    clock = ManualClock()
    guard = HarvestGuard(clock)
    for _ in range(5):
        guard.rejected("192.0.2.7", "acme", SETTINGS)
    clock.advance(60)
    assert guard.check("192.0.2.7", "acme", SETTINGS).action is Action.ALLOW
    assert len(guard) == 0  # idle entries are forgotten


def test_ips_and_tenants_are_counted_apart() -> None:
    guard = HarvestGuard(ManualClock())
    for _ in range(5):
        guard.rejected("192.0.2.7", "acme", SETTINGS)
    assert guard.check("192.0.2.8", "acme", SETTINGS).action is Action.ALLOW
    assert guard.check("192.0.2.7", "beta", SETTINGS).action is Action.ALLOW
