"""Run every benchmark and write ``bench/RESULTS.md``: each figure with its same-run baseline,
the machine and the date. ``bench/run`` calls this.

    bench/run [--quick]

Each entry of ``BENCHMARKS`` gives a module's arguments for the full run and for ``--quick``.
Quick arguments of ``None`` make a benchmark full-run only: ``--quick`` skips it and says so in
RESULTS.md. That is for a benchmark whose short form already runs in the test suite (the
cluster drill: tests/test_cluster_drill.py), where a quick run would only repeat it.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

BENCHMARKS: list[tuple[str, list[str], list[str] | None]] = [
    # (module, full arguments, --quick arguments; None: full run only)
    ("bench.kafka_baseline", [], ["--events", "20000"]),
    (
        "bench.ingest",
        ["--view-addresses", "1000000", "10000000"],
        ["--messages", "2000", "--callouts", "100", "--view-addresses", "100000"],
    ),
    # Streams rates are timed by the broker's stamps on the outputs of marker records, not by
    # offset commits (bench/README.md); 50,000 events keep even the Faust no-op's window well
    # above the 2 s it refuses to measure under.
    ("bench.streams_worker", [], ["--events", "50000", "--recovery-addresses", "50000"]),
    ("bench.sink", [], ["--rows", "50000", "--history", "1000000", "--tenants", "1000"]),
    ("bench.end_to_end", [], ["--messages", "400", "--new", "30"]),
    ("bench.rcpt_under_load", [], ["--tenants", "10000", "--rcpts", "400", "--events", "100000"]),
    ("bench.policy", [], ["--requests", "1000", "--callouts", "200", "--rounds", "2"]),
    # Full run only: its short form is tests/test_cluster_drill.py, in the suite.
    ("bench.cluster_drill", [], None),
]


def plan(quick: bool) -> tuple[list[tuple[str, list[str]]], list[str]]:
    """The benchmarks to run, with their arguments, and those ``--quick`` skips."""
    runs: list[tuple[str, list[str]]] = []
    skipped: list[str] = []
    for module, full, short in BENCHMARKS:
        if not quick:
            runs.append((module, full))
        elif short is None:
            skipped.append(module)
        else:
            runs.append((module, short))
    return runs, skipped


def machine() -> str:
    cores = os.cpu_count() or 0
    try:
        pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        memory = f"{pages / 2**30:.0f} GiB"
    except (ValueError, OSError):
        memory = "unknown memory"
    return f"{cores} cores, {memory}, {platform.system()} {platform.release()}, Python {platform.python_version()}"  # noqa: E501


def run(module: str, args: list[str]) -> tuple[list[dict[str, object]], float, str]:
    began = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", module, *args], cwd=ROOT, capture_output=True, text=True,
        check=False,
    )  # fmt: skip
    figures = []
    for line in result.stdout.splitlines():
        if line.startswith('{"figure"'):
            figures.append(json.loads(line))
    error = "" if result.returncode == 0 else (result.stderr.strip().splitlines() or ["?"])[-1]
    if not error:
        error = implausible(figures)
    if error:
        figures = []  # a failed measurement writes no figure at all
    return figures, time.monotonic() - began, error


def implausible(figures: list[dict[str, object]]) -> str:
    """Why these figures cannot be results, or "": a ratio (``ratio``, ``vs_*``) or a rate
    (``*_per_s``) of zero, NaN or infinity is a measurement that failed, however it ended."""
    if not figures:
        return "no figure written"
    for figure in figures:
        for key, value in figure.items():
            rate = key == "ratio" or key.startswith("vs_") or key.endswith("_per_s")
            measured = rate and isinstance(value, (int, float))
            if measured and (not math.isfinite(value) or value <= 0):  # type: ignore[arg-type]
                return f"{figure['figure']}: {key}={value} is not a measurement"
    return ""


def markdown(
    rows: list[tuple[str, str, list[dict[str, object]], float, str]],
    quick: bool,
    skipped: tuple[str, ...] = (),
) -> str:
    lines = [
        "# Benchmark results",
        "",
        f"Written by `bench/run{' --quick' if quick else ''}` on "
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC; machine: {machine()}.",
        "",
        "Every speed is a ratio to a baseline measured in the same run (these machines are "
        "shared and noisy); absolute numbers are for context. See `bench/README.md` for what "
        "each figure measures.",
        "",
        "| benchmark | figure | ratio | details | seconds |",
        "|---|---|---|---|---|",
    ]
    for module, args, figures, seconds, error in rows:
        name = f"`{module.removeprefix('bench.')}`{' ' + ' '.join(args) if args else ''}"
        if error:
            lines.append(f"| {name} | failed | | {error} | {seconds:.0f} |")
        for figure in figures:
            data = dict(figure)
            label = str(data.pop("figure"))
            ratio = data.pop("ratio", "")
            details = ", ".join(f"{k}={json.dumps(v)}" for k, v in data.items())
            lines.append(f"| {name} | {label} | {ratio} | {details} | {seconds:.0f} |")
    if skipped:
        names = ", ".join(f"`{m.removeprefix('bench.')}`" for m in skipped)
        lines += ["", f"Not run by `--quick` (full run only): {names}."]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller runs (minutes, not tens)")
    options = parser.parse_args()
    rows = []
    runs, skipped = plan(options.quick)
    for module in skipped:
        print(f"skipping {module}: full run only", flush=True)
    for module, args in runs:
        print(f"running {module} {' '.join(args)} …", flush=True)
        figures, seconds, error = run(module, args)
        for figure in figures:
            print("  " + json.dumps(figure), flush=True)
        if error:
            print(f"  failed: {error}", flush=True)
        rows.append((module, " ".join(args) and args, figures, seconds, error))
    if any(row[4] for row in rows):
        print("not writing bench/RESULTS.md: a benchmark failed (above)", file=sys.stderr)
        return 1
    (ROOT / "bench" / "RESULTS.md").write_text(markdown(rows, options.quick, tuple(skipped)))  # type: ignore[arg-type]
    print(f"wrote {ROOT / 'bench' / 'RESULTS.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
