"""Histories for report tests, written through the sink's own row conversion (no Kafka)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from schemas.base import Message
from schemas.codec import encode
from sinks.rows import SOURCES, to_row
from sinks.schema import Layout


class History:
    def __init__(self, client: Any, layout: Layout) -> None:
        self.client = client
        self.layout = layout
        self.offset = 0

    def add(self, topic: str, *messages: Message | tuple[bytes, None]) -> None:
        source = SOURCES[topic]
        rows = []
        for message in messages:
            self.offset += 1
            key, value = (
                message if isinstance(message, tuple) else (message.kafka_key(), encode(message))
            )
            rows.append(to_row(topic, key, value, 0, self.offset, datetime.now(UTC)))
        self.client.insert(self.layout.name(source.table), rows, column_names=list(source.columns))
