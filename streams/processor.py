"""Messages through the worker, a batch at a time: decode, find the tenant, apply the rules,
publish, store.

Every output (a changed state, a transition, a command result, a system message) is
acknowledged by Kafka *before* the tables are written. If the worker dies in between, the
message is redelivered and produces the same outputs with the same ids (the rules are
deterministic), which consumers drop as repeats; the other order could lose an output for good,
because the redelivered message would find itself already applied. A counted message that
changes no state has no output at all: it costs a table write and nothing else.

The tables are written in steps, each once Kafka acknowledged the one before: the journals,
then the records of larger groups, then the groups' index entries, then the records those no
longer list. Each table has a changelog topic of its own, and a worker killed between two
writes can leave any topic behind the others; in this order, a table that a new owner restores
ahead of another is one that can bring the other up to date: the journal rebuilds a group that
is behind it when the group's messages are delivered again (``streams.reorder``), and a group's
own writes go in the order ``streams.store.GroupWrite`` gives. Before, a journal entry restored
without the record it went with made the redelivered message a repeat, and lost its count.
Only steps with writes wait: a batch of groups of one waits between its journals and its
groups, and at its end.

A batch loads each route-key group once, sends all its outputs before waiting for any
acknowledgement, and writes each changed key once, after every output was acknowledged; its
messages are acknowledged (their offsets may commit) only once its table writes are too.
Transitions are logged at debug level: the state-changes topic is their record.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from smtp_discovery.platform.views import TenantDirectory
from smtp_discovery.schemas.address import parse_address
from smtp_discovery.schemas.codec import MessageDecodeError, dead_letter, decode, encode
from smtp_discovery.schemas.commands import AliasRelease, EraseAddress, Tick
from smtp_discovery.schemas.state import AddressRecord
from smtp_discovery.schemas.tenant import DiscoverySettings, TenantConfig
from smtp_discovery.schemas.topics import (
    ADDRESS_STATE,
    COMMAND_RESULTS,
    COMMANDS,
    DEAD_LETTER,
    STATE_CHANGES,
)
from smtp_discovery.streams import reorder, rules
from smtp_discovery.streams.clock import PartitionClock
from smtp_discovery.streams.due import DueIndex
from smtp_discovery.streams.journal import Entry, micros
from smtp_discovery.streams.reorder import JournalState
from smtp_discovery.streams.store import GroupStore

log = logging.getLogger("smtp_discovery.streams")

AFTER_DEPARTURE = (EraseAddress, AliasRelease)
"""What is applied for a tenant no longer on the tenants topic: its erasure, and the release of
an erased alias by its primary's partition (a no-op where the primary is gone too)."""

Output = tuple[str, bytes | None, bytes | None, int | None]
"""(topic, key, value, partition): a record to send; no partition, the key's."""

_Write = tuple["Incoming", Callable[[Any], None], Any]
"""(a message of the partition written in, what writes, what it writes): a table write."""

Send = Callable[[Sequence[Output]], Awaitable[None]]
"""send(outputs) returns once Kafka acknowledged every one of them (they are sent together)."""


def _decode_entry(entry: Entry) -> Any:
    return decode(entry.topic, entry.value)


def _nothing() -> None:
    return None


async def _no_wait() -> None:
    return None


@dataclass
class Incoming:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    enter: Callable[[], None] = _nothing
    """Makes this message the current one for the tables (Faust reads and writes a table key in
    the partition of the message being processed)."""


@dataclass
class _Batch:
    """A batch's working state: the groups as its messages left them, what to write, what to
    send. Later messages of the batch see what earlier ones changed."""

    groups: dict[str, dict[str, AddressRecord]] = field(default_factory=dict)
    journals: dict[str, JournalState] = field(default_factory=dict)
    changed: dict[str, dict[str, AddressRecord | None]] = field(default_factory=dict)
    writer: dict[str, Incoming] = field(default_factory=dict)
    """Per changed route key, a message of its partition (to write the tables as)."""
    outputs: list[Output] = field(default_factory=list)


