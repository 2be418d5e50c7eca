"""A route-key group's recent messages, so that a late one can be put in its event-time place.

Mail reaches the worker out of order: an ingest node's spool sends what it held during a Kafka
outage, and producers retry. Within the grace period the outcome must be what processing in
event-time order gives, for every kind of message (a rejection, a command, a delivery ...), and
that order is a property of the whole group, not of one record: a rejection removes a record,
a delivery re-creates it, an alias is detected against its neighbours.

So the worker keeps, per group, the *journal*: the messages of the last grace period in
event-time order, as they arrived (the raw value and its topic, decoded again only when
needed), and the *base*: the group as it stood before the journal's first message. A message in
order is applied to the group as it is and appended. A late one (older than the journal's
newest) is applied by replaying the base through the journal with the late message in its place
(``streams.reorder``). A redelivered message the journal holds changes nothing: the group is
brought to the base replayed through the journal, which it already is unless its worker died
between writing the journal and the group.

Bounded in time and size:

* a message more than the grace period newer than every message of the journal starts it anew
  (no message that may still arrive can precede them), with the group as it is for base;
* the worker's timer drops a journal whose newest message is older than the grace period
  (``expires_at``), so the raw messages are kept no longer than that;
* past ``MAX_ENTRIES`` (a mailbox with a lot of mail), the oldest messages are folded into the
  base: first those already past the grace period, then, if still too many, the oldest. A late
  message older than what the journal still holds is then applied where the journal starts.

Each message is stored under a key of its own, numbered in event-time order (``streams.store``):
appending a message writes it alone, not the journal again. When the whole journal was one
value, each message rewrote up to 64 (4.5 KB a message where 350 B now do).

Pure: bytes in, bytes out; no Faust, no Kafka.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import NamedTuple

MARKS = "erased"
"""The topic name of an erasure mark (``streams.reorder.erasure_mark``): no message, no value."""

MAX_ENTRIES = 64
"""Most messages a journal holds; folding brings it back to half of this."""

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def micros(at: datetime) -> int:
    """Microseconds since the epoch: the journal's (exact, sortable) event time."""
    return (at - _EPOCH) // timedelta(microseconds=1)


def from_micros(value: int) -> datetime:
    return _EPOCH + timedelta(microseconds=value)


class Entry(NamedTuple):
    """One message as it arrived: decoded again (with the same contract) only for a replay.

    A named tuple, like the other small values the worker makes for every message (the due
    index's ``Waiting``, ``rules.Context``): as immutable and hashable as a frozen dataclass,
    whose ``__init__`` sets each field through ``object.__setattr__`` (1.4 against 0.6 us for
    eight fields; the three together were 4% of a discovering message's processing)."""

    at: int
    """Event time, microseconds since the epoch."""
    event_id: str
    topic: str
    """The topic's name in the registry (``schemas.topics``), for ``codec.decode``."""
    value: bytes


