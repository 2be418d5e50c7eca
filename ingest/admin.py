"""Operator actions on the ingest nodes' shared state, done through the tenants topic."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from smtp_discovery.schemas.tenant import TenantConfig, revised
from smtp_discovery.schemas.topics import TENANTS

from smtp_discovery.platform.config import RuntimeConfig
from smtp_discovery.platform.errors import OperatorError
from smtp_discovery.platform.kafka import client_options
from smtp_discovery.platform.running import on_cluster
from smtp_discovery.platform.tenant_writes import TenantWriter
from smtp_discovery.platform.views import TenantDirectory

VIEW_TIMEOUT_S = 60.0


async def clear_cache(config: RuntimeConfig, tenant_id: str) -> int:
    """Bump the tenant's cache epoch: every node drops its cached callouts for the tenant when
    the new configuration reaches it. Returns the new epoch."""
    config = on_cluster(config)
    options = client_options(config)
    topic = config.topics(TENANTS)
    directory = TenantDirectory()
    follower = directory.follower(options, topic)

    def change(view: TenantDirectory) -> list[TenantConfig]:
        tenant = view.tenant(tenant_id)
        if tenant is None:
            raise OperatorError(f"no tenant {tenant_id!r} on {topic}")
        epoch = tenant.verification_cache_epoch + 1
        return [revised(tenant, datetime.now(UTC), verification_cache_epoch=epoch)]

    await follower.start()
    try:
        await asyncio.wait_for(follower.ready.wait(), VIEW_TIMEOUT_S)
        (updated,) = await TenantWriter(options, topic, directory, follower).write(change)
    finally:
        await follower.stop()
    return updated.verification_cache_epoch
