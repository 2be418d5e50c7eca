"""Schemathesis against the admin API's own OpenAPI document: no input makes it answer 5xx.

Every operation gets generated valid and invalid inputs (the same ones on every run), sent
in-process to the real app on the session's Kafka and chDB: with whatever ``Authorization``
header was generated, with an operator token, and, for tenant routes, as the operator and as the
tenant's own token on a tenant that exists; addresses are then moved into the tenant's domain so
the action handlers past the domain check are reached too. A 5xx anywhere is a bug; 4xx is fine.

The schema is loaded at import (``schemathesis.pytest.from_fixture`` does not work with pytest 9:
it sets ``Function._nodeid``, which pytest no longer has); the app is passed to each call.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.python import asgi

from smtp_discovery.admin.api import create_app
from smtp_discovery.admin.context import AdminContext
from smtp_discovery.admin.tokens import new_token
from smtp_discovery.platform.kafka import ensure_topics
from smtp_discovery.schemas.tenant import TenantConfig
from smtp_discovery.schemas.topics import ADMIN_TOKENS, TopicNames
from smtp_discovery.sinks.migrate import migrate
from smtp_discovery.sinks.schema import Layout
from tests.token_key import KEY

pytestmark = pytest.mark.kafka

TENANT = "acme"


# The document is the app's own; building it needs no Kafka or ClickHouse (nor a context).
# An erasure and a tenant's removal wait for a streams worker and a sink to finish them (then
# 504, to run them again): this module runs neither. tests/test_erasure.py runs both.
schema = (
    schemathesis.openapi.from_dict(create_app(None).openapi())  # type: ignore[arg-type]
    .exclude(path="/v1/tenants/{tenant_id}/erasures")
    .exclude(path="/v1/tenants/{tenant_id}", method="DELETE")
)


@dataclass
class Served:
    app: Any
    operator: dict[str, str]
    tenant: dict[str, str]


@pytest.fixture(scope="module")
def served(kafka_bootstrap: str, clickhouse: Any) -> Iterator[Served]:
    """The admin app, started on the event loop that serves it.

    Schemathesis calls an ASGI app from an event-loop thread of its own, and the API's Kafka
    clients must live on the loop that uses them: so the context is built and started in the
    app's lifespan, which schemathesis runs on that loop before the first request.
    """
    unique = uuid.uuid4().hex[:10]
    names = TopicNames(f"f{unique}.")
    options = {"bootstrap_servers": kafka_bootstrap}
    layout = Layout(f"fuzz_{unique}")
    migrate(clickhouse, layout)
    operator, operator_record = new_token(None, "fuzz", key=KEY)
    tenant, tenant_record = new_token(TENANT, "fuzz", key=KEY)
    app = create_app(None)  # type: ignore[arg-type]  # the context is set at startup

    @contextlib.asynccontextmanager
    async def lifespan(_: Any) -> AsyncIterator[None]:
        await ensure_topics(options, partitions=1, replication=1, specs=names.specs())
        ctx = AdminContext(options, names, clickhouse, layout, token_key=KEY)
        await ctx.start()
        await ctx.publish(ADMIN_TOKENS, [operator_record, tenant_record])
        acme = TenantConfig(tenant_id=TENANT, event_time=datetime.now(UTC), name="Acme",
                            domains=(f"{TENANT}.example",))  # fmt: skip
        await ctx.tenant_writer.write(lambda _: [acme])
        app.state.context = ctx
        try:
            yield
        finally:
            await ctx.stop()

    app.router.lifespan_context = lifespan
    try:
        yield Served(app, {"Authorization": f"Bearer {operator}"},
                     {"Authorization": f"Bearer {tenant}"})  # fmt: skip
    finally:
        asgi.shutdown_lifespans()


def _into_tenant(value: Any) -> Any:
    """The body with every address moved into the tenant's domain (generated local parts kept),
    so action handlers get past the domain check to the commands they build."""
    if isinstance(value, dict):
        return {k: _into_tenant(v) if k in ADDRESS_FIELDS else v for k, v in value.items()}
    if isinstance(value, list):
        return [_into_tenant(v) for v in value]
    if isinstance(value, str):
        return f"{value.rpartition('@')[0] or value or 'user'}@{TENANT}.example"
    return value


ADDRESS_FIELDS = {"addresses", "users", "address", "primary"}


@schema.parametrize()
@settings(
    max_examples=15,
    # The same examples on every run (tests/conftest.py): HYPOTHESIS_PROFILE=explore searches anew.
    derandomize=os.environ.get("HYPOTHESIS_PROFILE", "default") != "explore",
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
def test_no_input_makes_the_api_fail(case: schemathesis.Case, served: Served) -> None:
    def call(headers: dict[str, str] | None = None) -> None:
        case.call_and_validate(app=served.app, headers=headers, checks=[not_a_server_error])

    call()  # with the generated Authorization header, if any
    call(served.operator)
    if case.path_parameters and "tenant_id" in case.path_parameters:
        case.path_parameters["tenant_id"] = TENANT
        call(served.operator)
    call(served.tenant)
    if case.path_parameters and "address" in case.path_parameters:
        case.path_parameters["address"] = _into_tenant(case.path_parameters["address"])
        call(served.tenant)
    if isinstance(case.body, dict) and "addresses" in case.body:
        case.body = _into_tenant(case.body)
        call(served.tenant)
