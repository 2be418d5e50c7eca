"""Every transition and rejection of the lifecycle (docs/design.md, "The address lifecycle"),
table by table."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

import pytest
from pydantic import ValidationError

from smtp_discovery.schemas.calendar import expires_at
from smtp_discovery.schemas.commands import (
    AddAlias,
    CreateFunctional,
    CreateUser,
    DeleteAddress,
    EraseAddress,
    ImportUser,
    MarkInvalid,
    RemoveInvalid,
    Tick,
)
from smtp_discovery.schemas.mail import CalloutTempfailed
from smtp_discovery.schemas.state import UserRole
from smtp_discovery.schemas.tenant import DiscoverySettings
from smtp_discovery.streams.rules import expiry_deadline
from tests.streams.world import T0, World

DAY = timedelta(days=1)
WEEK = timedelta(days=7)


def world(**settings: object) -> World:
    return World(settings=DiscoverySettings(discovery_enabled=True, **settings))


def with_user(w: World, address: str, at=T0) -> None:  # type: ignore[no-untyped-def]
    w.send(w.command(CreateUser, address, at, first_name="F", surname="L"))


# ---- callouts and inbound counting --------------------------------------------------------------


def test_verified_callout_makes_a_new_address_pending() -> None:
    w = world()
    w.send(w.verified("Alice@a.example"))
    assert w.status("alice@a.example") == "pending"
    assert w.record("alice@a.example").address == "Alice@a.example"
    assert w.reasons("alice@a.example") == [(None, "pending", "verified")]


@pytest.mark.parametrize(
    ("settings", "skip"),
    [
        ({"discovery_enabled": False}, "discovery_off"),
        ({"directory_sync_enabled": True}, "discovery_off"),
    ],
)
def test_no_new_records_while_discovery_is_off(settings: dict, skip: str) -> None:
    w = World(settings=DiscoverySettings(**{"discovery_enabled": True, **settings}))
    w.send(w.verified("alice@a.example"))
    w.send(w.delivered("bob@a.example"))
    w.send(w.outbound("carol@a.example"))
    assert w.records == {}
    assert w.skipped.count(skip) == 3


def test_catch_all_callouts_prove_nothing() -> None:
    w = world()
    w.send(w.verified("anything@a.example", catch_all=True))
    w.send(w.delivered("anything@a.example", catch_all=True))
    assert w.records == {}
    assert w.skipped == ["catch_all", "catch_all"]


def test_threshold_reached_on_the_third_clean_message() -> None:
    w = world()
    w.verify_and_deliver("alice@a.example", [0, 5])
    assert w.status("alice@a.example") == "pending"
    w.send(w.delivered("alice@a.example", T0 + 9 * DAY))
    assert w.status("alice@a.example") == "discovered"
    record = w.record("alice@a.example")
    assert record.discovered_at == T0 + 9 * DAY
    assert record.discovered_reason == "threshold"
    assert w.reasons("alice@a.example")[-1] == ("pending", "discovered", "threshold")


def test_threshold_follows_the_tenant_setting() -> None:
    w = world(inbound_detection_threshold=5)
    w.verify_and_deliver("alice@a.example", [0, 1, 2, 3])
    assert w.status("alice@a.example") == "pending"
    w.send(w.delivered("alice@a.example", T0 + 4 * DAY))
    assert w.status("alice@a.example") == "discovered"


def test_not_clean_messages_do_not_count() -> None:
    w = world()
    w.send(w.verified("alice@a.example"))
    for d in range(5):
        w.send(w.delivered("alice@a.example", T0 + d * DAY, verdict="not_clean"))
    assert w.status("alice@a.example") == "pending"
    assert w.record("alice@a.example").clean_by_day == {}


def test_only_messages_within_the_detection_period_count() -> None:
    w = world()
    w.verify_and_deliver("alice@a.example", [0, 20, 40])  # no 30 days hold three
    assert w.status("alice@a.example") == "pending"
    w.send(w.delivered("alice@a.example", T0 + 45 * DAY))  # days 20, 40, 45 do
    assert w.status("alice@a.example") == "discovered"


def test_a_first_delivery_creates_and_counts() -> None:
    w = world(inbound_detection_threshold=1)
    w.send(w.delivered("alice@a.example"))
    assert w.status("alice@a.example") == "discovered"
    assert w.reasons("alice@a.example") == [
        (None, "pending", "verified"),
        ("pending", "discovered", "threshold"),
    ]


def test_late_messages_within_grace_count_older_ones_are_dropped() -> None:
    w = world(inbound_detection_threshold=10)
    w.verify_and_deliver("alice@a.example", [10])
    w.send(w.delivered("alice@a.example", T0 + 9 * DAY))  # one day late: within grace
    w.send(w.delivered("alice@a.example", T0 + 2 * DAY))  # eight days late: dropped
    record = w.record("alice@a.example")
    assert sum(record.clean_by_day.values()) == 2
    assert record.late_dropped == 1


def test_old_buckets_are_pruned() -> None:
    w = world(inbound_detection_threshold=100)
    w.verify_and_deliver("alice@a.example", [0, 1, 2, 50])
    days = sorted(w.record("alice@a.example").clean_by_day)
    assert days == [(T0 + 50 * DAY).date()]


@pytest.mark.parametrize("command", [CreateUser, CreateFunctional, MarkInvalid])
def test_mail_to_settled_addresses_changes_nothing(command: type) -> None:
    w = world(auto_add_outbound_users=True)
    w.send(w.command(command, "alice@a.example"))
    before = dict(w.records)
    for event in (
        w.verified("alice@a.example", T0 + DAY),
        w.delivered("alice@a.example", T0 + DAY),
        w.outbound("alice@a.example", T0 + DAY),
        w.rejected("alice@a.example", T0 + DAY),
    ):
        outcomes = w.send(event)
        assert outcomes[0].skipped == "settled"
        assert outcomes[0].records == {}
    assert w.records == before


def test_directory_sync_stops_pending_addresses_from_being_discovered() -> None:
    w = world()
    w.verify_and_deliver("alice@a.example", [0, 1])
    w.settings = DiscoverySettings(discovery_enabled=True, directory_sync_enabled=True)
    w.send(w.delivered("alice@a.example", T0 + 2 * DAY))
    assert w.status("alice@a.example") == "pending"


def test_tempfailed_callouts_change_nothing() -> None:
    w = world()
    w.send(CalloutTempfailed(**w.base("alice@a.example", T0), reason="timeout"))
    assert w.records == {}
    assert w.skipped == ["tempfail"]


def test_unregistered_domains_are_skipped() -> None:
    w = world()
    w.send(w.verified("alice@elsewhere.example"))
    assert w.records == {}
    assert w.skipped == ["domain_not_registered"]


def test_a_redelivered_event_changes_nothing() -> None:
    w = world()
    event = w.verified("alice@a.example")
    w.send(event)
    delivered = w.delivered("alice@a.example", T0 + DAY)
    w.send(delivered)
    before = dict(w.records)
    outcomes = w.send(delivered)
    assert w.records == before
    assert outcomes[0].skipped == "duplicate"
    assert outcomes[0].records == {}
    # Nothing is published again: the first delivery's outputs were acknowledged before its
    # record was written.
    assert outcomes[0].snapshots() == []
    assert not outcomes[0].must_confirm


def test_a_clean_message_redelivered_after_many_others_is_not_counted_again() -> None:
    """A spool re-sent after an outage can repeat an event after any number of others: the
    repeat must change nothing however far back it reaches."""
    w = world()
    minute = timedelta(minutes=1)
    w.send(w.verified("alice@a.example"))
    for i in range(25):
        w.send(w.delivered("alice@a.example", T0 + i * minute, verdict="not_clean"))
    c1 = w.delivered("alice@a.example", T0 + 30 * minute)
    w.send(c1)
    w.send(w.delivered("alice@a.example", T0 + 31 * minute))
    for i in range(25):
        w.send(w.delivered("alice@a.example", T0 + (40 + i) * minute, verdict="not_clean"))
    (outcome,) = w.send(c1)
    assert outcome.skipped == "duplicate" and outcome.records == {}
    assert w.status("alice@a.example") == "pending"  # two clean messages, not three
    assert sum(w.record("alice@a.example").clean_by_day.values()) == 2


def test_a_days_count_and_its_ids_stop_at_the_threshold() -> None:
    w = world(inbound_detection_threshold=3)
    w.send(w.verified("alice@a.example"))
    for i in range(10):
        w.send(w.delivered("alice@a.example", T0 + i * timedelta(minutes=1)))
    record = w.record("alice@a.example")
    assert record.status == "discovered"
    assert record.clean_by_day == {T0.date(): 3}
    assert len(record.clean_ids[T0.date()]) == 3


# ---- what the address-state topic hears --------------------------------------------------------


def published(outcomes: list) -> list[tuple[str, str | None]]:  # type: ignore[type-arg]
    return [
        (key, None if snapshot is None else snapshot.record.status.value)
        for outcome in outcomes
        for key, snapshot in outcome.snapshots()
    ]


def test_200_messages_to_a_pending_address_publish_only_its_transitions() -> None:
    w = world(inbound_detection_threshold=150, detection_period_days=30)
    outcomes = w.send(w.verified("alice@a.example"))
    for i in range(200):
        outcomes += w.send(w.delivered("alice@a.example", T0 + i * timedelta(minutes=5)))
    assert w.status("alice@a.example") == "discovered"
    assert w.record("alice@a.example").last_seen == T0 + 199 * timedelta(minutes=5)
    assert published(outcomes) == [
        ("acme:alice@a.example", "pending"),
        ("acme:alice@a.example", "discovered"),
    ]
    # Each counted message that changed only traffic is written to the worker's table and
    # published nowhere: it need not wait for Kafka either.
    quiet = [o for o in outcomes if o.records and not o.published]
    assert len(quiet) == 199 and not any(o.must_confirm for o in quiet)


def test_the_published_state_carries_no_traffic() -> None:
    w = world()
    (outcome,) = w.send(w.verified("alice@a.example"))
    ((_, snapshot),) = outcome.snapshots()
    assert snapshot is not None
    fields = set(snapshot.model_dump(mode="json")["record"])
    assert {"status", "status_since", "version", "discovered_at", "aliases"} <= fields
    assert not fields & {"first_seen", "last_seen", "clean_by_day", "applied_event_ids"}


def test_state_that_changes_without_a_transition_is_published() -> None:
    """An alias linked to a user changes the user's alias list, not its status."""
    w = world()
    with_user(w, "alice@a.example")
    outcomes = w.send(w.command(AddAlias, "alice.smith@a.example", primary="alice@a.example"))
    assert sorted(published(outcomes)) == [
        ("acme:alice.smith@a.example", "alias"),
        ("acme:alice@a.example", "user"),
    ]


