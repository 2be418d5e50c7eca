"""Where a streams worker's time goes: py-spy attached to the worker ``bench.streams_worker``
times, and the main thread's samples summed by what they were doing.

    .venv/bin/python -m bench.profile_worker [--mix discovering|users] [--events 50000]
        [--out FILE] [--nonblocking]

Writes py-spy's raw stacks (one line per stack, with its sample count: any flame-graph tool
reads them) and prints a table of shares. A sample counts for the first part it matches, in
the order of ``PARTS``, then for the event loop or for "other" (start-up, recovery, the timer).
The rate is printed too, and is lower than the bench's (sampling costs the worker some time:
py-spy stops it for each sample). ``--nonblocking`` samples without stopping it, at the price of
stacks read while they change: about one in eight came out cut short or mixed (on the
discovering mix), and counted as "other".
Not part of ``bench/run``: a profile is for finding what to change, the bench for saying what
changed.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

from bench import streams_worker
from bench.harness import run_with_kafka

PARTS = (
    ("table writes", r"AcknowledgedTable\.|ManagedUserDict\.|SerializedStore\.|Store\._set"),
    ("sending (batches, Faust, aiokafka)", r"send_batches|Producer|Sender|AIOKafkaClient|Conn"),
    ("decoding", r"codec\.py|validate_json"),
    ("rules and journal", r"rules\.py|reorder\.py|journal\.py|window\.py"),
    ("group store (load, stage, JSON)", r"store\.py"),
    ("due index", r"due\.py"),
    ("processor (the rest)", r"processor\.py"),
    ("Faust consumer and stream", r"Consumer|Fetcher|Conductor|Stream\.|streams\.py"),
)
LOOP = r"asyncio/|selectors\.py"
"""A sample in none of ``PARTS`` whose innermost frame is the event loop's own: scheduling
callbacks and tasks, or waiting in ``select``."""


def summarize(raw: Path) -> tuple[int, Counter[str]]:
    """(samples of the main thread, samples per part)."""
    parts: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack.startswith("thread") or "MainThread" not in stack.split(";", 1)[0]:
            continue
        n = int(count)
        total += n
        name = next((name for name, pattern in PARTS if re.search(pattern, stack)), None)
        if name is None:
            name = "event loop" if re.search(LOOP, stack.rsplit(";", 1)[-1]) else "other"
        parts[name] += n
    return total, parts


async def _profile(bootstrap: str, args: argparse.Namespace, tmp: Path) -> None:
    spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
    if spy is None:
        raise SystemExit("bench.profile_worker: py-spy is not installed (scripts/install --dev)")
    spies: list[subprocess.Popen[bytes]] = []
    start = streams_worker.start_worker

    def start_profiled(env: dict[str, str], log: Path) -> Any:
        process = start(env, log)
        if log.name == "throughput.log":  # the timed worker, not the users' importer
            command = [spy, "record", "--pid", str(process.pid), "--rate", "100", "--format",
                       "raw", "--threads", "--output", str(args.out)]  # fmt: skip
            if args.nonblocking:
                command.append("--nonblocking")
            spies.append(subprocess.Popen(command, stdout=subprocess.DEVNULL))
        return process

    streams_worker.start_worker = start_profiled
    rate = await streams_worker.worker_throughput(
        bootstrap, args.events, 2000, tmp, users=args.mix == "users"
    )
    for spy_process in spies:
        spy_process.wait(120)
    if not spies or not args.out.exists():
        raise SystemExit("bench.profile_worker: py-spy wrote no profile")
    total, parts = summarize(args.out)
    print(f"{args.mix} mix: {rate.events_per_s:.0f} events/s while sampled; {total} samples")
    print(f"raw stacks: {args.out}")
    for name, n in parts.most_common():
        print(f"{100 * n / total:5.1f}%  {name}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mix", choices=("discovering", "users"), default="discovering")
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument(
        "--out",
        type=Path,
        default=Path(tempfile.gettempdir()) / "smtp-discovery-worker-profile.raw",
        help="py-spy's raw stacks (default: in the temporary directory, not the working tree)",
    )
    parser.add_argument(
        "--nonblocking",
        action="store_true",
        help="sample without stopping the worker (faster; fewer stacks come out whole)",
    )
    run_with_kafka(_profile, parser.parse_args())


if __name__ == "__main__":
    main()
