"""A late message put in its event-time place: the group replayed from its journal's base.

``streams.journal`` says when this is needed. Here the rules are applied, unchanged, to the base
and the journal's messages in event-time order with the late one among them; the result is the
group processing in event-time order would have given. What the worker publishes is the
difference between that and the group as it stands:

* the records that differ are written (None: removed), and those whose state differs are
  published;
* the transitions the replay makes from the late message on are recorded, except those the
  same replay without the late message makes too: those were recorded when their messages came
  (by induction, the group always is the event-time outcome of what it has seen);
* the late message's own command results and system messages are sent. The other messages'
  results and messages were sent when they arrived and are not sent again.

Transitions recorded before stay in the history: they were true of what the worker had seen
then, and the history goes on from them.

Pure: no Faust, no Kafka.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from smtp_discovery.schemas.address import parse_address
from smtp_discovery.schemas.commands import EraseAddress, Tick
from smtp_discovery.schemas.state import AddressRecord, StateChange, same_state
from smtp_discovery.schemas.topics import ROUTED_PAST_WHEN_SETTLED
from smtp_discovery.streams import rules
from smtp_discovery.streams.journal import MARKS, Entry, Journal

Group = dict[str, AddressRecord]

ORDER_FREE = frozenset({"domain_not_registered", "tempfail", "tenant_fact", "duplicate", "erased"})
"""Skips that no order of messages can change, so the journal does not keep their messages: a
domain the tenant does not have, a tempfail and a fact about the tenant's server never touch a
record."""


def _passes_by(outcome: rules.Outcome, message: Any) -> bool:
    """A delivery to, or outbound mail from, an address that was settled at its place: ingest
    routes such mail past the worker (``schemas.topics.ROUTED_PAST_WHEN_SETTLED``), so the
    worker neither applies nor keeps what it receives of it. A late deletion placed before it
    then does not bring the address back, as it would not for the mail ingest routed past; the
    address is met again at its next callout or message. Keeping it would make the outcome
    depend on how fresh an ingest node's view was, and cost a journal write for most mail.

    One that made something fall due on its way (lazy time: an expiry at its event time) is
    kept: its place in time mattered."""
    return (
        outcome.skipped == "settled"
        and not outcome.records
        and isinstance(message, ROUTED_PAST_WHEN_SETTLED)
    )


def erasure_mark(tenant_id: str, address: str) -> str:
    """Stands for an erased address in its group's journal, for the grace period: a late
    message about it from before the erasure must not bring it back, and the journal must not
    hold the address itself."""
    return _mark_of(record_key_of(address, tenant_id))


@dataclass
class JournalState:
    """A group's journal while messages are applied, and its base once loaded or changed."""

    journal: Journal
    base: Group | None = None
    base_changed: bool = False
    changed: bool = False

    def drop(self) -> None:
        """No journal: the group as it is becomes the starting point of the order."""
        if self.journal:
            self.journal, self.base = self.journal.succeed([]), {}
            self.base_changed = self.changed = True

    def restart(self, entry: Entry, group: Mapping[str, AddressRecord]) -> None:
        self.journal, self.base = self.journal.succeed([entry]), dict(group)
        self.base_changed = self.changed = True


