"""A batch's columns as an Arrow table: the form the sink hands ClickHouse.

clickhouse-connect's column-oriented insert turns Python values into ClickHouse's Native format
in Python, value by value (a ``datetime`` into ticks, each LowCardinality column into a
dictionary): most of a 10,000-row insert's time, and all of it inside the embedded engine's
lock, which the sink's other statements wait for. pyarrow builds the same columns in C++ (it
comes with chDB), and ClickHouse reads Arrow as fast as Native: building and inserting 10,000
state changes took 27 ms against 40 for the Native insert, of which 18 in the engine
(``bench/README.md``, "Where the sink's time goes").

Each ClickHouse type of the analytics schema has one Arrow type here, which ClickHouse reads
into the column unchanged: text for ``String`` and ``LowCardinality(String)``, milliseconds in
UTC for ``DateTime64(3, 'UTC')`` (a finer time is cut to its millisecond, as
clickhouse-connect cuts it), the same unsigned widths. ``tests/sinks/test_arrow.py`` stores
the same columns both ways and compares every row.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pyarrow as pa

_TYPES: dict[str, pa.DataType] = {
    "String": pa.string(),
    "LowCardinality(String)": pa.string(),
    "Array(String)": pa.list_(pa.string()),
    "DateTime64(3, 'UTC')": pa.timestamp("ms", tz="UTC"),
    "UInt8": pa.uint8(),
    "UInt16": pa.uint16(),
    "UInt32": pa.uint32(),
    "UInt64": pa.uint64(),
    "Float32": pa.float32(),
}


def arrow_type(clickhouse_type: str) -> pa.DataType:
    """The Arrow type of a column of the analytics schema (``Nullable(T)``: T's, with nulls)."""
    if clickhouse_type.startswith("Nullable(") and clickhouse_type.endswith(")"):
        return arrow_type(clickhouse_type[len("Nullable(") : -1])
    try:
        return _TYPES[clickhouse_type]
    except KeyError:
        raise ValueError(f"no Arrow type for the column type {clickhouse_type!r}") from None


def arrow_schema(columns: Sequence[str]) -> pa.Schema:
    """The Arrow schema of a table's column definitions (``"name Type"``, as in ``schema``)."""
    fields = []
    for column in columns:
        name, clickhouse_type = column.split(" ", 1)
        fields.append(pa.field(name, arrow_type(clickhouse_type)))
    return pa.schema(fields)


def arrow_table(schema: pa.Schema, columns: Sequence[Sequence[Any]]) -> pa.Table:
    """The columns (in the schema's order) as an Arrow table of that schema."""
    return pa.Table.from_arrays(
        [pa.array(values, type=field.type) for values, field in zip(columns, schema, strict=True)],
        schema=schema,
    )
