"""Faust's table recovery, with a lossless hand-over from the changelogs to the source topics.

faust-streaming 0.15.3 ends a recovery in ``Recovery.on_recovery_completed``
(faust/tables/recovery.py) in this order: resume the stream partitions, seek them to the
committed offsets, then ``app.flow_control.resume()`` and ``consumer.resume_flow()``. When a
changelog had to be restored, the consumer's flow is still running from that restore, so the
fetcher delivers source records into the agent's queue while the seek is awaited; then
``flow_control.resume()`` clears every stream queue (mode's ``FlowControlEvent.resume`` calls
``clear()`` on each ``clear_on_resume`` queue, and every Faust channel queue is one). Those
records are gone, but the Kafka client's position is already past them and Faust never saw
them: nothing is acked, nothing is committed, and the partition stalls until the next
rebalance (upstream faust-streaming/faust#596). A worker that takes over the partitions of a
crashed one is exactly that case: changelogs to restore, uncommitted records waiting.

Stopping the consumer's flow before Faust's hand-over closes the window. While it is stopped
the fetcher delivers nothing (``Consumer.getmany`` seeks back to the committed offsets instead
of yielding what it fetched, and cancels a delivery in progress); anything delivered before the
stop was fetched before the seek that follows it, so the queue clear only drops records Kafka
will hand out again. Faust restarts the flow itself once the queues are cleared.

Before Faust reads the active changelogs one record at a time, :mod:`streams.readahead` reads
them in bulk into the stores (``_build_offsets`` is where Faust takes the stores' offsets to
start from): Faust then finds what is left, usually nothing.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from faust.tables import TableManager
from faust.tables.recovery import Recovery
from faust.types import TP, ConsumerT

from smtp_discovery.streams.readahead import Span, read_ahead

READ_AHEAD_SHARE = 0.5
"""Share of Faust's request timeout the read-ahead may take: Faust cancels the step it runs in
at that timeout, and leaves what is left to its own reading."""


class HandOverRecovery(Recovery):
    async def _build_offsets(
        self, consumer: ConsumerT, tps: set[TP], destination: Counter[TP], title: str
    ) -> None:
        options = getattr(self.tables, "changelog_options", None)
        if title == "active" and options is not None and tps:
            spans = {
                tp: Span(self.tp_to_table[tp], destination.get(tp), self.active_highwaters[tp])
                for tp in tps
                if self.active_highwaters.get(tp) is not None
            }
            budget = self.app.conf.broker_request_timeout * READ_AHEAD_SHARE
            await read_ahead(options, spans, budget_s=budget)
            for tp, span in spans.items():  # where each store now stands
                destination[tp] = span.table.persisted_offset(tp)
        await super()._build_offsets(consumer, tps, destination, title)

    async def on_recovery_completed(self, generation_id: int = 0) -> None:
        self.app.consumer.stop_flow()
        await super().on_recovery_completed(generation_id)


class StreamsTableManager(TableManager):
    """Faust's table manager with :class:`HandOverRecovery` (pass as ``TableManager=``)."""

    changelog_options: dict[str, Any] | None = None
    """aiokafka options to read the changelogs ahead of Faust with (None: Faust reads them;
    set only for stores that persist their offsets, which the read-ahead moves along)."""

    @property
    def recovery(self) -> Recovery:
        if self._recovery is None:
            self._recovery = HandOverRecovery(self.app, self, beacon=self.beacon, loop=self.loop)
        return self._recovery