def test_removal_publishes_a_tombstone() -> None:
    w = world()
    w.send(w.verified("alice@a.example"))
    outcomes = w.send(w.rejected("alice@a.example", T0 + DAY))
    assert published(outcomes) == [("acme:alice@a.example", None)]


# ---- destination rejections --------------------------------------------------------------------


@pytest.mark.parametrize("days", [[], [0, 1, 2]], ids=["pending", "discovered"])
def test_a_rejecting_destination_removes_pending_and_discovered(days: list[int]) -> None:
    w = world()
    w.verify_and_deliver("alice@a.example", days)
    w.send(w.rejected("alice@a.example", T0 + 5 * DAY))
    assert w.status("alice@a.example") is None
    assert w.reasons("alice@a.example")[-1][1:] == (None, "destination_rejected")


@pytest.mark.parametrize("command", [CreateUser, CreateFunctional, MarkInvalid])
def test_a_rejecting_destination_does_not_touch_managed_addresses(command: type) -> None:
    w = world()
    w.send(w.command(command, "alice@a.example"))
    status = w.status("alice@a.example")
    w.send(w.rejected("alice@a.example", T0 + DAY))
    assert w.status("alice@a.example") == status


# ---- outbound ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("auto", "setup_days", "expected", "reason"),
    [
        (False, None, "discovered", "outbound"),
        (True, None, "user", "outbound"),
        (False, [], "discovered", "outbound"),
        (True, [], "user", "outbound"),
        (False, [0, 1, 2], "discovered", "threshold"),
        (True, [0, 1, 2], "user", "outbound"),
    ],
    ids=["new-off", "new-on", "pending-off", "pending-on", "discovered-off", "discovered-on"],
)
def test_outbound(auto: bool, setup_days: list[int] | None, expected: str, reason: str) -> None:
    w = world(auto_add_outbound_users=auto, default_new_user_role="silent_user")
    if setup_days is not None:
        w.verify_and_deliver("alice@a.example", setup_days)
    w.send(w.outbound("alice@a.example", T0 + 3 * DAY))
    assert w.status("alice@a.example") == expected
    assert w.reasons("alice@a.example")[-1][2] == reason
    if expected == "user":
        assert w.record("alice@a.example").role is UserRole.SILENT_USER