@dataclass
class Journal:
    """The messages of one group since its base, in event-time order (arrival order on ties).

    Stored one entry per table key (``streams.store``), numbered in order, so that appending
    a message writes that message alone. The numbering below says which entries the store
    holds already; it is the store's bookkeeping, and no rule reads it."""

    entries: list[Entry] = field(default_factory=list)
    first: int = field(default=0, compare=False)
    """The number of ``entries[0]`` in the store; a fold moves it on."""
    clean: int = field(default=0, compare=False)
    """``entries[:clean]`` are stored, unchanged, under their numbers."""
    stored: range = field(default=range(0), compare=False)
    """The numbers the store holds for this group, whichever journal wrote them."""
    head: int | None = field(default=None, compare=False)
    """The first number as the store's head records it (None: no head stored)."""
    _ids: set[str] | None = field(default=None, repr=False, compare=False)
    _marks: dict[str, int] | None = field(default=None, repr=False, compare=False)
    """Erasure marks (entries of topic ``MARKS``): the mark, and when."""

    def __len__(self) -> int:
        return len(self.entries)

    def succeed(self, entries: list[Entry]) -> Journal:
        """A journal that takes this one's place in the store, with ``entries``. It is numbered
        from one past the stored numbers, leaving a gap: until its head is written, the old
        head reads the old journal alone, so a crash between the writes leaves one journal or
        the other, never a mix. The store deletes the old keys after the new head."""
        first = self.stored.stop + 1 if self.stored else 0
        return Journal(entries, first=first, stored=self.stored, head=self.head)

    def copy(self) -> Journal:
        """The same entries and bookkeeping, to change without changing this one."""
        return Journal(
            list(self.entries),
            first=self.first,
            clean=self.clean,
            stored=self.stored,
            head=self.head,
        )

    @property
    def newest(self) -> int | None:
        return self.entries[-1].at if self.entries else None

    @property
    def oldest(self) -> int | None:
        return self.entries[0].at if self.entries else None

    def holds(self, event_id: str) -> bool:
        if self._ids is None:
            self._ids = {entry.event_id for entry in self.entries}
        return event_id in self._ids

    def erased_after(self, mark: Callable[[], str], at: int) -> bool:
        """An erasure mark no earlier than ``at`` stands for the message's address (``mark``
        is worked out only if the journal holds a mark). The mark is as late as the latest
        message it erased, which may be delivered again (its offset was not committed when its
        worker died): it must not bring the address back."""
        if self._marks is None:
            self._marks = {e.event_id: e.at for e in self.entries if e.topic == MARKS}
        if not self._marks:
            return False
        erased = self._marks.get(mark())
        return erased is not None and erased >= at

    def is_late(self, at: int) -> bool:
        """Older than a message the journal holds: its outcome needs a replay."""
        newest = self.newest
        return newest is not None and at < newest

    def beyond_grace(self, at: int, grace: timedelta) -> bool:
        """Older than the grace period before the newest message held: too late to place (the
        rules judge it as late)."""
        newest = self.newest
        return newest is not None and at < newest - grace // timedelta(microseconds=1)

    def starts_anew(self, at: int, grace: timedelta) -> bool:
        """Every message held is at least the grace period older than ``at``: none that may
        still arrive can precede them, so the group as it is can be the base."""
        newest = self.newest
        return newest is not None and newest <= at - grace // timedelta(microseconds=1)

    def add(self, entry: Entry) -> int:
        """Insert in event-time order, after any message of the same time; returns its place.
        The entries from there on are numbered anew (appending renumbers nothing)."""
        entries = self.entries
        if not entries or entries[-1].at <= entry.at:
            place = len(entries)
        else:
            place = bisect.bisect_right([e.at for e in entries], entry.at)
        entries.insert(place, entry)
        self.clean = min(self.clean, place)
        if self._ids is not None:
            self._ids.add(entry.event_id)
        if entry.topic == MARKS:
            self._marks = None
        return place

    def to_fold(self, grace: timedelta, max_entries: int = MAX_ENTRIES) -> list[Entry]:
        """The oldest messages to move into the base (and remove) when the journal is over
        ``max_entries``: those past the grace period, and more down to half the maximum."""
        if len(self.entries) <= max_entries:
            return []
        assert self.newest is not None
        horizon = self.newest - grace // timedelta(microseconds=1)
        past = bisect.bisect_left([e.at for e in self.entries], horizon)
        count = max(past, len(self.entries) - max_entries // 2)
        folded, self.entries = self.entries[:count], self.entries[count:]
        self.first += count
        self.clean = max(0, self.clean - count)
        self._ids = self._marks = None
        return folded

    def expires_at(self, grace: timedelta) -> datetime | None:
        """When the journal is of no more use: the grace period after its newest message."""
        newest = self.newest
        return None if newest is None else from_micros(newest) + grace


def decode_entries(raw: bytes) -> list[Entry]:
    """The entries of ``raw``: one (a stored entry), or several one after the other (a journal
    stored whole, as the worker did before entries had keys of their own)."""
    entries: list[Entry] = []
    view = memoryview(raw)
    position = 0
    while position < len(raw):
        end = raw.index(b"\n", position)
        at, event_id, topic, length = raw[position:end].split(b" ")
        start = end + 1
        stop = start + int(length)
        entries.append(Entry(int(at), event_id.decode(), topic.decode(), bytes(view[start:stop])))
        position = stop
    return entries


def entry_time(raw: bytes) -> int:
    """A stored entry's event time, read from its header alone."""
    return int(raw[: raw.index(b" ")])


def encode_entry(entry: Entry) -> bytes:
    """A header line ``<at> <event id> <topic> <length>`` and the value's bytes: no escaping,
    and the header alone says where the value ends."""
    header = b"%d %s %s %d\n" % (
        entry.at,
        entry.event_id.encode(),
        entry.topic.encode(),
        len(entry.value),
    )
    return header + entry.value
