"""`smtp-discovery status`: the screen and the exit status from gathered facts (pure), the admin
API's ``/v1/overview`` route it reads, and the command against a real running `up`: all ready,
then its streams worker killed (not ready until `up` has it back), then `up` stopped.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from smtp_discovery.admin.api import create_app
from smtp_discovery.admin.context import AdminContext
from smtp_discovery.admin.tokens import new_token
from smtp_discovery.localkafka.node import free_port
from smtp_discovery.platform.errors import ConfigError
from smtp_discovery.schemas.codec import encode
from smtp_discovery.schemas.tenant import TenantConfig
from smtp_discovery.schemas.topics import TopicNames
from smtp_discovery.sinks.schema import Layout
from smtp_discovery.status import (
    NOT_CHECKED,
    NOT_READY,
    OFF,
    READY,
    Facts,
    Instance,
    Lag,
    Reach,
    as_json,
    exit_code,
    lag_of,
    parse_ops,
    render,
)
from tests.smtp_discovery.test_stop import READY as UP_READY
from tests.smtp_discovery.test_stop import System, _env, _stopped_in_time

# ---- the screen and the exit status -----------------------------------------------------------

ALL_READY = Facts(
    system="`up` on /data",
    roles=(
        Instance("ingest", READY, "smtp 127.0.0.1:2525, ops 127.0.0.1:9125"),
        Instance("worker", READY, "ops 127.0.0.1:40001"),
        Instance("sink", READY, "in `up`'s process", "group smtp-discovery-sink: 1 member"),
        Instance("admin", READY, "http://127.0.0.1:8025"),
        Instance("jobs", OFF, "", "DISCOVERY_REPORT_SMARTHOST was not set for `up`"),
    ),
    kafka=Reach(True, "127.0.0.1:9092", "1 broker"),
    clickhouse=Reach(True, "chdb:///data/clickhouse", "read through the admin API"),
    lags=(
        Lag("worker", "smtp-discovery-streams", ("discovery.mail",), 12, 1),
        Lag("sink", "smtp-discovery-sink", ("discovery.mail",), 0, 1),
    ),
    spool_bytes=0.0,
    tenants=2,
    addresses={"discovered": 3, "user": 1, "alias": 1},
)


def _role(facts: Facts, role: str, **changes: Any) -> Facts:
    roles = tuple(replace(r, **changes) if r.role == role else r for r in facts.roles)
    return replace(facts, roles=roles)


def test_all_ready_exits_0_and_shows_every_figure() -> None:
    screen = render(ALL_READY)
    assert exit_code(ALL_READY) == 0
    assert screen.splitlines() == [
        "smtp-discovery status: `up` on /data",
        "",
        "ingest      ready       smtp 127.0.0.1:2525, ops 127.0.0.1:9125",
        "worker      ready       ops 127.0.0.1:40001",
        "sink        ready       in `up`'s process, group smtp-discovery-sink: 1 member",
        "admin API   ready       http://127.0.0.1:8025",
        "jobs        off         DISCOVERY_REPORT_SMARTHOST was not set for `up`",
        "",
        "kafka       reachable   127.0.0.1:9092 (1 broker)",
        "clickhouse  reachable   chdb:///data/clickhouse (read through the admin API)",
        "",
        "lag         worker      12 records (group smtp-discovery-streams, 1 member)",
        "lag         sink        0 records (group smtp-discovery-sink, 1 member)",
        "spool       0 bytes waiting in the ingest spool for Kafka",
        "tenants     2",
        "addresses   5: pending 0, discovered 3, user 1, functional 0, alias 1, invalid 0",
        "",
        "all ready",
    ]


def test_a_role_that_is_not_ready_exits_1_and_the_screen_names_it() -> None:
    facts = _role(
        ALL_READY,
        "worker",
        state=NOT_READY,
        detail="its ops endpoint does not answer (Connection refused)",
    )
    screen = render(facts)
    assert exit_code(facts) == 1
    assert "worker      not ready   ops 127.0.0.1:40001, its ops endpoint does not" in screen
    assert screen.rstrip().endswith(
        "NOT READY:\n- the streams worker (ops 127.0.0.1:40001) is not ready: its ops endpoint "
        "does not answer (Connection refused)"
    )
    assert "all ready" not in screen


def test_kafka_unreachable_exits_1_and_says_so() -> None:
    facts = replace(
        ALL_READY,
        kafka=Reach(False, "127.0.0.1:9092", "KafkaConnectionError: Unable to bootstrap"),
        lags=tuple(
            replace(lag, records=None, members=None, detail="Kafka is unreachable")
            for lag in ALL_READY.lags
        ),
    )
    screen = render(facts)
    assert exit_code(facts) == 1
    assert "kafka       UNREACHABLE 127.0.0.1:9092 (KafkaConnectionError" in screen
    assert "lag         worker      unknown (group smtp-discovery-streams; Kafka is " in screen
    assert "- Kafka at 127.0.0.1:9092 is unreachable: KafkaConnectionError: Unable to " in screen


def test_clickhouse_unreachable_exits_1_and_says_so() -> None:
    why = "InfrastructureError: cannot open ClickHouse at http://ch:8123"
    facts = replace(
        ALL_READY,
        clickhouse=Reach(False, "http://ch:8123", why),
        tenants=None,
        addresses=None,
        counts_detail="ClickHouse is unreachable",
    )
    screen = render(facts)
    assert exit_code(facts) == 1
    assert f"clickhouse  UNREACHABLE http://ch:8123 ({why})" in screen
    assert "tenants     unknown\naddresses   unknown\n            (ClickHouse is unreachable)" in (
        screen
    )
    assert f"- ClickHouse at http://ch:8123 is unreachable: {why}" in screen


def test_several_failures_are_each_one_sentence() -> None:
    facts = replace(
        _role(ALL_READY, "ingest", state=NOT_READY, detail="/readyz answered 503 not ready"),
        kafka=Reach(False, "k:9092", "no answer within 20 s"),
    )
    problems = as_json(facts)["not_ready"]
    assert problems == [
        "the ingest node (smtp 127.0.0.1:2525, ops 127.0.0.1:9125) is not ready: /readyz "
        "answered 503 not ready",
        "Kafka at k:9092 is unreachable: no answer within 20 s",
    ]


def test_roles_off_or_not_checked_do_not_fail() -> None:
    facts = _role(
        ALL_READY,
        "admin",
        state=NOT_CHECKED,
        where="",
        detail="name its ops endpoint: --ops admin=URL",
    )
    assert exit_code(facts) == 0
    assert "admin API   not checked name its ops endpoint: --ops admin=URL" in render(facts)


def test_no_running_up_is_one_sentence_and_exit_1() -> None:
    facts = Facts("`up` on /data", problem="no `smtp-discovery up` is running on /data: start one")
    assert exit_code(facts) == 1
    assert render(facts) == (
        "smtp-discovery status: `up` on /data\n\nNOT READY:\n"
        "- no `smtp-discovery up` is running on /data: start one\n"
    )


def test_json_carries_the_facts_and_the_verdict() -> None:
    out = json.loads(json.dumps(as_json(ALL_READY)))
    assert out["ready"] is True and out["not_ready"] == []
    assert out["roles"][1] == {
        "role": "worker",
        "state": "ready",
        "where": "ops 127.0.0.1:40001",
        "detail": "",
    }
    assert out["lags"][0]["records"] == 12 and out["lags"][0]["topics"] == ["discovery.mail"]
    assert out["kafka"]["reachable"] is True and out["tenants"] == 2
    assert out["addresses"] == {"discovered": 3, "user": 1, "alias": 1}


def test_lag_counts_from_the_committed_offset_or_the_first_one() -> None:
    class Mark:
        def __init__(self, offset: int) -> None:
            self.offset = offset

    ends = {"a": 10, "b": 7, "c": 5, "d": 3}
    starts = {"a": 0, "b": 2, "c": 0, "d": 0}
    committed = {"a": Mark(4), "c": Mark(9), "d": Mark(-1)}
    # a: 10 - 4; b: nothing committed, from its first offset 2; c: past the end counts 0; d: -1
    # is no offset.
    assert lag_of(ends, starts, committed) == 6 + 5 + 0 + 3


def test_ops_endpoints_are_role_equals_urls() -> None:
    assert parse_ops(
        [
            "ingest=10.0.0.1:9125,http://10.0.0.2:9125/",
            "worker=0.0.0.0:9125",
            "ingest=https://in3:443",
        ]
    ) == {
        "ingest": ["http://10.0.0.1:9125", "http://10.0.0.2:9125", "https://in3:443"],
        "worker": ["http://127.0.0.1:9125"],
    }
    for bad in ("ingest", "streams=h:1", "worker="):
        with pytest.raises(ConfigError, match="ROLE=URL"):
            parse_ops([bad])


# ---- the route status reads ---------------------------------------------------------------------


class Counted:
    """A ClickHouse client that answers the addresses-by-status query."""

    def __init__(self) -> None:
        self.sql: list[str] = []

    def query(self, sql: str, parameters: Any = None) -> Any:
        self.sql.append(sql)
        return type("Result", (), {"result_rows": [("discovered", 3), ("user", 2)]})()


async def test_the_overview_route_counts_for_operators_only() -> None:
    clickhouse = Counted()
    ctx = AdminContext(
        {"bootstrap_servers": "127.0.0.1:1"}, TopicNames(), clickhouse, Layout("discovery")
    )
    operator, record = new_token(None, "operator", key=None)
    ctx.tokens.admit(record)
    tenant_token, record = new_token("acme", "admin", key=None)
    ctx.tokens.admit(record)
    for tenant_id in ("acme", "beta"):
        config = TenantConfig(
            tenant_id=tenant_id,
            event_time=datetime.now(UTC),
            name=tenant_id.title(),
            tech_contact=f"it@{tenant_id}.example",
        )
        ctx.tenants.apply(tenant_id.encode(), encode(config))
    transport = httpx.ASGITransport(app=create_app(ctx))
    async with (
        contextlib.AsyncExitStack() as stack,
        httpx.AsyncClient(transport=transport, base_url="http://admin.test") as http,
    ):
        stack.push_async_callback(ctx.stop)  # never started: only its producer to close
        answer = await http.get("/v1/overview", headers={"Authorization": f"Bearer {operator}"})
        assert answer.status_code == 200, answer.text
        assert answer.json() == {"tenants": 2, "addresses": {"discovered": 3, "user": 2}}
        assert "address_state" in clickhouse.sql[0] and "FINAL" in clickhouse.sql[0]
        refused = await http.get(
            "/v1/overview", headers={"Authorization": f"Bearer {tenant_token}"}
        )
        assert refused.status_code == 403, refused.text
        assert (await http.get("/v1/overview")).status_code == 401
    assert len(clickhouse.sql) == 1


# ---- against a running `up` ---------------------------------------------------------------------

ROLE_LINES = (
    "ingest      ready",
    "worker      ready",
    "sink        ready",
    "admin API   ready",
    "jobs        off",
)


def _status(system: System, *args: str) -> subprocess.CompletedProcess[str]:
    """`smtp-discovery status` with no variable of its own: it finds `up` by the data dir."""
    return system.cli("status", *args)


def _until(what: str, check: Any, timeout: float) -> Any:
    """Poll ``check()`` (a truthy answer ends it) until ``timeout``; no sleeps of a set length."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
    raise AssertionError(f"never: {what}; last: {last!r}")


