from __future__ import annotations

from pathlib import Path

import pytest

from smtp_discovery.ingest.spool import Spool, SpoolFull, SpoolRecord


def records(n: int, start: int = 0) -> list[SpoolRecord]:
    return [
        SpoolRecord("discovery.mail", f"k{i}".encode(), f"v{i}".encode())
        for i in range(start, start + n)
    ]


def test_records_come_back_in_order_and_survive_reopening(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=1 << 20)
    spool.append(records(3))
    spool.append([SpoolRecord("discovery.mail", None, None)])
    again = Spool(tmp_path, max_bytes=1 << 20)
    assert [r for _, r in again.peek()] == [*records(3), SpoolRecord("discovery.mail", None, None)]
    assert again.depth == 4


def test_acknowledged_records_are_not_handed_out_again(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=1 << 20)
    spool.append(records(5))
    pending = spool.peek()
    spool.ack(pending[2][0])
    assert [r.key for _, r in Spool(tmp_path, max_bytes=1 << 20).peek()] == [b"k3", b"k4"]


def test_a_torn_tail_is_cut_and_the_rest_kept(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=1 << 20)
    spool.append(records(2))
    segment = next(tmp_path.glob("segment-*.log"))
    with segment.open("ab") as handle:
        handle.write(b"\x00\x00\x00\x40\x12\x34")  # a header promising more than was written
    reopened = Spool(tmp_path, max_bytes=1 << 20)
    assert [r for _, r in reopened.peek()] == records(2)
    reopened.append(records(1, start=2))
    assert [r.key for _, r in reopened.peek()] == [b"k0", b"k1", b"k2"]


def test_a_full_spool_refuses_the_whole_batch(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=200)
    spool.append(records(3))
    with pytest.raises(SpoolFull):
        spool.append(records(10, start=3))
    assert spool.depth == 3
    spool.ack(spool.peek()[-1][0])
    spool.append(records(3, start=3))  # room again once delivered


def test_segments_rotate_and_delivered_ones_are_deleted(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=1 << 20, segment_bytes=100)
    for i in range(10):
        spool.append(records(1, start=i))
    assert len(list(tmp_path.glob("segment-*.log"))) > 3
    pending = spool.peek()
    assert [r.key for _, r in pending] == [f"k{i}".encode() for i in range(10)]
    spool.ack(pending[-1][0])
    assert spool.depth == 0
    assert len(list(tmp_path.glob("segment-*.log"))) == 1
