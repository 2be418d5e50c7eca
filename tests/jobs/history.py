"""Histories for report tests, written through the sink's own columns (no Kafka)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from smtp_discovery.schemas.base import Message
from smtp_discovery.schemas.codec import decode, encode
from smtp_discovery.sinks.columns import SOURCES
from smtp_discovery.sinks.schema import Layout


class History:
    def __init__(self, client: Any, layout: Layout) -> None:
        self.client = client
        self.layout = layout
        self.offset = 0

    def add(self, topic: str, *messages: Message | tuple[bytes, None]) -> None:
        source = SOURCES[topic]
        taken = source.taken(0)
        for message in messages:
            self.offset += 1
            key, value = (
                message if isinstance(message, tuple) else (message.kafka_key(), encode(message))
            )
            taken.add(key, decode(topic, value), self.offset)
        self.client.insert(
            self.layout.name(source.table),
            taken.to_columns(datetime.now(UTC)),
            column_names=list(source.columns),
            column_oriented=True,
        )