def test_outbound_does_not_revive_an_invalid_address() -> None:
    w = world(auto_add_outbound_users=True)
    w.send(w.command(MarkInvalid, "alice@a.example"))
    w.send(w.outbound("alice@a.example", T0 + DAY))
    assert w.status("alice@a.example") == "invalid"


# ---- alias detection ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("user", "newcomer"),
    [
        ("first.last@a.example", "First.Last@b.example"),
        ("first.last@a.example", "first.last+news@a.example"),
        ("first.last@a.example", "first.last+news@b.example"),
    ],
    ids=["other-domain", "subaddress", "subaddress-other-domain"],
)
def test_simple_aliases_are_linked_to_their_user(user: str, newcomer: str) -> None:
    w = world()
    with_user(w, user)
    w.send(w.verified(newcomer, T0 + DAY))
    assert w.status(newcomer) == "alias"
    assert w.record(newcomer).primary == user
    assert w.record(user).aliases == (w.record(newcomer).address.lower(),)
    assert w.reasons(newcomer) == [(None, "alias", "alias_detected")]


def test_subaddress_prefers_the_user_in_its_own_domain() -> None:
    w = world()
    with_user(w, "first.last@a.example")
    with_user(w, "first.last@b.example")
    w.send(w.verified("first.last+x@b.example", T0 + DAY))
    assert w.record("first.last+x@b.example").primary == "first.last@b.example"