def place(
    group: Mapping[str, AddressRecord],
    state: JournalState,
    message: Any,
    entry: Entry,
    ctx: rules.Context,
    *,
    load_base: Callable[[], Group],
    decode: Callable[[Entry], Any],
) -> rules.Outcome:
    """Apply ``message`` as if the group's messages had come in event-time order, and keep it
    in the journal if its place can matter. ``load_base`` reads the base when it is needed (a
    replay or a fold), ``decode`` turns an entry back into its message."""
    decode = _with_marks(decode)
    journal, grace = state.journal, ctx.policy.late_grace
    at = entry.at
    if isinstance(message, EraseAddress):
        return _erase(group, state, message, entry, ctx, load_base, decode)
    if isinstance(message, Tick):
        outcome = rules.apply(group, message, ctx)
        if journal.starts_anew(at, grace):
            state.drop()
        elif journal and outcome.records:
            journal.add(entry)  # what fell due then is part of the order
            state.changed = True
        return outcome
    if journal.erased_after(lambda: erasure_mark(message.tenant_id, message.address), at):
        return rules.Outcome(skipped="erased")
    if journal.holds(message.event_id):
        where = next(i for i, e in enumerate(journal.entries) if e.event_id == message.event_id)
        outcome = _again(group, state, where, ctx, load_base, decode)
        if not rules.is_mail(message):  # a command again: its result again (the same id)
            outcome.results = rules.apply(applied(group, outcome.records), message, ctx).results
        return outcome
    if journal.is_late(at) and not journal.beyond_grace(at, grace):
        if state.base is None:
            state.base = load_base()
        placed = journal.copy()  # the journal changes only if the replay works
        where = placed.add(entry)
        messages = [message if i == where else decode(e) for i, e in enumerate(placed.entries)]
        outcome = replay(state.base, messages[:where], message, messages[where + 1 :], group, ctx)
        if _passes_by(outcome, message):
            return outcome
        state.journal, state.changed = placed, True
    else:
        outcome = rules.apply(group, message, ctx)
        if journal.is_late(at):
            # Past the grace period: the rules judged it. What it changed is in no journal, so
            # the group as it is becomes the base (the group is always its journal's base with
            # the journal's messages applied, which ``_again`` relies on).
            if outcome.records:
                state.drop()
            return outcome
        if outcome.skipped in ORDER_FREE or _passes_by(outcome, message):
            return outcome
        if not journal or journal.starts_anew(at, grace):
            state.restart(entry, group)
            return outcome
        journal.add(entry)
        state.changed = True
    folded = state.journal.to_fold(grace)
    if folded:
        if state.base is None:
            state.base = load_base()
        state.base = fold(state.base, [decode(e) for e in folded], ctx)
        state.base_changed = True
    return outcome


def _again(
    group: Mapping[str, AddressRecord],
    state: JournalState,
    where: int,
    ctx: rules.Context,
    load_base: Callable[[], Group],
    decode: Callable[[Entry], Any],
) -> rules.Outcome:
    """The message the journal holds at ``where``, delivered again. The worker that applied it
    may have died after its journal was written and before its group was (``streams.processor``
    writes them in that order), so the group is brought to what the journal says: the base
    replayed through the journal's messages. Usually that is the group as it is, and nothing
    changes. Its outputs were acknowledged before either table was written, so none is sent
    again here."""
    if state.base is None:
        state.base = load_base()
    messages = [decode(e) for e in state.journal.entries]
    outcome = replay(
        state.base, messages[:where], messages[where], messages[where + 1 :], group, ctx
    )
    outcome.changes, outcome.results, outcome.messages = [], [], []
    if not outcome.records:
        outcome.skipped = "duplicate"
    return outcome


def step(
    group: Mapping[str, AddressRecord], message: Any, ctx: rules.Context
) -> tuple[Group, rules.Outcome]:
    """One message applied to a group: the new group and the rules' outcome."""
    if isinstance(message, _Erased):
        return _without(group, message.mark), rules.Outcome(skipped="erased")
    outcome = rules.apply(group, message, ctx)
    return applied(group, outcome.records), outcome


def applied(
    group: Mapping[str, AddressRecord], records: Mapping[str, AddressRecord | None]
) -> Group:
    """The group with an outcome's records written into it (None: removed)."""
    after = dict(group)
    for key, record in records.items():
        if record is None:
            after.pop(key, None)
        else:
            after[key] = record
    return after


def fold(base: Mapping[str, AddressRecord], messages: Iterable[Any], ctx: rules.Context) -> Group:
    """The base moved past ``messages`` (in event-time order): what the group was after them."""
    group = dict(base)
    for message in messages:
        group, _ = step(group, message, ctx)
    return group


def _erase(
    group: Mapping[str, AddressRecord],
    state: JournalState,
    message: EraseAddress,
    entry: Entry,
    ctx: rules.Context,
    load_base: Callable[[], Group],
    decode: Callable[[Entry], Any],
) -> rules.Outcome:
    """An erasure removes everything the worker has seen of the address when it is applied,
    whatever the event times: its messages leave the journal, its record and alias links leave
    the base. A mark takes their place, as late as the latest of them, so that a late message
    about the address from before it does not bring the address back; mail that arrives after
    the erasure is a new life of the address. The group's other addresses keep their order."""
    journal, at = state.journal, entry.at
    key = parse_address(message.address).record_key(ctx.tenant.tenant_id)
    erased = erasure_mark(message.tenant_id, message.address)
    made = message.event_id.encode()
    mark = next(
        (i for i, e in enumerate(journal.entries) if e.topic == MARKS and e.value == made), None
    )
    if mark is not None:
        # Delivered again: what came after it (a new life of the address) must stay.
        outcome = _again(group, state, mark, ctx, load_base, decode)
        outcome.results = rules.apply({}, message, ctx).results
        return _deleted_again(outcome, key, group)
    if not journal:
        after, outcome = step(group, message, ctx)
        state.restart(Entry(at, erased, MARKS, made), after)
        return _deleted_again(outcome, key, group)
    base = _without(state.base if state.base is not None else load_base(), erased)
    about = {i for i, e in enumerate(journal.entries) if _about(decode(e), key, ctx)}
    kept = [e for i, e in enumerate(journal.entries) if i not in about]
    if journal.is_late(at) and not journal.beyond_grace(at, ctx.policy.late_grace):
        earlier = [decode(e) for e in kept if e.at <= at]
        later = [decode(e) for e in kept if e.at > at]
        outcome = replay(base, earlier, message, later, group, ctx)
    else:
        outcome = rules.apply(group, message, ctx)
    placed = journal.succeed(kept)
    placed.add(Entry(max([at, *(journal.entries[i].at for i in about)]), erased, MARKS, made))
    state.journal, state.base = placed, base
    state.base_changed = state.changed = True
    return _deleted_again(outcome, key, group)


