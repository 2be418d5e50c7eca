"""bench/run cannot write a failed measurement as a result."""

from __future__ import annotations

import pytest

from bench.results import BENCHMARKS, implausible, markdown, plan
from bench.streams_worker import restore_window


@pytest.mark.parametrize(
    "figures",
    [
        [],
        [{"figure": "faust_noop_events_per_s", "events_per_s": 0, "ratio": 0.0}],
        [{"figure": "worker_events_per_s", "events_per_s": 480, "ratio": float("nan")}],
        [{"figure": "sink_rows_per_s", "ratio": float("inf")}],
        [{"figure": "ok", "ratio": 0.7}, {"figure": "e2e_messages_per_s", "pipeline_per_s": -1}],
        [{"figure": "worker_events_per_s", "ratio": 0.03, "vs_noop": 0.0}],
        [{"figure": "worker_events_per_s", "ratio": 0.03, "vs_noop": float("nan")}],
    ],
)
def test_a_zero_nan_or_missing_figure_is_a_failure(figures: list[dict[str, object]]) -> None:
    assert implausible(figures)


def test_real_figures_pass() -> None:
    assert implausible([{"figure": "x", "ratio": 0.741, "events_per_s": 558.2, "p99": 0}]) == ""
    assert implausible([{"figure": "w", "ratio": 0.03, "vs_noop": 0.18, "window_s": 35.3}]) == ""


def test_quick_skips_a_full_run_only_benchmark_and_says_so() -> None:
    """The cluster drill's short form is in the suite: ``--quick`` must not run its full form,
    and the full run must."""
    quick, skipped = plan(quick=True)
    full, none = plan(quick=False)
    assert "bench.cluster_drill" not in dict(quick)
    assert skipped == ["bench.cluster_drill"]
    assert "bench.cluster_drill" in dict(full) and none == []
    assert len(full) == len(BENCHMARKS) == len(quick) + len(skipped)
    written = markdown([], quick=True, skipped=tuple(skipped))
    assert "Not run by `--quick` (full run only): `cluster_drill`." in written


def test_the_restore_window_is_read_from_the_workers_log_or_fails() -> None:
    log = (
        "2026-12-03 06:36:01,100 INFO smtp_discovery.streams.recovery [^---HandOverRecovery]: "
        "Restoring state from changelog topics...\n"
        "2026-12-03 06:36:02,000 INFO x: Still fetching changelog topics for recovery\n"
        "2026-12-03 06:37:08,600 INFO smtp_discovery.streams.recovery [^---HandOverRecovery]: "
        "Done reading from changelog topics\n"
    )
    assert restore_window(log) == pytest.approx(67.5)
    with pytest.raises(RuntimeError, match="did not log"):
        restore_window(log.splitlines()[0])
    same = log.replace("06:37:08,600", "06:36:01,100")
    with pytest.raises(RuntimeError, match="no figure"):
        restore_window(same)
    # Read ahead of Faust: from the read-ahead's start to the last read's end, whichever it is.
    ahead = (
        "2026-12-03 06:35:59,000 INFO smtp_discovery.streams.readahead reading changelogs "
        "ahead: 12 partitions, offsets up to 83332\n"
        "2026-12-03 06:36:00,500 INFO smtp_discovery.streams.readahead read 250000 changelog "
        "records ahead in 1.5 s; 0 partitions left to Faust\n"
    )
    assert restore_window(ahead) == pytest.approx(1.5)
    assert restore_window(ahead + log) == pytest.approx(69.6)
    with pytest.raises(RuntimeError, match="did not log"):
        restore_window(ahead.splitlines()[0])