def test_ambiguous_aliases_are_discovered_with_their_candidates() -> None:
    w = World(
        settings=DiscoverySettings(discovery_enabled=True),
        config=World().config.model_copy(
            update={"domains": ("a.example", "b.example", "c.example")}
        ),
    )
    with_user(w, "first.last@a.example")
    with_user(w, "first.last@b.example")
    w.send(w.verified("first.last@c.example", T0 + DAY))
    record = w.record("first.last@c.example")
    assert w.status("first.last@c.example") == "discovered"
    assert record.alias_candidates == ("first.last@a.example", "first.last@b.example")
    assert record.primary is None


def test_alias_detection_can_be_switched_off() -> None:
    w = world(auto_add_detected_aliases=False)
    with_user(w, "first.last@a.example")
    w.send(w.verified("first.last@b.example", T0 + DAY))
    assert w.status("first.last@b.example") == "pending"


def test_only_users_are_alias_primaries() -> None:
    w = world()
    w.send(w.command(CreateFunctional, "info@a.example"))
    w.send(w.verified("info@b.example", T0 + DAY))
    assert w.status("info@b.example") == "pending"


def test_an_outbound_alias_is_still_an_alias() -> None:
    w = world(auto_add_outbound_users=True)
    with_user(w, "first.last@a.example")
    w.send(w.outbound("first.last@b.example", T0 + DAY))
    assert w.status("first.last@b.example") == "alias"


# ---- expiry and pruning ------------------------------------------------------------------------


def discovered(w: World, address: str = "alice@a.example") -> None:
    w.verify_and_deliver(address, [0, 1, 2])
    assert w.status(address) == "discovered"


def test_discovered_addresses_expire_to_invalid_after_three_weekly_notices() -> None:
    w = world()
    discovered(w)  # on day 2 (09:00): expires when the day three weeks later ends
    deadline = datetime.combine((T0 + 2 * DAY + 3 * WEEK).date() + DAY, time.min, UTC)
    w.send(Tick(**w.base("alice@a.example", deadline - timedelta(minutes=1))))
    assert w.status("alice@a.example") == "discovered"
    w.send(Tick(**w.base("alice@a.example", deadline + timedelta(minutes=30))))
    assert w.status("alice@a.example") == "invalid"
    change = w.changes[-1]
    assert (change.reason, change.event_time) == ("expired", deadline)


def test_expired_addresses_can_default_to_new_users() -> None:
    w = world(expired_addresses_default_to_new_user=True, default_new_user_role="silent_user")
    discovered(w)
    w.send(Tick(**w.base("alice@a.example", T0 + 40 * DAY)))
    assert w.status("alice@a.example") == "user"
    assert w.record("alice@a.example").role is UserRole.SILENT_USER


