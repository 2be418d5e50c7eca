"""Operator actions on the ingest nodes' shared state, done through the tenants topic."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from aiokafka import AIOKafkaProducer

from schemas.base import new_event_id
from schemas.codec import encode
from schemas.topics import TENANTS
from smtp_discovery.config import RuntimeConfig
from smtp_discovery.errors import ConfigError, OperatorError
from smtp_discovery.kafka import client_options
from smtp_discovery.views import TenantDirectory

VIEW_TIMEOUT_S = 60.0


async def clear_cache(config: RuntimeConfig, tenant_id: str) -> int:
    """Bump the tenant's cache epoch: every node drops its cached callouts for the tenant when
    the new configuration reaches it. Returns the new epoch."""
    if not config.kafka_bootstrap:
        raise ConfigError("set KAFKA_BOOTSTRAP to the cluster the ingest nodes use")
    options = client_options(config)
    directory = TenantDirectory()
    follower = directory.follower(options, config.topics(TENANTS))
    await follower.start()
    try:
        await asyncio.wait_for(follower.ready.wait(), VIEW_TIMEOUT_S)
    finally:
        await follower.stop()
    tenant = directory.tenant(tenant_id)
    if tenant is None:
        raise OperatorError(f"no tenant {tenant_id!r} on {config.topics(TENANTS)}")
    updated = tenant.model_copy(
        update={
            "verification_cache_epoch": tenant.verification_cache_epoch + 1,
            "event_id": new_event_id(),
            "event_time": datetime.now(UTC),
        }
    )
    producer = AIOKafkaProducer(**options, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        await producer.send_and_wait(
            config.topics(TENANTS), encode(updated), key=updated.kafka_key()
        )
    finally:
        await producer.stop()
    return updated.verification_cache_epoch
