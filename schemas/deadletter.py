"""The dead-letter record: a message a component could not use, kept with the reason."""

from __future__ import annotations

import base64
from typing import Literal

from pydantic import Field

from smtp_discovery.schemas.base import Message


class DeadLetter(Message):
    """The failed message travels byte for byte (base64) so it can be inspected or replayed."""

    type: Literal["dead_letter"] = "dead_letter"
    component: str = Field(min_length=1, max_length=64)
    source_topic: str = Field(min_length=1, max_length=249)
    partition: int = Field(ge=0)
    offset: int = Field(ge=0)
    key_b64: str | None = None
    value_b64: str | None = None
    error_type: str = Field(min_length=1, max_length=200)
    error: str = Field(max_length=4000)

    def original_key(self) -> bytes | None:
        return None if self.key_b64 is None else base64.b64decode(self.key_b64)

    def original_value(self) -> bytes | None:
        return None if self.value_b64 is None else base64.b64decode(self.value_b64)

    def kafka_key(self) -> bytes | None:
        return self.original_key()


def b64(data: bytes | None) -> str | None:
    return None if data is None else base64.b64encode(data).decode("ascii")