def test_a_settings_change_applies_to_waiting_addresses() -> None:
    w = world()
    discovered(w)
    w.settings = DiscoverySettings(discovery_enabled=True, notices_before_expiry=1)
    w.send(Tick(**w.base("alice@a.example", T0 + 3 * DAY + WEEK)))
    assert w.status("alice@a.example") == "invalid"


def test_expiry_is_the_end_of_the_utc_day_n_weeks_after_discovery() -> None:
    w = world()
    discovered(w)
    record, settings = w.record("alice@a.example"), w.settings
    assert record.discovered_at is not None
    end = datetime.combine(record.discovered_at.date() + 3 * WEEK + DAY, time.min, UTC)
    assert expiry_deadline(record, settings) == expires_at(record.discovered_at, 3) == end


def test_expiry_happens_first_when_any_later_message_arrives() -> None:
    w = world()
    discovered(w)
    w.send(w.command(CreateUser, "alice@a.example", T0 + 60 * DAY, first_name="A", surname="B"))
    assert [r[1:] for r in w.reasons("alice@a.example")][-2:] == [
        ("invalid", "expired"),
        ("user", "admin:create_user"),
    ]


def test_inactive_pending_addresses_are_pruned_after_30_days() -> None:
    w = world()
    w.verify_and_deliver("alice@a.example", [0, 10])
    w.send(Tick(**w.base("alice@a.example", T0 + 39 * DAY)))
    assert w.status("alice@a.example") == "pending"  # activity on day 10 extends it
    w.send(Tick(**w.base("alice@a.example", T0 + 40 * DAY)))
    assert w.status("alice@a.example") is None
    assert w.changes[-1].reason == "pruned"
    assert w.changes[-1].event_time == T0 + 40 * DAY


# ---- admin commands -------------------------------------------------------------------------


SETUPS = {
    "none": lambda w: None,
    "pending": lambda w: w.send(w.verified("alice@a.example")),
    "discovered": lambda w: discovered(w),
    "user": lambda w: with_user(w, "alice@a.example"),
    "functional": lambda w: w.send(w.command(CreateFunctional, "alice@a.example")),
    "invalid": lambda w: w.send(w.command(MarkInvalid, "alice@a.example")),
    "alias": lambda w: (with_user(w, "alice@b.example"), w.send(w.verified("alice@a.example"))),
}

APPLIES = {
    # command: {starting status: expected status, or a rejection code}
    "create_user": {
        "none": "user", "pending": "user", "discovered": "user", "user": "already_user",
        "functional": "user", "invalid": "user", "alias": "user",
    },
    "create_functional": {
        "none": "functional", "pending": "functional", "discovered": "functional",
        "user": "functional", "functional": "already_functional", "invalid": "functional",
        "alias": "functional",
    },
    "mark_invalid": {
        "none": "invalid", "pending": "invalid", "discovered": "invalid", "user": "invalid",
        "functional": "invalid", "invalid": "already_invalid", "alias": "invalid",
    },
    "remove_invalid": {
        "none": "not_invalid", "pending": "not_invalid", "discovered": "not_invalid",
        "user": "not_invalid", "functional": "not_invalid", "invalid": None, "alias": "not_invalid",
    },
    "delete": {
        "none": "unknown_address", "pending": None, "discovered": None, "user": None,
        "functional": None, "invalid": None, "alias": None,
    },
    "import_user": {
        "none": "user", "pending": "user", "discovered": "user", "user": "already_user",
        "functional": "user", "invalid": "user", "alias": "user",
    },
}  # fmt: skip

COMMANDS = {
    "create_user": (CreateUser, {"first_name": "Alice", "surname": "Smith"}),
    "create_functional": (CreateFunctional, {}),
    "mark_invalid": (MarkInvalid, {}),
    "remove_invalid": (RemoveInvalid, {}),
    "delete": (DeleteAddress, {}),
    "import_user": (ImportUser, {"first_name": "Alice", "surname": "Smith"}),
}
STATUSES = {"pending", "discovered", "user", "functional", "invalid", "alias", None}


