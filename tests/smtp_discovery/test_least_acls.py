"""Each role under a Kafka principal of its own, with only the ACLs ``platform.access``
grants it, on a broker that denies everything else: mail still flows through every role, and a
role cannot write what it has no business writing (an ingest node no commands, tenants or
tokens; a sink no state)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiosmtplib
import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from aiosmtpd.controller import Controller

from smtp_discovery.localkafka import LocalKafka
from smtp_discovery.localkafka.node import free_port
from smtp_discovery.platform.access import ROLES, acl_arguments
from smtp_discovery.platform.config import KAFKA_FIELDS, RuntimeConfig
from smtp_discovery.platform.kafka_login import KafkaLogin
from smtp_discovery.schemas.topics import ADDRESS_STATE, ADMIN_TOKENS, COMMANDS, MAIL, TENANTS
from tests.smtp_discovery.ops_helpers import ready
from tests.token_key import key_file

pytestmark = pytest.mark.kafka

ROOT = Path(__file__).resolve().parents[2]
SUPER = KafkaLogin("kafka-admin", "super-secret-for-this-test")
LOGINS = {role: KafkaLogin(f"smtp-discovery-{role}", f"{role}-password") for role in ROLES}
CONFIG = RuntimeConfig(topic_partitions=2)
NAMES = CONFIG.topics


@dataclass
class Locked:
    kafka: LocalKafka
    tmp: Path

    def options(self, login: KafkaLogin) -> dict[str, Any]:
        return {"bootstrap_servers": self.kafka.bootstrap, **login.client_options()}

    def env(self, role: str, **extra: str) -> dict[str, str]:
        login = RuntimeConfig(kafka_bootstrap=self.kafka.bootstrap, **LOGINS[role].settings())
        return {
            **os.environ,
            **login.as_environment(*KAFKA_FIELDS),
            "DISCOVERY_TOPIC_PARTITIONS": "2",
            "DISCOVERY_DATA_DIR": str(self.tmp / role),
            "CLICKHOUSE_URL": f"chdb://{self.tmp / role / 'clickhouse'}",
            "DISCOVERY_STREAMS_STORE": "memory",
            "DISCOVERY_STOP_TIMEOUT_S": "10",
            **extra,
        }


@pytest.fixture(scope="module")
def locked(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Locked]:
    config = RuntimeConfig.from_env()
    tmp = tmp_path_factory.mktemp("acls")
    kafka = LocalKafka(
        tmp / "kafka", kafka_version=config.kafka_version, cache_dir=config.kafka_cache_dir,
        heap=config.kafka_heap, login=SUPER, users=list(LOGINS.values()), authorize=True,
    )  # fmt: skip
    kafka.start()
    try:
        principals = {role: f"User:{login.username}" for role, login in LOGINS.items()}
        kafka.grant(acl_arguments(CONFIG, principals))
        yield Locked(kafka, tmp)
    finally:
        kafka.stop()


async def _can_write(options: dict[str, Any], topic: str) -> bool:
    producer = AIOKafkaProducer(**options, request_timeout_ms=5000)
    try:
        await asyncio.wait_for(producer.start(), 20)
        await asyncio.wait_for(producer.send_and_wait(topic, b"{}", key=b"probe"), 20)
        return True
    except (KafkaError, TimeoutError):
        return False
    finally:
        await producer.stop()


async def _can_read(options: dict[str, Any], topic: str) -> bool:
    consumer = AIOKafkaConsumer(topic, **options, request_timeout_ms=5000,
                                auto_offset_reset="earliest")  # fmt: skip
    try:
        await asyncio.wait_for(consumer.start(), 20)
        await asyncio.wait_for(consumer.getmany(timeout_ms=1000), 20)
        return True
    except (KafkaError, TimeoutError):
        return False
    finally:
        await consumer.stop()


class Mailboxes:
    """The tenant's server: ann's mailbox, and no other (one that took every address would be a
    catch-all, where nothing is discovered)."""

    async def handle_RCPT(self, server: object, session: object, envelope: Any, address: str,
                          options: list[str]) -> str:  # fmt: skip
        if address.lower() != "ann@acme.example":
            return "550 5.1.1 User unknown"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 Ok"

    async def handle_DATA(self, server: object, session: object, envelope: object) -> str:
        return "250 2.0.0 Ok: queued"


def _start(role: str, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen([sys.executable, "-m", "smtp_discovery.cli", role], cwd=ROOT,
                                env=env, stdout=out, stderr=subprocess.STDOUT)  # fmt: skip


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "smtp_discovery.cli", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=180, check=False)  # fmt: skip


async def _until(condition: Any, what: str, timeout: float = 90) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        found = await condition()
        if found:
            return found
        assert time.monotonic() < deadline, f"never: {what}"
        await asyncio.sleep(0.2)


async def test_every_role_works_with_only_its_own_grants(locked: Locked) -> None:
    ensured = _cli(locked.env("setup"), "topics", "ensure")
    assert ensured.returncode == 0, ensured.stdout + ensured.stderr
    # Run again, as every later `docker compose up` or upgrade does: the topics exist now, and
    # checking them takes reading their partitions (Describe), not only their settings.
    again = _cli(locked.env("setup"), "topics", "ensure")
    assert again.returncode == 0, again.stdout + again.stderr
    # The admin API's ClickHouse (a chDB of its own here: one process per path) gets the schema
    # as a deployment's migrate job gives it; the erasure below then finds its tables.
    migrated = _cli(locked.env("admin"), "migrate")
    assert migrated.returncode == 0, migrated.stdout + migrated.stderr
    key = key_file(locked.tmp)
    destination = Controller(Mailboxes(), hostname="127.0.0.1", port=free_port())
    destination.start()
    smtp, admin_port = free_port(), free_port()
    processes: dict[str, tuple[subprocess.Popen[bytes], int, Path]] = {}
    try:
        for role in ("worker", "sink", "ingest", "admin"):
            ops = free_port()
            env = locked.env(role, DISCOVERY_OPS_LISTEN=f"127.0.0.1:{ops}",
                             DISCOVERY_INGEST_LISTEN=f"127.0.0.1:{smtp}",
                             DISCOVERY_ADMIN_LISTEN=f"127.0.0.1:{admin_port}",
                             DISCOVERY_ADMIN_TOKEN_KEY_FILE=str(key))  # fmt: skip
            if role != "admin":
                del env["DISCOVERY_ADMIN_TOKEN_KEY_FILE"]  # the admin role's secret alone
            log = locked.tmp / f"{role}.log"
            processes[role] = (_start(role, env, log), ops, log)
        for role, (process, ops, log) in processes.items():

            async def up(process=process, ops=ops, role=role, log=log) -> bool:  # type: ignore[no-untyped-def]
                assert process.poll() is None, f"{role} exited:\n{log.read_text()[-3000:]}"
                return await asyncio.to_thread(ready, ops)

            await _until(up, f"{role} ready", 180)

        # The operator's token, made as operators make it: the admin principal and its key.
        made = _cli(locked.env("admin", DISCOVERY_ADMIN_TOKEN_KEY_FILE=str(key)),
                    "token", "create", "--operator")  # fmt: skip
        assert made.returncode == 0, made.stderr
        headers = {"Authorization": f"Bearer {made.stdout.strip()}"}
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{admin_port}") as api:

            async def tenant_created() -> bool:
                response = await api.post("/v1/tenants", headers=headers, json={
                    "tenant_id": "acme", "name": "Acme", "domains": ["acme.example"],
                    "destinations": [{"host": "127.0.0.1", "port": destination.port}],
                    "settings": {"discovery_enabled": True}})  # fmt: skip
                return response.status_code in (201, 409)  # 401 until it reads its token

            await _until(tenant_created, "the admin API made the tenant (tenants: write)")

            async def accepted() -> bool:
                async with aiosmtplib.SMTP(hostname="127.0.0.1", port=smtp, timeout=30) as client:
                    await client.mail("sender@outside.example")
                    reply = await client.execute_command(b"RCPT TO:<ann@acme.example>")
                    if reply.code != 250:
                        return False
                    await client.data(b"Subject: hi\r\n\r\nhello\r\n")
                return True

            await _until(accepted, "ingest read the tenant, verified ann and published mail")
            sup = locked.options(SUPER)

            consumer = AIOKafkaConsumer(NAMES(ADDRESS_STATE), **sup,
                                        auto_offset_reset="earliest")  # fmt: skip
            await consumer.start()

            async def state_published() -> bool:
                batches = await consumer.getmany(timeout_ms=500)
                return any(b"ann@acme.example" in (r.key or b"") for rs in batches.values()
                           for r in rs)  # fmt: skip

            try:
                await _until(state_published, "the worker read mail and published ann's state")
            finally:
                await consumer.stop()
            response = await api.post("/v1/tenants/acme/actions", headers=headers, json={
                "action": "create_user", "addresses": ["ann@acme.example"]})  # fmt: skip
            assert response.status_code == 202, response.text
            command = response.json()["commands"][0]["command_id"]

            async def answered() -> bool:
                found = await api.get(f"/v1/tenants/acme/commands/{command}", headers=headers)
                return found.json()["status"] != "pending"

            await _until(answered, "the worker applied the command and the API read its result")
            # An erasure waits until the workers and the sinks have processed what was written:
            # the admin role reads their groups' offsets and the end offsets of their topics.
            erased = await api.post("/v1/tenants/acme/erasures", headers=headers,
                                    json={"address": "ann@acme.example"}, timeout=300)  # fmt: skip
            assert erased.status_code == 200, erased.text

        async def sink_committed() -> bool:
            admin = AIOKafkaAdminClient(**sup)
            await admin.start()
            try:
                offsets = await admin.list_consumer_group_offsets(CONFIG.sink_group)
            finally:
                await admin.close()
            return any(tp.topic == NAMES(ADDRESS_STATE) and meta.offset > 0
                       for tp, meta in offsets.items())  # fmt: skip

        await _until(sink_committed, "the sink stored ann's state and committed")
        for role, (_, _, log) in processes.items():
            text = log.read_text(errors="replace")
            assert "AuthorizationFailed" not in text and "not authorized" not in text.lower(), (
                f"{role} was refused something it needs:\n{text[-3000:]}"
            )
    finally:
        for process, _, _ in processes.values():
            process.terminate()
        for process, _, _ in processes.values():
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
        destination.stop()


@pytest.mark.parametrize(
    ("role", "topic", "write", "allowed"),
    [
        ("ingest", MAIL, True, True),
        ("ingest", COMMANDS, True, False),
        ("ingest", TENANTS, True, False),
        ("ingest", ADMIN_TOKENS, True, False),
        ("ingest", TENANTS, False, True),
        ("ingest", ADMIN_TOKENS, False, False),
        ("sink", ADDRESS_STATE, True, False),
        ("worker", TENANTS, True, False),
        ("worker", ADMIN_TOKENS, False, False),
        ("admin", ADMIN_TOKENS, True, True),
        ("admin", MAIL, True, False),
    ],
)
async def test_a_role_can_touch_only_what_it_was_granted(
    locked: Locked, role: str, topic: str, write: bool, allowed: bool
) -> None:
    """After the flow above (file order): what these probes write is read by no role."""
    probe = _can_write if write else _can_read
    assert await probe(locked.options(LOGINS[role]), NAMES(topic)) is allowed
