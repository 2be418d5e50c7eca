"""``GET /v1/overview``: the system in figures, for the provider's operators: how many tenants
there are, and how many addresses each status has over every tenant (``smtp-discovery status``
shows them). ``api.create_app`` includes this router behind the ``operator`` dependency, so a
tenant's token is refused (403) as on every operator route.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from smtp_discovery.admin.context import AdminContext
from smtp_discovery.sinks import queries

router = APIRouter(prefix="/v1")


@router.get("/overview", tags=["operations"])
async def overview(request: Request) -> dict[str, Any]:
    """``tenants``: as this API's view of the tenants topic has them (the tenants list's
    ``total``); ``addresses``: status -> live addresses, as the sink stored them in ClickHouse
    (a status none has is left out)."""
    ctx: AdminContext = request.app.state.context
    addresses = await ctx.ask(queries.addresses_by_status)
    return {"tenants": len(ctx.tenants.tenants), "addresses": addresses}
