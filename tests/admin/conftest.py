"""An admin API on the session's Kafka and chDB, with its own topics and database."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from smtp_discovery.admin.api import create_app
from smtp_discovery.admin.context import AdminContext
from smtp_discovery.admin.tokens import new_token
from smtp_discovery.platform.kafka import ensure_topics
from smtp_discovery.schemas.topics import ADMIN_TOKENS, TopicNames
from smtp_discovery.sinks.migrate import migrate
from smtp_discovery.sinks.schema import Layout
from tests.jobs.history import History
from tests.token_key import KEY


@dataclass
class Admin:
    ctx: AdminContext
    http: httpx.AsyncClient
    operator: dict[str, str]
    history: History
    bootstrap: str

    async def token(self, tenant_id: str | None) -> dict[str, str]:
        bearer, record = new_token(tenant_id, "test", key=KEY)
        await self.ctx.publish(ADMIN_TOKENS, [record])
        return {"Authorization": f"Bearer {bearer}"}

    async def tenant(self, tenant_id: str, **fields: Any) -> dict[str, Any]:
        body = {"tenant_id": tenant_id, "name": tenant_id.title(),
                "domains": [f"{tenant_id}.example"], "tech_contact": f"it@{tenant_id}.example",
                **fields}  # fmt: skip
        response = await self.http.post("/v1/tenants", json=body, headers=self.operator)
        assert response.status_code == 201, response.text
        return response.json()


@pytest.fixture
async def admin(kafka_bootstrap: str, clickhouse: Any, unique: str) -> AsyncIterator[Admin]:
    names = TopicNames(f"a{unique}.")
    options = {"bootstrap_servers": kafka_bootstrap}
    await ensure_topics(options, partitions=3, replication=1, specs=names.specs())
    layout = Layout(f"admin_{unique}")
    migrate(clickhouse, layout)
    ctx = AdminContext(options, names, clickhouse, layout, token_key=KEY)
    await ctx.start()
    transport = httpx.ASGITransport(app=create_app(ctx))
    async with httpx.AsyncClient(transport=transport, base_url="http://admin.test") as http:
        admin = Admin(ctx, http, {}, History(clickhouse, layout), kafka_bootstrap)
        admin.operator = await admin.token(None)
        yield admin
    await ctx.stop()
