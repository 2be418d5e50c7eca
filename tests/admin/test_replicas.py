"""Two admin API processes on one Kafka, as a provider runs replicas: their writes take turns.

Each replica answers from its own view of the tenants topic. Without turns, two replicas that
both find a domain free give it to two tenants, and two edits based on one version both land.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from smtp_discovery.admin.tokens import new_token
from smtp_discovery.localkafka.node import free_port
from smtp_discovery.platform.kafka import ensure_topics, idempotent_producer
from smtp_discovery.platform.views import TenantDirectory
from smtp_discovery.schemas.codec import encode
from smtp_discovery.schemas.topics import ADMIN_TOKENS, TENANTS, TopicNames
from tests.smtp_discovery.kafka_helpers import run
from tests.token_key import KEY, key_file

pytestmark = pytest.mark.kafka

ROOT = Path(__file__).resolve().parents[2]
ROUNDS = 8


async def _publish_token(bootstrap: str, names: TopicNames) -> str:
    await ensure_topics(
        {"bootstrap_servers": bootstrap}, partitions=2, replication=1, specs=names.specs()
    )
    bearer, record = new_token(None, "replicas", key=KEY)
    producer = idempotent_producer({"bootstrap_servers": bootstrap})
    await producer.start()
    try:
        await producer.send_and_wait(names(ADMIN_TOKENS), encode(record), key=record.kafka_key())
    finally:
        await producer.stop()
    return bearer


@pytest.fixture
def replicas(
    kafka_bootstrap: str, unique: str, tmp_path: Path
) -> Iterator[tuple[list[str], dict[str, str], TopicNames, Path]]:
    """Two ``smtp-discovery admin`` processes: their base URLs, an operator's headers, topics,
    and the directory of their logs."""
    names = TopicNames(f"r{unique}.")
    bearer = run(_publish_token(kafka_bootstrap, names))
    processes, urls = [], []
    for i in range(2):
        port = free_port()
        env = {
            **os.environ,
            "KAFKA_BOOTSTRAP": kafka_bootstrap,
            "DISCOVERY_TOPIC_PREFIX": names.prefix,
            "DISCOVERY_DATA_DIR": str(tmp_path / f"replica{i}"),
            "DISCOVERY_ADMIN_LISTEN": f"127.0.0.1:{port}",
            "DISCOVERY_OPS_LISTEN": "off",
            "DISCOVERY_ADMIN_TOKEN_KEY_FILE": str(key_file(tmp_path)),
        }
        env.pop("CLICKHOUSE_URL", None)  # each replica its own embedded chDB
        with (tmp_path / f"replica{i}.log").open("wb") as log:
            processes.append(
                subprocess.Popen(
                    [sys.executable, "-m", "smtp_discovery.cli", "admin"],
                    cwd=ROOT,
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
        urls.append(f"http://127.0.0.1:{port}")
    headers = {"Authorization": f"Bearer {bearer}"}
    try:
        deadline = time.monotonic() + 120
        for process, url in zip(processes, urls, strict=True):
            while True:
                assert process.poll() is None, _logs(tmp_path)
                try:
                    if httpx.get(f"{url}/v1/tenants", headers=headers).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, "an admin replica did not come up"
                time.sleep(0.1)
        yield urls, headers, names, tmp_path
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()


def _logs(directory: Path) -> str:
    return "\n".join(
        f"--- {p.name}\n{p.read_text(errors='replace')[-6000:]}"
        for p in sorted(directory.glob("replica*.log"))
    )


async def _final_view(bootstrap: str, names: TopicNames) -> TenantDirectory:
    """What every process ends up believing: the committed tenants topic, read afresh."""
    directory = TenantDirectory()
    follower = directory.follower({"bootstrap_servers": bootstrap}, names(TENANTS))
    await follower.start()
    try:
        await asyncio.wait_for(follower.ready.wait(), 30)
    finally:
        await follower.stop()
    return directory


def test_two_replicas_never_give_one_domain_to_two_tenants_nor_lose_an_edit(
    replicas: tuple[list[str], dict[str, str], TopicNames, Path], kafka_bootstrap: str
) -> None:
    urls, headers, names, logs = replicas

    async def race() -> None:
        async with httpx.AsyncClient(headers=headers, timeout=60) as http:
            for i in range(ROUNDS):
                domain = f"shared{i}.example"
                answers = await asyncio.gather(
                    *(
                        http.post(
                            f"{url}/v1/tenants",
                            json={
                                "tenant_id": f"t{i}{side}",
                                "name": f"T{i}{side}",
                                "domains": [domain],
                            },
                        )
                        for side, url in zip("ab", urls, strict=True)
                    )
                )
                codes = sorted(a.status_code for a in answers)
                assert codes == [201, 409], f"{[a.text for a in answers]}\n{_logs(logs)}"
                loser = next(a for a in answers if a.status_code == 409)
                assert loser.json()["error"]["code"] in ("domain_taken", "tenant_exists")

            # Both replicas read the same version of one tenant, then both write on it.
            read = await http.get(f"{urls[0]}/v1/tenants/t0a")
            if read.status_code == 404:
                read = await http.get(f"{urls[0]}/v1/tenants/t0b")
            tenant = read.json()
            path = f"/v1/tenants/{tenant['tenant_id']}"
            edits = await asyncio.gather(
                *(
                    http.put(
                        f"{url}{path}",
                        headers={"If-Match": read.headers["ETag"]},
                        json={"name": f"renamed by {n}", "domains": tenant["domains"]},
                    )
                    for n, url in enumerate(urls)
                )
            )
            statuses = sorted(e.status_code for e in edits)
            assert statuses == [200, 412], f"{[e.text for e in edits]}\n{_logs(logs)}"
            winner = next(e for e in edits if e.status_code == 200).json()
            # The other replica serves the winning write to a reader that comes to it next.
            for url in urls:
                seen = (await http.get(f"{url}{path}")).json()
                if seen["revision"] != winner["revision"]:  # its view may trail the commit
                    deadline = time.monotonic() + 30
                    while seen["revision"] != winner["revision"]:
                        assert time.monotonic() < deadline
                        await asyncio.sleep(0.05)
                        seen = (await http.get(f"{url}{path}")).json()
                assert seen["name"] == winner["name"]

    run(race())
    final = run(_final_view(kafka_bootstrap, names))
    owners = [t.tenant_id for t in final.tenants.values() if t.domains]
    assert len(owners) == ROUNDS  # one tenant per domain was ever committed
    for i in range(ROUNDS):
        owner = final.tenant_for_domain(f"shared{i}.example")
        assert owner is not None and owner.tenant_id in (f"t{i}a", f"t{i}b")


def test_a_token_revoked_on_one_replica_is_refused_by_both_within_seconds(
    replicas: tuple[list[str], dict[str, str], TopicNames, Path],
) -> None:
    urls, operator, _names, logs = replicas
    made = httpx.post(f"{urls[0]}/v1/tokens", headers=operator, json={"label": "leaked"})
    assert made.status_code == 201, made.text
    leaked = {"Authorization": f"Bearer {made.json()['token']}"}
    for url in urls:  # both replicas read the new token from the topic
        _until_status(f"{url}/v1/tenants", leaked, 200, logs)
    listed = httpx.get(f"{urls[0]}/v1/tokens", headers=operator).json()["items"]
    assert made.json()["token_id"] in {t["token_id"] for t in listed}
    revoked = httpx.delete(f"{urls[1]}/v1/tokens/{made.json()['token_id']}", headers=operator)
    assert revoked.status_code == 200, revoked.text
    for url in urls:
        _until_status(f"{url}/v1/tenants", leaked, 401, logs, timeout=10)


def _until_status(
    url: str, headers: dict[str, str], status: int, logs: Path, timeout: float = 30
) -> None:
    deadline = time.monotonic() + timeout
    while (found := httpx.get(url, headers=headers).status_code) != status:
        assert time.monotonic() < deadline, f"{url} still answers {found}:\n{_logs(logs)}"
        time.sleep(0.05)