@pytest.mark.parametrize(
    ("name", "start"), [(n, s) for n, table in APPLIES.items() for s in table], ids=str
)
def test_admin_command_table(name: str, start: str) -> None:
    w = world()
    SETUPS[start](w)
    cls, fields = COMMANDS[name]
    command = w.command(cls, "alice@a.example", T0 + 5 * DAY, **fields)
    w.send(command)
    expected = APPLIES[name][start]
    result = w.results[-1]
    assert result.command_id == command.event_id
    if expected in STATUSES:
        assert result.outcome == "applied"
        assert w.status("alice@a.example") == expected
        reason = "import" if name == "import_user" else f"admin:{name}"
        assert w.changes[-1].reason == reason
        assert w.changes[-1].actor == "admin:test"
        assert w.changes[-1].cause_event_ids == (command.event_id,)
    else:
        assert result.outcome == "rejected"
        assert result.reason_code == expected
        assert result.message
        assert w.status("alice@a.example") == (None if start == "none" else start)


def test_create_user_sets_names_and_role() -> None:
    w = world()
    discovered(w)
    w.send(
        w.command(
            CreateUser, "alice@a.example", first_name="Alice", surname="Smith", role="silent_user"
        )
    )
    record = w.record("alice@a.example")
    assert (record.first_name, record.surname, record.role) == (
        "Alice",
        "Smith",
        UserRole.SILENT_USER,
    )


def test_create_user_without_a_role_uses_the_default_new_user_role() -> None:
    w = world(default_new_user_role="silent_user")
    w.send(w.command(CreateUser, "alice@a.example"))
    assert w.record("alice@a.example").role is UserRole.SILENT_USER


@pytest.mark.parametrize("name", ["create_functional", "mark_invalid", "delete"])
def test_a_primary_with_aliases_cannot_stop_being_a_user(name: str) -> None:
    w = world()
    with_user(w, "first.last@a.example")
    w.send(w.verified("first.last@b.example", T0 + DAY))
    cls, fields = COMMANDS[name]
    w.send(w.command(cls, "first.last@a.example", T0 + 2 * DAY, **fields))
    assert w.results[-1].reason_code == "has_aliases"
    assert w.status("first.last@a.example") == "user"


def test_commands_for_unregistered_domains_are_rejected() -> None:
    w = world()
    w.send(w.command(CreateUser, "alice@elsewhere.example"))
    assert w.results[-1].reason_code == "domain_not_registered"
    assert w.records == {}


def test_a_redelivered_command_is_applied_once() -> None:
    w = world()
    command = w.command(CreateUser, "alice@a.example")
    w.send(command)
    w.send(command)
    assert len([c for c in w.changes if c.cause_event_ids == (command.event_id,)]) == 1
    # The repeat is answered again with the same result (same id): consumers keep one.
    assert [r.outcome for r in w.results] == ["applied", "applied"]
    assert len({r.event_id for r in w.results}) == 1


# ---- add as alias ------------------------------------------------------------------------------


def test_add_alias_in_the_same_group() -> None:
    w = world()
    with_user(w, "first.last@a.example")
    w.send(
        w.verified(
            "first.last@b.example",
            T0 + DAY,
        )
    )
    w.send(w.command(DeleteAddress, "first.last@b.example", T0 + 2 * DAY))
    w.send(w.command(MarkInvalid, "first.last@b.example", T0 + 3 * DAY))
    w.send(
        w.command(AddAlias, "first.last@b.example", T0 + 4 * DAY, primary="first.last@a.example")
    )
    assert w.status("first.last@b.example") == "alias"
    assert w.results[-1].outcome == "applied"
    assert w.record("first.last@a.example").aliases == ("first.last@b.example",)


def test_add_alias_across_partitions_goes_through_the_primary() -> None:
    w = world()
    with_user(w, "john.doe@a.example")
    discovered(w, "jdoe@a.example")
    outcomes = w.send(
        w.command(AddAlias, "jdoe@a.example", T0 + 5 * DAY, primary="john.doe@a.example")
    )
    assert [type(m).__name__ for o in outcomes for m in o.messages] == [
        "AliasRequest",
        "AliasGrant",
    ]
    assert w.status("jdoe@a.example") == "alias"
    assert w.record("jdoe@a.example").primary == "john.doe@a.example"
    assert w.record("john.doe@a.example").aliases == ("jdoe@a.example",)
    result = w.results[-1]
    assert (result.outcome, result.command_type, result.address) == (
        "applied",
        "add_alias",
        "jdoe@a.example",
    )


