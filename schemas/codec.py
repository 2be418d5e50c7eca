"""Bytes on a topic <-> models. Decoding never raises anything but MessageDecodeError."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from functools import cache
from typing import Any

from pydantic import BaseModel, TypeAdapter, ValidationError

from smtp_discovery.schemas.deadletter import DeadLetter, b64
from smtp_discovery.schemas.tenant import describe_errors
from smtp_discovery.schemas.topics import TOPICS, Cleanup, topic


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
    """Decode one value of ``topic_name``. A tombstone on a compacted topic decodes to None.

    A value of a known topic is validated here directly, as ``decode_all`` would: the worker
    decodes every message alone, and the batch's bookkeeping was a tenth of the call."""
    if data is not None and topic_name in TOPICS:
        try:
            return _adapter(topic_name).validate_json(data)
        except ValidationError as exc:
            raise _failure(topic_name, exc) from None
    decoded, failed = decode_all(topic_name, [data])
    if failed:
        raise failed[0]
    return decoded[0]


def decode_all(
    topic_name: str, values: Sequence[bytes | None]
) -> tuple[list[Any], dict[int, MessageDecodeError]]:
    """Decode a batch of ``topic_name``'s values in one call: the decoded messages in order
    (None for a tombstone), and why each value that does not fit failed, by its position
    (its slot in the first list holds None).

    Each value is validated on its own. Joining a batch into one JSON array for one call of
    pydantic is no faster on these messages (the validation is the cost, not the call), and a
    value that is a fragment of JSON could then merge with its neighbour and shift every later
    message onto the wrong record."""
    try:
        spec = topic(topic_name)
    except KeyError as exc:
        failure = MessageDecodeError(topic_name, str(exc.args[0]))
        return [None] * len(values), dict.fromkeys(range(len(values)), failure)
    validate = _adapter(topic_name).validate_json
    tombstones = spec.cleanup is Cleanup.COMPACT
    decoded: list[Any] = []
    failed: dict[int, MessageDecodeError] = {}
    for position, data in enumerate(values):
        if data is None:
            if not tombstones:
                failed[position] = MessageDecodeError(
                    topic_name, "null value on a topic that has no tombstones"
                )
            decoded.append(None)
            continue
        try:
            decoded.append(validate(data))
        except ValidationError as exc:
            failed[position] = _failure(topic_name, exc)
            decoded.append(None)
    return decoded, failed


def _failure(topic_name: str, exc: ValidationError) -> MessageDecodeError:
    if exc.errors() and exc.errors()[0]["type"] == "json_invalid":
        return MessageDecodeError(topic_name, "value is not valid UTF-8 JSON")
    return MessageDecodeError(topic_name, "; ".join(describe_errors(exc)[:5]))


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
