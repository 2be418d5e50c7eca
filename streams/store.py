"""Address records in Faust tables, loaded and saved a route-key group at a time.

Two tables, both written only while the worker processes a message of the group's partition:
``groups`` (route key -> its records) and ``records`` (record key -> AddressRecord JSON). Most
groups hold one address, and such a group's entry holds its record itself, inline
(``=<record key>\\t<JSON>``); a larger group's entry lists its record keys, one per line, and
each record is in ``records``. A message costs one write either way, and a group of one is one
changelog record to restore, not two (an index entry and a record). The form changes only when
an address joins or leaves a group. Entries written before inline records existed (every group
listed) are read as they are and take the inline form at their group's next write.

A third table, ``journal``, holds each group's recent messages and the group as it stood
before them (``streams.journal``):

* under ``<route key>\\0<n>``, the message numbered ``n``, in event-time order from the first
  number on, with no gap: appending a message writes that key alone;
* under the route key, the *head*: ``@<first number>``, written only when the first number
  changes (the journal starts, or its oldest messages are folded into the base);
* under the route key and ``BASE_SUFFIX``, the base (absent: no record).

A journal is read by its head and then its numbers upward until one is missing. A batch writes
a journal's entries first, then its base, its head, and deletions last: a crash between them
(the tables are written at least once, like the rest of the worker's state) leaves a journal
with every message it held and some of the batch's, which their redelivery finds as repeats.
The tables are three changelog topics, and a batch writes them in steps, the journal first
(``streams.processor``; ``GroupWrite`` says why the groups' own writes go in order).
A journal the worker stored whole under the route key, before entries had keys of their own,
is read as it is and stored the new way when it is next written.

Decoded groups are kept in a bounded cache, written through on every save: most mail goes to
addresses seen a moment ago, and decoding a record from JSON was the largest cost per message
(see bench/README.md). Only this worker's agent writes the tables of the partitions it owns, so
the cache can only go stale when ownership changes: the worker calls :meth:`GroupStore.forget`
on every rebalance.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, MutableMapping
from dataclasses import dataclass, field
from datetime import datetime
from operator import attrgetter

import msgspec

from smtp_discovery.schemas.state import AddressRecord, AddressStatus
from smtp_discovery.streams.journal import (
    Entry,
    Journal,
    decode_entries,
    encode_entry,
    entry_time,
    from_micros,
)

Group = dict[str, AddressRecord]

_WAITING = (AddressStatus.PENDING, AddressStatus.DISCOVERED)
_PENDING, _DISCOVERED = (f'"{status.value}"'.encode() for status in _WAITING)

BASE_SUFFIX = "\x00base"
"""Appended to a route key for its journal's base, in the ``journal`` table."""

_HEAD = b"@"
"""What a journal's head starts with; a journal stored whole starts with a digit."""

_INLINE = b"="
"""What a group index entry holding its one record starts with: ``=<record key>\\t<JSON>``."""

_WHOLE = -1
"""``Journal.head`` of a journal stored whole: a head to replace, whatever its first number."""

record_json: Callable[[AddressRecord], bytes] = AddressRecord.__pydantic_serializer__.to_json
"""A record's JSON, as ``model_dump_json`` writes it but as bytes, without that method's
wrapper: 3.7 against 4.6 µs for a record of 2 KB (a message to an address being discovered
writes one)."""

CACHED_JOURNALS = 20_000
"""Journals kept decoded: a few KB each (up to 64 raw messages), so at most some 100 MB in
practice; only groups with mail in the last grace period have one."""

CACHED_GROUPS = 100_000
"""Groups kept decoded; about 1.5 KB each, so the default costs some 150 MB at most."""


def _members(raw: bytes | None) -> list[str]:
    if raw is None:
        return []
    if raw[:1] == b"[":  # written as JSON before the one-per-line encoding
        return json.loads(raw)
    return raw.decode("utf-8").split("\n")


