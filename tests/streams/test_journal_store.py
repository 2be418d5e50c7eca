"""A journal stored one message per key: what is read back is what was written, appending
writes the new message alone, and nothing stale stays behind."""

from __future__ import annotations

import contextlib
from datetime import timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from smtp_discovery.streams.journal import Entry, encode_entry, from_micros
from smtp_discovery.streams.store import BASE_SUFFIX, GroupStore

ROUTE_KEY = "acme:alice"
GRACE = timedelta(days=2)
DAY = 86_400_000_000


class Table(dict[str, bytes]):
    """A table that counts the bytes written to it."""

    written = 0

    def __setitem__(self, key: str, value: bytes) -> None:
        self.written += len(value)
        super().__setitem__(key, value)


def _entry(at: int, serial: int) -> Entry:
    return Entry(at, f"e{serial}", "discovery.mail", b'{"n": %d}' % serial)


operations = st.lists(
    st.one_of(
        st.tuples(st.just("append"), st.integers(0, DAY)),
        st.tuples(st.just("late"), st.integers(0, DAY)),
        st.tuples(st.just("fold"), st.integers(2, 8)),
        st.tuples(st.just("restart"), st.integers(0, DAY)),
        st.tuples(st.just("drop"), st.just(0)),
        st.tuples(st.just("erase"), st.integers(0, 3)),
        st.tuples(st.just("save"), st.booleans()),
    ),
    max_size=40,
)


@given(operations)
@settings(max_examples=300, deadline=None)
def test_what_is_read_back_is_what_was_written(ops: list[tuple[str, int]]) -> None:
    table = Table()
    store = GroupStore({}, {}, table)
    journal = store.load_journal(ROUTE_KEY)
    newest = 0
    for serial, (op, value) in enumerate(ops):
        if op == "append":
            newest += value
            journal.add(_entry(newest, serial))
        elif op == "late":
            journal.add(_entry(max(0, newest - value), serial))
        elif op == "fold":
            journal.to_fold(GRACE, max_entries=value)
        elif op == "restart":
            newest += value
            journal = journal.succeed([_entry(newest, serial)])
        elif op == "drop":
            journal = journal.succeed([])
        elif op == "erase":  # an erasure: every other message kept, under new numbers
            journal = journal.succeed(journal.entries[value % 2 :: 2])
        else:
            store.save_journal(ROUTE_KEY, journal, {} if journal else None)
            if value:
                store.forget()
            journal = store.load_journal(ROUTE_KEY)
            fresh = GroupStore({}, {}, dict(table))
            assert fresh.load_journal(ROUTE_KEY).entries == journal.entries
            # Nothing stale: the head and one key per message, numbered from the head on.
            expected = (
                {ROUTE_KEY, *(f"{ROUTE_KEY}\x00{journal.first + i}" for i in range(len(journal)))}
                if journal
                else set()
            )
            assert set(table) == expected
            ends = dict(fresh.journal_ends())
            assert ends == ({ROUTE_KEY: from_micros(journal.newest)} if journal else {})


def test_appending_writes_the_new_message_alone_and_folding_only_moves_the_head() -> None:
    table = Table()
    store = GroupStore({}, {}, table)
    journal = store.load_journal(ROUTE_KEY)
    for serial in range(100):
        journal.add(_entry(serial, serial))
        folded = journal.to_fold(GRACE)
        before, head = table.written, journal.head
        store.save_journal(ROUTE_KEY, journal, None)
        head_written = 0 if journal.head == head else len(b"@%d" % journal.first)
        assert table.written - before == len(encode_entry(journal.entries[-1])) + head_written
        assert bool(folded) == (head is not None and head_written > 0)
    assert journal.first > 0  # it folded


class Crash(Exception):
    pass


class Crashing(Table):
    """Stops taking writes (and deletions) after ``allowed`` of them, as a killed worker."""

    allowed = 10**9

    def _step(self) -> None:
        if self.allowed == 0:
            raise Crash
        self.allowed -= 1

    def __setitem__(self, key: str, value: bytes) -> None:
        self._step()
        super().__setitem__(key, value)

    def pop(self, key: str, default: object = None) -> object:  # type: ignore[override]
        self._step()
        return super().pop(key, default)


