"""The per-destination circuit breaker and rate cap, on a clock the test moves."""

from __future__ import annotations

from smtp_discovery.ingest.callout_guard import (
    BACKOFF_S,
    FAILURES_TO_OPEN,
    MAX_BACKOFF_S,
    MAX_WAIT_S,
    PAUSED,
    RATE_LIMITED,
    DestinationGuard,
)
from smtp_discovery.platform.clock import ManualClock

MX = "mx.acme.example:25"


GO = (None, 0.0)


def fail(guard: DestinationGuard, times: int) -> list[float | None]:
    out = []
    for _ in range(times):
        assert guard.admit(MX) == GO
        out.append(guard.failed(MX))
    return out


def test_failures_in_a_row_pause_the_destination_then_one_trial_finds_out() -> None:
    clock = ManualClock()
    guard = DestinationGuard(clock, rate_per_s=100)
    assert fail(guard, FAILURES_TO_OPEN) == [None] * (FAILURES_TO_OPEN - 1) + [BACKOFF_S]
    assert guard.admit(MX) == (PAUSED, 0.0) and guard.paused() == 1
    clock.advance(BACKOFF_S - 0.1)
    assert guard.admit(MX) == (PAUSED, 0.0)
    clock.advance(0.1)
    assert guard.admit(MX) == GO  # the trial
    assert guard.admit(MX) == (PAUSED, 0.0)  # everyone else waits for it
    assert guard.failed(MX) == 2 * BACKOFF_S  # failed again: twice as long
    clock.advance(2 * BACKOFF_S)
    assert guard.admit(MX) == GO
    assert guard.answered(MX) is True  # it answers: closed
    assert [guard.admit(MX) for _ in range(3)] == [GO, GO, GO]
    assert guard.held_back[PAUSED] == 3 and guard.paused() == 0


def test_an_answer_between_failures_starts_the_count_again() -> None:
    guard = DestinationGuard(ManualClock(), rate_per_s=100)
    fail(guard, FAILURES_TO_OPEN - 1)
    assert guard.admit(MX) == GO and guard.answered(MX) is False
    assert fail(guard, FAILURES_TO_OPEN - 1) == [None] * (FAILURES_TO_OPEN - 1)
    assert guard.admit(MX) == GO


def test_probes_failing_after_the_breaker_opened_do_not_lengthen_the_pause() -> None:
    clock = ManualClock()
    guard = DestinationGuard(clock, rate_per_s=100)
    admitted = [guard.admit(MX) for _ in range(FAILURES_TO_OPEN + 2)]  # all in flight at once
    assert admitted == [GO] * (FAILURES_TO_OPEN + 2)
    backoffs = [guard.failed(MX) for _ in admitted]
    assert backoffs.count(BACKOFF_S) == 1 and backoffs.count(None) == len(admitted) - 1


def test_the_backoff_stops_growing_at_its_maximum() -> None:
    clock = ManualClock()
    guard = DestinationGuard(clock, rate_per_s=100)
    fail(guard, FAILURES_TO_OPEN)
    backoffs = []
    for _ in range(10):
        clock.advance(MAX_BACKOFF_S)
        assert guard.admit(MX) == GO
        backoffs.append(guard.failed(MX))
    assert backoffs[-1] == MAX_BACKOFF_S and backoffs[0] == 2 * BACKOFF_S


def test_an_abandoned_trial_lets_the_next_probe_try() -> None:
    clock = ManualClock()
    guard = DestinationGuard(clock, rate_per_s=100)
    fail(guard, FAILURES_TO_OPEN)
    clock.advance(BACKOFF_S)
    assert guard.admit(MX) == GO
    guard.abandoned(MX)
    assert guard.admit(MX) == GO


def test_the_rate_cap_allows_a_burst_then_queues_its_turns_then_holds_back() -> None:
    clock = ManualClock()
    guard = DestinationGuard(clock, rate_per_s=5)
    burst = [guard.admit(MX) for _ in range(5)]
    assert burst == [GO] * 5
    queued = [guard.admit(MX) for _ in range(int(5 * MAX_WAIT_S))]
    assert [reason for reason, _ in queued] == [None] * int(5 * MAX_WAIT_S)
    assert [round(wait, 3) for _, wait in queued][:3] == [0.2, 0.4, 0.6]
    assert max(wait for _, wait in queued) <= MAX_WAIT_S
    assert guard.admit(MX) == (RATE_LIMITED, 0.0)
    assert guard.admit("other:25") == GO  # per destination
    clock.advance(MAX_WAIT_S + 0.2)  # the queue has drained and a turn has come back
    assert guard.admit(MX) == GO
    assert guard.held_back[RATE_LIMITED] == 1


def test_a_rate_under_one_a_second_still_allows_one_probe() -> None:
    clock = ManualClock()
    guard = DestinationGuard(clock, rate_per_s=0.4)
    assert guard.admit(MX) == GO
    assert guard.admit(MX) == (RATE_LIMITED, 0.0)  # its turn is 2.5 s away
    clock.advance(2.5)
    assert guard.admit(MX) == GO
