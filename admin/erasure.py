"""Erasing one address everywhere the system keeps it: a data subject's erasure request.

Where an address lives, and how each place is reached (docs/data-protection.md):

1. The streams worker's tables and ``discovery.address-state``: an ``EraseAddress`` command for
   the address and one for each alias pointing to it. The worker, the only writer of its
   tables, drops the record (its changelog gets a tombstone) and publishes a tombstone, and it
   writes no state change that would carry the address into the history again.
2. The ingest nodes' verification caches: the tenant's cache epoch is bumped, so that every
   node forgets the tenant's cached callouts (the nodes key them by address; an erasure is rare
   enough that a tenant-wide refresh is the simpler, certain way).
3. ClickHouse, once the sink has stored everything written up to now (the tombstones included,
   whose record keys hold the address): the rows about the address go from every table that
   has them, and other rows forget it where they name it (an alias's ``primary``, a user's
   ``aliases``). Mutations rewrite the data parts, so the address does not stay on disk. The
   rollups of counts per tenant and day never held it.

Every step can be run again: a re-run after a crash or a timeout finishes the job. The request
is logged by a hash of tenant and address, never the address.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from smtp_discovery.admin.context import AdminContext
from smtp_discovery.admin.errors import ApiError
from smtp_discovery.schemas.address import parse_address
from smtp_discovery.schemas.commands import EraseAddress
from smtp_discovery.schemas.tenant import TenantConfig, revised
from smtp_discovery.schemas.topics import ADDRESS_STATE, COMMANDS, MAIL, MAIL_SETTLED, STATE_CHANGES
from smtp_discovery.sinks import queries

log = logging.getLogger("smtp_discovery.admin")

SINK_TOPICS = (ADDRESS_STATE, STATE_CHANGES, MAIL, MAIL_SETTLED)
"""What the sink must have stored before ClickHouse is cleaned (not the tenants topic: it is
written in transactions, and its end offset is a marker no consumer commits past)."""


@dataclass
class Erasure:
    subject: str
    """A hash of tenant and address: proof the request was done, without the address."""
    aliases: int = 0
    rows: dict[str, int] = field(default_factory=dict)

    def view(self) -> dict[str, Any]:
        return {"subject": self.subject, "aliases": self.aliases, "rows": self.rows}


def subject_of(tenant_id: str, address: str) -> str:
    normalized = parse_address(address).normalized
    return hashlib.sha256(f"{tenant_id}:{normalized}".encode()).hexdigest()[:16]


async def erase_address(
    ctx: AdminContext, tenant: TenantConfig, address: str, actor: str
) -> Erasure:
    """Erase ``address`` of ``tenant`` from the worker, the topics' views, the ingest caches
    and ClickHouse; an ``ApiError`` 504 if a step did not finish in ``ctx.erasure_wait_s`` (run
    it again)."""
    parsed = parse_address(address)
    forms = sorted({parsed.display.lower(), parsed.normalized})
    done = Erasure(subject_of(tenant.tenant_id, address))
    log.info("erasure %s of tenant %s: started", done.subject, tenant.tenant_id)
    deadline = time.monotonic() + ctx.erasure_wait_s

    # Its aliases now, and those a run stopped half-way has already erased from the worker but
    # not yet from ClickHouse: a re-run must find them. The state history has every address
    # that became its alias (address_state may have merged such a version away behind a
    # tombstone); of those, the ones alive as something else now are not its aliases any more.
    aliases = await ctx.ask(queries.aliases_to_erase, tenant.tenant_id, forms)
    done.aliases = len(aliases)
    commands = [
        EraseAddress(tenant_id=tenant.tenant_id, event_time=ctx.clock.now(), actor=actor, address=a)
        for a in [*aliases, parsed.display]
    ]
    await worker_erases(ctx, commands, deadline)

    def bump(directory: Any) -> list[TenantConfig]:
        current = directory.tenant(tenant.tenant_id) or tenant
        epoch = current.verification_cache_epoch + 1
        return [revised(current, ctx.clock.now(), verification_cache_epoch=epoch)]

    await ctx.tenant_writer.write(bump)
    await sink_caught_up(ctx, deadline)
    for erased in [parsed, *(parse_address(a) for a in aliases)]:
        key = erased.record_key(tenant.tenant_id)
        its_forms = sorted({erased.display.lower(), erased.normalized})
        for table in queries.ADDRESS_ROWS:
            rows = await ctx.ask(queries.delete_address_rows, table, tenant.tenant_id, key,
                             its_forms)  # fmt: skip
            done.rows[table] = done.rows.get(table, 0) + rows
        for table in queries.NAMING_ROWS:
            rows = await ctx.ask(queries.unname_address, table, tenant.tenant_id, its_forms)
            done.rows[f"{table} (naming it)"] = done.rows.get(f"{table} (naming it)", 0) + rows
    log.info("erasure %s of tenant %s: done, %d aliases, rows %s", done.subject,
             tenant.tenant_id, done.aliases, done.rows)  # fmt: skip
    return done


async def worker_erases(ctx: AdminContext, commands: list[EraseAddress], deadline: float) -> None:
    """Publish the commands and wait until the streams worker has answered every one."""
    await ctx.publish(COMMANDS, commands)
    await until(deadline, "the streams worker erased the records", lambda: all(
        ctx.results.get(c.event_id) is not None for c in commands))  # fmt: skip
    refused = [r for c in commands if (r := ctx.results.get(c.event_id)) and r.outcome != "applied"]
    if refused:  # nothing the worker should ever answer to an erasure; say it, never hide it
        raise ApiError(500, "erasure_refused", f"the streams worker refused {len(refused)} "
                       f"erasures ({refused[0].reason_code}: {refused[0].message})")  # fmt: skip


async def sink_caught_up(ctx: AdminContext, deadline: float) -> None:
    """Until the sinks' group has stored every offset written to their topics so far."""
    await caught_up(ctx, ctx.sink_group, SINK_TOPICS, deadline, "the sinks")


async def caught_up(
    ctx: AdminContext, group: str, bases: tuple[str, ...], deadline: float, who: str
) -> None:
    """Until ``group`` has committed every offset written to the ``bases`` topics so far."""
    topics = [ctx.names(t) for t in bases]
    consumer = AIOKafkaConsumer(**ctx.kafka_options, enable_auto_commit=False)
    admin = AIOKafkaAdminClient(**ctx.kafka_options)
    await consumer.start()
    await admin.start()
    try:
        described = await admin.describe_topics(topics)
        partitions = [TopicPartition(t["topic"], p["partition"])
                      for t in described for p in t["partitions"]]  # fmt: skip
        ends = await consumer.end_offsets(partitions)

        async def committed() -> bool:
            offsets = await admin.list_consumer_group_offsets(group)
            return all(end == 0 or (tp in offsets and offsets[tp].offset >= end)
                       for tp, end in ends.items())  # fmt: skip

        await until(deadline, f"{who} ({group}) processed what was written", committed)
    finally:
        await admin.close()
        await consumer.stop()


async def until(deadline: float, what: str, check: Any) -> None:
    while True:
        found = check()
        if asyncio.iscoroutine(found):
            found = await found
        if found:
            return
        if time.monotonic() > deadline:
            message = f"{what} did not happen in time; run the erasure again to finish it"
            raise ApiError(504, "erasure_incomplete", message)
        await asyncio.sleep(0.1)