class GroupStore:
    def __init__(
        self,
        records: MutableMapping[str, bytes],
        groups: MutableMapping[str, bytes],
        journal: MutableMapping[str, bytes] | None = None,
        *,
        cached_groups: int = CACHED_GROUPS,
    ) -> None:
        self.records = records
        self.groups = groups
        self.journal: MutableMapping[str, bytes] = {} if journal is None else journal
        self.cached_groups = cached_groups
        self._cache: dict[str, Group] = {}
        self._journals: dict[str, Journal] = {}
        """Decoded journals, kept like the groups (and forgotten with them)."""
        self._inline: set[str] = set()
        """Cached groups stored inline (a group of one, in its index entry)."""
        self.misses = 0
        """Groups read from the tables (decoded) rather than the cache, for the metrics."""

    def forget(self) -> None:
        """Drop every cached group: the partitions this worker owns may have changed."""
        self._cache.clear()
        self._journals.clear()
        self._inline.clear()

    def load(self, route_key: str) -> Group:
        """The group's records (a read-only view: callers copy before they change it)."""
        group = self._take(route_key)
        self._remember(route_key, group)
        return group

    def _take(self, route_key: str) -> Group:
        """The group, out of the cache (or read): the caller remembers it, or what replaces it."""
        cached = self._cache.pop(route_key, None)
        if cached is None:
            self.misses += 1
            cached = self._read(route_key)
        return cached

    def _read(self, route_key: str) -> Group:
        raw = self.groups.get(route_key)
        if raw is None:
            return {}
        inline = _inline_record(raw)
        if inline is not None:
            key, value = inline
            self._inline.add(route_key)
            return {key: AddressRecord.model_validate_json(value)}
        self._inline.discard(route_key)
        group = {}
        for key in _members(raw):
            value = self.records.get(key)
            if value is not None:
                group[key] = AddressRecord.model_validate_json(value)
        return group

    def save(self, route_key: str, changed: dict[str, AddressRecord | None]) -> None:
        """Write the changed records at once (a batch writes them by table instead,
        :meth:`stage`)."""
        write = self.stage(route_key, changed)
        self.write_records(write)
        self.write_entry(write)
        self.write_gone(write)

    def stage(self, route_key: str, changed: dict[str, AddressRecord | None]) -> GroupWrite:
        """What writing the changed records takes: a group of one inline in its index entry, a
        larger group as the list of its members and a record each. Nothing is written yet
        (``write_records``, ``write_entry``, ``write_gone``, in that order); the cache holds the
        new group at once."""
        write = GroupWrite(route_key)
        if not changed:
            return write
        group = dict(self._take(route_key))
        before = list(group)
        was_inline = route_key in self._inline
        for key, record in changed.items():
            if record is None:
                group.pop(key, None)
            else:
                group[key] = record
        members = list(group)
        listed = [] if was_inline else before
        if len(members) == 1:
            (key,) = members
            if key in changed or not was_inline:
                write.entry = inline_entry(key, record_json(group[key]))
            self._inline.add(route_key)
            write.gone = listed  # moved inline, or removed
        else:
            self._inline.discard(route_key)
            written = set(changed) if not was_inline else set(members)
            for key in members:
                if key in written:
                    write.records[key] = record_json(group[key])
            write.gone = [key for key in listed if key not in group]
            if not members:
                write.drop_entry = bool(before)
            elif members != before or was_inline:
                write.entry = "\n".join(members).encode("utf-8")
        # A removal the group no longer shows (its entry was written, the record's deletion
        # lost in a crash) is made again: an erased address leaves no record behind.
        write.gone += [
            key
            for key, record in changed.items()
            if record is None and key not in before and key not in write.gone
        ]
        self._remember(route_key, group)
        return write

    def write_records(self, write: GroupWrite) -> None:
        """The records of a larger group's changed members (first: an entry may list them)."""
        for key, value in write.records.items():
            self.records[key] = value

    def write_entry(self, write: GroupWrite) -> None:
        """The group's index entry (after the records it lists)."""
        if write.entry is not None:
            self.groups[write.route_key] = write.entry
        elif write.drop_entry:
            self.groups.pop(write.route_key, None)

    def write_gone(self, write: GroupWrite) -> None:
        """The records the entry no longer lists (last: until the entry is written, it may
        still list them)."""
        for key in write.gone:
            self.records.pop(key, None)

    def load_journal(self, route_key: str) -> Journal:
        """The group's journal (callers may change it: the worker writes it back, or stops)."""
        cache = self._journals
        journal = cache.pop(route_key, None)
        if journal is None:
            journal = self._read_journal(route_key)
        cache[route_key] = journal
        if len(cache) > CACHED_JOURNALS:
            del cache[next(iter(cache))]
        return journal

    def _read_journal(self, route_key: str) -> Journal:
        head = self.journal.get(route_key)
        if head is None:
            return Journal()
        if not head.startswith(_HEAD):  # stored whole: written the new way next time
            return Journal(decode_entries(head), head=_WHOLE)
        first = number = int(head[1:])
        entries: list[Entry] = []
        seen: set[Entry] = set()
        in_place = True
        while (raw := self.journal.get(_entry_key(route_key, number))) is not None:
            for entry in decode_entries(raw):
                if entry in seen or (entries and entry.at < entries[-1].at):
                    in_place = False
                    if entry in seen:
                        continue
                seen.add(entry)
                entries.append(entry)
            number += 1
        journal = Journal(
            entries, first=first, clean=len(entries), stored=range(first, number), head=first
        )
        if in_place:
            return journal
        # A crash while the messages after a late one moved up a number (``save_journal``):
        # each old message is still there, some twice or out of place. Read once each, in
        # order (the sort keeps ties as stored), and stored anew at the next save, past a gap
        # (``Journal.succeed``), so that a crash then leaves this journal or the new one.
        entries.sort(key=attrgetter("at"))
        return journal.succeed(entries)

    def load_base(self, route_key: str) -> Group:
        """The group before its journal's first message."""
        raw = self.journal.get(route_key + BASE_SUFFIX)
        base: Group = {}
        for line in raw.split(b"\n") if raw else ():
            key, _, value = line.partition(b"\t")
            base[key.decode("utf-8")] = AddressRecord.model_validate_json(value)
        return base

    def save_journal(self, route_key: str, journal: Journal, base: Group | None) -> None:
        """Write what changed of the journal, and its base when given (``None``: the base is
        unchanged). An empty journal goes with its base."""
        table = self.journal
        # With no head stored, nothing of the group is (most journals start from nothing, and
        # a deletion that finds no key is a table lookup and an exception, for nothing).
        stored = journal.head is not None
        if not journal:
            self._journals.pop(route_key, None)
            if stored:
                for number in journal.stored:
                    table.pop(_entry_key(route_key, number), None)
                table.pop(route_key, None)
                table.pop(route_key + BASE_SUFFIX, None)
            return
        self._journals[route_key] = journal
        first, entries, held = journal.first, journal.entries, journal.stored
        changed = range(first + journal.clean, first + len(entries))
        # New numbers upward, then those rewritten downward (the messages after a late one
        # move up): until a number is rewritten, the message it held is already at its new
        # number, so a crash in between leaves every old message readable, with some of the
        # new ones (``_read_journal`` reads a message stored twice once, in its place).
        # Most saves append past every number held, which rewrites none.
        numbers: Iterable[int] = (
            changed
            if changed.start >= held.stop or changed.stop <= held.start
            else (
                *(n for n in changed if n not in held),
                *(n for n in reversed(changed) if n in held),
            )
        )
        for number in numbers:
            table[_entry_key(route_key, number)] = encode_entry(entries[number - first])
        if base is not None:
            if base:
                table[route_key + BASE_SUFFIX] = b"\n".join(
                    key.encode("utf-8") + b"\t" + record_json(record)
                    for key, record in base.items()
                )
            elif stored:
                table.pop(route_key + BASE_SUFFIX, None)
        if journal.head != first:
            table[route_key] = b"%s%d" % (_HEAD, first)
        kept = range(first, first + len(entries))
        # The numbers held that are not kept: below the first kept, and past the last.
        for number in (
            *range(held.start, min(held.stop, kept.start)),
            *range(max(held.start, kept.stop), held.stop),
        ):
            table.pop(_entry_key(route_key, number), None)
        journal.clean, journal.stored, journal.head = len(entries), kept, first

    def journal_ends(self) -> Iterator[tuple[str, datetime]]:
        """(route key, its journal's newest event time), for the timer's index: read from the
        entries' headers, with no message decoded."""
        newest: dict[str, int] = {}
        for key, raw in _whole(self.journal):
            route_key, separator, suffix = key.partition("\x00")
            if separator:
                if suffix.isdigit():
                    at = entry_time(raw)
                    if at > newest.get(route_key, -1):
                        newest[route_key] = at
            elif not raw.startswith(_HEAD) and raw:
                newest[route_key] = max(entry.at for entry in decode_entries(raw))
        for route_key, at in newest.items():
            yield route_key, from_micros(at)

    def _remember(self, route_key: str, group: Group) -> None:
        """Most recently used last; the least recently used goes when the cache is full."""
        cache = self._cache
        cache[route_key] = group
        if len(cache) > self.cached_groups:
            oldest = next(iter(cache))
            del cache[oldest]
            self._inline.discard(oldest)

    def waiting(self) -> Iterator[tuple[str, str, WaitingFields]]:
        """(route key, record key, record) of the pending and discovered records: what the
        due index holds. The route key comes with them so that the index need not parse each
        address again to find its partition (that was two fifths of rebuilding it).

        Only those are decoded. A record whose JSON holds neither string value ``"pending"``
        nor ``"discovered"`` cannot have either status (no other field takes those values, and
        a name that happens to is merely decoded and dropped): in a provider's steady state most
        records are users, and decoding every record made rebuilding the index after a
        rebalance take longer than restoring the tables.
        """
        for route_key, key, raw in self._stored_records():
            if _PENDING in raw or _DISCOVERED in raw:
                record = _read_waiting(raw)
                if record.status in _WAITING:
                    yield route_key, key, record

    def _stored_records(self) -> Iterator[tuple[str, str, bytes]]:
        """(route key, record key, JSON) of every record a group holds: inline in its index
        entry, or listed there and in the records table. A record no entry lists (a batch's
        write cut short between its steps) belongs to no group until its batch is applied
        again, and a tick could not find it either."""
        records = self.records
        for route_key, raw in _whole(self.groups):
            inline = _inline_record(raw)
            if inline is not None:
                yield route_key, inline[0], inline[1]
                continue
            for key in _members(raw):
                value = records.get(key)
                if value is not None:
                    yield route_key, key, value


