"""A Faust worker that consumes and does nothing: the floor of Faust's own per-event cost.

Run by bench.streams_worker as a second reference point (the bare aiokafka loop is the first).
"""

from __future__ import annotations

import os

import faust

app = faust.App(
    os.environ["NOOP_APP_ID"],
    broker=f"kafka://{os.environ['NOOP_BOOTSTRAP']}",
    store="memory://",
    web_enabled=False,
    consumer_auto_offset_reset="earliest",
    broker_commit_interval=0.5,
)
source = app.topic(os.environ["NOOP_TOPIC"], key_serializer="raw", value_serializer="raw")


@app.agent(source)
async def noop(stream: faust.StreamT) -> None:
    async for _event in stream.events():
        pass


if __name__ == "__main__":
    app.main()
