"""Faust's Kafka consumer, made to rewind partitions that have no committed offset.

Faust drops records it has already fetched whenever its flow stops (a rebalance, the end of a
table recovery): the Kafka client's position is past them, so Faust seeks every partition back
to its committed offset to have them delivered again (``Consumer.perform_seek``). aiokafka's
``seek_to_committed`` seeks only partitions whose committed offset is above zero; a partition
nobody has committed yet keeps its advanced position, and the records dropped there are never
delivered. Nothing acknowledges them, so nothing is ever committed on that partition again: it
stalls, silently, until its next reassignment. A quiet partition of a young deployment (the
commands topic) is exactly that: seen with two workers, one taking over the other's partitions
mid-batch, in 3 of 6 runs under CPU load.

Here such a partition is rewound to its beginning, which is where the consumer's
``auto_offset_reset="earliest"`` would start it, when Faust has delivered nothing from it since
it was assigned (the stalled case: fetched, dropped, never delivered). A partition Faust is
already delivering from is left where aiokafka leaves it: rewinding it would apply again every
record since its beginning (harmless, as ids make them no-ops, but a late seek at start-up cost
the worker a quarter of its throughput in bench.streams_worker), and its first commit follows.

Faust's livelock check (every 2.5 commit intervals, in the main thread) reads the position of
every assigned partition that has a highwater; aiokafka 0.14 asserts that the position is known.
Between a seek to the beginning (the rewind above, or aiokafka's own reset after an out-of-range
fetch) and the broker's answer it is not, and the assertion crashed the worker: the survivor of
a SIGKILLed worker crashed as it took the partitions over (seen in the cluster drill and
bench/cluster_drill.py). The check is skipped for such a partition until its next interval.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import faust
from aiokafka import TopicPartition
from faust.transport.drivers import aiokafka as driver
from faust.types import TP


class RewindingConsumerThread(driver.AIOKafkaConsumerThread):
    async def seek_to_committed(self) -> Mapping[TP, int]:
        # Faust's own loop: what it has delivered, before the seek updates it.
        delivered = self.consumer._read_offset
        silent = {tp for tp in self.consumer.assignment() if delivered.get(tp) is None}
        return await self.call_thread(self._seek_to_committed_or_beginning, silent)

    async def _seek_to_committed_or_beginning(self, silent: set[TP]) -> Mapping[TP, int]:
        """aiokafka's seek to the committed offsets, then the beginning for each partition
        with no committed offset that Faust has delivered nothing from."""
        consumer = self._ensure_consumer()
        committed: Mapping[Any, int] = await consumer.seek_to_committed()
        rewind = [tp for tp, offset in committed.items() if not offset and tp in silent]
        if rewind:
            await consumer.seek_to_beginning(*rewind)
        return committed

    def verify_event_path(self, now: float, tp: TP) -> None:
        """Faust's livelock check of ``tp``, but not while its position is unknown (see the
        module's doc): the check only logs a slow partition, and it runs again."""
        if not self._position_known(tp):
            return None
        return super().verify_event_path(now, tp)

    def _position_known(self, tp: TP) -> bool:
        subscription = self._ensure_consumer()._fetcher._subscriptions.subscription
        assignment = subscription.assignment if subscription is not None else None
        if assignment is None:
            return False
        state = assignment.state_value(TopicPartition(tp.topic, tp.partition))
        return state is not None and state.has_valid_position


class RewindingConsumer(driver.Consumer):
    def _new_consumer_thread(self) -> RewindingConsumerThread:
        return RewindingConsumerThread(self, loop=self.loop, beacon=self.beacon)


class RewindingTransport(driver.Transport):
    Consumer = RewindingConsumer


class RewindingApp(faust.App):
    """A Faust app whose consumer is :class:`RewindingConsumer` (the producer is Faust's)."""

    def _new_transport(self) -> RewindingTransport:
        return RewindingTransport(self.conf.broker_consumer, self)
