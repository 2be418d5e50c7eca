"""`up`'s own operator token across restarts: kept, signed once when it predates signed
records, and never brought back once revoked or rotated."""

from __future__ import annotations

from pathlib import Path

import pytest

from smtp_discovery.admin.tokens import TokenDirectory, load_key, parse_bearer, token_record
from smtp_discovery.embedded import OPERATOR_LABEL, _operator_token
from smtp_discovery.platform.config import RuntimeConfig
from smtp_discovery.platform.kafka import ensure_topics, idempotent_producer
from smtp_discovery.platform.views import CompactedTopicFollower
from smtp_discovery.schemas.codec import encode
from smtp_discovery.schemas.topics import ADMIN_TOKENS, TopicNames

pytestmark = pytest.mark.kafka


async def _write(options: dict, topic: str, key: bytes, value: bytes | None) -> None:
    producer = idempotent_producer(options)
    await producer.start()
    try:
        await producer.send_and_wait(topic, value, key=key)
    finally:
        await producer.stop()


async def _directory(options: dict, topic: str, key: bytes) -> TokenDirectory:
    directory = TokenDirectory(key)
    follower = CompactedTopicFollower(options, topic, directory.apply)
    await follower.start()
    await follower.ready.wait()
    await follower.stop()
    return directory


async def test_kept_signed_and_never_resurrected(
    kafka_bootstrap: str, unique: str, tmp_path: Path
) -> None:
    names = TopicNames(f"o{unique}.")
    options = {"bootstrap_servers": kafka_bootstrap}
    await ensure_topics(options, partitions=1, replication=1, specs=names.specs())
    config = RuntimeConfig(data_dir=tmp_path, topic_prefix=names.prefix,
                           kafka_bootstrap=kafka_bootstrap)  # fmt: skip
    topic = names(ADMIN_TOKENS)

    path, state = await _operator_token(config, options)
    assert state == "made" and path.stat().st_mode & 0o777 == 0o600
    key = load_key(config.token_key_path)
    bearer = path.read_text().strip()
    assert (await _directory(options, topic, key)).authenticate(bearer) is not None
    assert (await _operator_token(config, options))[1] == "kept"

    # A record from before records were signed: published again, with a code.
    token_id, secret = parse_bearer(bearer)  # type: ignore[misc]
    legacy = token_record(token_id, None, secret, OPERATOR_LABEL, None)
    await _write(options, topic, token_id.encode(), encode(legacy))
    assert (await _directory(options, topic, key)).authenticate(bearer) is None
    assert (await _operator_token(config, options))[1] == "signed"
    assert (await _directory(options, topic, key)).authenticate(bearer) is not None

    # Revoked: a restart must not publish it again.
    await _write(options, topic, token_id.encode(), None)
    assert (await _operator_token(config, options))[1] == "stale"
    assert (await _directory(options, topic, key)).authenticate(bearer) is None
