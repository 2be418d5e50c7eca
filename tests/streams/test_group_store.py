"""Groups stored as the worker writes them: a group of one inline in its index entry, a larger
group as its member list and a record each. Whatever the sequence of writes, cache drops and
the layout an earlier version left, what is read back is what was written, and nothing stale
stays in either table."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from smtp_discovery.schemas.state import AddressRecord, AddressStatus
from smtp_discovery.streams.store import GroupStore

T0 = datetime(2026, 3, 2, 9, tzinfo=UTC)
ROUTE_KEYS = ("acme:alice", "acme:bob")
ADDRESSES = {rk: [f"{rk[5:]}{tag}@a.example" for tag in ("", "+x", "+y")] for rk in ROUTE_KEYS}
STATUSES = (AddressStatus.PENDING, AddressStatus.USER, AddressStatus.DISCOVERED)


def _record(address: str, status: AddressStatus, version: int) -> AddressRecord:
    return AddressRecord(
        tenant_id="acme",
        address=address,
        status=status,
        status_since=T0,
        status_reason="verified",
        version=version,
        discovered_at=T0 if status is AddressStatus.DISCOVERED else None,
    )


def _key(address: str) -> str:
    return f"acme:{address}"


writes = st.lists(
    st.tuples(
        st.sampled_from(ROUTE_KEYS),
        st.dictionaries(
            st.integers(0, 2), st.one_of(st.none(), st.sampled_from(STATUSES)), min_size=1
        ),
        st.booleans(),  # forget the cache after the write
    ),
    max_size=25,
)


@given(
    earlier=st.dictionaries(st.sampled_from(ROUTE_KEYS), st.sets(st.integers(0, 2), min_size=1)),
    writes=writes,
)
@settings(max_examples=300, deadline=None)
def test_what_is_read_back_is_what_was_written_and_nothing_stale_stays(
    earlier: dict[str, set[int]], writes: list[tuple[str, dict[int, AddressStatus | None], bool]]
) -> None:
    records: dict[str, bytes] = {}
    groups: dict[str, bytes] = {}
    expected: dict[str, dict[str, AddressRecord]] = {rk: {} for rk in ROUTE_KEYS}
    # The layout an earlier version left: every group listed, its records in the records table.
    for rk, members in earlier.items():
        keys = [_key(ADDRESSES[rk][i]) for i in sorted(members)]
        groups[rk] = "\n".join(keys).encode()
        for i in sorted(members):
            record = _record(ADDRESSES[rk][i], AddressStatus.PENDING, 1)
            records[_key(record.address)] = record.model_dump_json().encode()
            expected[rk][_key(record.address)] = record
    store = GroupStore(records, groups)
    untouched = set(earlier)  # listed the earlier way until their group is next written
    for version, (rk, change, forget) in enumerate(writes, start=2):
        changed = {
            _key(ADDRESSES[rk][i]): None
            if status is None
            else _record(ADDRESSES[rk][i], status, version)
            for i, status in change.items()
        }
        store.save(rk, changed)
        untouched.discard(rk)
        for key, record in changed.items():
            if record is None:
                expected[rk].pop(key, None)
            else:
                expected[rk][key] = record
        if forget:
            store.forget()
        fresh = GroupStore(dict(records), dict(groups))
        for route_key in ROUTE_KEYS:
            assert fresh.load(route_key) == expected[route_key]
            assert store.load(route_key) == expected[route_key]
        # Nothing stale: the records table holds the records of groups of two or more (and
        # those of groups the earlier version listed, until they are next written).
        listed = {
            key
            for rk, group in expected.items()
            if len(group) > 1 or rk in untouched
            for key in group
        }
        assert set(records) == listed
        assert set(groups) == {rk for rk, group in expected.items() if group}
        waiting = {
            key: (rk, record.status)
            for rk, group in expected.items()
            for key, record in group.items()
            if record.status in (AddressStatus.PENDING, AddressStatus.DISCOVERED)
        }
        assert {key: (rk, fields.status) for rk, key, fields in fresh.waiting()} == waiting
