"""A data subject's erasure and a tenant's removal, end to end on the real broker, a real
streams worker, the sink and chDB: afterwards nothing of the address (or of the tenant) is in
any compacted topic's view, in the worker's tables (their changelogs) or in any ClickHouse
table, while everything else is untouched; an erasure is logged by a hash only."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from smtp_discovery.admin.api import create_app
from smtp_discovery.admin.context import AdminContext
from smtp_discovery.admin.erasure import subject_of
from smtp_discovery.admin.tokens import new_token
from smtp_discovery.schemas.mail import CalloutVerified, RecipientDelivered
from smtp_discovery.schemas.topics import ADMIN_TOKENS, MAIL
from smtp_discovery.sinks.migrate import migrate
from smtp_discovery.sinks.queries import select
from smtp_discovery.sinks.schema import Layout
from smtp_discovery.sinks.sink import Sink, SinkSettings
from tests.streams.worker_harness import WorkerRun
from tests.token_key import KEY

pytestmark = pytest.mark.kafka

ERASED = ("ann@acme.example", "jdoe@acme.example")
ERASURE_WAIT_S = 120
"""How long an erasure or removal that can finish may take (the worker, the sink): a bound,
not a wait (the answer comes once it is done); a worker started just before has to join its
group first, which on two busy cores can take more than 20 s."""
HALFWAY_WAIT_S = 6
"""The same for the runs that cannot finish (no sink, or no worker): they answer 504 once it
has passed, so it only needs to be long enough for the steps that can finish before the one
that cannot (the worker erasing, in the erasure's run without a sink)."""


async def until(what: str, check: Any, timeout: float = 120.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (found := await check()):
        assert time.monotonic() < deadline, f"never: {what}"
        await asyncio.sleep(0.2)
    return found


async def compacted_view(bootstrap: str, topic: str) -> dict[bytes, bytes]:
    """The topic as compaction leaves it: the latest value per key, tombstoned keys gone."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        numbers = await _partitions(bootstrap, topic)
        parts = [TopicPartition(topic, p) for p in sorted(numbers)]
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        ends = await consumer.end_offsets(parts)
        latest: dict[bytes, bytes | None] = {}
        for tp in parts:
            while await consumer.position(tp) < ends[tp]:
                for record in (await consumer.getmany(tp, timeout_ms=500)).get(tp, []):
                    latest[record.key or b""] = record.value
        return {k: v for k, v in latest.items() if v is not None}
    finally:
        await consumer.stop()


async def _partitions(bootstrap: str, topic: str) -> list[int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        (described,) = await admin.describe_topics([topic])
    finally:
        await admin.close()
    assert described["partitions"], f"no topic {topic}"
    return [p["partition"] for p in described["partitions"]]


def mentions(data: Any) -> set[str]:
    text = str(data).lower()
    return {address for address in (*ERASED, "bob@acme.example") if address in text}


async def test_an_erased_address_is_gone_from_everywhere(
    kafka_bootstrap: str, clickhouse: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    run = WorkerRun(kafka_bootstrap, f"er{uuid.uuid4().hex[:8]}", tmp_path)
    await run.setup([])
    options = {"bootstrap_servers": kafka_bootstrap}
    layout = Layout(f"erasure_{uuid.uuid4().hex[:8]}")
    migrate(clickhouse, layout)
    sink_group = f"{run.app_id}-sink"
    ctx = AdminContext(options, run.names, clickhouse, layout, token_key=KEY,
                       sink_group=sink_group, streams_group=run.app_id,
                       erasure_wait_s=ERASURE_WAIT_S)  # fmt: skip
    await ctx.start()
    bearer, token = new_token(None, "erasure", key=KEY)
    await ctx.publish(ADMIN_TOKENS, [token])
    api = httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(ctx)),
                            base_url="http://admin", timeout=300,
                            headers={"Authorization": f"Bearer {bearer}"})  # fmt: skip
    stop = asyncio.Event()
    sink = Sink(options, clickhouse, layout, run.names,
                SinkSettings(group=sink_group, batch_rows=500, batch_seconds=0.2))  # fmt: skip
    sink_task = asyncio.create_task(sink.run(stop))
    try:
        created = await api.post("/v1/tenants", json={
            "tenant_id": "acme", "name": "Acme", "domains": ["acme.example"],
            "settings": {"discovery_enabled": True}})  # fmt: skip
        assert created.status_code == 201, created.text
        epoch = created.json()["verification_cache_epoch"]
        run.start("w1")
        now = datetime.now(UTC)
        events: list[Any] = []
        for i, address in enumerate(("ann@acme.example", "jdoe@acme.example", "bob@acme.example")):
            common = {"tenant_id": "acme", "address": address, "node_id": "n1"}
            events.append(CalloutVerified(**common, event_time=now + timedelta(seconds=i),
                                          destination="mx:25", reply_code=250))  # fmt: skip
            events += [RecipientDelivered(**common, event_time=now + timedelta(minutes=j + 1),
                                          verdict="clean", message_id=f"{address}-{j}",
                                          client_ip="192.0.2.1") for j in range(2)]  # fmt: skip
        await run.publish(events, topic=MAIL)

        async def act(body: dict[str, Any]) -> None:
            answer = await api.post("/v1/tenants/acme/actions", json=body)
            assert answer.status_code == 202, answer.text
            command = answer.json()["commands"][0]["command_id"]

            async def applied() -> bool:
                status = await api.get(f"/v1/tenants/acme/commands/{command}")
                return status.json()["status"] == "applied"

            await until(f"{body['action']} applied", applied)

        await act({"action": "create_user", "addresses": ["ann@acme.example"],
                   "users": [{"address": "ann@acme.example", "first_name": "Ann"}]})  # fmt: skip
        await act({"action": "add_alias", "addresses": ["jdoe@acme.example"],
                   "primary": "ann@acme.example"})  # fmt: skip

        async def stored() -> bool:
            rows = await ctx.run(
                select,
                ctx.clickhouse,
                f"SELECT count() FROM {layout.name('mail_events')} "
                "WHERE address = 'ann@acme.example'",
            )
            aliased = await ctx.run(
                select,
                ctx.clickhouse,
                f"SELECT count() FROM {layout.name('address_state')} FINAL "
                "WHERE address = 'jdoe@acme.example' AND status = 'alias' AND is_deleted = 0",
            )
            return rows[0][0] >= 3 and aliased[0][0] == 1

        await until("ann's mail and jdoe's alias stored in ClickHouse", stored)

        caplog.set_level(logging.INFO, logger="smtp_discovery.admin")
        # Stopped half-way: with no sink to store the tombstones, ClickHouse cannot be cleaned;
        # the worker has erased both records by then.
        stop.set()
        await sink_task
        ctx.erasure_wait_s = HALFWAY_WAIT_S
        halfway = await api.post("/v1/tenants/acme/erasures", json={"address": "ann@acme.example"})
        assert halfway.status_code == 504, halfway.text
        ctx.erasure_wait_s = ERASURE_WAIT_S
        # Run again with the sink back: it finishes, the alias included.
        stop = asyncio.Event()
        sink = Sink(options, clickhouse, layout, run.names,
                    SinkSettings(group=sink_group, batch_rows=500, batch_seconds=0.2))  # fmt: skip
        sink_task = asyncio.create_task(sink.run(stop))

        async def tombstones_stored() -> bool:  # jdoe is no longer an alias in the latest view
            rows = await ctx.run(
                select,
                ctx.clickhouse,
                f"SELECT argMax(is_deleted, kafka_offset) FROM {layout.name('address_state')} "
                "WHERE record_key = 'acme:jdoe@acme.example'",
            )
            return rows[0][0] == 1

        await until("the sink stored the worker's tombstones", tombstones_stored)
        # A merge keeps only the latest version of each record: jdoe's alias version goes.
        clickhouse.command(f"OPTIMIZE TABLE {layout.name('address_state')} FINAL")
        erased = await api.post("/v1/tenants/acme/erasures", json={"address": "Ann@acme.example"})
        assert erased.status_code == 200, erased.text
        report = erased.json()
        assert report["subject"] == subject_of("acme", "ann@acme.example")
        assert report["aliases"] == 1
        assert report["rows"]["mail_events"] == 6 and report["rows"]["address_state"] >= 2
        said = "\n".join(r.getMessage() for r in caplog.records)
        assert report["subject"] in said and not mentions(said), said

        # Compacted topics: address state, the worker's tables (their changelogs), tenants.
        topics = [run.names("discovery.address-state"), run.names("discovery.tenants"),
                  run.names("discovery.admin-tokens"), f"{run.app_id}-records-changelog",
                  f"{run.app_id}-groups-changelog", f"{run.app_id}-journal-changelog"]  # fmt: skip

        async def tables_clean() -> bool:
            views = [await compacted_view(kafka_bootstrap, t) for t in topics]
            return all(not (mentions(v) & set(ERASED)) for v in views)

        await until("nothing of ann or jdoe in any compacted topic", tables_clean, 60)
        state = await compacted_view(kafka_bootstrap, topics[0])
        assert mentions(state) == {"bob@acme.example"}, "the others are untouched"

        # Every ClickHouse table of the layout.
        tables = [row[0] for row in clickhouse.query(
            "SELECT name FROM system.tables WHERE database = {d:String} AND engine NOT LIKE "
            "'%View%'", parameters={"d": layout.database}).result_rows]  # fmt: skip
        assert "mail_events" in tables and "address_activity" in tables
        found = {}
        for table in tables:
            rows = clickhouse.query(f"SELECT * FROM {layout.database}.{table}").result_rows
            found[table] = mentions(rows)
        assert not any(m & set(ERASED) for m in found.values()), found
        assert "bob@acme.example" in found["mail_events"]

        tenant = (await api.get("/v1/tenants/acme")).json()
        assert tenant["verification_cache_epoch"] > epoch, "every ingest node forgets its cache"
        again = await api.post("/v1/tenants/acme/erasures", json={"address": "ann@acme.example"})
        assert again.status_code == 200 and again.json()["rows"]["mail_events"] == 0
    finally:
        stop.set()
        await sink_task
        await api.aclose()
        await ctx.stop()
        run.stop_all()


def mail_for(tenant: str, address: str, at: datetime) -> list[Any]:
    common = {"tenant_id": tenant, "address": address, "node_id": "n1"}
    return [CalloutVerified(**common, event_time=at, destination="mx:25", reply_code=250),
            *[RecipientDelivered(**common, event_time=at + timedelta(minutes=j + 1),
                                 verdict="clean", message_id=f"{address}-{j}",
                                 client_ip="192.0.2.1") for j in range(2)]]  # fmt: skip


async def test_a_removed_tenant_leaves_nothing_behind(
    kafka_bootstrap: str, clickhouse: Any, tmp_path: Path
) -> None:
    run = WorkerRun(kafka_bootstrap, f"off{uuid.uuid4().hex[:8]}", tmp_path)
    await run.setup([])
    options = {"bootstrap_servers": kafka_bootstrap}
    layout = Layout(f"offboard_{uuid.uuid4().hex[:8]}")
    migrate(clickhouse, layout)
    sink_group = f"{run.app_id}-sink"
    ctx = AdminContext(options, run.names, clickhouse, layout, token_key=KEY,
                       sink_group=sink_group, streams_group=run.app_id,
                       erasure_wait_s=ERASURE_WAIT_S)  # fmt: skip
    await ctx.start()
    bearer, token = new_token(None, "offboarding", key=KEY)
    await ctx.publish(ADMIN_TOKENS, [token])
    api = httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(ctx)),
                            base_url="http://admin", timeout=600,
                            headers={"Authorization": f"Bearer {bearer}"})  # fmt: skip
    stop = asyncio.Event()
    sink = Sink(options, clickhouse, layout, run.names,
                SinkSettings(group=sink_group, batch_rows=500, batch_seconds=0.2))  # fmt: skip
    sink_task = asyncio.create_task(sink.run(stop))
    try:
        for tenant in ("acme", "beta"):
            created = await api.post("/v1/tenants", json={
                "tenant_id": tenant, "name": tenant.title(), "domains": [f"{tenant}.example"],
                "settings": {"discovery_enabled": True}})  # fmt: skip
            assert created.status_code == 201, created.text
        made = await api.post("/v1/tokens", json={"tenant_id": "acme", "label": "helpdesk"})
        acme_token = {"Authorization": f"Bearer {made.json()['token']}"}
        assert (await api.get("/v1/tenants/acme", headers=acme_token)).status_code == 200
        run.start("w1")
        now = datetime.now(UTC)
        await run.publish([*mail_for("acme", "ann@acme.example", now),
                           *mail_for("acme", "bob@acme.example", now),
                           *mail_for("beta", "cy@beta.example", now)], topic=MAIL)  # fmt: skip

        async def stored() -> bool:
            rows = await ctx.run(
                select,
                ctx.clickhouse,
                f"SELECT tenant_id, count() FROM {layout.name('address_state')} FINAL "
                "WHERE is_deleted = 0 GROUP BY tenant_id",
            )
            return dict(rows) == {"acme": 2, "beta": 1}

        await until("both tenants' addresses stored", stored)

        plan = await api.delete("/v1/tenants/acme", params={"dry_run": "true"})
        assert plan.status_code == 200, plan.text
        assert plan.json()["registered"] and plan.json()["tokens"] == 1
        assert plan.json()["addresses"] == 2 and plan.json()["rows"]["mail_events"] == 6
        assert (await api.get("/v1/tenants/acme")).status_code == 200, "a dry run changes nothing"

        # A removal that cannot finish (no streams worker runs) stops half-way: the tenant is
        # gone from the tenants topic and its token revoked, its state not yet erased.
        run.stop_all()
        ctx.erasure_wait_s = HALFWAY_WAIT_S
        halfway = await api.delete("/v1/tenants/acme")
        assert halfway.status_code == 504, halfway.text
        ctx.erasure_wait_s = ERASURE_WAIT_S
        assert halfway.json()["error"]["code"] == "erasure_incomplete"
        assert (await api.get("/v1/tenants/acme")).status_code == 404
        assert (await api.get("/v1/tenants/acme", headers=acme_token)).status_code == 401
        # Running it again, with a worker back, finishes the job.
        run.start("w2")
        removed = await api.delete("/v1/tenants/acme")
        assert removed.status_code == 200, removed.text
        assert removed.json()["addresses"] == 2 and not removed.json()["registered"]

        topics = [run.names("discovery.address-state"), run.names("discovery.tenants"),
                  run.names("discovery.admin-tokens"), f"{run.app_id}-records-changelog",
                  f"{run.app_id}-groups-changelog", f"{run.app_id}-journal-changelog"]  # fmt: skip

        async def topics_clean() -> bool:
            for topic in topics:
                view = await compacted_view(kafka_bootstrap, topic)
                if any(b"acme" in k or b"acme" in v for k, v in view.items()):
                    return False
            return True

        await until("nothing of acme in any compacted topic", topics_clean, 60)
        assert "cy@beta.example" in str(await compacted_view(kafka_bootstrap, topics[0]))
        tables = [row[0] for row in clickhouse.query(
            "SELECT name FROM system.tables WHERE database = {d:String} AND engine NOT LIKE "
            "'%View%'", parameters={"d": layout.database}).result_rows]  # fmt: skip
        left = {t: str(clickhouse.query(f"SELECT * FROM {layout.database}.{t}").result_rows)
                for t in tables}  # fmt: skip
        assert not [t for t, rows in left.items() if "acme" in rows], left
        assert "beta" in left["tenants"] and "cy@beta.example" in left["mail_events"]

        again = await api.delete("/v1/tenants/acme")  # a re-run finishes (here: nothing left)
        assert again.status_code == 200, again.text
        assert not again.json()["registered"] and not any(again.json()["rows"].values())
    finally:
        stop.set()
        await sink_task
        await api.aclose()
        await ctx.stop()
        run.stop_all()
