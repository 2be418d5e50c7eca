"""Bytes on a topic <-> models. Decoding never raises anything but MessageDecodeError."""

from __future__ import annotations

from datetime import UTC, datetime
from functools import cache
from typing import Any

from pydantic import BaseModel, TypeAdapter, ValidationError

from schemas.deadletter import DeadLetter, b64
from schemas.tenant import describe_errors
from schemas.topics import Cleanup, topic


class MessageDecodeError(Exception):
    """A message that does not fit its topic's contract. Carries a sentence, never the payload."""

    def __init__(self, topic_name: str, reason: str) -> None:
        super().__init__(f"{topic_name}: {reason}")
        self.topic = topic_name
        self.reason = reason


@cache
def _adapter(topic_name: str) -> TypeAdapter[Any]:
    return TypeAdapter(topic(topic_name).value_type)


def encode(message: BaseModel) -> bytes:
    return message.model_dump_json().encode("utf-8")


def decode(topic_name: str, data: bytes | None) -> Any:
    """Decode one value of ``topic_name``. A tombstone on a compacted topic decodes to None."""
    try:
        spec = topic(topic_name)
    except KeyError as exc:
        raise MessageDecodeError(topic_name, str(exc.args[0])) from None
    if data is None:
        if spec.cleanup is Cleanup.COMPACT:
            return None
        raise MessageDecodeError(topic_name, "null value on a topic that has no tombstones")
    try:
        return _adapter(topic_name).validate_json(data)
    except ValidationError as exc:
        reasons = describe_errors(exc)
        if exc.errors() and exc.errors()[0]["type"] == "json_invalid":
            raise MessageDecodeError(topic_name, "value is not valid UTF-8 JSON") from None
        raise MessageDecodeError(topic_name, "; ".join(reasons[:5])) from None


def dead_letter(
    *,
    component: str,
    topic_name: str,
    partition: int,
    offset: int,
    key: bytes | None,
    value: bytes | None,
    error: Exception,
    now: datetime | None = None,
) -> DeadLetter:
    return DeadLetter(
        event_time=now or datetime.now(UTC),
        component=component,
        source_topic=topic_name,
        partition=partition,
        offset=offset,
        key_b64=b64(key),
        value_b64=b64(value),
        error_type=type(error).__name__,
        error=str(error)[:4000],
    )
