"""Removing a tenant that leaves: its mail stops at once, its tokens stop working, and its state
is erased from the topics, the worker's tables and ClickHouse.

The steps, each safe to run again (a re-run after a crash or a timeout finishes the job; the
tenant's absence from the tenants topic does not stop it):

1. A tombstone for the tenant on ``discovery.tenants``: every ingest node then answers its
   domains as unregistered ones, and the streams worker skips its mail.
2. Tombstones for the tenant's tokens (and their last-use records).
3. Once the sinks have stored everything written so far, an ``EraseAddress`` command for every
   address ClickHouse knows of the tenant: the worker drops each record and tombstones it on
   ``discovery.address-state``, writing no history.
4. Once the sinks have stored those tombstones too, the tenant's rows go from every ClickHouse
   table that has a ``tenant_id`` (the report log and the tenants snapshot included), with
   mutations that rewrite the data parts.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from smtp_discovery.admin.context import AdminContext
from smtp_discovery.admin.erasure import caught_up, sink_caught_up, worker_erases
from smtp_discovery.platform.tenant_writes import Removal
from smtp_discovery.schemas.commands import EraseAddress
from smtp_discovery.schemas.topics import COMMANDS, MAIL
from smtp_discovery.sinks import queries

log = logging.getLogger("smtp_discovery.admin")

BATCH = 1000
"""Erase commands published at a time."""


async def remove_tenant(
    ctx: AdminContext, tenant_id: str, actor: str, *, dry_run: bool
) -> dict[str, Any]:
    """What removing ``tenant_id`` takes (``dry_run``) or took: counts per place, as found
    when the run began (the rows: as deleted)."""
    deadline = time.monotonic() + ctx.erasure_wait_s
    registered = ctx.tenants.tenant(tenant_id) is not None
    tokens = [t.token_id for t in ctx.tokens.listing(tenant_id)]
    tables = await ctx.ask(queries.tenant_tables)
    addresses = await ctx.ask(queries.tenant_addresses, tenant_id)
    rows = {t: await ctx.ask(queries.count_tenant_rows, t, tenant_id) for t in tables}
    plan = {"tenant": tenant_id, "registered": registered, "tokens": len(tokens),
            "addresses": len(addresses), "rows": rows, "dry_run": dry_run}  # fmt: skip
    if dry_run:
        return plan
    log.info("removing tenant %s: started (%d addresses, %d tokens)", tenant_id,
             len(addresses), len(tokens))  # fmt: skip
    if registered:
        await ctx.tenant_writer.write(
            lambda directory: [Removal(tenant_id.encode())] if directory.tenant(tenant_id) else []
        )
    for token_id in tokens:
        await ctx.revoke(token_id)
    # Everything the worker made of the tenant's mail so far, stored: then ClickHouse knows
    # every record it holds (later mail for the tenant is refused, or dead-lettered unapplied).
    await caught_up(ctx, ctx.streams_group, (MAIL, COMMANDS), deadline, "the streams workers")
    await sink_caught_up(ctx, deadline)
    addresses = await ctx.ask(queries.tenant_addresses, tenant_id)
    for start in range(0, len(addresses), BATCH):
        commands = [EraseAddress(tenant_id=tenant_id, event_time=ctx.clock.now(), actor=actor,
                                 address=a) for a in addresses[start : start + BATCH]]  # fmt: skip
        await worker_erases(ctx, commands, deadline)
    await sink_caught_up(ctx, deadline)
    removed = {}
    for table in tables:
        removed[table] = await ctx.ask(queries.delete_tenant_rows, table, tenant_id)
    log.info("removed tenant %s: %d addresses erased, %d tokens revoked, rows %s", tenant_id,
             len(addresses), len(tokens), removed)  # fmt: skip
    return {**plan, "rows": removed}
