"""Faults for the worker tests, injected at interpreter start into a worker process whose
PYTHONPATH starts with this directory (tests/streams/worker_harness.py does that when a test
asks for a fault). Production code has no hook for them.

``DISCOVERY_TEST_FAULT=send:N`` makes the sending of the outputs that hold the N+1st fail;
``table-write:N`` makes the N+1st group index entry written fail (the batch's journals
are in Kafka by then, its groups not). Once: the process is
expected to exit at the first failure.
"""

from __future__ import annotations

import os
from typing import Any

_FAULT = os.environ.get("DISCOVERY_TEST_FAULT", "")


def _inject(kind: str, after: int) -> None:
    from smtp_discovery.streams.app import Topology
    from smtp_discovery.streams.store import GroupStore

    calls = 0

    def failing_after(what: str) -> None:
        nonlocal calls
        calls += 1
        if calls > after:
            raise RuntimeError(f"injected fault: {what}")

    if kind == "send":
        send = Topology._send

        async def failing_send(self: Any, outputs: Any) -> Any:
            for _ in outputs:  # a batch's outputs go out together: the N+1st fails them all
                failing_after("Kafka refused an output")
            return await send(self, outputs)

        Topology._send = failing_send  # type: ignore[method-assign]
    elif kind == "table-write":
        write_entry = GroupStore.write_entry

        def failing_write(self: Any, *args: Any) -> None:
            failing_after("the table write failed")
            write_entry(self, *args)

        GroupStore.write_entry = failing_write  # type: ignore[method-assign]
    else:
        raise ValueError(f"unknown fault {kind!r}")


if _FAULT:
    _kind, _, _after = _FAULT.partition(":")
    _inject(_kind, int(_after))
