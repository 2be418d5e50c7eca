"""bench/run cannot write a failed measurement as a result."""

from __future__ import annotations

import pytest

from bench.results import BENCHMARKS, implausible, markdown, plan


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
