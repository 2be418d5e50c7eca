"""A process that can write the tokens topic still cannot mint access: the API trusts only
records the admin role's token key signed (issue: Kafka is no back door)."""

from __future__ import annotations

import asyncio
import secrets

import pytest

from smtp_discovery.admin.tokens import new_token
from smtp_discovery.platform.kafka import idempotent_producer
from smtp_discovery.schemas.admin import AdminToken
from smtp_discovery.schemas.codec import encode
from smtp_discovery.schemas.topics import ADMIN_TOKENS
from tests.admin.conftest import Admin
from tests.token_key import KEY

pytestmark = pytest.mark.kafka


async def _write_straight_to_the_topic(admin: Admin, record: AdminToken) -> None:
    producer = idempotent_producer({"bootstrap_servers": admin.bootstrap})
    await producer.start()
    try:
        await producer.send_and_wait(
            admin.ctx.names(ADMIN_TOKENS), encode(record), key=record.kafka_key()
        )
    finally:
        await producer.stop()


async def _seen(admin: Admin, token_id: str | None = None, *, refused: int | None = None) -> None:
    """Until the API's follower has admitted ``token_id``, or refused ``refused`` records in all
    (each wait names one of the two: "refused or admitted" let a wait for an admission end at
    once, since some count of refusals is always reached)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    while loop.time() < deadline:
        if token_id is not None and token_id in admin.ctx.tokens:
            return
        if refused is not None and admin.ctx.tokens.forged >= refused:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"the API never read token record {token_id or refused}")


async def test_token_records_not_signed_by_the_key_grant_nothing(admin: Admin) -> None:
    before = admin.ctx.tokens.forged
    unsigned, unsigned_record = new_token(None, "forged", key=None)
    other_key, other_record = new_token(None, "forged", key=secrets.token_bytes(32))
    genuine, genuine_record = new_token(None, "genuine", key=KEY)
    for record in (unsigned_record, other_record):
        await _write_straight_to_the_topic(admin, record)
    await _seen(admin, refused=before + 2)
    await _write_straight_to_the_topic(admin, genuine_record)
    await _seen(admin, genuine_record.token_id)

    for bearer in (unsigned, other_key):
        response = await admin.http.get(
            "/v1/tenants", headers={"Authorization": f"Bearer {bearer}"}
        )
        assert response.status_code == 401, response.text
    assert admin.ctx.tokens.forged == before + 2
    response = await admin.http.get("/v1/tenants", headers={"Authorization": f"Bearer {genuine}"})
    assert response.status_code == 200, response.text


async def test_a_forged_record_replacing_a_genuine_one_takes_its_access_too(
    admin: Admin,
) -> None:
    """The topic's latest record of a token id is what a restarted API would read: a forged
    one over a genuine one must not leave this API trusting what the topic no longer holds."""
    genuine, record = new_token("acme", "genuine", key=KEY)
    await _write_straight_to_the_topic(admin, record)
    await _seen(admin, record.token_id)
    widened = record.model_copy(update={"tenant_id": None})  # the same secret, as an operator
    before = admin.ctx.tokens.forged
    await _write_straight_to_the_topic(admin, widened)
    await _seen(admin, refused=before + 1)
    response = await admin.http.get("/v1/tenants", headers={"Authorization": f"Bearer {genuine}"})
    assert response.status_code == 401
