"""Kafka or ClickHouse failing under a request: 503 with a sentence saying which, never a 500
with a stack trace (an erasure on a ClickHouse without the schema answered 500 before)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from aiokafka.errors import KafkaConnectionError
from clickhouse_connect.driver.exceptions import DatabaseError

from smtp_discovery.admin.api import create_app
from smtp_discovery.admin.context import AdminContext
from smtp_discovery.admin.tokens import new_token
from smtp_discovery.schemas.topics import TopicNames
from smtp_discovery.sinks.schema import Layout

MISSING = "Code: 81. DB::Exception: Database discovery does not exist. (UNKNOWN_DATABASE)"


class Unmigrated:
    """A ClickHouse that has no schema: every query fails as a real one does."""

    def query(self, sql: str, parameters: Any = None) -> Any:
        raise DatabaseError(f"{MISSING}\nStack trace:\n0. DB::Exception::Exception ...")


@contextlib.asynccontextmanager
async def operator_api() -> AsyncIterator[tuple[httpx.AsyncClient, AdminContext]]:
    ctx = AdminContext(
        {"bootstrap_servers": "127.0.0.1:1"}, TopicNames(), Unmigrated(), Layout("discovery")
    )
    token, record = new_token(None, "operator", key=None)
    ctx.tokens.admit(record)
    transport = httpx.ASGITransport(app=create_app(ctx), raise_app_exceptions=False)
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(transport=transport, base_url="http://admin.test",
                                 headers=headers) as http:  # fmt: skip
        try:
            yield http, ctx
        finally:
            await ctx.stop()  # never started: only its producer to close


async def test_a_clickhouse_failure_is_a_503_that_says_so() -> None:
    async with operator_api() as (http, _ctx):
        answer = await http.get("/v1/overview")
    assert answer.status_code == 503, answer.text
    error = answer.json()["error"]
    assert error["code"] == "clickhouse_unavailable"
    assert error["message"] == f"ClickHouse failed this request: {MISSING}"


async def test_a_kafka_failure_is_a_503_that_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    async with operator_api() as (http, ctx):

        async def unreachable(*args: Any, **kwargs: Any) -> Any:
            raise KafkaConnectionError("no broker answered")

        monkeypatch.setattr(ctx.tenant_writer, "write", unreachable)
        answer = await http.post("/v1/tenants", json={
            "tenant_id": "acme", "name": "Acme", "domains": ["acme.example"],
            "destinations": [{"host": "127.0.0.1", "port": 25}]})  # fmt: skip
    assert answer.status_code == 503, answer.text
    error = answer.json()["error"]
    assert error["code"] == "kafka_unavailable" and "no broker answered" in error["message"]
