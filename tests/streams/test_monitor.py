"""The worker's Faust monitor keeps what Faust's livelock check reads, and counts nothing per
message (streams.monitor)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from faust.types import TP

from smtp_discovery.streams.app import StreamsSettings, Topology
from smtp_discovery.streams.clock import make_clock
from smtp_discovery.streams.monitor import LivelockMonitor


def _monitor(data_dir: Path) -> LivelockMonitor:
    settings = StreamsSettings(
        app_id="monitor-test", brokers=["localhost:9"], partitions=4, replication=1,
        data_dir=data_dir,
    )  # fmt: skip
    topology = Topology(
        settings, clock=make_clock("event-time"), kafka_options={"bootstrap_servers": "localhost:9"}
    )
    monitor = topology.app.monitor
    assert isinstance(monitor, LivelockMonitor), "the worker's app is built with LivelockMonitor"
    return monitor


def test_the_livelock_check_still_sees_each_partition_take_in_events(tmp_path: Path) -> None:
    monitor = _monitor(tmp_path)
    tp, other = TP("mail", 0), TP("mail", 1)
    assert monitor.stream_inbound_time.get(tp) is None
    monitor.on_stream_event_in(tp, 7, SimpleNamespace(), SimpleNamespace())
    first = monitor.stream_inbound_time[tp]
    monitor.on_stream_event_in(tp, 8, SimpleNamespace(), SimpleNamespace())
    assert monitor.stream_inbound_time[tp] >= first
    assert other not in monitor.stream_inbound_time


def test_no_statistics_are_kept_per_message(tmp_path: Path) -> None:
    monitor = _monitor(tmp_path)
    tp = TP("mail", 0)
    message = SimpleNamespace(time_in=None)
    for offset in range(3):
        monitor.on_message_in(tp, offset, message)
        state = monitor.on_stream_event_in(tp, offset, SimpleNamespace(), SimpleNamespace())
        monitor.on_stream_event_out(tp, offset, SimpleNamespace(), SimpleNamespace(), state)
        monitor.on_message_out(tp, offset, message)
        monitor.on_table_set(SimpleNamespace(name="groups"), "k", b"v")
    assert monitor.messages_received_total == 0
    assert monitor.events_total == 0
    assert not monitor.tp_read_offsets
    assert not monitor.events_runtime
    assert not monitor.tables
    assert message.time_in is None
