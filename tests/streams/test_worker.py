"""The streams worker against the real broker: 45 days of traffic in seconds, and a SIGKILL."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from smtp_discovery.schemas.codec import decode, encode
from smtp_discovery.schemas.state import AddressState, StateChange
from smtp_discovery.schemas.topics import ADDRESS_STATE, DEAD_LETTER, MAIL
from smtp_discovery.streams.app import EXIT_INFRASTRUCTURE
from tests.streams.scenario import Scenario, tenants
from tests.streams.worker_harness import WorkerRun

pytestmark = pytest.mark.kafka


def _state(record: AddressState) -> tuple[Any, ...]:
    return (
        record.status,
        record.role,
        record.primary,
        tuple(sorted(record.aliases)),
        record.discovered_at and record.discovered_at.date(),
        record.first_name,
        record.alias_candidates,
    )


def _transition(change: StateChange) -> tuple[Any, ...]:
    return (
        change.tenant_id,
        change.address.lower(),
        change.from_status,
        change.to_status,
        change.reason,
        change.event_time,
    )


async def _play(run: WorkerRun, scenario: Scenario, *, crash_after: int | None = None) -> None:
    for index, phase in enumerate(scenario.ordered()):
        await run.publish(phase)
        if index == crash_after:
            # Kill mid-flight: the phase is published but not necessarily processed or committed.
            run.kill("w1")
            run.start("w2")
        await run.caught_up()


async def _compare(run: WorkerRun, scenario: Scenario) -> list[StateChange]:
    expected_states = {
        key: _state(record)
        for world in scenario.worlds.values()
        for key, record in world.records.items()
    }
    actual = await run.states()
    assert {k: _state(s.record) for k, s in actual.items()} == expected_states

    changes = await run.changes()
    unique = {c.event_id: c for c in changes}
    expected = Counter(_transition(c) for w in scenario.worlds.values() for c in w.changes)
    assert Counter(_transition(c) for c in unique.values()) == expected, (
        "a transition was lost or doubled"
    )
    return list(unique.values())


async def test_45_days_of_traffic_end_in_the_oracles_states(
    kafka_bootstrap: str, unique: str, tmp_path: Path
) -> None:
    scenario = Scenario().build()
    scenario.run_oracle()
    run = WorkerRun(kafka_bootstrap, f"w{unique}", tmp_path)
    await run.setup(tenants())
    # Poison first: bytes that are no message, and a message for a tenant nobody registered.
    stranger = (
        Scenario().worlds["acme"].verified("x@a.example").model_copy(update={"tenant_id": "nobody"})
    )
    await run.publish_raw(
        MAIL, [(b"acme:x", b"\xff not json"), (stranger.kafka_key(), encode(stranger))]
    )
    run.start("w1")
    try:
        await _play(run, scenario)
        changes = await _compare(run, scenario)
        letters = [decode(DEAD_LETTER, value) for _key, value in await run.read(DEAD_LETTER)]
    finally:
        run.stop_all()
    assert sorted(letter.error for letter in letters) == [
        "discovery.mail: value is not valid UTF-8 JSON",
        "unknown tenant 'nobody': not on the tenants topic",
    ]
    assert letters[0].original_value() in (b"\xff not json", encode(stranger))
    reasons = Counter(c.reason for c in changes)
    # Every kind of transition the scenario was built to exercise happened.
    for reason in (
        "verified",
        "threshold",
        "outbound",
        "alias_detected",
        "expired",
        "pruned",
        "destination_rejected",
        "import",
        "admin:create_user",
        "admin:add_alias",
        "admin:mark_invalid",
        "admin:remove_invalid",
        "admin:create_functional",
        "admin:delete",
    ):
        assert reasons[reason] > 0, reason
    alice = next(c for c in changes if c.address == "Alice@a.example" and c.reason == "threshold")
    assert alice.event_time.date().isoformat() == "2026-03-07"


async def test_a_killed_worker_loses_and_doubles_nothing(
    kafka_bootstrap: str, unique: str, tmp_path: Path
) -> None:
    scenario = Scenario().build()
    scenario.run_oracle()
    run = WorkerRun(kafka_bootstrap, f"k{unique}", tmp_path)
    await run.setup(tenants())
    run.start("w1")
    try:
        await _play(run, scenario, crash_after=len(scenario.ordered()) // 2)
        await _compare(run, scenario)
    finally:
        run.stop_all()
    # w2 started with an empty data directory: its tables came from the changelogs, read ahead
    # of Faust's recovery (streams.readahead), and the states compared above are what it read.
    taken_over = (tmp_path / "w2.log").read_text(errors="replace")
    assert re.search(r"read [1-9]\d* changelog records ahead", taken_over), run.logs()


async def test_two_workers_one_killed_the_other_takes_over_from_its_standby(
    kafka_bootstrap: str, unique: str, tmp_path: Path
) -> None:
    """Two workers share the partitions (each the other's standby); one is SIGKILLed halfway
    through: its partitions resume on the other, which ends in the oracle's states with every
    transition once. The survivor's cached groups and due index must not outlive the
    rebalances."""
    scenario = Scenario().build()
    scenario.run_oracle()
    run = WorkerRun(kafka_bootstrap, f"s{unique}", tmp_path)
    await run.setup(tenants())
    run.start("w1")
    run.start("w2")
    try:
        for index, phase in enumerate(scenario.ordered()):
            await run.publish(phase)
            if index == len(scenario.ordered()) // 2:
                run.kill("w1")
            await run.caught_up()
        await _compare(run, scenario)
    finally:
        run.stop_all()


async def _play_through_a_fault(run: WorkerRun, scenario: Scenario) -> None:
    """Play the scenario on w1, which has a fault injected; when it exits, w2 takes over."""
    replaced = False
    for phase in scenario.ordered():
        await run.publish(phase)
        while True:
            try:
                await run.caught_up()
                break
            except AssertionError:
                status = None if replaced else run.exited("w1")
                if status is None:
                    raise
                assert status == EXIT_INFRASTRUCTURE, run.logs()
                run.start("w2")
                replaced = True
    assert replaced, "the injected fault never happened"


@pytest.mark.parametrize("fault", ["send:25", "table-write:15"])
async def test_an_infrastructure_failure_acknowledges_nothing(
    kafka_bootstrap: str, unique: str, tmp_path: Path, fault: str
) -> None:
    """A failing output or table write under a batch: the worker exits without acknowledging
    it, and the worker that takes over applies it: no transition lost or doubled. The table
    write fails once the batch's journals are in Kafka and before its groups are: the worker
    that takes over must not take the batch's messages, which the journals hold, for repeats
    (it did, and their counts were lost)."""
    scenario = Scenario().build()
    scenario.run_oracle()
    run = WorkerRun(kafka_bootstrap, f"f{unique}", tmp_path)
    await run.setup(tenants())
    run.start("w1", fault=fault)
    try:
        await _play_through_a_fault(run, scenario)
        await _compare(run, scenario)
    finally:
        run.stop_all()
    assert "injected fault" in run.logs()


async def test_counted_messages_that_change_no_state_publish_nothing(
    kafka_bootstrap: str, unique: str, tmp_path: Path
) -> None:
    """200 clean messages to a pending address: its transitions reach the address-state topic
    (pending, then discovered at the third), the 197 messages after them nothing."""
    world = Scenario().worlds["acme"]
    messages = [world.verified("busy@a.example")]
    messages += [world.delivered("busy@a.example") for _ in range(200)]
    run = WorkerRun(kafka_bootstrap, f"q{unique}", tmp_path)
    await run.setup(tenants())
    run.start("w1")
    try:
        await run.publish(messages)
        await run.caught_up()
        records = await run.read(ADDRESS_STATE)
        changes = await run.changes()
    finally:
        run.stop_all()
    published = [
        (key, decode(ADDRESS_STATE, value).record.status.value)  # type: ignore[union-attr]
        for key, value in records
        if value is not None
    ]
    assert published == [
        (b"acme:busy@a.example", "pending"),
        (b"acme:busy@a.example", "discovered"),
    ]
    assert [(c.from_status, c.to_status) for c in changes] == [
        (None, "pending"),
        ("pending", "discovered"),
    ]
