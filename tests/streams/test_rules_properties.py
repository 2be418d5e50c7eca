"""Invariants of the rules under arbitrary inputs (hypothesis)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

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
from smtp_discovery.schemas.state import AddressStatus
from smtp_discovery.schemas.tenant import DiscoverySettings
from smtp_discovery.streams.journal import micros
from smtp_discovery.streams.rules import Policy
from tests.streams.world import T0, World

GRACE = Policy().late_grace
minutes = st.integers(min_value=0, max_value=60 * 24 * 40)


def fresh(threshold: int = 3) -> World:
    return World(
        settings=DiscoverySettings(discovery_enabled=True, inbound_detection_threshold=threshold)
    )


@given(st.lists(minutes, min_size=1, max_size=12), st.integers(1, 5), st.data())
def test_replaying_any_event_is_a_no_op(
    offsets: list[int], threshold: int, data: st.DataObject
) -> None:
    w = fresh(threshold)
    w.send(w.verified("alice@a.example"))
    events = [w.delivered("alice@a.example", T0 + timedelta(minutes=m)) for m in sorted(offsets)]
    for event in events:
        w.send(event)
    snapshot, changes = dict(w.records), len(w.changes)
    replayed = data.draw(st.sampled_from(events))
    w.send(replayed)
    assert w.records == snapshot
    assert len(w.changes) == changes


@settings(max_examples=400)
@given(
    st.lists(st.integers(0, 60 * 24 * 60), min_size=1, max_size=15),
    st.lists(st.floats(0, 0.999), min_size=15, max_size=15),
    st.integers(1, 6),
)
def test_arrival_order_within_the_grace_period_does_not_change_the_outcome(
    offsets: list[int], jitters: list[float], threshold: int
) -> None:
    times = sorted(T0 + timedelta(minutes=m) for m in offsets)
    # Arrival order: each event delayed by less than the grace period, so none is later than grace.
    arrival = sorted(range(len(times)), key=lambda i: times[i] + jitters[i] * GRACE)

    def run(order: list[int]) -> World:
        w = fresh(threshold)
        w.send(w.verified("alice@a.example", times[0]))
        for i in order:
            w.send(w.delivered("alice@a.example", times[i]))
        return w

    in_order, shuffled = run(list(range(len(times)))), run(arrival)
    a, b = in_order.record("alice@a.example"), shuffled.record("alice@a.example")
    assert a.status == b.status
    if a.status in (AddressStatus.PENDING, AddressStatus.DISCOVERED):
        # (Once settled, e.g. expired, an address counts nothing more, whichever came first.)
        assert a.clean_by_day == b.clean_by_day
    # The discovery *day* (which the expiry deadline derives from) is the same; the transition
    # itself is emitted when it becomes known, so its time may differ within that day.
    assert (a.discovered_at and a.discovered_at.date()) == (
        b.discovered_at and b.discovered_at.date()
    )
    assert b.late_dropped == 0


@given(st.lists(st.tuples(st.integers(-20 * 24, 40 * 24), st.booleans()), max_size=25))
def test_counts_never_go_negative(events: list[tuple[int, bool]]) -> None:
    w = fresh(threshold=1000)
    w.send(w.verified("alice@a.example"))
    for hours, clean in events:
        w.send(
            w.delivered(
                "alice@a.example", T0 + timedelta(hours=hours), "clean" if clean else "not_clean"
            )
        )
        record = w.record("alice@a.example")
        assert all(count >= 1 for count in record.clean_by_day.values())
        assert record.late_dropped >= 0
        assert sum(record.clean_by_day.values()) <= sum(1 for _, c in events if c)


ADDRESSES = [
    "john.doe@a.example",
    "john.doe@b.example",
    "john.doe+x@a.example",
    "jd@a.example",
    "jd@b.example",
]
actions = st.tuples(
    st.sampled_from(
        ["user", "alias", "delete", "invalid", "functional", "verified", "outbound", "tick"]
    ),
    st.sampled_from(ADDRESSES),
    st.sampled_from(ADDRESSES),
)


@settings(max_examples=300)
@given(st.lists(actions, max_size=30), st.booleans())
def test_an_alias_primary_is_always_a_user(
    steps: list[tuple[str, str, str]], auto_outbound: bool
) -> None:
    w = World(
        settings=DiscoverySettings(discovery_enabled=True, auto_add_outbound_users=auto_outbound)
    )
    for i, (action, address, other) in enumerate(steps):
        at = T0 + timedelta(days=i)
        if action == "user":
            w.send(w.command(CreateUser, address, at))
        elif action == "alias" and address != other:
            w.send(w.command(AddAlias, address, at, primary=other))
        elif action == "delete":
            w.send(w.command(DeleteAddress, address, at))
        elif action == "invalid":
            w.send(w.command(MarkInvalid, address, at))
        elif action == "functional":
            w.send(w.command(CreateFunctional, address, at))
        elif action == "verified":
            w.send(w.verified(address, at))
        elif action == "outbound":
            w.send(w.outbound(address, at))
        else:
            w.send(Tick(**w.base(address, at + timedelta(days=40))))
        for key, record in w.records.items():
            if record.status is AddressStatus.ALIAS:
                assert record.primary is not None
                primary = w.record(record.primary)
                assert primary.status is AddressStatus.USER, f"{key} -> {record.primary}"
                assert record.address.lower() in primary.aliases
            if record.aliases:
                assert record.status is AddressStatus.USER


# ---- every kind of message, shuffled within the grace period (issue: late events of every kind)

GROUP = ["jo@a.example", "jo@b.example", "jo+x@a.example", "jo+y@b.example"]
"""One route-key group: what order matters across (alias detection, links, removals)."""
KINDS = [
    "verified",
    "rejected",
    "clean",
    "clean",
    "clean",
    "not_clean",
    "catch_all",
    "outbound",
    "user",
    "functional",
    "invalid",
    "remove_invalid",
    "delete",
    "alias",
    "tick",
    "tempfail",
    "import",
]
"""Every kind but an erasure: the erased address's messages leave the journal with it (they are
what is erased), so a neighbour's late message from before the erasure is replayed without the
erased address (tested below on its own)."""


def _message(w: World, kind: str, address: str, other: str, at: datetime) -> Any:
    if kind == "verified":
        return w.verified(address, at)
    if kind == "rejected":
        return w.rejected(address, at)
    if kind in ("clean", "not_clean"):
        return w.delivered(address, at, kind)
    if kind == "catch_all":
        return w.delivered(address, at, catch_all=True)
    if kind == "outbound":
        return w.outbound(address, at)
    if kind == "tick":
        return Tick(**w.base(address, at))
    if kind == "tempfail":
        return CalloutTempfailed(
            **w.base(address, at), destination="mx:25", reason="reply_4xx", reply_code=451
        )
    if kind == "alias":
        primary = other if other != address else GROUP[(GROUP.index(address) + 1) % len(GROUP)]
        return w.command(AddAlias, address, at, primary=primary)
    command = {
        "user": CreateUser,
        "functional": CreateFunctional,
        "invalid": MarkInvalid,
        "remove_invalid": RemoveInvalid,
        "delete": DeleteAddress,
        "import": ImportUser,
        "erase": EraseAddress,
    }[kind]
    return w.command(command, address, at)


@settings(max_examples=600, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(KINDS),
            st.sampled_from(GROUP),
            st.sampled_from(GROUP),
            st.integers(0, 60 * 24 * 12),  # minute of a 12-day stretch
            st.floats(0, 0.999),  # delay, as a share of the grace period
        ),
        min_size=1,
        max_size=24,
        unique_by=lambda step: step[3],  # distinct event times: event-time order is one order
    ),
    st.integers(1, 4),
    st.booleans(),
    st.booleans(),
)
def test_any_order_within_the_grace_period_gives_the_event_time_outcome(
    steps: list[tuple[str, str, str, int, float]],
    threshold: int,
    auto_outbound: bool,
    auto_alias: bool,
) -> None:
    """Every kind of message (callouts, deliveries, outbound, admin commands, ticks), each
    delayed by less than the grace period: the records are exactly those of event-time order."""
    settings_ = DiscoverySettings(
        discovery_enabled=True,
        inbound_detection_threshold=threshold,
        detection_period_days=3,
        notices_before_expiry=1,
        auto_add_outbound_users=auto_outbound,
        auto_add_detected_aliases=auto_alias,
    )
    template = World(settings=settings_)
    messages = [
        _message(template, kind, address, other, T0 + timedelta(minutes=minute))
        for kind, address, other, minute, _ in steps
    ]
    by_time = sorted(range(len(steps)), key=lambda i: messages[i].event_time)
    arrival = sorted(range(len(steps)), key=lambda i: messages[i].event_time + steps[i][4] * GRACE)

    passed_by: set[int] = set()

    def run(order: list[int], note: bool = False) -> World:
        w = World(settings=settings_)
        for i in order:
            (outcome, *_) = w.send(messages[i])
            if (
                note
                and outcome.skipped == "settled"
                and not outcome.records
                and steps[i][0] in ROUTED_PAST
            ):
                passed_by.add(i)
        return w

    # Mail that found its address settled when it came, and made nothing fall due, is what
    # ingest routes past the worker: the event-time order to match is that of the messages
    # that reach the worker.
    got = run(arrival, note=True)
    expected = run([i for i in by_time if i not in passed_by])
    assert got.records == expected.records


ROUTED_PAST = ("clean", "not_clean", "catch_all", "outbound")
"""The kinds ``schemas.topics.ROUTED_PAST_WHEN_SETTLED`` are made of (deliveries, outbound)."""


def test_mail_that_came_while_its_address_was_settled_is_not_replayed() -> None:
    """A user deleted a minute after it was created, the deletion arriving late: mail of
    minutes 5 and 6, which came while alice was still a user, is not replayed after it. The
    same as when ingest routed that mail past the worker: the address is met again at its next
    message, and the journal kept none of that mail."""
    minute = timedelta(minutes=1)

    def run(mail_reaches_the_worker: bool) -> World:
        w = World()
        w.send(w.command(CreateUser, "alice@a.example", T0))
        if mail_reaches_the_worker:
            w.send(w.delivered("alice@a.example", T0 + 5 * minute))
            w.send(w.outbound("alice@a.example", T0 + 6 * minute))
        w.send(w.command(DeleteAddress, "alice@a.example", T0 + minute))
        return w

    reached, routed_past = run(True), run(False)
    assert reached.records == routed_past.records == {}
    assert all(e.topic != "discovery.mail" for e in reached.journals["acme:alice"].journal.entries)
    w = reached
    w.send(w.delivered("alice@a.example", T0 + 20 * minute))  # its next message
    assert w.status("alice@a.example") == "pending"


def test_a_late_delivery_does_not_bring_back_an_address_the_destination_refused() -> None:
    """Verified day 0, clean day 0.1, refused day 0.5, then a clean delivery of day 0.4 arrives:
    in event-time order the refusal came last, so the address stays removed."""
    day = timedelta(days=1)

    def run(ordered: bool) -> World:
        w = World(ordered=ordered)
        w.send(w.verified("alice@a.example", T0))
        w.send(w.delivered("alice@a.example", T0 + 0.1 * day))
        w.send(w.rejected("alice@a.example", T0 + 0.5 * day))
        w.send(w.delivered("alice@a.example", T0 + 0.4 * day))
        return w

    assert run(ordered=False).status("alice@a.example") == "pending"  # the rules alone
    assert run(ordered=True).status("alice@a.example") is None


def test_a_late_refusal_is_followed_by_the_deliveries_after_it() -> None:
    """Verified day 0, clean days 0.1 and 0.3, then a refusal of day 0.2 arrives: in event-time
    order the clean delivery of day 0.3 came after the refusal and made the address pending
    again; the history says how it got there."""
    day = timedelta(days=1)

    def run(ordered: bool) -> World:
        w = World(ordered=ordered)
        w.send(w.verified("alice@a.example", T0))
        w.send(w.delivered("alice@a.example", T0 + 0.1 * day))
        w.send(w.delivered("alice@a.example", T0 + 0.3 * day))
        w.send(w.rejected("alice@a.example", T0 + 0.2 * day))
        return w

    assert run(ordered=False).status("alice@a.example") is None  # the rules alone
    w = run(ordered=True)
    assert w.status("alice@a.example") == "pending"
    assert w.record("alice@a.example").clean_by_day == {(T0 + 0.3 * day).date(): 1}
    assert w.reasons("alice@a.example") == [
        (None, "pending", "verified"),
        ("pending", None, "destination_rejected"),
        (None, "pending", "verified"),
    ]


def test_an_erasure_in_any_order_does_not_bring_the_address_back_and_keeps_its_new_life() -> None:
    """Erased at 10:00. An erasure removes everything the worker has seen of the address when it
    is applied: a verification of 09:30 arriving after it does not re-create the address, nor
    does mail of 12:00 that arrived before it (a late erasure); mail of 12:00 that arrives after
    it is a new life. The journal holds none of the erased messages."""
    hour = timedelta(hours=1)
    address = "ann@a.example"

    def run(order: list[int]) -> World:
        w = World()
        messages = [
            w.verified(address, T0),
            w.delivered(address, T0 + 0.5 * hour),
            w.command(EraseAddress, address, T0 + hour),
            w.verified(address, T0 + 0.5 * hour),
            w.verified(address, T0 + 3 * hour),
        ]
        for i in order:
            w.send(messages[i])
        return w

    for order in ([0, 1, 2, 3, 4], [0, 1, 2, 4, 3]):  # 12:00 arrives after the erasure
        w = run(order)
        record = w.record(address)
        assert record.status == "pending", order
        assert record.first_seen == T0 + 3 * hour, order  # the new life only
        journal = w.journals["acme:ann"].journal
        assert [e.topic for e in journal.entries] == ["erased", "discovery.mail"], order
        assert "ann" not in journal.entries[0].event_id
    for order in ([0, 1, 4, 2, 3], [0, 4, 1, 3, 2]):  # 12:00 arrives before the erasure
        w = run(order)
        assert w.status(address) is None, order
        journal = w.journals["acme:ann"].journal
        assert [(e.topic, e.at) for e in journal.entries] == [("erased", micros(T0 + 3 * hour))]
