"""A minimal Faust app: the aiokafka/Faust/broker compatibility probe run by test_faust_compat.

An agent reads keyed messages, counts them per key in a RocksDB-backed table (rocksdict), and
forwards each with the running count: the moving parts the streams topology relies on.
"""

from __future__ import annotations

import os

import faust

APP_ID = os.environ["PROBE_APP_ID"]
app = faust.App(
    APP_ID,
    broker=f"kafka://{os.environ['PROBE_BOOTSTRAP']}",
    store="rocksdb://",
    datadir=os.environ["PROBE_DATADIR"],
    topic_partitions=2,
    topic_replication_factor=1,
    web_enabled=False,
    producer_acks=-1,
    consumer_auto_offset_reset="earliest",
)
source = app.topic(f"{APP_ID}-in", key_serializer="raw", value_serializer="raw", partitions=2)
sink = app.topic(f"{APP_ID}-out", key_serializer="raw", value_serializer="raw", partitions=2)
counts = app.Table("counts", default=int, partitions=2, key_type=bytes, value_type=int)


@app.agent(source)
async def count(stream: faust.StreamT) -> None:
    async for key, value in stream.items():
        counts[key] += 1
        await sink.send(key=key, value=value + b":" + str(counts[key]).encode())


if __name__ == "__main__":
    app.main()
