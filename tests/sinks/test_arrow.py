"""The sink's Arrow inserts store exactly the rows clickhouse-connect's Native inserts store: for
every table, on the contract samples, and on fuzzed values at the edges of each column type."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from smtp_discovery.schemas.mail import MailEventBase
from smtp_discovery.schemas.state import AddressStateSnapshot, StateChange
from smtp_discovery.schemas.tenant import ProviderDefaults, TenantConfig
from smtp_discovery.schemas.topics import ADDRESS_STATE, MAIL, STATE_CHANGES, TENANTS
from smtp_discovery.sinks.arrow import arrow_type
from smtp_discovery.sinks.columns import SOURCES, Columns, Source
from smtp_discovery.sinks.migrate import migrate
from smtp_discovery.sinks.schema import Layout
from tests.schemas.samples import SAMPLES

AT = datetime(2026, 3, 4, 5, 6, 7, 891234, tzinfo=UTC)
"""The batch's ingestion time: finer than a millisecond, as the clock gives it."""

KINDS: dict[str, tuple[type[BaseModel], ...]] = {
    STATE_CHANGES: (StateChange,),
    ADDRESS_STATE: (AddressStateSnapshot,),
    MAIL: (MailEventBase,),
    TENANTS: (TenantConfig, ProviderDefaults),
}


@pytest.fixture(scope="module")
def layouts(clickhouse: Any) -> tuple[Layout, Layout]:
    native, arrow = Layout("arrow_native"), Layout("arrow_arrow")
    for layout in (native, arrow):
        migrate(clickhouse, layout)
        # The fuzzed mail is of any time: kept, to be compared, whatever the retention says.
        clickhouse.command(f"ALTER TABLE {layout.name('mail_events')} REMOVE TTL")
    return native, arrow


def stored_both_ways(
    client: Any, layouts: tuple[Layout, Layout], source: Source, columns: Columns
) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """The rows of ``columns`` as a Native insert stores them, and as the sink's Arrow insert
    does (each in a table of its own, emptied first)."""
    native, arrow = (layout.name(source.table) for layout in layouts)
    for table in (native, arrow):
        client.command(f"TRUNCATE TABLE {table}")
    # Not deduplicated: a block may repeat one of an earlier example (they are all stored).
    once = {"insert_deduplicate": 0}
    client.insert(native, columns, column_names=list(source.columns), column_oriented=True,
                  settings=once)  # fmt: skip
    client.insert_arrow(arrow, source.arrow(columns), settings=once)
    order = "ORDER BY kafka_offset"
    return (
        client.query(f"SELECT * FROM {native} {order}").result_rows,
        client.query(f"SELECT * FROM {arrow} {order}").result_rows,
    )


@pytest.mark.parametrize("topic", list(KINDS))
def test_the_contract_samples_are_stored_alike(
    clickhouse: Any, layouts: tuple[Layout, Layout], topic: str
) -> None:
    source = SOURCES[topic]
    taken = source.taken(3)
    samples = [s for s in SAMPLES if isinstance(s, KINDS[topic])]
    assert samples, topic
    for offset, sample in enumerate(samples):
        taken.add(sample.kafka_key(), sample, offset)  # type: ignore[attr-defined]
    if topic in (ADDRESS_STATE, TENANTS):
        taken.add(b"t1:gone@t1.example", None, len(samples))  # a tombstone
    native, arrow = stored_both_ways(clickhouse, layouts, source, taken.to_columns(AT))
    assert len(native) == len(taken)
    assert arrow == native


TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)
"""Any text a JSON value can carry as UTF-8 (no lone surrogates)."""
TIMES = st.datetimes(
    min_value=datetime(1900, 1, 1), max_value=datetime(2262, 4, 11), timezones=st.just(UTC)
)
"""Within what ClickHouse's DateTime64(3) and Arrow's milliseconds both hold."""
STATE_CHANGE_ROW = st.tuples(
    TEXT, TEXT, TEXT, TEXT, TEXT, TEXT, TEXT, TEXT, TEXT,
    st.integers(0, 2**64 - 1),
    st.lists(TEXT, max_size=3),
    TIMES,
)  # fmt: skip
MAIL_ROW = st.tuples(
    TEXT, TEXT, TEXT, TEXT, TIMES, TEXT, TEXT,
    st.integers(0, 2**16 - 1),
    TEXT, TEXT,
    st.integers(0, 1),
    TEXT,
    st.integers(0, 2**64 - 1),
    st.integers(0, 2**32 - 1),
    st.floats(0, 1e9),  # a latency, as the contract's float, rounded to the column's Float32
)  # fmt: skip
SNAPSHOT_ROW = st.tuples(
    TEXT, TEXT, TEXT, TEXT, TEXT, TEXT, TEXT, TEXT, TIMES, TEXT,
    st.none() | TIMES,
    TEXT,
    st.lists(TEXT, max_size=3),
    st.integers(0, 2**64 - 1),
    st.integers(0, 1),
)  # fmt: skip


@pytest.mark.parametrize(
    ("topic", "rows"),
    [(STATE_CHANGES, STATE_CHANGE_ROW), (MAIL, MAIL_ROW), (ADDRESS_STATE, SNAPSHOT_ROW)],
)
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow,
          HealthCheck.function_scoped_fixture])  # fmt: skip
@given(data=st.data())
def test_any_value_of_each_column_type_is_stored_alike(
    clickhouse: Any, layouts: tuple[Layout, Layout], topic: str, rows: Any, data: Any
) -> None:
    source = SOURCES[topic]
    drawn = data.draw(st.lists(rows, min_size=1, max_size=30))
    taken = source.taken(2**16 - 1)
    for offset, row in enumerate(drawn):
        for column, value in zip(taken.columns, row, strict=True):
            column.append(value)
        taken.offsets.append(2**64 - 1 - offset)
    if topic == ADDRESS_STATE:
        # One row per record key: two of a key are one address's versions, which merge.
        record_keys = taken.columns[source.columns.index("record_key")]
        record_keys[:] = [f"{n}:{key}" for n, key in enumerate(record_keys)]
    native, arrow = stored_both_ways(clickhouse, layouts, source, taken.to_columns(AT))
    assert len(native) == len(drawn)
    assert arrow == native


def test_a_column_type_with_no_arrow_type_is_named() -> None:
    assert arrow_type("Nullable(UInt16)") == arrow_type("UInt16")
    with pytest.raises(ValueError, match=r"Decimal\(9, 2\)"):
        arrow_type("Decimal(9, 2)")