@given(
    kept=st.integers(0, 6),
    added=st.lists(st.integers(-1, 14), min_size=1, max_size=4),
    restart=st.booleans(),
    allowed=st.integers(0, 12),
    again=st.integers(0, 12),
)
@settings(max_examples=500, deadline=None)
def test_a_crash_between_the_writes_leaves_the_old_journal_or_some_of_the_new(
    kept: int, added: list[int], restart: bool, allowed: int, again: int
) -> None:
    """Messages added (in order or late, among the old ones): the old journal, with some of
    the new messages in their places and none of its own lost or read twice. A journal started
    anew: the old journal or the new one, never a mix. The worker that takes over, appending a
    message and dying in its turn, loses none of the old ones either."""
    table = Crashing()
    store = GroupStore({}, {}, table)
    journal = store.load_journal(ROUTE_KEY)
    old = [_entry(2 * at, at) for at in range(kept)]  # even times; the new ones are odd
    for entry in old:
        journal.add(entry)
    store.save_journal(ROUTE_KEY, journal, None)
    new = [_entry(2 * at + 1, 100 + i) for i, at in enumerate(added)]
    if restart:
        journal = journal.succeed(sorted(new, key=lambda e: e.at))
    else:
        for entry in new:
            journal.add(entry)
    table.allowed = allowed
    with contextlib.suppress(Crash):
        store.save_journal(ROUTE_KEY, journal, None)
    read = GroupStore({}, {}, dict(table)).load_journal(ROUTE_KEY).entries
    if restart:
        assert read in (old, sorted(new, key=lambda e: e.at))
    else:
        assert set(old) <= set(read) <= set(old) | set(new)
        assert read == sorted(set(read), key=lambda e: (e.at, e.event_id))
        if table.allowed > 0:  # every write made: exactly the new journal
            assert read == journal.entries
    successor = GroupStore({}, {}, table)
    taken_over = successor.load_journal(ROUTE_KEY)
    taken_over.add(_entry(100, 999))
    table.allowed = again
    with contextlib.suppress(Crash):
        successor.save_journal(ROUTE_KEY, taken_over, None)
    assert set(old if not restart else ()) <= set(
        GroupStore({}, {}, dict(table)).load_journal(ROUTE_KEY).entries
    )


def test_a_journal_stored_whole_is_read_and_then_stored_a_message_a_key() -> None:
    """As the worker stored it before: every entry one after the other under the route key."""
    entries = [_entry(at, at) for at in (10, 20, 30)]
    table = Table({ROUTE_KEY: b"".join(encode_entry(e) for e in entries)})
    table[ROUTE_KEY + BASE_SUFFIX] = b""
    store = GroupStore({}, {}, table)
    assert dict(store.journal_ends()) == {ROUTE_KEY: from_micros(30)}
    journal = store.load_journal(ROUTE_KEY)
    assert journal.entries == entries
    journal.add(_entry(40, 40))
    store.save_journal(ROUTE_KEY, journal, None)
    assert table[ROUTE_KEY] == b"@0"
    assert GroupStore({}, {}, dict(table)).load_journal(ROUTE_KEY).entries == [
        *entries,
        _entry(40, 40),
    ]
    assert dict(store.journal_ends()) == {ROUTE_KEY: from_micros(40)}


def test_a_journal_stored_whole_goes_with_its_base() -> None:
    entries = [_entry(at, at) for at in (10, 20)]
    table = Table({ROUTE_KEY: b"".join(encode_entry(e) for e in entries)})
    table[ROUTE_KEY + BASE_SUFFIX] = b"acme:alice@a.example\t{}"
    store = GroupStore({}, {}, table)
    journal = store.load_journal(ROUTE_KEY)
    store.save_journal(ROUTE_KEY, journal.succeed([]), {})
    assert dict(table) == {}
