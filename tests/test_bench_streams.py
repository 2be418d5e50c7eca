"""The streams bench times a Faust process by its markers' outputs, or refuses to."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from bench.profile_worker import summarize
from bench.streams_worker import (
    MARK,
    MIN_WINDOW_S,
    PARTITIONS,
    T0,
    Rate,
    Round,
    framing_addresses,
    lead_and_trail,
    mail_events,
    marked_parts,
    markers,
    note_marker,
    round_figures,
    window_rate,
)
from smtp_discovery.schemas.codec import decode
from smtp_discovery.schemas.topics import MAIL
from smtp_discovery.streams.partitioning import partition_for


@pytest.mark.parametrize("kind", ["head", "tail"])
def test_a_marker_opens_and_closes_every_partition(kind: str) -> None:
    placed = markers(kind, datetime(2026, 3, 2, tzinfo=UTC))
    assert [partition for partition, _key, _value in placed] == list(range(PARTITIONS))
    for partition, key, _value in placed:
        assert partition_for(key, PARTITIONS) == partition  # where the worker's producer puts it
        assert MARK.encode() in key  # what the no-op forwards
        assert key.startswith(f"bench{MARK}{kind}".encode())


def test_the_window_runs_from_the_first_head_output_to_the_last_tail_output() -> None:
    seen: dict[str, dict[bytes, int]] = {"head": {}, "tail": {}}
    for key, stamp in [
        (b"bench:markhead0@bench.example", 1_005),  # the worker's record key
        (b"bench:markhead0@bench.example", 1_000),  # a second output of the same marker
        (b"bench:markhead1", 1_003),  # the no-op forwards the route key
        (b"bench:marktail0@bench.example", 9_000),
        (b"bench:marktail0@bench.example", 9_002),
        (b"bench:user7@bench.example", 99_999),  # not a marker
        (b"bench:markheadx", 1),  # not a marker either
        (None, 1),
    ]:
        note_marker(seen, key, stamp)
    assert seen == {"head": {b"0": 1_000, b"1": 1_003}, "tail": {b"0": 9_002}}


def test_the_rate_counts_the_records_between_the_markers() -> None:
    rate = window_rate(1_000, 11_000, 40_004)
    assert rate.window_s == 10.0
    assert rate.events_per_s == 4_000.4


def test_mail_of_its_own_goes_before_the_head_markers_and_after_the_tail_markers() -> None:
    """A marker's outputs leave once its whole batch is applied: a head marker opening the
    input would count a first batch it does not time. The mail around the timed events is like
    them, to other addresses, and before and after them in event time."""
    timed = mail_events(50_000, 2_000)
    lead, trail = lead_and_trail(len(timed), 2_000)
    assert len(lead) == len(trail) == 5_000

    def decoded(part: list[tuple[bytes, bytes]]) -> list[Any]:
        return [decode(MAIL, value) for _key, value in part]

    def addresses(part: list[tuple[bytes, bytes]]) -> set[str]:
        return {event.address for event in decoded(part)}

    assert len(addresses(lead)) == len(addresses(trail)) == 200  # 25 messages each, as timed
    # The users mix imports them by these names before the mail arrives.
    framing = range(framing_addresses(2_000))
    assert addresses(lead) == {f"lead{i}@bench.example" for i in framing}
    assert addresses(trail) == {f"trail{i}@bench.example" for i in framing}
    assert not addresses(lead) & addresses(timed)
    assert not addresses(trail) & addresses(timed)
    assert not addresses(lead) & addresses(trail)
    assert max(e.event_time for e in decoded(lead)) < T0 == decoded(timed)[0].event_time
    assert min(e.event_time for e in decoded(trail)) > decoded(timed)[-1].event_time
    assert [type(e).__name__ for e in decoded(lead)][199:201] == [
        "CalloutVerified",
        "RecipientDelivered",
    ]


def test_a_timed_run_sends_the_markers_between_the_mail_around_and_the_timed_mail() -> None:
    timed_mail = mail_events(1_000, 40)
    parts, timed = marked_parts(timed_mail, 40)
    lead, heads, events, tails, trail = parts
    assert (len(lead), len(trail)) == (100, 100)
    assert [(k, v) for _p, k, v in events] == timed_mail
    assert all(partition is None for partition, _k, _v in (*lead, *events, *trail))
    assert [partition for partition, _k, _v in heads] == list(range(PARTITIONS))
    assert [partition for partition, _k, _v in tails] == list(range(PARTITIONS))
    assert all(b"markhead" in key for _p, key, _v in heads)
    assert all(b"marktail" in key for _p, key, _v in tails)
    assert timed == 1_000 + PARTITIONS  # the timed mail and the tail markers


def test_a_window_too_short_for_millisecond_stamps_is_refused() -> None:
    with pytest.raises(RuntimeError, match="raise --events"):
        window_rate(1_000, 1_000 + int(MIN_WINDOW_S * 1000) - 1, 50_009)


def test_a_ratio_is_the_median_of_each_rounds_own_ratio() -> None:
    """The machine drifts between rounds (here its speed doubles): each round's worker is
    divided by that round's no-op, and the figure is the median of those ratios. The ratio of
    the median rates (60 / 150 = 0.4) would mix rounds the machine ran at different speeds."""

    def rate(events_per_s: float) -> Rate:
        return Rate(events_per_s, 10.0, 1.0)

    rounds = [
        Round(1_000, rate(100), {"discovering": rate(50), "users": rate(90)}),
        Round(2_000, rate(200), {"discovering": rate(60), "users": rate(180)}),
        Round(1_500, rate(150), {"discovering": rate(90), "users": rate(120)}),
    ]
    noop, discovering, users = round_figures(rounds, 50_000)
    assert noop["figure"] == "faust_noop_events_per_s"
    assert (noop["events_per_s"], noop["ratio"]) == (150, 0.1)
    assert discovering["mix"] == "discovering"
    assert discovering["vs_noop_rounds"] == [0.5, 0.3, 0.6]
    assert (discovering["vs_noop"], discovering["events_per_s"]) == (0.5, 60)
    assert discovering["ratio"] == 0.05  # 50/1000, 60/2000, 90/1500
    assert (users["vs_noop"], users["vs_noop_rounds"]) == (0.9, [0.9, 0.9, 0.8])


def test_a_worker_profile_is_summed_by_the_first_part_each_sample_matches(tmp_path: Path) -> None:
    """bench.profile_worker: main-thread samples only, each counted once, for the first part
    its stack matches; the event loop only when its own frame is innermost."""
    main = "thread (1): MainThread;run (asyncio/base_events.py:1)"
    raw = tmp_path / "profile.raw"
    raw.write_text(
        "\n".join(
            [
                f"{main};handle_batch (streams/processor.py:2);_apply (streams/rules.py:3) 7",
                f"{main};handle_batch (streams/processor.py:2) 2",
                f"{main};write (streams/store.py:9);AcknowledgedTable.__setitem__ (x.py:1) 3",
                f"{main};EpollSelector.select (selectors.py:4) 5",
                f"{main};import_module (importlib/__init__.py:1) 1",
                "thread (2): Thread-1;run (threading.py:1) 40",
            ]
        )
    )
    total, parts = summarize(raw)
    assert total == 18
    assert parts == {
        "rules and journal": 7,
        "processor (the rest)": 2,
        "table writes": 3,
        "event loop": 5,
        "other": 1,
    }
