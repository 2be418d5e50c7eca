"""A Faust worker that consumes and does nothing: the floor of Faust's own per-event cost.

Run by bench.streams_worker as a second reference point (the bare aiokafka loop is the first).
It forwards the bench's markers (records whose key contains NOOP_MARK, the first and last on
every partition) to NOOP_OUTPUT and nothing else, so that it is timed exactly as the worker is:
from the broker's stamps on those outputs. Its data directory is NOOP_DATA_DIR (the run's
scratch directory), never the working directory.
"""

from __future__ import annotations

import os

import faust

app = faust.App(
    os.environ["NOOP_APP_ID"],
    broker=f"kafka://{os.environ['NOOP_BOOTSTRAP']}",
    store="memory://",
    datadir=os.environ["NOOP_DATA_DIR"],
    web_enabled=False,
    consumer_auto_offset_reset="earliest",
    broker_commit_interval=0.5,
)
raw = {"key_serializer": "raw", "value_serializer": "raw"}
source = app.topic(os.environ["NOOP_TOPIC"], **raw)
output = app.topic(os.environ["NOOP_OUTPUT"], **raw)
mark = os.environ["NOOP_MARK"].encode()


@app.agent(source)
async def noop(stream: faust.StreamT) -> None:
    async for event in stream.events():
        key = event.message.key
        if key is not None and mark in key:
            await output.send(key=key, value=event.message.value)


if __name__ == "__main__":
    app.main()