@pytest.mark.kafka
@pytest.mark.timeout(600)
def test_status_of_a_running_up_then_its_worker_killed_then_up_stopped(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    env = {
        **_env(data_dir),
        "DISCOVERY_OPS_LISTEN": f"127.0.0.1:{free_port()}",  # the ingest node's, for its spool
        # A killed worker's member leaves the group after this: the restarted one is ready then.
        "DISCOVERY_STREAMS_SESSION_TIMEOUT_S": "15",
    }
    system = System(data_dir, env, {})
    terminal = system.start()
    try:
        out = terminal.wait_for(UP_READY, 240)
        token = (data_dir / "operator-token").read_text().strip()
        admin = f"http://{env['DISCOVERY_ADMIN_LISTEN']}"
        operator = {"Authorization": f"Bearer {token}"}
        made = httpx.post(
            f"{admin}/v1/tenants",
            headers=operator,
            timeout=60,
            json={"tenant_id": "acme", "name": "Acme", "domains": ["acme.example"]},
        )
        assert made.status_code == 201, made.text
        users = "address,first_name,surname,role\nann@acme.example,Ann,Lee,end_user\n" + (
            "bob@acme.example,Bob,Ray,end_user\n"
        )
        queued = httpx.post(
            f"{admin}/v1/tenants/acme/users/import",
            content=users,
            headers={**operator, "Content-Type": "text/csv"},
            timeout=60,
        )
        assert queued.status_code == 202, queued.text

        def settled() -> dict[str, Any] | None:
            """The JSON status once the users went through the worker and the sink."""
            run = _status(system, "--json")
            facts = json.loads(run.stdout)
            done = (
                run.returncode == 0
                and facts["addresses"] == {"user": 2}
                and all(lag["records"] == 0 for lag in facts["lags"])
            )
            return facts if done else None

        facts = _until("the two users counted, no lag", settled, 120)
        assert facts["tenants"] == 1 and facts["ready"] is True
        shown = _status(system)
        assert shown.returncode == 0, shown.stdout + shown.stderr
        screen = shown.stdout
        assert f"smtp-discovery status: `up` on {data_dir}" in screen
        for line in ROLE_LINES:
            assert f"\n{line}" in screen, screen
        assert f"smtp {env['DISCOVERY_INGEST_LISTEN']}, ops {env['DISCOVERY_OPS_LISTEN']}" in (
            screen
        )
        endpoints = json.loads((data_dir / "endpoints.json").read_text())
        assert f"worker      ready       ops {endpoints['ops']['worker']}" in screen
        assert f"admin API   ready       {admin}" in screen
        assert f"kafka       reachable   {endpoints['kafka']} (1 broker)" in screen
        assert "clickhouse  reachable   chdb://" in screen
        assert re.search(
            r"\nlag         worker      \d+ records \(group smtp-discovery-streams", screen
        ), screen
        assert re.search(
            r"\nlag         sink        \d+ records \(group smtp-discovery-sink", screen
        ), screen
        assert "\nspool       0 bytes waiting in the ingest spool for Kafka\n" in screen
        assert "\ntenants     1\n" in screen
        assert "\naddresses   2: pending 0, discovered 0, user 2, functional 0" in screen
        assert screen.rstrip().endswith("all ready")

        # The worker killed: `up` starts it again, and it is ready once the killed one's member
        # has left the group (its session timeout); until then status says it is not.
        worker = re.search(r"worker      pid (\d+)", out)
        assert worker, out
        os.kill(int(worker.group(1)), signal.SIGKILL)

        def worker_down() -> subprocess.CompletedProcess[str] | None:
            run = _status(system)
            return run if run.returncode == 1 else None

        down = _until("status says the worker is not ready", worker_down, 60).stdout
        assert "\nworker      not ready   ops " in down, down
        assert "- the streams worker (ops " in down and ") is not ready: " in down, down
        assert "\ningest      ready" in down and "\nkafka       reachable" in down, down
        back = _until("the restarted worker ready", lambda: _status(system).returncode == 0, 240)
        assert back

        began = time.monotonic()
        terminal.ctrl_c()
        assert _stopped_in_time(terminal, began, data_dir) == 0
    finally:
        terminal.close()
    stopped = _status(system)
    assert stopped.returncode == 1
    assert stopped.stdout.rstrip().endswith(
        f"- no `smtp-discovery up` is running on {data_dir}: start one (same DISCOVERY_DATA_DIR),"
        " or, for a cluster, set KAFKA_BOOTSTRAP (and CLICKHOUSE_URL) and name the roles' ops "
        "endpoints with --ops ROLE=URL"
    ), stopped.stdout
    assert json.loads(_status(system, "--json").stdout)["ready"] is False
