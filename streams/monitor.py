"""Faust's monitor, keeping of its per-message statistics only what Faust itself reads.

Faust calls its monitor for every message received and acknowledged, every event a stream
takes in and hands on, every table write and every send: it counts them by topic, stream and
task, and times each. Those figures are served only by Faust's web views, which the worker does
not run (its own metrics are the processor's counts, ``streams.app.Topology.metrics``). They
were 2.5% of the worker's samples on mail to addresses being discovered (py-spy, 100,000
messages), for nothing read.

Faust's livelock check reads one of them: when a stream last took in an event from each
partition (``stream_inbound_time``), to warn of a partition whose stream has stopped. That one
is kept, as are the figures Faust records per fetch and per commit, not per message (end and
committed offsets). Pass as ``Monitor=``.
"""

from __future__ import annotations

from time import monotonic
from typing import Any

from faust.sensors import Monitor
from faust.types import TP


class LivelockMonitor(Monitor):  # type: ignore[misc]
    """Faust's ``Monitor`` without its per-message statistics (the module's docstring)."""

    def on_message_in(self, tp: TP, offset: int, message: Any) -> None:
        return None

    def on_stream_event_in(self, tp: TP, offset: int, stream: Any, event: Any) -> None:
        # What Faust's livelock check reads (``verify_event_path``); nothing else per event.
        self.stream_inbound_time[tp] = monotonic()

    def on_stream_event_out(
        self, tp: TP, offset: int, stream: Any, event: Any, state: Any = None
    ) -> None:
        return None

    def on_message_out(self, tp: TP, offset: int, message: Any) -> None:
        return None

    def on_table_get(self, table: Any, key: Any) -> None:
        return None

    def on_table_set(self, table: Any, key: Any, value: Any) -> None:
        return None

    def on_table_del(self, table: Any, key: Any) -> None:
        return None

    def on_send_initiated(
        self, producer: Any, topic: str, message: Any, keysize: int, valsize: int
    ) -> None:
        return None

    def on_send_completed(self, producer: Any, state: Any, metadata: Any) -> None:
        return None