@dataclass(slots=True)
class GroupWrite:
    """One group's save, by table. The tables' changelogs are separate topics, and a worker
    killed between two writes may leave any of them behind the others, so a batch writes each
    part only once what it depends on is acknowledged (``streams.processor``): the records of a
    larger group before an entry that lists them, the entry before the deletion of a record it
    no longer lists. Otherwise a group that grows from one address to two could be restored as
    a list whose records were lost, and one that shrinks as a list of deleted records."""

    route_key: str
    records: dict[str, bytes] = field(default_factory=dict)
    """Records of a larger group to write."""
    entry: bytes | None = None
    """The group's new index entry (None: unchanged, or removed with ``drop_entry``)."""
    drop_entry: bool = False
    gone: list[str] = field(default_factory=list)
    """Records to delete."""

    @property
    def has_entry(self) -> bool:
        return self.entry is not None or self.drop_entry


class WaitingFields(msgspec.Struct, frozen=True):
    """The fields of a stored record the timer's index reads (``DueIndex.update``), decoded
    alone: the others (the day counts, the event ids) are most of a record's bytes, and
    decoding them made rebuilding the index after a rebalance cost as much as restoring the
    tables. Only records this worker wrote (``AddressRecord.model_dump_json``) are read, so
    the contract's checks were made when they were written; the defaults are the contract's,
    and a test holds the two decodings equal."""

    tenant_id: str
    address: str
    status: AddressStatus
    status_since: datetime
    version: int = 1
    discovered_at: datetime | None = None
    last_seen: datetime | None = None


_read_waiting = msgspec.json.Decoder(WaitingFields).decode


def _whole(table: MutableMapping[str, bytes]) -> Iterable[tuple[str, bytes]]:
    """Every key and value of ``table``: read straight from the store where the table can
    (``changelog.AcknowledgedTable.stored_items``), a plain mapping as it is."""
    stored_items = getattr(table, "stored_items", None)
    return stored_items() if stored_items is not None else table.items()


def inline_entry(key: str, record: bytes) -> bytes:
    """A group of one's entry in the ``groups`` table: its record (JSON), inline."""
    return b"%s%s\t%s" % (_INLINE, key.encode("utf-8"), record)


def _inline_record(raw: bytes) -> tuple[str, bytes] | None:
    """(record key, record JSON) of an inline entry; None for a member list."""
    if not raw.startswith(_INLINE):
        return None
    key, _, value = raw[1:].partition(b"\t")
    return key.decode("utf-8"), value


def _entry_key(route_key: str, number: int) -> str:
    return f"{route_key}\x00{number}"