def _deleted_again(
    outcome: rules.Outcome, key: str, group: Mapping[str, AddressRecord]
) -> rules.Outcome:
    """An erasure of an address its group does not hold deletes its record all the same: a
    worker killed between a group's writes may have left the record behind, no longer listed
    (``streams.store.GroupWrite``), and only the erasure's redelivery can find it. Deleting
    publishes nothing."""
    if key not in group:
        outcome.records.setdefault(key, None)
    return outcome


def _about(message: Any, key: str, ctx: rules.Context) -> bool:
    if isinstance(message, _Erased):
        return False
    return parse_address(message.address).record_key(ctx.tenant.tenant_id) == key


def _without(group: Mapping[str, AddressRecord], mark: str) -> Group:
    """The group with no trace of the address ``mark`` stands for: its record, and its place
    among a primary's aliases."""
    out: Group = {}
    for key, record in group.items():
        if _mark_of(key) == mark:
            continue
        if any(
            _mark_of(record_key_of(alias, record.tenant_id)) == mark for alias in record.aliases
        ):
            record = record.model_copy(
                update={
                    "aliases": tuple(
                        a
                        for a in record.aliases
                        if _mark_of(record_key_of(a, record.tenant_id)) != mark
                    )
                }
            )
        out[key] = record
    return out


def record_key_of(address: str, tenant_id: str) -> str:
    return parse_address(address).record_key(tenant_id)


def _mark_of(record_key: str) -> str:
    return hashlib.sha256(record_key.encode("utf-8")).hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class _Erased:
    """An erasure mark in a replay: the address it stands for leaves the group."""

    mark: str


def _with_marks(decode: Callable[[Entry], Any]) -> Callable[[Entry], Any]:
    return lambda entry: _Erased(entry.event_id) if entry.topic == MARKS else decode(entry)


def replay(
    base: Mapping[str, AddressRecord],
    before: Sequence[Any],
    late: Any,
    after: Sequence[Any],
    current: Mapping[str, AddressRecord],
    ctx: rules.Context,
) -> rules.Outcome:
    """The outcome of ``late`` put between ``before`` and ``after`` (the journal's messages
    older and newer than it, in event-time order), against the group as it is (``current``)."""
    start = fold(base, before, ctx)
    group, own = step(start, late, ctx)
    changes = list(own.changes)
    for message in after:
        group, outcome = step(group, message, ctx)
        changes.extend(outcome.changes)
    # What the messages after the late one published when they came (the same replay without
    # it): a transition both orders make is not published twice.
    told: set[tuple[Any, ...]] = set()
    previous = start
    for message in after:
        previous, outcome = step(previous, message, ctx)
        told.update(_fact(change) for change in outcome.changes)
    result = rules.Outcome(results=own.results, messages=own.messages)
    result.changes = [change for change in changes if _fact(change) not in told]
    for key in {*current, *group}:
        old, new = current.get(key), group.get(key)
        if old == new:
            continue
        result.records[key] = new
        if new is None:
            if old is not None:
                result.published[key] = None
        elif old is None or not same_state(old, new):
            result.published[key] = new
    if not (result.records or result.results or result.messages):
        result.skipped = own.skipped or "no_change"
    return result


def _fact(change: StateChange) -> tuple[Any, ...]:
    """A transition as a fact about the address, whatever version it was numbered with."""
    return (
        change.address.lower(),
        change.from_status,
        change.to_status,
        change.reason,
        change.event_time,
        change.role,
        change.primary,
    )