@pytest.mark.parametrize("primary_setup", ["none", "discovered", "functional"])
def test_add_alias_to_a_non_user_is_rejected(primary_setup: str) -> None:
    w = world()
    if primary_setup == "discovered":
        discovered(w, "john.doe@a.example")
    elif primary_setup == "functional":
        w.send(w.command(CreateFunctional, "john.doe@a.example"))
    discovered(w, "jdoe@a.example")
    w.send(w.command(AddAlias, "jdoe@a.example", T0 + 5 * DAY, primary="john.doe@a.example"))
    result = w.results[-1]
    assert (result.outcome, result.reason_code, result.address) == (
        "rejected",
        "primary_not_user",
        "jdoe@a.example",
    )
    assert w.status("jdoe@a.example") == "discovered"


def test_add_alias_rejections() -> None:
    w = world()
    with_user(w, "john.doe@a.example")
    w.send(w.command(AddAlias, "jdoe@a.example", T0 + DAY, primary="john.doe@a.example"))
    w.send(w.command(AddAlias, "jdoe@a.example", T0 + 2 * DAY, primary="john.doe@a.example"))
    assert w.results[-1].reason_code == "already_alias"
    w.send(w.command(AddAlias, "x@a.example", T0 + 2 * DAY, primary="john.doe@elsewhere.example"))
    assert w.results[-1].reason_code == "primary_not_user"
    with pytest.raises(ValidationError, match="alias of itself"):
        w.command(AddAlias, "jdoe@a.example", primary="JDoe@a.example")


def test_removing_an_alias_releases_it_on_a_remote_primary() -> None:
    w = world()
    with_user(w, "john.doe@a.example")
    w.send(w.command(AddAlias, "jdoe@a.example", T0 + DAY, primary="john.doe@a.example"))
    w.send(w.command(DeleteAddress, "jdoe@a.example", T0 + 2 * DAY))
    assert w.record("john.doe@a.example").aliases == ()
    w.send(w.command(DeleteAddress, "john.doe@a.example", T0 + 3 * DAY))
    assert w.results[-1].outcome == "applied"


def test_relinking_an_alias_moves_it_between_primaries() -> None:
    w = world()
    with_user(w, "john.doe@a.example")
    with_user(w, "jane.doe@a.example")
    w.send(w.command(AddAlias, "jd@a.example", T0 + DAY, primary="john.doe@a.example"))
    w.send(w.command(AddAlias, "jd@a.example", T0 + 2 * DAY, primary="jane.doe@a.example"))
    assert w.record("jd@a.example").primary == "jane.doe@a.example"
    assert w.record("john.doe@a.example").aliases == ()
    assert w.record("jane.doe@a.example").aliases == ("jd@a.example",)


# ---- erasure -----------------------------------------------------------------------------------


@pytest.mark.parametrize("start", sorted(SETUPS))
def test_erasure_removes_the_record_in_any_status_and_writes_no_history(start: str) -> None:
    w = world()
    SETUPS[start](w)
    changes = len(w.changes)
    outcomes = w.send(w.command(EraseAddress, "alice@a.example", T0 + 5 * DAY))
    assert w.status("alice@a.example") is None
    assert w.results[-1].outcome == "applied", "erasing what is not there succeeds too"
    assert not any(c.address.lower().startswith("alice@a.") for c in w.changes[changes:])
    # Its tombstone is published (ingest nodes and the sink learn it is gone).
    published = [k for o in outcomes for k, snap in o.snapshots() if snap is None]
    assert published == (["acme:alice@a.example"] if start != "none" else [])


def test_erasing_an_alias_unlinks_it_from_its_user_across_partitions() -> None:
    w = world()
    with_user(w, "john.doe@a.example")
    discovered(w, "jdoe@a.example")
    w.send(w.command(AddAlias, "jdoe@a.example", T0 + 5 * DAY, primary="john.doe@a.example"))
    assert w.record("john.doe@a.example").aliases == ("jdoe@a.example",)
    w.send(w.command(EraseAddress, "jdoe@a.example", T0 + 6 * DAY))
    assert w.status("jdoe@a.example") is None
    assert w.record("john.doe@a.example").aliases == ()