class Processor:
    def __init__(
        self,
        *,
        store: GroupStore,
        directory: TenantDirectory,
        clock: PartitionClock,
        send: Send,
        due: DueIndex,
        policy: rules.Policy,
        tables_written: Callable[[], Awaitable[None]] = _no_wait,
    ) -> None:
        self.store = store
        self.directory = directory
        self.clock = clock
        self.send = send
        self.tables_written = tables_written
        """Returns once Kafka acknowledged every table write made so far (the tables'
        changelogs; nothing to wait for with tables in memory)."""
        self.due = due
        self.policy = policy
        self.counts: Counter[str] = Counter()

    async def handle_batch(self, batch: Sequence[Incoming]) -> None:
        """Apply the messages in order; send every output and wait for Kafka's acknowledgement
        once; then write each changed key once, in steps (the module's docstring). The caller
        acknowledges the messages after."""
        work = _Batch()
        for incoming in batch:
            self._apply(work, incoming)
        if work.outputs:
            await self.send(work.outputs)
        store, writer, due = self.store, work.writer, self.due
        journals: list[_Write] = [
            (by, self._save_journal, (route_key, journaled, by.partition))
            for route_key, journaled in work.journals.items()
            if journaled.changed
            for by in [writer[route_key]]
        ]
        records: list[_Write] = []
        entries: list[_Write] = []
        gone: list[_Write] = []
        for route_key, changed in work.changed.items():
            by = writer[route_key]
            by.enter()
            staged = store.stage(route_key, changed)
            if staged.records:
                records.append((by, store.write_records, staged))
            if staged.has_entry:
                entries.append((by, store.write_entry, staged))
            if staged.gone:
                gone.append((by, store.write_gone, staged))
            for key, record in changed.items():
                due.update(key, record, route_key)
        await self._write_in_steps((journals, records, entries, gone))

    async def _write_in_steps(self, steps: Sequence[Sequence[_Write]]) -> None:
        """Make each step's writes (each as a message of its partition), and wait for Kafka to
        acknowledge them before the next step and at the end."""
        written = False
        for step in steps:
            if not step:
                continue
            if written:
                await self.tables_written()
            for incoming, write, what in step:
                incoming.enter()
                write(what)
            written = True
        if written:
            await self.tables_written()

    def _save_journal(self, what: tuple[str, JournalState, int]) -> None:
        route_key, journaled, partition = what
        journal = journaled.journal
        self.store.save_journal(
            route_key, journal, journaled.base if journaled.base_changed else None
        )
        self.due.update_journal(
            route_key,
            partition,
            journal.expires_at(self.policy.late_grace),
        )

    def _apply(self, work: _Batch, incoming: Incoming) -> None:
        try:
            message = decode(incoming.topic, incoming.value)
        except MessageDecodeError as exc:
            self._dead_letter(work, incoming, exc)
            return
        tenant = self.directory.tenant(message.tenant_id)
        settings = self.directory.settings(message.tenant_id)
        departed = tenant is None or settings is None
        if departed and isinstance(message, AFTER_DEPARTURE):
            # A removed tenant's records are still erased (offboarding erases them after the
            # tenant is gone, so that no new mail makes more): no setting decides an erasure.
            domain = parse_address(message.address).domain
            tenant = TenantConfig(tenant_id=message.tenant_id, name=message.tenant_id,
                                  event_time=message.event_time, domains=(domain,))  # fmt: skip
            settings = DiscoverySettings()
        if departed and isinstance(message, Tick):
            # The timer's tick for the journal of a tenant that left: only the journal goes.
            self._drop_journal(work, incoming, message.route_key())
            return
        if tenant is None or settings is None:
            self._dead_letter(
                work,
                incoming,
                LookupError(f"unknown tenant {message.tenant_id!r}: not on the tenants topic"),
            )
            return
        self.clock.observe(incoming.partition, message.event_time)
        route_key = message.route_key()
        try:
            group = work.groups.get(route_key)
            if group is None:
                incoming.enter()
                group = self.store.load(route_key)
            journaled = work.journals.get(route_key)
            if journaled is None:
                journaled = work.journals[route_key] = JournalState(
                    self.store.load_journal(route_key)
                )
            ctx = rules.Context(tenant, settings, self.policy)
            outcome = reorder.place(
                group,
                journaled,
                message,
                Entry(
                    micros(message.event_time),
                    message.event_id,
                    incoming.topic,
                    incoming.value or b"",
                ),
                ctx,
                load_base=partial(self.store.load_base, route_key),
                decode=_decode_entry,
            )
        except Exception as exc:  # a rule bug must not stop the partition: park the message
            log.exception(
                "rules failed on %s:%d@%d",
                incoming.topic,
                incoming.partition,
                incoming.offset,
                extra={"tenant": message.tenant_id, "event_id": message.event_id},
            )
            self._dead_letter(work, incoming, exc)
            return
        if departed:
            # Offboarding: no mail of the tenant will be applied again, so no erasure mark is
            # needed, and its group's journal goes with the rest of its data.
            journaled.drop()
        if journaled.changed:
            work.writer[route_key] = incoming
        self._outputs(work, outcome, incoming.partition)
        if outcome.records:
            work.groups[route_key] = reorder.applied(group, outcome.records)
            work.changed.setdefault(route_key, {}).update(outcome.records)
            work.writer[route_key] = incoming
        else:
            work.groups[route_key] = group
        self.counts[outcome.skipped or "applied"] += 1
        for change in outcome.changes:
            self.counts[f"transition:{change.reason}"] += 1
            if not log.isEnabledFor(logging.DEBUG):
                continue
            log.debug(
                "transition",
                extra={
                    "tenant": change.tenant_id,
                    "address": change.address,
                    "from_status": change.from_status.value if change.from_status else None,
                    "to_status": change.to_status.value if change.to_status else None,
                    "reason": change.reason,
                    "event_id": change.event_id,
                    "cause_event_id": message.event_id,
                },
            )

    def _drop_journal(self, work: _Batch, incoming: Incoming, route_key: str) -> None:
        state = work.journals.get(route_key)
        if state is None:
            incoming.enter()
            state = work.journals[route_key] = JournalState(self.store.load_journal(route_key))
        state.drop()
        if state.changed:
            work.writer[route_key] = incoming
        self.counts["journal_dropped"] += 1

    @staticmethod
    def _outputs(work: _Batch, outcome: rules.Outcome, partition: int) -> None:
        if not outcome.must_confirm:  # most messages: nothing to send
            return
        out = work.outputs
        for key, snapshot in outcome.snapshots():
            value = None if snapshot is None else encode(snapshot)
            # Keyed per address for compaction, placed on the route key's partition.
            out.append((ADDRESS_STATE, key.encode(), value, partition))
        for change in outcome.changes:
            out.append((STATE_CHANGES, change.kafka_key(), encode(change), None))
        for result in outcome.results:
            out.append((COMMAND_RESULTS, result.kafka_key(), encode(result), None))
        for message in outcome.messages:
            out.append((COMMANDS, message.kafka_key(), encode(message), None))

    def _dead_letter(self, work: _Batch, incoming: Incoming, error: Exception) -> None:
        self.counts["dead_letter"] += 1
        log.warning(
            "dead-lettering %s:%d@%d: %s",
            incoming.topic,
            incoming.partition,
            incoming.offset,
            error,
        )
        letter = dead_letter(
            component="streams",
            topic_name=incoming.topic,
            partition=incoming.partition,
            offset=incoming.offset,
            key=incoming.key,
            value=incoming.value,
            error=error,
        )
        work.outputs.append((DEAD_LETTER, incoming.key, encode(letter), None))
