"""How a role's Python interpreter is set to move many small messages.

Two settings of CPython decide much of what a busy role spends, and both belong to the whole
process: they are set once where a role's process starts (``tune``), never inside a role.

* **When the cyclic garbage collector runs** (``GC_THRESHOLDS``): after 20,000 allocations
  instead of 700. A role allocates and frees a few objects per message, nearly all freed by
  reference counting, while it holds many that live long: the worker's cached groups, the
  sink's batches of ten thousand decoded records. Each young collection walked everything
  allocated since the last, and each full one everything held. The worker spent a tenth of
  its CPU time there (3.4 of 32.6 s, 0.6 with these thresholds); the sink's event loop 3.6 s
  for 200,000 rows, 2.4 with them.
* **How long a thread waits for the GIL** (``SWITCH_INTERVAL_S``): 0.1 ms instead of 5. The
  sink, the admin API and the report jobs call ClickHouse from worker threads while the event
  loop decodes the next batch. Each time such a thread came back from ClickHouse to Python, it
  waited for the loop to let go of the GIL, up to the whole interval, several times a call: a
  one-row insert into the embedded engine took 10 ms alone, 46 ms beside a busy thread, and
  7.6 ms with this interval. The sink holds the embedded engine's lock for all of it, so every
  other call waited too. Python code running on both threads pays a switch more often
  instead, which costs microseconds.
"""

from __future__ import annotations

import gc
import sys

GC_THRESHOLDS = (20_000, 20, 10)
"""The collector's thresholds per generation (Python's default is 700, 10, 10)."""

SWITCH_INTERVAL_S = 0.0001
"""Longest a thread holding the GIL keeps it while another asks for it (Python's default is
0.005)."""


def tune() -> None:
    """Set this process's interpreter for a role: the collector's thresholds and the GIL's
    switch interval."""
    gc.set_threshold(*GC_THRESHOLDS)
    sys.setswitchinterval(SWITCH_INTERVAL_S)
